r"""Fitting a trained matcher's last few numbers on validation pairs: the weights of its fused
matching score (:func:`fit_fusion`), its decision threshold (:func:`calibrate_threshold`) and
the map from decision score to reported confidence (:func:`fit_confidence`).

The inference rule (:func:`~lngraph.matching.batched.batched_assignment`) assigns nodes by Hungarian
on the matching score and then drops pairs whose decision score is below a threshold; the
dropped nodes become disappeared / new. The assignment does not depend on the threshold, so
one prediction with threshold 0 (every Hungarian pair with its score) gives the prediction at
every threshold :math:`\theta` by keeping the pairs with score :math:`\ge \theta`.
:func:`calibrate_threshold` scores a grid of thresholds on validation pairs with the training's
selection score (F1 + mean of the new and disappeared F1s,
:func:`~lngraph.train.selection.selection_score`) and returns the best; ties go to the threshold
nearest the config's own. The class-balanced loss weighs matched and unmatched pairs equally,
which says nothing about where *new versus moved* is best decided; the validation patients do.

**Confidence.** :func:`fit_confidence` fits :math:`T, b` of the reported confidence
:math:`\sigma(\operatorname{logit}(p)/T + b)` of a kept pair's decision score :math:`p`
(:mod:`lngraph.metrics.calibration`) by maximum likelihood on the validation *assigned-pair
events*: every pair the Hungarian step assigns (the prediction at threshold 0, kept or not),
labelled correct when the ground truth matches its two nodes. The map is monotone and applied
after the decision, so neither the matches nor the threshold (which stays on :math:`p`)
change; a kept match's confidence is at least :math:`\sigma(\operatorname{logit}(\theta)/T +
b)`. Fitting on every assigned pair rather than on the kept ones gives the map the low scores
too, and a score calibrated on all pairs stays calibrated on the kept ones (they are the pairs
above a score).

**Too few or one-sided validation pairs.** The fusion fit needs matched and unmatched node pairs
(:func:`fusion_problem`); the threshold needs matched nodes to keep and new or disappeared nodes
to drop (:func:`threshold_problem`); the confidence needs correct and wrong assigned pairs.
When the validation pairs lack either, the step is skipped and its documented default stands —
the trained fusion weights, the config's threshold, the config's confidence map — with a
:class:`CalibrationWarning` (:func:`~lngraph.train.fit.fit_matcher` records why in the
checkpoint's ``extra["calibration_skipped"]``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch_geometric.data import HeteroData
from torch_geometric.loader import DataLoader

from lngraph.io.cohort import Cohort, ScanPair
from lngraph.io.matches import PairPrediction
from lngraph.metrics import evaluate_predictions
from lngraph.metrics.calibration import (
    calibration_summary,
    fit_scaling,
    match_events,
    temperature_scale,
)
from lngraph.models import AsymmetricMatcher, Matcher, MatcherConfig, matcher_graphs, predict_graphs
from lngraph.nn.logistic import fit_balanced_logistic
from lngraph.train.selection import selection_score

#: Thresholds tried by default: 0.001 … 0.04 (the graph matcher's :math:`P_{ij}` is a product
#: of two softmaxes and two matchabilities, and its best threshold often lies below 0.05),
#: 0.05, 0.10, …, 0.95, then 0.975 and 0.99.
DEFAULT_GRID = ((0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.04)
                + tuple(np.round(np.arange(0.05, 0.96, 0.05), 2).tolist()) + (0.975, 0.99))


class CalibrationWarning(UserWarning):
    """Validation on held-out pairs, or a calibration on them, was skipped because the
    validation pairs are missing, too few or one-sided; the documented default was used instead
    (the trained fusion weights, the config's threshold, selection on the training loss). The
    message says what was skipped and why."""


def _patients(pairs: Sequence[ScanPair]) -> str:
    names = sorted({p.patient_id for p in pairs})
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def fusion_problem(pairs: Sequence[ScanPair]) -> str | None:
    """Why ``pairs`` cannot calibrate the fusion weights (:func:`fit_fusion`), or ``None``: the
    logistic regression needs node pairs of both classes, matched (same ``track_id``) and
    unmatched, pooled over the pairs."""
    pairs = list(pairs)
    if not pairs:
        return "no validation scan pair"
    node_pairs = sum(len(p.src.nodes) * len(p.dst.nodes) for p in pairs)
    matched = sum(len(p.gt_matches()) for p in pairs)
    if node_pairs == 0:
        return f"the validation scan pairs (patients {_patients(pairs)}) have no node pair"
    if matched == 0:
        return (f"no matched node pair in the validation scan pairs (patients "
                f"{_patients(pairs)}): no node has its partner in the other scan")
    if matched == node_pairs:
        return (f"no unmatched node pair in the validation scan pairs (patients "
                f"{_patients(pairs)}): each scan has a single node, and it is matched")
    return None


def threshold_problem(pairs: Sequence[ScanPair]) -> str | None:
    """Why ``pairs`` cannot calibrate the decision threshold (:func:`calibrate_threshold`), or
    ``None``: the threshold trades kept matches against found new and disappeared nodes, so the
    pairs need a matched node and a new or disappeared one (with only one kind, the score is
    best at one end of the grid whatever the model does)."""
    pairs = list(pairs)
    if not pairs:
        return "no validation scan pair"
    matched = sum(len(p.gt_matches()) for p in pairs)
    unmatched = sum(len(p.gt_new()) + len(p.gt_disappeared()) for p in pairs)
    if matched == 0:
        return (f"no matched node in the validation scan pairs (patients {_patients(pairs)})")
    if unmatched == 0:
        return (f"no new or disappeared node in the validation scan pairs (patients "
                f"{_patients(pairs)}): nothing for the threshold to drop")
    return None


@dataclass(frozen=True)
class Calibration:
    """The outcome of :func:`calibrate_threshold`.

    Args:
        threshold: the chosen threshold.
        scores: ``{threshold: validation selection score}`` over the grid.
        metrics: validation metrics at the chosen threshold (with ``score``).
    """

    threshold: float
    scores: dict[float, float]
    metrics: dict


def threshold_predictions(predictions: Sequence[PairPrediction], threshold: float
                          ) -> list[PairPrediction]:
    """Keep each prediction's pairs whose score is at least ``threshold``."""
    out = []
    for p in predictions:
        keep = p.scores >= threshold
        out.append(PairPrediction(p.n_src, p.n_dst, p.matches[keep], p.scores[keep], p.points))
    return out


def decision_key(config: MatcherConfig) -> str:
    """The dotted config key the inference rule thresholds (``model.scb_threshold`` with SCB,
    else ``model.similarity_threshold``)."""
    model = config.model
    return "model.scb_threshold" if model.scb_active else "model.similarity_threshold"


def choose_threshold(predictions: Sequence[PairPrediction], pairs: Sequence[ScanPair],
                     cohort: Cohort, *, grid: Sequence[float] = DEFAULT_GRID,
                     current: float = 0.5) -> Calibration:
    """The grid threshold with the best selection score of ``predictions`` (made with
    threshold 0, one per pair of ``pairs``); ties go to the threshold nearest ``current``.

    Raises:
        ValueError: no pairs or an empty grid.
    """
    pairs = list(pairs)
    if not pairs or not len(grid):
        raise ValueError("calibration needs validation pairs and a non-empty grid")
    keys = [(p.src.scan_id, p.dst.scan_id) for p in pairs]
    scores, metrics = {}, {}
    for theta in grid:
        m = evaluate_predictions(cohort, dict(zip(keys, threshold_predictions(predictions, theta),
                                                  strict=True)), pairs)
        m["score"] = selection_score(m)
        scores[float(theta)], metrics[float(theta)] = m["score"], m
    top = max(scores.values())
    best = min((t for t, s in scores.items() if s >= top - 1e-12),
               key=lambda t: (abs(t - current), t))
    return Calibration(best, scores, metrics[best])


def calibrate_threshold(model: Matcher, config: MatcherConfig, cohort: Cohort,
                        pairs: Sequence[ScanPair], *, grid: Sequence[float] = DEFAULT_GRID,
                        cache_dir: str | os.PathLike | None = None,
                        graphs: Sequence[HeteroData] | None = None) -> Calibration:
    """The grid threshold with the best validation selection score (module docstring).
    ``graphs``: the pairs' graphs when already built (else built through ``cache_dir``).

    Raises:
        ValueError: no pairs or an empty grid.
    """
    pairs = list(pairs)
    if graphs is None:
        graphs = matcher_graphs(pairs, config, cache_dir=cache_dir)
    every = predict_graphs(model, graphs, threshold=0.0, calibrated=False)
    return choose_threshold(every, pairs, cohort, grid=grid,
                            current=config.flat()[decision_key(config)])


@dataclass(frozen=True)
class ConfidenceFit:
    """The outcome of :func:`fit_confidence`.

    Args:
        temperature, bias: :math:`T` and :math:`b` of the confidence map.
        threshold_confidence: the confidence of a kept pair at the decision threshold, the
            least any kept match reports.
        summary: :func:`~lngraph.metrics.calibration.calibration_summary` of the validation
            assigned-pair events before and after the map (ECE, NLL, reliability curves).
    """

    temperature: float
    bias: float
    threshold_confidence: float
    summary: dict

    def to_dict(self) -> dict:
        """What the checkpoint's ``extra["confidence"]`` stores (no reliability curves)."""
        keep = ("n", "n_correct", "ece_raw", "ece", "nll_raw", "nll")
        return {"temperature": self.temperature, "bias": self.bias,
                "threshold_confidence": self.threshold_confidence,
                **{k: self.summary[k] for k in keep}}


def assigned_pair_events(model: Matcher, pairs: Sequence[ScanPair],
                         graphs: Sequence[HeteroData]) -> tuple[np.ndarray, np.ndarray]:
    """``(decision scores, labels)`` of every assigned pair of ``pairs`` (the model's
    prediction at threshold 0, uncalibrated; :func:`~lngraph.metrics.calibration.match_events`)."""
    every = predict_graphs(model, graphs, threshold=0.0, calibrated=False)
    return match_events(zip(pairs, every, strict=True))


def fit_confidence(model: Matcher, config: MatcherConfig, pairs: Sequence[ScanPair], *,
                   bias: bool = True, cache_dir: str | os.PathLike | None = None,
                   graphs: Sequence[HeteroData] | None = None) -> ConfidenceFit:
    """Fit the confidence map's :math:`T` and :math:`b` (``bias=False``: :math:`T` alone) on
    the assigned-pair events of ``pairs`` (module docstring). The model and config are not
    changed: store the result as ``model.score_temperature`` and ``model.score_bias``.
    ``graphs``: the pairs' graphs when already built.

    Raises:
        ValueError: no assigned pair with known tracks, or only correct or only wrong ones.
    """
    pairs = list(pairs)
    if graphs is None:
        graphs = matcher_graphs(pairs, config, cache_dir=cache_dir)
    scores, labels = assigned_pair_events(model, pairs, graphs)
    try:
        temperature, b = fit_scaling(scores, labels, bias=bias)
    except ValueError as exc:
        raise ValueError(f"{exc} among the assigned pairs of the validation scan pairs "
                         f"(patients {_patients(pairs)})") from None
    threshold = config.flat()[decision_key(config)]
    return ConfidenceFit(temperature, b, float(temperature_scale(threshold, temperature, b)),
                         calibration_summary(scores, labels, temperature, b))


def fusion_data(model: AsymmetricMatcher, batch, out) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per pair of ``batch``: its fusion terms ``[n1, n2, k]``
    (:meth:`~lngraph.models.AsymmetricMatcher.fusion_features`) and ground truth ``[n1, n2]``,
    float64 on the CPU; ``out`` is the model's output on ``batch``."""
    x = model.fusion_features(batch, out.similarity, out.src, out.dst)
    y = model.match_targets(batch, out)
    n_src = torch.bincount(out.src.batch, minlength=x.shape[0]).tolist()
    n_dst = torch.bincount(out.dst.batch, minlength=x.shape[0]).tolist()
    return [(x[g, :n_src[g], :n_dst[g]].double().cpu(), y[g, :n_src[g], :n_dst[g]].double().cpu())
            for g in range(x.shape[0])]


def fit_logistic(data: Sequence[tuple[torch.Tensor, torch.Tensor]], weight: torch.Tensor,
                 bias: float, l2: float = 1e-3) -> tuple[torch.Tensor, float]:
    r"""Class-balanced logistic regression :math:`\sigma(w^\top x + c)` of 0/1 labels on
    features, pooled over ``data`` (pairs of features ``[..., k]`` and labels ``[...]``, as
    :func:`fusion_data` gives them): :func:`~lngraph.nn.losses.class_balanced_bce` plus
    ``l2``·:math:`\lVert w\rVert^2`, L-BFGS in float64 from ``weight``, ``bias``.

    Raises:
        ValueError: the labels hold only one class (or none), or the fit is not finite.
    """
    if not data:
        raise ValueError("fusion calibration needs matched and unmatched node pairs, got no "
                         "node pair")
    x = torch.cat([f.reshape(-1, f.shape[-1]) for f, _ in data])
    y = torch.cat([t.reshape(-1) for _, t in data])
    return fit_balanced_logistic(x, y, weight, bias, l2)


def fit_fusion(model: AsymmetricMatcher, config: MatcherConfig, pairs: Sequence[ScanPair], *,
               cache_dir: str | os.PathLike | None = None, l2: float = 1e-3,
               batch_size: int | None = None,
               graphs: Sequence[HeteroData] | None = None) -> dict[str, float]:
    r"""Refit the fused matching score's weights and bias on ``pairs`` (in place).

    With the encoders and SEAG fixed, the fusion terms :math:`x_{ij}` of every node pair
    (:meth:`~lngraph.models.AsymmetricMatcher.fusion_features`) and the ground truth
    :math:`y_{ij}` give a logistic regression :math:`P_{ij} = \sigma(w^\top x_{ij} + c)`, fitted
    by class-balanced BCE (matched and unmatched pairs weigh half each) plus
    ``l2``·:math:`\lVert w\rVert^2` with L-BFGS. Training fits the same weights on the
    training pairs, whose appearance the encoders have learnt by heart; refitted on held-out
    patients they weigh appearance by what it is worth on new patients.

    Returns:
        ``{term: weight}`` and ``"bias"``, as set in the model.

    Raises:
        ValueError: the config has no position prior (nothing to fuse), the pairs hold no
            matched or no unmatched node pair (:func:`fusion_problem`), or the fit is not
            finite; the model is then left as it was.
    """
    if not config.model.fuses_scores:
        raise ValueError("fusion calibration needs the asymmetric architecture with "
                         "model.position_prior: true")
    if graphs is None:
        graphs = matcher_graphs(list(pairs), config, cache_dir=cache_dir)
    device = next(model.parameters()).device
    data = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in DataLoader(graphs, batch_size=batch_size or config.optim.batch_size):
                batch = batch.to(device)
                out = model(batch, candidates=batch["src"].pos.new_zeros((2, 0), dtype=torch.long))
                data += fusion_data(model, batch, out)
    finally:
        model.train(was_training)
    w, b = fit_logistic(data, model.fusion_weight, model.fusion_bias.item(), l2)
    with torch.no_grad():
        model.fusion_weight.copy_(w.to(model.fusion_weight))
        model.fusion_bias.fill_(b)
    return {**dict(zip(model.fusion_terms, w.tolist(), strict=True)), "bias": b}
