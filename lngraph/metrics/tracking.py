"""Track metrics: predicted node tracks over all scans of a patient against the ground truth,
and the ``tracks.csv`` contract.

``tracks.csv`` (written by ``lngraph track``) has one row per node: ``patient_id, scan_id,
node_id, track_id``; two nodes of a patient with the same ``track_id`` are predicted to be the
same lymph node (a track never holds two nodes of one scan). Track ids are scoped by patient,
like the ground truth's.

The scans of a patient are the frames (time order); every node is a detection the tracker
gets right by construction, so only the *identities* are judged. Let :math:`\\mathcal G` be
the ground-truth tracks (nodes sharing a ``track_id`` in ``nodes.csv``) and
:math:`\\mathcal H` the predicted ones. Only nodes with a known ``track_id`` are judged;
predicted tracks are restricted to them.

* **IDF1** (Ristani et al., ECCV 2016 workshops): the identity assignment is the one-to-one
  map :math:`m` of ground-truth to predicted tracks (either may stay unassigned) with the
  least ``IDFN + IDFP``, i.e. the largest :math:`\\mathrm{IDTP} = \\sum_{g} |g \\cap m(g)|`
  (node overlap; Hungarian). Then :math:`\\mathrm{IDFN} = \\sum_g |g| - \\mathrm{IDTP}`,
  :math:`\\mathrm{IDFP} = \\sum_h |h| - \\mathrm{IDTP}`, ``idp`` = IDTP / (IDTP + IDFP),
  ``idr`` = IDTP / (IDTP + IDFN), ``idf1`` = 2 IDTP / (2 IDTP + IDFP + IDFN). Tracks never
  span patients, so pooling the counts over patients is the cohort-wide assignment.
* **ID switches** (CLEAR MOT mismatches, Bernardin & Stiefelhagen 2008, scans as frames): a
  ground-truth track's predicted identity at each of its appearances is the predicted track
  holding its node; a switch is an appearance whose identity differs from the one at the
  track's previous appearance (a skipped scan is no appearance). ``A → B → A`` is two.
* **Fragmentations** (the MOT "interrupted trajectory" count, Li et al. CVPR 2009, adapted):
  with every node detected, a ground-truth track is interrupted when the prediction cuts it
  into pieces; fragmentations = :math:`\\sum_g (|\\{h : h \\cap g \\ne \\emptyset\\}| - 1)`.
  A cut that returns to an earlier piece is another switch but no new fragment, so
  ``fragmentations ≤ id_switches``.
* **Merges**, the dual: :math:`\\sum_h (|\\{g : g \\cap h \\ne \\emptyset\\}| - 1)`, predicted
  tracks that join different lymph nodes.
* **Pairwise** precision / recall / F1 over all scan pairs: a predicted match is two nodes of
  different scans of a patient in one predicted track (:math:`\\sum_h \\binom{|h|}{2}`), a
  true one two nodes sharing a ground-truth track; a predicted match is correct when both hold.

Counts are pooled over patients before dividing; a ratio with a zero denominator is NaN.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from lngraph.io.atomic import atomic_path
from lngraph.io.cohort import Cohort, Scan, read_csv_table
from lngraph.io.errors import InputError

TRACK_COLUMNS = ("patient_id", "scan_id", "node_id", "track_id")

#: Count fields of :class:`TrackCounts`, summed over patients by :func:`summarize_tracks`.
TRACK_COUNT_FIELDS = (
    "n_nodes", "n_gt_tracks", "n_pred_tracks", "idtp", "idfp", "idfn", "id_switches",
    "fragmentations", "merges", "n_pred_matches", "n_correct_matches", "n_gt_matches",
)


# ----------------------------------------------------------------------------- tracks.csv

def tracks_frame(scans: Iterable[Scan], tracks: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """``tracks.csv`` rows (strings) of ``scans`` (in the given order, nodes in table order);
    ``tracks[scan_id]`` holds the track id of each node of that scan."""
    rows = []
    for scan in scans:
        ids = list(tracks[scan.scan_id])
        if len(ids) != len(scan.nodes):
            raise ValueError(f"scan {scan.scan_id} has {len(scan.nodes)} nodes but "
                             f"{len(ids)} track ids")
        rows += [(scan.patient_id, scan.scan_id, str(node), str(track))
                 for node, track in zip(scan.nodes.node_id, ids, strict=True)]
    return pd.DataFrame(rows, columns=list(TRACK_COLUMNS), dtype=object)


def write_tracks(path: str | os.PathLike, scans: Iterable[Scan],
                 tracks: Mapping[str, Sequence[str]]) -> Path:
    """Write ``tracks.csv`` atomically (see :func:`tracks_frame`)."""
    table = tracks_frame(scans, tracks)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    return Path(path)


def read_tracks(path: str | os.PathLike, cohort: Cohort) -> dict[str, np.ndarray]:
    """Read a ``tracks.csv`` and validate it against ``cohort``.

    Every node of a patient that appears in the file needs exactly one row; patients absent
    from the file are not scored.

    Returns:
        ``{scan_id: [n] track ids}`` (object arrays in each scan's node order) for every scan
        of the patients in the file.

    Raises:
        InputError: naming the file, line and problem — a missing column, an empty field, an
            unknown scan or node, a ``patient_id`` that is not the scan's, a node listed twice,
            two nodes of one scan in one track, a node of a listed patient without a row, or
            no rows at all.
    """
    path = Path(path)
    frame = read_csv_table(path, TRACK_COLUMNS)[list(TRACK_COLUMNS)]
    if len(frame) == 0:
        raise InputError(path, "the file holds no tracks (a header but no rows)")
    index = {scan_id: {str(n): k for k, n in enumerate(scan.nodes.node_id)}
             for scan_id, scan in cohort.scans.items()}
    out: dict[str, np.ndarray] = {}
    node_line: dict[tuple[str, int], int] = {}
    track_line: dict[tuple[str, str, str], tuple[int, str]] = {}
    for row, (patient, scan_id, node, track) in enumerate(frame.itertuples(index=False)):
        line = row + 2
        for name, value in (("patient_id", patient), ("scan_id", scan_id),
                            ("node_id", node), ("track_id", track)):
            if value == "":
                raise InputError(path, f"{name} is empty", line=line)
        if scan_id not in cohort.scans:
            raise InputError(path, f"scan_id {scan_id!r} is not a scan of the cohort",
                             line=line)
        scan = cohort.scans[scan_id]
        if patient != scan.patient_id:
            raise InputError(path, f"scan {scan_id!r} belongs to patient {scan.patient_id!r}, "
                             f"not {patient!r}", line=line)
        if node not in index[scan_id]:
            raise InputError(path, f"node_id {node!r} is not a node of scan {scan_id!r}",
                             line=line)
        k = index[scan_id][node]
        if (scan_id, k) in node_line:
            raise InputError(path, f"node {node!r} of scan {scan_id!r} is listed twice (first "
                             f"on line {node_line[(scan_id, k)]})", line=line)
        node_line[(scan_id, k)] = line
        key = (patient, track, scan_id)
        if key in track_line:
            first, other = track_line[key]
            raise InputError(path, f"track {track!r} holds two nodes of scan {scan_id!r} "
                             f"({other!r} on line {first} and {node!r}); a lymph node occurs "
                             "at most once per scan", line=line)
        track_line[key] = (line, node)
        if scan_id not in out:          # the first row of this patient: all its scans
            for s in cohort.scans_of(patient):
                out[s.scan_id] = np.full(len(s.nodes), None, dtype=object)
        out[scan_id][k] = track
    for scan_id, ids in out.items():
        absent = [str(cohort.scans[scan_id].nodes.node_id[k])
                  for k in np.flatnonzero([t is None for t in ids])]
        if absent:
            shown = ", ".join(repr(n) for n in absent[:5])
            more = f" and {len(absent) - 5} more" if len(absent) > 5 else ""
            raise InputError(path, f"node(s) {shown}{more} of scan {scan_id!r} have no row; "
                             "every node of a listed patient needs one",
                             what=f"patient {cohort.scans[scan_id].patient_id}")
    return out


# ----------------------------------------------------------------------------- metrics

@dataclass(frozen=True)
class TrackCounts:
    """The counts of one patient from which every track metric is computed (module
    docstring). ``n_nodes``: judged nodes; ``n_pred_matches``, ``n_correct_matches``,
    ``n_gt_matches``: node pairs over all scan pairs."""

    patient_id: str
    n_nodes: int
    n_gt_tracks: int
    n_pred_tracks: int
    idtp: int
    idfp: int
    idfn: int
    id_switches: int
    fragmentations: int
    merges: int
    n_pred_matches: int
    n_correct_matches: int
    n_gt_matches: int


def _pairs(counts: np.ndarray) -> int:
    return int((counts * (counts - 1) // 2).sum())


def patient_track_counts(scans: Sequence[Scan], predicted: Mapping[str, Sequence]
                         ) -> TrackCounts:
    """Compare the predicted tracks of one patient's ``scans`` (time order) with their
    ``track_id``\\ s.

    Args:
        scans: the patient's scans, earliest first (:meth:`Cohort.scans_of`).
        predicted: ``{scan_id: [n] predicted track id of each node}``.
    """
    gt, pred, frame = [], [], []
    for t, scan in enumerate(scans):
        ids = list(predicted[scan.scan_id])
        if len(ids) != len(scan.nodes):
            raise ValueError(f"scan {scan.scan_id} has {len(scan.nodes)} nodes but "
                             f"{len(ids)} predicted track ids")
        for truth, guess in zip(scan.nodes.track_id, ids, strict=True):
            if truth is not None:
                gt.append(str(truth)), pred.append(str(guess)), frame.append(t)
    patient = scans[0].patient_id if scans else ""
    g_ids, g = np.unique(np.asarray(gt, dtype=object).astype(str), return_inverse=True)
    h_ids, h = np.unique(np.asarray(pred, dtype=object).astype(str), return_inverse=True)
    g, h, frame = g.reshape(-1), h.reshape(-1), np.asarray(frame, dtype=np.int64)
    overlap = np.zeros((len(g_ids), len(h_ids)), dtype=np.int64)
    np.add.at(overlap, (g, h), 1)
    rows, cols = linear_sum_assignment(-overlap) if overlap.size else ([], [])
    idtp = int(overlap[rows, cols].sum()) if overlap.size else 0
    switches = 0
    for k in range(len(g_ids)):
        members = np.flatnonzero(g == k)
        identity = h[members[np.argsort(frame[members], kind="stable")]]
        switches += int((identity[1:] != identity[:-1]).sum())
    touched = overlap > 0
    return TrackCounts(
        patient_id=patient,
        n_nodes=len(gt),
        n_gt_tracks=len(g_ids),
        n_pred_tracks=len(h_ids),
        idtp=idtp,
        idfp=len(gt) - idtp,
        idfn=len(gt) - idtp,
        id_switches=switches,
        fragmentations=int((touched.sum(axis=1) - 1).clip(min=0).sum()),
        merges=int((touched.sum(axis=0) - 1).clip(min=0).sum()),
        n_pred_matches=_pairs(overlap.sum(axis=0)),
        n_correct_matches=_pairs(overlap),
        n_gt_matches=_pairs(overlap.sum(axis=1)),
    )


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / denominator if denominator else math.nan


def summarize_tracks(counts: Sequence[TrackCounts]) -> dict:
    """Pool ``counts`` over patients and compute the metrics.

    Returns:
        ``idf1, idp, idr`` (fractions), ``id_switches``, ``fragmentations``, ``merges``
        (counts) and the same per 100 ground-truth tracks (``*_per_100``), pairwise
        ``precision, recall, f1``, ``n_patients`` and the summed
        :data:`TRACK_COUNT_FIELDS`.
    """
    total = {name: int(sum(getattr(c, name) for c in counts)) for name in TRACK_COUNT_FIELDS}
    n_gt = total["n_gt_tracks"]
    return {
        "idf1": _ratio(2 * total["idtp"], 2 * total["idtp"] + total["idfp"] + total["idfn"]),
        "idp": _ratio(total["idtp"], total["idtp"] + total["idfp"]),
        "idr": _ratio(total["idtp"], total["idtp"] + total["idfn"]),
        "id_switches_per_100": _ratio(100 * total["id_switches"], n_gt),
        "fragmentations_per_100": _ratio(100 * total["fragmentations"], n_gt),
        "merges_per_100": _ratio(100 * total["merges"], n_gt),
        "precision": _ratio(total["n_correct_matches"], total["n_pred_matches"]),
        "recall": _ratio(total["n_correct_matches"], total["n_gt_matches"]),
        "f1": _ratio(2 * total["n_correct_matches"],
                     total["n_pred_matches"] + total["n_gt_matches"]),
        "n_patients": len(counts),
        **total,
    }


def evaluate_tracks(cohort: Cohort, predicted: Mapping[str, Sequence],
                    patients: Iterable[str] | None = None) -> dict:
    """Score predicted tracks (as :func:`read_tracks` returns) on ``cohort``.

    Args:
        cohort: the ground truth.
        predicted: ``{scan_id: [n] track ids}``.
        patients: the patients to score (default: every patient with predicted scans).

    Returns:
        ``{"cohort": summarize_tracks(all), "patients": {patient_id: summarize_tracks([p])}}``.

    Raises:
        ValueError: a patient to score without a prediction for one of its scans.
    """
    if patients is None:
        patients = [p for p in cohort.patients
                    if any(s.scan_id in predicted for s in cohort.scans_of(p))]
    counts = []
    for patient in patients:
        scans = cohort.scans_of(patient)
        missing = [s.scan_id for s in scans if s.scan_id not in predicted]
        if missing:
            raise ValueError(f"no predicted tracks for scan {missing[0]} of patient {patient}")
        counts.append(patient_track_counts(scans, predicted))
    return {"cohort": summarize_tracks(counts),
            "patients": {c.patient_id: summarize_tracks([c]) for c in counts}}
