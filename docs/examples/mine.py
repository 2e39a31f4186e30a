"""A new matching method in one file: align the centroids, then gated Hungarian on distance.

Run it beside every other method: ``lngraph bench COHORT --import mine.py --methods mine,nearest
--out board``.
"""

import numpy as np
from scipy.spatial.distance import cdist

from lngraph.baselines import Method, register
from lngraph.io.matches import PairPrediction
from lngraph.matching.assignment import hungarian


@register
class CentroidHungarian(Method):
    """Translate the earlier centres onto the later centroid; match within ``gate_mm``."""

    name = "mine"  # the name on the command line and in the leaderboard

    def __init__(self, gate_mm: float = 15.0):
        self.gate_mm = gate_mm

    def predict(self, pair):
        src, dst = pair.src.nodes.pos, pair.dst.nodes.pos  # [n, 3] LPS mm
        if len(src) == 0 or len(dst) == 0:
            return PairPrediction(len(src), len(dst))
        moved = src + (dst.mean(0) - src.mean(0))
        cost = cdist(moved, dst)
        matches = hungarian(cost, max_cost=self.gate_mm)  # [M, 2] (src, dst) indices
        scores = np.exp(-cost[matches[:, 0], matches[:, 1]] / self.gate_mm)
        return PairPrediction(len(src), len(dst), matches, scores, points=moved)
