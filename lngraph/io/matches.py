"""Predicted matchings of scan pairs and the ``matches.csv`` contract (docs/design.md, *Outputs*).

``matches.csv`` has one row per node of each pair: ``src_scan, src_node, dst_scan, dst_node,
score, status`` with ``status`` in ``matched | disappeared | new``; ``dst_node`` is empty for a
disappeared node and ``src_node`` for a new one. ``score`` is the method's confidence in a match;
it is empty on the rows of unmatched nodes (and may be empty on a matched row of a method that
gives no confidence, read as NaN). One file may hold many scan pairs.

:func:`read_matches` validates a file against a cohort and raises
:class:`~lngraph.io.errors.InputError` naming the file, line and problem; :func:`write_matches`
writes atomically. Predicted points of lesion trackers are not part of the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lngraph.io.atomic import atomic_path
from lngraph.io.cohort import Cohort, ScanPair, read_csv_table
from lngraph.io.errors import InputError

MATCH_COLUMNS = ("src_scan", "src_node", "dst_scan", "dst_node", "score", "status")
STATUSES = ("matched", "disappeared", "new")


@dataclass(eq=False)
class PairPrediction:
    """What a method predicts for one scan pair, by node *index* into each scan's table.

    Args:
        n_src, n_dst: number of nodes in the earlier and the later scan.
        matches: ``[M, 2]`` int (src index, dst index); one-to-one.
        scores: ``[M]`` confidence of each match (higher is surer).
        points: optional ``[n_src, 3]`` predicted world position (LPS mm) of each src node in
            the later scan (lesion trackers predict points; NaN rows where none).

    Every src node not in ``matches`` is *disappeared*; every dst node not in ``matches`` is
    *new*.
    """

    n_src: int
    n_dst: int
    matches: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    scores: np.ndarray | None = None
    points: np.ndarray | None = None

    def __post_init__(self):
        self.matches = np.asarray(self.matches, dtype=np.int64).reshape(-1, 2)
        m = len(self.matches)
        self.scores = (np.ones(m) if self.scores is None
                       else np.asarray(self.scores, dtype=np.float64).reshape(m))
        if m:
            if self.matches[:, 0].min() < 0 or self.matches[:, 0].max() >= self.n_src:
                raise ValueError(f"src index out of range [0, {self.n_src})")
            if self.matches[:, 1].min() < 0 or self.matches[:, 1].max() >= self.n_dst:
                raise ValueError(f"dst index out of range [0, {self.n_dst})")
            if len(set(self.matches[:, 0].tolist())) != m or \
                    len(set(self.matches[:, 1].tolist())) != m:
                raise ValueError("matches must be one-to-one (a node appears twice)")
        if self.points is not None:
            self.points = np.asarray(self.points, dtype=np.float64).reshape(self.n_src, 3)

    @property
    def disappeared(self) -> np.ndarray:
        """Indices of src nodes without a partner."""
        return np.setdiff1d(np.arange(self.n_src), self.matches[:, 0])

    @property
    def new(self) -> np.ndarray:
        """Indices of dst nodes without a partner."""
        return np.setdiff1d(np.arange(self.n_dst), self.matches[:, 1])

    def partner_of_src(self) -> np.ndarray:
        """``[n_src]`` dst index matched to each src node, -1 where disappeared."""
        out = np.full(self.n_src, -1, dtype=np.int64)
        out[self.matches[:, 0]] = self.matches[:, 1]
        return out


def _check_sizes(pair: ScanPair, pred: PairPrediction) -> None:
    sizes = (len(pair.src.nodes), len(pair.dst.nodes))
    if (pred.n_src, pred.n_dst) != sizes:
        raise ValueError(f"prediction is for {pred.n_src} x {pred.n_dst} nodes but pair "
                         f"{pair.src.scan_id} -> {pair.dst.scan_id} has {sizes[0]} x {sizes[1]}")


def _score_text(value: float) -> str:
    return repr(float(value)) if np.isfinite(value) else ""


def prediction_frame(pair: ScanPair, pred: PairPrediction) -> pd.DataFrame:
    """``pred`` as ``matches.csv`` rows (all strings), one row per node of ``pair``.

    Rows come in src-node order (each ``matched`` or ``disappeared``), then the ``new`` dst nodes
    in dst order. ``score`` is the match score on matched rows (full precision) and empty on the
    rows of unmatched nodes.

    Raises:
        ValueError: if ``pred`` is sized for another pair.
    """
    _check_sizes(pair, pred)
    src, dst = pair.src.scan_id, pair.dst.scan_id
    src_ids, dst_ids = pair.src.nodes.node_id, pair.dst.nodes.node_id
    partner = pred.partner_of_src()
    score_of = dict(zip(pred.matches[:, 0].tolist(), pred.scores.tolist(), strict=True))
    rows = []
    for i, j in enumerate(partner.tolist()):
        if j >= 0:
            rows.append((src, str(src_ids[i]), dst, str(dst_ids[j]), _score_text(score_of[i]),
                         "matched"))
        else:
            rows.append((src, str(src_ids[i]), dst, "", "", "disappeared"))
    rows += [(src, "", dst, str(dst_ids[j]), "", "new") for j in pred.new.tolist()]
    return pd.DataFrame(rows, columns=list(MATCH_COLUMNS), dtype=object)


def write_matches(path: str | os.PathLike,
                  items: Iterable[tuple[ScanPair, PairPrediction]]) -> Path:
    """Write the predictions of many scan pairs into one ``matches.csv``, atomically."""
    frames = [prediction_frame(pair, pred) for pair, pred in items]
    table = (pd.concat(frames, ignore_index=True) if frames
             else pd.DataFrame(columns=list(MATCH_COLUMNS)))
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    return Path(path)


def _check_pair(cohort: Cohort, src: str, dst: str, path: Path, line: int) -> None:
    for role, scan in (("src_scan", src), ("dst_scan", dst)):
        if scan == "":
            raise InputError(path, f"{role} is empty", line=line)
        if scan not in cohort.scans:
            raise InputError(path, f"{role} {scan!r} is not a scan of the cohort", line=line)
    a, b = cohort.scans[src], cohort.scans[dst]
    if a.patient_id != b.patient_id:
        raise InputError(path, f"scans {src!r} and {dst!r} belong to different patients "
                         f"({a.patient_id!r}, {b.patient_id!r})", line=line)
    order = [s.scan_id for s in cohort.scans_of(a.patient_id)]
    if not order.index(src) < order.index(dst):
        raise InputError(path, f"src_scan {src!r} (timepoint {a.timepoint}) must be earlier "
                         f"than dst_scan {dst!r} (timepoint {b.timepoint})", line=line)


def _check_row(status: str, src_node: str, dst_node: str, path: Path, line: int) -> None:
    if status not in STATUSES:
        raise InputError(path, f"status {status!r} is not one of {', '.join(STATUSES)}",
                         line=line)
    if status == "matched" and (src_node == "" or dst_node == ""):
        raise InputError(path, "a matched row needs both src_node and dst_node", line=line)
    if status == "disappeared" and (src_node == "" or dst_node != ""):
        raise InputError(path, "a disappeared row needs a src_node and an empty dst_node",
                         line=line)
    if status == "new" and (src_node != "" or dst_node == ""):
        raise InputError(path, "a new row needs a dst_node and an empty src_node", line=line)


def _score_value(text: str, path: Path, line: int) -> float:
    if text == "":
        return np.nan
    try:
        value = float(text)
    except ValueError:
        raise InputError(path, f"score is not a number: {text!r}", line=line) from None
    if np.isinf(value):
        raise InputError(path, f"score is not finite: {text!r}", line=line)
    return value


class _PairRows:
    """The rows of one scan pair while a file is read: node indices used and matches found."""

    def __init__(self, pair: ScanPair):
        self.pair = pair
        self.src_index = {str(n): k for k, n in enumerate(pair.src.nodes.node_id)}
        self.dst_index = {str(n): k for k, n in enumerate(pair.dst.nodes.node_id)}
        self.src_line: dict[int, int] = {}
        self.dst_line: dict[int, int] = {}
        self.matches: list[tuple[int, int]] = []
        self.scores: list[float] = []

    def use(self, side: str, node: str, path: Path, line: int) -> int:
        scan = self.pair.src if side == "src" else self.pair.dst
        index, used = ((self.src_index, self.src_line) if side == "src"
                       else (self.dst_index, self.dst_line))
        if node not in index:
            raise InputError(path, f"{side}_node {node!r} is not a node of scan "
                             f"{scan.scan_id!r}", line=line)
        k = index[node]
        if k in used:
            raise InputError(path, f"{side}_node {node!r} of scan {scan.scan_id!r} is used twice "
                             f"for this pair (first on line {used[k]})", line=line)
        used[k] = line
        return k

    def prediction(self, path: Path) -> PairPrediction:
        for side, index, used in (("src", self.src_index, self.src_line),
                                  ("dst", self.dst_index, self.dst_line)):
            absent = [n for n, k in index.items() if k not in used]
            if absent:
                scan = self.pair.src if side == "src" else self.pair.dst
                shown = ", ".join(repr(n) for n in absent[:5])
                more = f" and {len(absent) - 5} more" if len(absent) > 5 else ""
                raise InputError(path, f"node(s) {shown}{more} of scan {scan.scan_id!r} have no "
                                 "row; every node of a predicted pair needs one",
                                 what=f"pair {self.pair.src.scan_id} -> {self.pair.dst.scan_id}")
        return PairPrediction(len(self.src_index), len(self.dst_index),
                              np.asarray(self.matches, np.int64).reshape(-1, 2),
                              np.asarray(self.scores, np.float64))


def read_matches(path: str | os.PathLike, cohort: Cohort, *, allow_empty: bool = False
                 ) -> dict[tuple[str, str], PairPrediction]:
    """Read a ``matches.csv`` and validate it against ``cohort``.

    Each pair ``(src_scan, dst_scan)`` must be two scans of one patient, the src earlier; every
    node of such a pair needs exactly one row. A matched row with an empty score gets a NaN
    score; the score of an unmatched row is not kept.

    Args:
        path: the file.
        cohort: the cohort the predictions are for.
        allow_empty: accept a file with a header but no rows (e.g. the output for pairs
            without nodes) and return ``{}``; by default that is an error, as it usually
            means a method wrote nothing.

    Returns:
        ``{(src_scan, dst_scan): PairPrediction}`` in the order pairs first appear.

    Raises:
        InputError: naming the file, line and problem (missing column, unknown scan or node,
            a node used twice, a bad status, a status inconsistent with the empty node columns,
            a non-numeric score, a node of a predicted pair without a row, no rows at all
            unless ``allow_empty``).
    """
    path = Path(path)
    frame = read_csv_table(path, MATCH_COLUMNS)[list(MATCH_COLUMNS)]
    if len(frame) == 0 and not allow_empty:
        raise InputError(path, "the file holds no predictions (a header but no rows); if that "
                         "is intended, pass --allow-empty to lngraph evaluate (allow_empty=True "
                         "to read_matches)")
    pairs: dict[tuple[str, str], _PairRows] = {}
    for row, (src, src_node, dst, dst_node, score, status) in enumerate(
            frame.itertuples(index=False)):
        line = row + 2
        key = (src, dst)
        if key not in pairs:
            _check_pair(cohort, src, dst, path, line)
            pairs[key] = _PairRows(cohort.pair(src, dst))
        rows = pairs[key]
        _check_row(status, src_node, dst_node, path, line)
        value = _score_value(score, path, line)
        i = rows.use("src", src_node, path, line) if src_node else None
        j = rows.use("dst", dst_node, path, line) if dst_node else None
        if status == "matched":
            rows.matches.append((i, j))
            rows.scores.append(value)
    return {key: rows.prediction(path) for key, rows in pairs.items()}
