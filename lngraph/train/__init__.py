"""Training lngraph's matchers (Lightning).

* :func:`patient_folds` / :func:`holdout_split` — patient-level cross-validation splits;
* :class:`PairDataModule`, :class:`MatcherModule` — the Lightning data and model modules;
* :func:`fit_matcher` — one training run → ``model.ckpt`` (:class:`FitResult`);
* :func:`fit_fusion`, :func:`calibrate_threshold`, :func:`fit_confidence` — the fused score's
  weights, the decision threshold and the reported confidence's map fitted on validation
  pairs; :func:`recalibrate_checkpoint` runs those steps again on a trained checkpoint's own
  validation patients;
* :class:`MatcherMethod` — all of it behind the :class:`~lngraph.baselines.base.Method`
  interface, registered as ``matcher``.

Checkpoints and prediction live in :mod:`lngraph.models` (no Lightning there). Names are
imported on first use, so ``from lngraph.train.folds import patient_folds`` does not load
Lightning either.
"""

from lngraph._lazy import lazy_exports

#: Public name → the submodule that defines it.
_EXPORTS = {
    "MatcherMethod": "method", "Calibration": "calibrate", "ConfidenceFit": "calibrate",
    "CalibrationWarning": "calibrate", "FitResult": "fit", "TrainingDiverged": "fit",
    "FoldSplit": "folds", "MatcherModule": "module", "PairDataModule": "datamodule",
    "calibrate_threshold": "calibrate", "fit_confidence": "calibrate", "fit_fusion": "calibrate",
    "fit_matcher": "fit", "recalibrate_checkpoint": "fit", "calibrate_on_validation": "fit",
    "Calibrated": "fit",
    "holdout_split": "folds", "patient_folds": "folds", "selection_score": "selection",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
