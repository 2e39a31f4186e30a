r"""The number that selects among models, thresholds and settings on validation pairs:
:func:`selection_score`.

.. math::
    \mathrm{score} = F_1 + \tfrac{1}{2}\,(F_1^{new} + F_1^{dis}),

with :math:`F_1^{new}` the harmonic mean of the new-node rate and its precision (likewise
:math:`F_1^{dis}` for disappeared nodes). A class without ground truth is left out of the mean,
and an undefined :math:`F_1` counts 0, so the score is always finite
(:mod:`lngraph.train.module` explains why it is what training selects on).

It lives here, beside the metrics it combines, so that the training
(:mod:`lngraph.train.calibrate`, :mod:`lngraph.train.module`) and the learned baselines
(:mod:`lngraph.baselines.geometry_fusion`) select by the same number;
:mod:`lngraph.train.selection` re-exports it.
"""

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
    docstring), from a :func:`~lngraph.metrics.summarize` dict."""
    f1 = metrics["f1"]
    parts = [_unmatched_f1(metrics["nlr"], metrics["new_precision"]),
             _unmatched_f1(metrics["dlr"], metrics["disappeared_precision"])]
    parts = [p for p in parts if p is not None]
    return (0.0 if math.isnan(f1) else f1) + (float(np.mean(parts)) if parts else 0.0)
