"""Metrics that judge any method's output against the cohort's ground truth (docs/design.md,
*Metrics*).

Imports no model and no baseline: a method is judged only through the
:class:`~lngraph.io.matches.PairPrediction` it returns or the ``matches.csv`` it writes.
"""

from lngraph.metrics.calibration import (
    ReliabilityCurve,
    calibration_summary,
    expected_calibration_error,
    fit_scaling,
    fit_temperature,
    match_events,
    reliability_curve,
    temperature_scale,
)
from lngraph.metrics.matching import (
    PairCounts,
    evaluate_predictions,
    mean_std_over_folds,
    pair_counts,
    summarize,
    write_metrics_json,
)
from lngraph.metrics.selection import selection_score
from lngraph.metrics.tracking import (
    TrackCounts,
    evaluate_tracks,
    patient_track_counts,
    read_tracks,
    summarize_tracks,
    write_tracks,
)

__all__ = [
    "PairCounts", "TrackCounts", "evaluate_predictions", "evaluate_tracks",
    "mean_std_over_folds", "pair_counts", "patient_track_counts", "read_tracks",
    "selection_score", "summarize", "summarize_tracks", "write_metrics_json", "write_tracks",
]
__all__ += [
    "ReliabilityCurve", "calibration_summary", "expected_calibration_error", "fit_scaling",
    "fit_temperature", "match_events", "reliability_curve", "temperature_scale",
]
