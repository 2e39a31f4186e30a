"""``nearest``: robust translation alignment of the two node sets, then gated Hungarian.

Pure geometry (DESIGN §6): the later scan's node centres are assumed to be the earlier ones
shifted by one translation t. t is found robustly —

1. *vote*: every candidate shift (the centroid difference and each displacement
   ``dst_j - src_i``) scores ``Σ_i exp(-e_i² / 2σ²)``, with ``e_i`` the distance from the shifted
   ``src_i`` to its nearest later node and ``σ = gate / 2``; the best candidate wins (ties go to
   the one nearest the centroid difference);
2. *refine*: Hungarian on the shifted distances, gated; t becomes the median displacement of
   the matched pairs; repeated until t stops moving (at most ``iterations`` times);

— then nodes are assigned by Hungarian on ``‖src_i + t - dst_j‖`` and pairs farther apart than
``gate_mm`` (default 15 mm, about the median real residual motion plus a node radius; DESIGN
§7) are left unmatched (disappeared / new). A match scores ``exp(-d / gate_mm)``.
"""

from __future__ import annotations

import numpy as np

from lngraph.baselines.base import Method, register
from lngraph.io.cohort import ScanPair
from lngraph.io.matches import PairPrediction
from lngraph.matching.assignment import hungarian

#: Default gate (mm) of :class:`Nearest`.
DEFAULT_GATE_MM = 15.0


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)


def robust_translation(src: np.ndarray, dst: np.ndarray, gate_mm: float = DEFAULT_GATE_MM,
                       iterations: int = 10) -> np.ndarray:
    """The translation ``t`` (``(3,)``, mm) that best carries ``src`` onto ``dst``.

    Args:
        src, dst: ``[N, 3]`` and ``[M, 3]`` points; either may be empty (then ``t = 0``).
        gate_mm: inlier scale of the vote and gate of the refinement.
        iterations: refinement rounds.
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 3)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 3)
    if len(src) == 0 or len(dst) == 0:
        return np.zeros(3)
    centroid = dst.mean(axis=0) - src.mean(axis=0)
    candidates = np.concatenate([centroid[None], (dst[None, :, :] - src[:, None, :])
                                 .reshape(-1, 3)])
    sigma = gate_mm / 2.0
    votes = np.concatenate([
        np.exp(-_pairwise((src[None] + chunk[:, None]).reshape(-1, 3), dst).min(axis=1)
               .reshape(len(chunk), len(src)) ** 2 / (2 * sigma ** 2)).sum(axis=1)
        for chunk in np.array_split(candidates, max(1, len(candidates) // 256))])
    best = np.flatnonzero(votes >= votes.max() - 1e-9)
    t = candidates[best[np.argmin(np.linalg.norm(candidates[best] - centroid, axis=1))]]
    for _ in range(iterations):
        pairs = hungarian(_pairwise(src + t, dst), max_cost=gate_mm)
        if len(pairs) == 0:
            break
        new = np.median(dst[pairs[:, 1]] - src[pairs[:, 0]], axis=0)
        if np.allclose(new, t, atol=1e-6):
            break
        t = new
    return t


@register
class Nearest(Method):
    """Nearest neighbour after robust translation alignment (see the module docstring).

    Args:
        gate_mm: largest distance (mm) between an aligned earlier node and its partner.
        iterations: refinement rounds of the translation.
    """

    name = "nearest"

    def __init__(self, gate_mm: float = DEFAULT_GATE_MM, iterations: int = 10):
        if gate_mm <= 0:
            raise ValueError(f"gate_mm must be positive, got {gate_mm}")
        self.gate_mm = float(gate_mm)
        self.iterations = int(iterations)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(gate_mm={self.gate_mm:g}, iterations={self.iterations})"

    def predict(self, pair: ScanPair) -> PairPrediction:
        src, dst = pair.src.nodes.pos, pair.dst.nodes.pos
        t = robust_translation(src, dst, self.gate_mm, self.iterations)
        cost = _pairwise(src + t, dst)
        matches = hungarian(cost, max_cost=self.gate_mm)
        scores = np.exp(-cost[matches[:, 0], matches[:, 1]] / self.gate_mm)
        return PairPrediction(len(src), len(dst), matches, scores)
