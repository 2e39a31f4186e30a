"""Assignment on score or cost matrices: rectangular Hungarian, optionally gated."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def hungarian(cost: np.ndarray, max_cost: float | None = None) -> np.ndarray:
    """Minimum-cost one-to-one assignment on a rectangular ``[n1, n2]`` cost matrix.

    Pairs whose cost exceeds ``max_cost`` (a gate) are dropped, leaving both nodes
    unassigned; non-finite costs are never assigned.

    Returns:
        ``[M, 2]`` int64 (row, column) pairs sorted by row.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError(f"cost must be 2-D, got shape {cost.shape}")
    if cost.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    finite = np.isfinite(cost)
    big = (np.abs(cost[finite]).max() + 1.0) * (cost.shape[0] + cost.shape[1] + 1) \
        if finite.any() else 1.0
    rows, cols = linear_sum_assignment(np.where(finite, cost, big))
    keep = finite[rows, cols]
    if max_cost is not None:
        keep &= cost[rows, cols] <= max_cost
    return np.stack([rows[keep], cols[keep]], axis=1).astype(np.int64)


def hungarian_max(score: np.ndarray, min_score: float | None = None) -> np.ndarray:
    """Maximum-score assignment; pairs scoring below ``min_score`` are dropped."""
    score = np.asarray(score, dtype=np.float64)
    return hungarian(-score, None if min_score is None else -min_score)
