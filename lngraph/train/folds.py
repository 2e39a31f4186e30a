"""Patient-level cross-validation splits: :mod:`lngraph.data.folds`, re-exported where training
code has always imported them."""

from lngraph.data.folds import FoldSplit, holdout_split, patient_folds

__all__ = ["FoldSplit", "holdout_split", "patient_folds"]
