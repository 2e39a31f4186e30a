"""The number that selects among models on validation pairs: :func:`selection_score`
(:mod:`lngraph.train.module` explains it)."""

from __future__ import annotations

import math

import numpy as np


def _unmatched_f1(rate: float, precision: float) -> float | None:
    """Harmonic mean of a detection rate and its precision; None without ground truth."""
    if math.isnan(rate):
        return None
    if math.isnan(precision) or rate + precision == 0:
        return 0.0
    return 2 * rate * precision / (rate + precision)


def selection_score(metrics: dict) -> float:
    """``F1 + mean(F1_new, F1_disappeared)`` over the classes with ground truth (module
    docstring)."""
    f1 = metrics["f1"]
    parts = [_unmatched_f1(metrics["nlr"], metrics["new_precision"]),
             _unmatched_f1(metrics["dlr"], metrics["disappeared_precision"])]
    parts = [p for p in parts if p is not None]
    return (0.0 if math.isnan(f1) else f1) + (float(np.mean(parts)) if parts else 0.0)
