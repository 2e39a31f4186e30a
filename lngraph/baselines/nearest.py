"""``nearest``: robust translation alignment of the two node sets, then gated Hungarian.

Pure geometry (docs/design.md, *Baselines*): the later scan's node centres are assumed to be the
earlier ones
shifted by one translation t (:mod:`lngraph.matching.alignment`). t is found robustly —

1. *vote*: every candidate shift (the centroid difference and each displacement
   ``dst_j - src_i``) scores ``Σ_i exp(-e_i² / 2σ²)``, with ``e_i`` the distance from the shifted
   ``src_i`` to its nearest later node and ``σ = gate / 2``; the best candidate wins (ties go to
   the one nearest the centroid difference);
2. *refine*: Hungarian on the shifted distances, gated; t becomes the median displacement of
   the matched pairs; repeated until t stops moving (at most ``iterations`` times);

— then nodes are assigned by Hungarian on ``‖src_i + t - dst_j‖`` and pairs farther apart than
``gate_mm`` (default 15 mm, about the median real residual motion plus a node radius;
docs/design.md, *Reference data*) are left unmatched (disappeared / new). A match scores
``exp(-d / gate_mm)``.
"""

from __future__ import annotations

import numpy as np

from lngraph.baselines.base import Method, register
from lngraph.io.cohort import ScanPair
from lngraph.io.matches import PairPrediction
from lngraph.matching.alignment import DEFAULT_GATE_MM, pairwise_distances, robust_translation
from lngraph.matching.assignment import hungarian

__all__ = ["DEFAULT_GATE_MM", "Nearest", "robust_translation"]


@register
class Nearest(Method):
    """Nearest neighbour after robust translation alignment (see the module docstring).

    Args:
        gate_mm: largest distance (mm) between an aligned earlier node and its partner.
        iterations: refinement rounds of the translation.
    """

    name = "nearest"
    seeded = False  # deterministic, nothing trained

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
        cost = pairwise_distances(src + t, dst)
        matches = hungarian(cost, max_cost=self.gate_mm)
        scores = np.exp(-cost[matches[:, 0], matches[:, 1]] / self.gate_mm)
        return PairPrediction(len(src), len(dst), matches, scores)
