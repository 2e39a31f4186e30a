"""lngraph's matcher as a :class:`~lngraph.baselines.base.Method` named ``matcher``, so that
benchmarks and ``lngraph bench`` train and run it like any baseline."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from lngraph.baselines.base import Method, register
from lngraph.data.cache import default_cache_dir
from lngraph.io.cohort import Cohort, ScanPair, read_cohort
from lngraph.io.matches import PairPrediction
from lngraph.models import Matcher, MatcherConfig, load_checkpoint, predict_pairs, preset
from lngraph.train.fit import FitResult, fit_matcher
from lngraph.train.folds import holdout_split


@register
class MatcherMethod(Method):
    """The matcher of a config (default ``lite``, the graph matcher) trained by
    :func:`~lngraph.train.fit.fit_matcher`.

    Args:
        config: model and training settings (default ``lite``); ``needs_images`` is False for
            a geometry-only config.
        out_dir: where :meth:`fit` writes its run (default: a temporary folder that lives as
            long as this object).
        max_epochs, seed: override the config's values.
        progress: show training progress.
        cache_dir: crop cache (default: the user cache folder,
            :func:`~lngraph.data.cache.default_cache_dir`).
        init_from: a checkpoint whose weights start training (fine-tuning).
        extra_train: a cohort folder whose patients join the training patients of every
            :meth:`fit` (e.g. synthetic geometry beside real pairs); validation, and so the
            epoch and the threshold, stays on the fit's own patients. Its patient ids must
            differ from theirs.
        trainer_flags: ``accelerator``, ``devices``, ``strategy``, ``num_nodes`` for Lightning.

    Without a validation cohort, :meth:`fit` carves ``config.protocol.val_fraction`` of the training
    patients out for validation.
    """

    name = "matcher"
    needs_images = True
    learned = True
    seeded = True
    epochs_option = "max_epochs"

    def __init__(self, config: MatcherConfig | None = None,
                 out_dir: str | os.PathLike | None = None, *, max_epochs: int | None = None,
                 seed: int | None = None,
                 progress: bool = False, cache_dir: str | os.PathLike | None = None,
                 init_from: str | os.PathLike | None = None,
                 extra_train: str | os.PathLike | None = None, **trainer_flags):
        self.config = preset("lite") if config is None else config
        self.needs_images = not self.config.model.geometry_only
        self._tmp = tempfile.TemporaryDirectory(prefix="lngraph-matcher-") \
            if out_dir is None else None
        self.out_dir = Path(self._tmp.name if out_dir is None else out_dir)
        self.max_epochs = max_epochs
        self.seed = seed
        self.progress = progress
        self.cache_dir = cache_dir
        self.init_from = init_from
        self.extra_train = extra_train
        self.trainer_flags = trainer_flags
        self.model: Matcher | None = None
        self.result: FitResult | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(config={self.config.name!r}, out_dir='{self.out_dir}')"

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, **kwargs) -> MatcherMethod:
        """A fitted method from an lngraph checkpoint."""
        model, config, _ = load_checkpoint(path)
        method = cls(config, Path(path).parent, **kwargs)
        method.model = model
        return method

    def fit(self, train: Cohort, val: Cohort | None = None) -> MatcherMethod:
        if val is None:
            train_patients, val_patients = holdout_split(
                train.patients, self.config.protocol.val_fraction, self.config.protocol.seed)
            cohort = train
        else:
            train_patients, val_patients = train.patients, val.patients
            cohort = Cohort(list(train.scans.values()) + list(val.scans.values()),
                            root=train.root)
        if self.extra_train is not None:
            extra = read_cohort(self.extra_train)
            shared = sorted(set(extra.patients) & set(cohort.patients))
            if shared:
                raise ValueError(f"extra_train {self.extra_train}: patient id(s) "
                                 f"{', '.join(shared[:5])} are also in the cohort being fitted")
            train_patients = [*train_patients, *extra.patients]
            cohort = Cohort(list(cohort.scans.values()) + list(extra.scans.values()),
                            root=cohort.root)
        if (self.cache_dir is None and cohort.root is not None
                and not self.config.model.geometry_only):
            self.cache_dir = default_cache_dir(cohort)
        self.result = fit_matcher(cohort, self.config, train_patients=train_patients,
                                  val_patients=val_patients, out_dir=self.out_dir,
                                  max_epochs=self.max_epochs, seed=self.seed,
                                  progress=self.progress, cache_dir=self.cache_dir,
                                  init_from=self.init_from, **self.trainer_flags)
        self.model, _, _ = load_checkpoint(self.result.checkpoint)
        return self

    def predict(self, pair: ScanPair) -> PairPrediction:
        return self.predict_many([pair])[0]

    def predict_many(self, pairs: list[ScanPair]) -> list[PairPrediction]:
        """Predictions of many pairs at once (batched; faster than :meth:`predict` per pair)."""
        if self.model is None:
            raise RuntimeError("MatcherMethod.predict needs fit() or from_checkpoint() first")
        return predict_pairs(self.model, pairs, cache_dir=self.cache_dir)
