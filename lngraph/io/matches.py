"""Predicted matchings of scan pairs and the ``matches.csv`` contract (DESIGN §2).

``matches.csv`` has one row per node of each pair: ``src_scan, src_node, dst_scan, dst_node,
score, status`` with ``status`` in ``matched | disappeared | new``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

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
