"""Training, checkpoints and prediction for the asymmetric matcher.

* :func:`patient_folds` / :func:`holdout_split` — patient-level cross-validation splits;
* :class:`PairDataModule`, :class:`MatcherModule` — the Lightning data and model modules;
* :func:`fit_matcher` — one training run → ``model.ckpt`` (:class:`FitResult`);
* :func:`save_checkpoint` / :func:`load_checkpoint` — lngraph's checkpoint format;
* :func:`predict_pairs` — a trained model's matchings of scan pairs;
* :func:`calibrate_threshold` — the decision threshold chosen on validation pairs;
* :class:`AsymmetricMethod` — all of it behind the :class:`~lngraph.baselines.base.Method`
  interface, registered as ``asymmetric``.

Sits on top of :mod:`lngraph.data`, :mod:`lngraph.models` and :mod:`lngraph.metrics`.
"""

from lngraph.train.calibrate import Calibration, calibrate_threshold
from lngraph.train.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint
from lngraph.train.datamodule import PairDataModule, pair_graphs
from lngraph.train.fit import FitResult, fit_matcher
from lngraph.train.folds import FoldSplit, holdout_split, patient_folds
from lngraph.train.method import AsymmetricMethod
from lngraph.train.module import MatcherModule, selection_score
from lngraph.train.predict import predict_pairs

__all__ = [
    "FORMAT_VERSION", "AsymmetricMethod", "Calibration", "FitResult", "FoldSplit",
    "MatcherModule", "PairDataModule", "calibrate_threshold", "fit_matcher",
    "holdout_split", "load_checkpoint", "pair_graphs", "patient_folds", "predict_pairs",
    "save_checkpoint", "selection_score",
]
