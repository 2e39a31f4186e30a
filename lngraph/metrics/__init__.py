"""Metrics that judge any method's output against the cohort's ground truth (docs/design.md,
*Metrics*).

Imports no model and no baseline: a method is judged only through the
:class:`~lngraph.io.matches.PairPrediction` it returns or the ``matches.csv`` it writes.
"""

from lngraph.metrics.matching import (
    PairCounts,
    evaluate_predictions,
    mean_std_over_folds,
    pair_counts,
    summarize,
    write_metrics_json,
)
from lngraph.metrics.selection import selection_score

__all__ = [
    "PairCounts", "evaluate_predictions", "mean_std_over_folds", "pair_counts",
    "selection_score", "summarize", "write_metrics_json",
]
