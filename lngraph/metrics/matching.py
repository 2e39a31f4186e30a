"""Matching and centre-point metrics of docs/design.md, *Metrics*, pooled over scan pairs.

For a scan pair: G = ground-truth pairs, D = ground-truth disappeared (earlier-scan nodes without
a partner), N = ground-truth new; P, D̂, N̂ = the predicted pairs, disappeared and new nodes.

* ``precision`` = |P ∩ G| / |P|, ``recall`` = |P ∩ G| / |G|, ``f1`` = 2 |P ∩ G| / (|P| + |G|)
  (the harmonic mean of the two wherever both are defined).
* ``dlr`` = |D̂ ∩ D| / |D|, ``nlr`` = |N̂ ∩ N| / |N| (the paper's rates), and their precisions
  ``disappeared_precision`` = |D̂ ∩ D| / |D̂|, ``new_precision`` = |N̂ ∩ N| / |N̂|.
* Centre points (Deep Lesion Tracker definitions): for each GT pair (a, b), the predicted
  location of a in the later scan is ``PairPrediction.points[a]`` when the method gives points
  and that row is finite, else the centre of a's predicted partner; d = ‖pred − c_b‖ in mm and
  r = radius of b. ``cpm_radius`` = share of GT pairs with d < r, ``cpm_10mm`` = share with
  d ≤ min(r, 10 mm), both over *all* GT pairs: a GT pair whose node has no predicted location
  (predicted disappeared, no point) is a miss, counted in ``n_cpm_missed``. ``med_mm`` and
  ``med_std_mm`` are the mean and (population) standard deviation of d over the GT pairs that
  have a predicted location.

Counts are pooled (micro) over all pairs before dividing. A ratio whose denominator is 0 (no
predicted pairs, no GT pairs, …) is NaN, written as ``null`` in JSON; it is never silently 0 or
1. Only nodes with a known ``track_id`` are judged: a predicted pair, disappeared or new node
that touches a node without one is left out of P, D̂ and N̂.

This module judges any method's output (a :class:`~lngraph.io.matches.PairPrediction`); it
imports no model and no baseline.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lngraph.io.atomic import write_text_atomic
from lngraph.io.cohort import Cohort, ScanPair
from lngraph.io.matches import PairPrediction

#: Centre-point tolerance of ``cpm_10mm`` in mm.
CPM_MAX_MM = 10.0

#: Count fields of :class:`PairCounts`, summed over pairs by :func:`summarize`.
COUNT_FIELDS = (
    "n_pred_matches", "n_correct_matches", "n_gt_matches",
    "n_pred_disappeared", "n_correct_disappeared", "n_gt_disappeared",
    "n_pred_new", "n_correct_new", "n_gt_new",
    "n_cpm_missed",
)


@dataclass(frozen=True)
class PairCounts:
    """The raw counts of one scan pair from which every metric is computed.

    Args:
        n_pred_matches, n_correct_matches, n_gt_matches: |P|, |P ∩ G|, |G|.
        n_pred_disappeared, n_correct_disappeared, n_gt_disappeared: |D̂|, |D̂ ∩ D|, |D|.
        n_pred_new, n_correct_new, n_gt_new: |N̂|, |N̂ ∩ N|, |N|.
        n_cpm_missed: GT pairs whose earlier node has no predicted location.
        distances_mm: ``[K]`` d of the GT pairs that have a predicted location.
        radii_mm: ``[K]`` radius of the later node of those GT pairs.
    """

    n_pred_matches: int
    n_correct_matches: int
    n_gt_matches: int
    n_pred_disappeared: int
    n_correct_disappeared: int
    n_gt_disappeared: int
    n_pred_new: int
    n_correct_new: int
    n_gt_new: int
    n_cpm_missed: int
    distances_mm: np.ndarray
    radii_mm: np.ndarray


def _predicted_locations(pair: ScanPair, pred: PairPrediction) -> np.ndarray:
    """``[n_src, 3]`` predicted position of each src node in the later scan, NaN where none."""
    out = np.full((pred.n_src, 3), np.nan)
    partner = pred.partner_of_src()
    matched = partner >= 0
    out[matched] = pair.dst.nodes.pos[partner[matched]]
    if pred.points is not None:
        given = np.isfinite(pred.points).all(axis=1)
        out[given] = pred.points[given]
    return out


def pair_counts(pair: ScanPair, pred: PairPrediction) -> PairCounts:
    """Compare ``pred`` with the ground truth (``track_id``) of ``pair``.

    Raises:
        ValueError: if ``pred`` is sized for another pair.
    """
    sizes = (len(pair.src.nodes), len(pair.dst.nodes))
    if (pred.n_src, pred.n_dst) != sizes:
        raise ValueError(f"prediction is for {pred.n_src} x {pred.n_dst} nodes but pair "
                         f"{pair.src.scan_id} -> {pair.dst.scan_id} has {sizes[0]} x {sizes[1]}")
    src_known = np.array([t is not None for t in pair.src.nodes.track_id], bool)
    dst_known = np.array([t is not None for t in pair.dst.nodes.track_id], bool)
    gt = pair.gt_matches()
    gt_set = set(map(tuple, gt.tolist()))
    pred_pairs = [(i, j) for i, j in pred.matches.tolist() if src_known[i] and dst_known[j]]
    pred_gone = [i for i in pred.disappeared.tolist() if src_known[i]]
    pred_new = [j for j in pred.new.tolist() if dst_known[j]]
    gt_gone, gt_new = set(pair.gt_disappeared().tolist()), set(pair.gt_new().tolist())

    located = _predicted_locations(pair, pred)[gt[:, 0]]
    has_location = np.isfinite(located).all(axis=1)
    target = pair.dst.nodes.pos[gt[:, 1]]
    distances = np.linalg.norm(located[has_location] - target[has_location], axis=1)
    return PairCounts(
        n_pred_matches=len(pred_pairs),
        n_correct_matches=sum(p in gt_set for p in pred_pairs),
        n_gt_matches=len(gt),
        n_pred_disappeared=len(pred_gone),
        n_correct_disappeared=sum(i in gt_gone for i in pred_gone),
        n_gt_disappeared=len(gt_gone),
        n_pred_new=len(pred_new),
        n_correct_new=sum(j in gt_new for j in pred_new),
        n_gt_new=len(gt_new),
        n_cpm_missed=int((~has_location).sum()),
        distances_mm=distances,
        radii_mm=pair.dst.nodes.radius_mm[gt[has_location, 1]],
    )


def _ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, NaN when the denominator is 0."""
    return float(numerator) / denominator if denominator else math.nan


def summarize(counts: Sequence[PairCounts]) -> dict:
    """Pool ``counts`` over pairs (micro average) and compute every metric.

    Returns:
        ``precision, recall, f1, nlr, dlr, new_precision, disappeared_precision, cpm_radius,
        cpm_10mm, med_mm, med_std_mm`` (fractions in [0, 1] and mm; NaN for 0/0), ``n_pairs``,
        ``n_cpm_located`` and the summed :data:`COUNT_FIELDS` (``n_gt_matches``,
        ``n_cpm_missed``, …).
    """
    total = {name: int(sum(getattr(c, name) for c in counts)) for name in COUNT_FIELDS}
    d = np.concatenate([c.distances_mm for c in counts]) if counts else np.zeros(0)
    r = np.concatenate([c.radii_mm for c in counts]) if counts else np.zeros(0)
    n_gt = total["n_gt_matches"]
    return {
        "precision": _ratio(total["n_correct_matches"], total["n_pred_matches"]),
        "recall": _ratio(total["n_correct_matches"], n_gt),
        "f1": _ratio(2 * total["n_correct_matches"], total["n_pred_matches"] + n_gt),
        "nlr": _ratio(total["n_correct_new"], total["n_gt_new"]),
        "dlr": _ratio(total["n_correct_disappeared"], total["n_gt_disappeared"]),
        "new_precision": _ratio(total["n_correct_new"], total["n_pred_new"]),
        "disappeared_precision": _ratio(total["n_correct_disappeared"],
                                        total["n_pred_disappeared"]),
        "cpm_radius": _ratio(int((d < r).sum()), n_gt),
        "cpm_10mm": _ratio(int((d <= np.minimum(r, CPM_MAX_MM)).sum()), n_gt),
        "med_mm": float(d.mean()) if len(d) else math.nan,
        "med_std_mm": float(d.std()) if len(d) else math.nan,
        "n_pairs": len(counts),
        "n_cpm_located": len(d),
        **total,
    }


def _is_number(value) -> bool:
    return (isinstance(value, int | float | np.integer | np.floating)
            and not isinstance(value, bool | np.bool_))


def mean_std_over_folds(folds: Sequence[Mapping]) -> dict[str, tuple[float, float]]:
    """Mean and sample standard deviation over folds (``ddof=1``: the spread of the folds as
    a sample of what another split would give) of each numeric metric.

    Keys present in every fold with a number (not a bool) are kept. A fold whose value is NaN
    is left out of that key; a key that is NaN in every fold gives ``(nan, nan)``, and a key
    with a single finite value gives ``(value, nan)`` (one fold says nothing about the
    spread; tables print the standard deviation as ``n/a``).
    """
    if not folds:
        return {}
    keys = [k for k in folds[0] if all(_is_number(f.get(k)) for f in folds)]
    out = {}
    for key in keys:
        values = np.array([f[key] for f in folds], dtype=np.float64)
        values = values[np.isfinite(values)]
        mean = float(values.mean()) if len(values) else math.nan
        std = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        out[key] = (mean, std)
    return out


def evaluate_predictions(cohort: Cohort, predictions: Mapping[tuple[str, str], PairPrediction],
                         pairs: Iterable[ScanPair] | None = None) -> dict:
    """Score ``predictions`` (as :func:`~lngraph.io.matches.read_matches` returns) on ``cohort``.

    Args:
        cohort: gives the ground truth (``track_id``) and the node positions and sizes.
        predictions: ``{(src_scan, dst_scan): PairPrediction}``.
        pairs: the pairs to score. ``None`` (default) scores exactly the predicted pairs, so
            pairs of the cohort absent from ``predictions`` are not scored. When given, every
            one of them is scored: a pair absent from ``predictions`` is an error unless both
            its scans have no nodes (such a pair has no row in a ``matches.csv``), and a
            predicted pair outside ``pairs`` is an error.

    Returns:
        :func:`summarize` of the scored pairs.

    Raises:
        ValueError: a predicted pair that is not (earlier, later) scans of one patient of the
            cohort, a prediction sized for another pair, or a missing or unrequested pair.
    """
    known = {(p.src.scan_id, p.dst.scan_id): p for p in cohort.pairs("all")}
    for key in predictions:
        if key not in known:
            raise ValueError(f"predicted pair {key[0]} -> {key[1]} is not a scan pair of the "
                             "cohort (two scans of one patient, the earlier first)")
    if pairs is None:
        scored = [(known[key], pred) for key, pred in predictions.items()]
    else:
        pairs = list(pairs)
        wanted = {(p.src.scan_id, p.dst.scan_id) for p in pairs}
        extra = [key for key in predictions if key not in wanted]
        if extra:
            raise ValueError(f"predicted pair {extra[0][0]} -> {extra[0][1]} is not among the "
                             "pairs to score")
        scored = []
        for pair in pairs:
            key = (pair.src.scan_id, pair.dst.scan_id)
            n_src, n_dst = len(pair.src.nodes), len(pair.dst.nodes)
            if key not in predictions and n_src + n_dst > 0:
                raise ValueError(f"no prediction for pair {key[0]} -> {key[1]}")
            scored.append((pair, predictions.get(key, PairPrediction(n_src, n_dst))))
    return summarize([pair_counts(pair, pred) for pair, pred in scored])


def _to_json(value):
    if isinstance(value, Mapping):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_to_json(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def write_metrics_json(path: str | os.PathLike, metrics: Mapping) -> Path:
    """Write ``metrics`` as JSON atomically; NaN and infinities become ``null``.

    Tuples (e.g. the ``(mean, std)`` of :func:`mean_std_over_folds`) become lists.
    """
    text = json.dumps(_to_json(metrics), indent=2, allow_nan=False)
    return write_text_atomic(path, text + "\n")
