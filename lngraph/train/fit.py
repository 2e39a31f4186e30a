"""Training the asymmetric matcher on a cohort's patients: :func:`fit_matcher`.

One call trains one model with Lightning: seeds fixed (``seed_everything``), early stopping on
the validation selection score (:mod:`lngraph.train.module`; ``config.optim.patience`` epochs
without improvement), the best epoch kept by ``ModelCheckpoint``, CSV logs and progress bars.
It runs on the CPU by default and on GPUs, several devices (DDP) or nodes through Lightning's own
``accelerator``, ``devices``, ``strategy`` and ``num_nodes`` flags. The best weights are then
written as ``out_dir/model.ckpt`` in lngraph's checkpoint format
(:mod:`lngraph.models.checkpoint`), not Lightning's, together with the training patients and
the validation metrics of that model (every metric (docs/design.md, *Metrics*), from
:func:`~lngraph.metrics.evaluate_predictions`). Then, on the validation pairs,
``config.protocol.calibrate_fusion`` refits the weights of the fused matching score
(:func:`~lngraph.train.calibrate.fit_fusion`), ``config.protocol.calibrate_threshold``
chooses the decision threshold (:func:`~lngraph.train.calibrate.calibrate_threshold`, stored in the
checkpoint's config) and ``config.protocol.calibrate_confidence`` then fits the map from decision
score to reported confidence (:func:`~lngraph.train.calibrate.fit_confidence`: the config's
``model.score_temperature`` and ``model.score_bias``, with the validation ECE before and after
in ``extra["confidence"]``); the last changes no decision.

Output folder::

    out_dir/model.ckpt             lngraph checkpoint of the best epoch
    out_dir/lightning/best.ckpt    Lightning's checkpoint of the same epoch
    out_dir/logs/version_N/        CSV logs (metrics.csv: losses and validation metrics)

Without validation patients there is nothing to select on: training runs ``max_epochs``
epochs and keeps the epoch with the lowest training loss, nothing is calibrated, and the result
says so (``FitResult.validated`` and ``extra["validated"]`` are false, ``val_metrics`` is
empty). Validation patients without a scan pair with nodes
(:func:`~lngraph.train.datamodule.validation_problem`) are treated the same, with a
:class:`~lngraph.train.calibrate.CalibrationWarning`.

**Small or one-sided validation.** A calibration step whose validation pairs lack what it needs
(no matched or no unmatched node pair for the fusion weights,
:func:`~lngraph.train.calibrate.fusion_problem`; no matched or no new/disappeared node for the
threshold, :func:`~lngraph.train.calibrate.threshold_problem`) is skipped with a
:class:`~lngraph.train.calibrate.CalibrationWarning`: the trained fusion weights and the
config's threshold are kept. ``extra["calibration_skipped"]`` (and
``FitResult.calibration_skipped``) maps each skipped step (``"fusion"``, ``"threshold"``) to
the reason (``"confidence"`` too: correct and wrong assigned pairs are needed). Training
patients without a scan pair with nodes are an
:class:`~lngraph.io.errors.InputError` (a ``ValueError``) before anything is written; a
training that diverged to non-finite weights is a :class:`TrainingDiverged` (a ``ValueError``)
and writes no
``model.ckpt``.

**Determinism.** ``seed`` fixes every random draw: the weights' initialisation
(``seed_everything``), the training order (the data loader's own generator) and the
augmentation of each batch (a generator seeded from ``(seed, rank, epoch, batch)``,
:func:`~lngraph.train.datamodule.augment_generator`); calibration has no randomness (L-BFGS
from the trained weights, grid ties broken by a fixed rule). So two runs with the same cohort,
config, seed and patients, on the same machine and software, with the same number of torch
threads, give bitwise-identical weights, the same epochs (early stopping included) and the
same validation metrics, in one process or in two. What is *not* reproducible bitwise: runs
with another ``torch.get_num_threads()`` (parallel reductions add in another order), on
another CPU type or with other torch / PyG builds, on a GPU against the CPU, and GPU runs
among themselves (scatter additions use atomics; cuDNN may pick other kernels) — those
agree to rounding, and rounding can move early stopping by an epoch. Several devices (DDP)
split the batches by rank and so differ from one device.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from lngraph.io.cohort import Cohort, read_cohort
from lngraph.io.errors import InputError
from lngraph.metrics import evaluate_predictions
from lngraph.models import (
    Matcher,
    MatcherConfig,
    build_matcher,
    load_checkpoint,
    matcher_graphs,
    predict_graphs,
    save_checkpoint,
)
from lngraph.models.checkpoint import nonfinite_weights
from lngraph.train.calibrate import (
    Calibration,
    CalibrationWarning,
    ConfidenceFit,
    calibrate_threshold,
    decision_key,
    fit_confidence,
    fit_fusion,
    fusion_problem,
    threshold_problem,
)
from lngraph.train.datamodule import (
    PairDataModule,
    config_for_cohort,
    training_pair_problem,
    validation_problem,
)
from lngraph.train.module import MatcherModule, selection_score


@dataclass
class Calibrated:
    """What :func:`calibrate_on_validation` did: the config with the fitted values, each
    step's outcome (``None`` when skipped or switched off), the validation metrics of the
    calibrated model and ``{step: why}`` for the steps skipped."""

    config: MatcherConfig
    fusion: dict | None
    calibration: Calibration | None
    confidence: ConfidenceFit | None
    val_metrics: dict
    skipped: dict[str, str]

    def extra(self) -> dict:
        """The checkpoint's ``extra`` entries ``fusion``, ``calibration``, ``confidence``."""
        return {
            "fusion": self.fusion,
            "calibration": None if self.calibration is None else {
                "key": decision_key(self.config), "threshold": self.calibration.threshold,
                "scores": {f"{t:g}": v for t, v in self.calibration.scores.items()}},
            "confidence": None if self.confidence is None else self.confidence.to_dict()}


def calibrate_on_validation(model: Matcher, config: MatcherConfig, cohort: Cohort,
                            val_pairs: list, val_graphs: list, *,
                            unusable: str | None = None) -> Calibrated:
    """The calibration steps the config's ``protocol`` switches on (module docstring), in
    order, on validation pairs and their graphs: fusion weights (in place), threshold,
    confidence map; ``model.config`` is set to the returned config. ``unusable``: why the
    validation pairs cannot serve at all (every step is then skipped with it)."""
    calibration = fusion = confidence = None
    skipped: dict[str, str] = {}
    if config.protocol.calibrate_fusion and config.model.fuses_scores:
        problem = unusable or fusion_problem(val_pairs)
        if problem is None:
            try:
                fusion = fit_fusion(model, config, val_pairs, graphs=val_graphs)
            except ValueError as exc:   # the fit did not converge; the model is unchanged
                problem = str(exc)
        if problem:
            skipped["fusion"] = problem
    if config.protocol.calibrate_threshold:
        problem = unusable or threshold_problem(val_pairs)
        if problem is None:
            calibration = calibrate_threshold(model, config, cohort, val_pairs,
                                              graphs=val_graphs)
            config = config.with_values({decision_key(config): calibration.threshold})
            model.config = config
        else:
            skipped["threshold"] = problem
    if config.protocol.calibrate_confidence:
        problem = unusable or (None if val_pairs else "no validation scan pair")
        if problem is None:
            try:
                confidence = fit_confidence(model, config, val_pairs, graphs=val_graphs)
            except ValueError as exc:      # one-sided assigned pairs: nothing to fit
                problem = str(exc)
            else:
                config = config.with_values({"model.score_temperature": confidence.temperature,
                                             "model.score_bias": confidence.bias})
                model.config = config
        if problem:
            skipped["confidence"] = problem
    if calibration is not None:    # the metrics at the chosen threshold, already computed
        val_metrics = calibration.metrics
    elif unusable is None and val_pairs:
        predictions = predict_graphs(model, val_graphs)
        val_metrics = evaluate_predictions(cohort, {(p.src.scan_id, p.dst.scan_id): pred for p, pred
                                                    in zip(val_pairs, predictions, strict=True)},
                                           val_pairs)
        val_metrics["score"] = selection_score(val_metrics)
    else:
        val_metrics = {}
    return Calibrated(config, fusion, calibration, confidence, val_metrics, skipped)


def recalibrate_checkpoint(path: str | os.PathLike, out: str | os.PathLike | None = None, *,
                           cohort: Cohort | str | os.PathLike | None = None,
                           cache_dir: str | os.PathLike | None = None) -> Calibrated:
    """Run the calibration steps of a trained checkpoint again on its own validation patients
    (``extra["val_patients"]`` of ``extra["cohort"]``, or of ``cohort``), e.g. after the
    threshold grid changed, and write the checkpoint to ``out`` (default: in place,
    atomically); the weights are not trained again, and ``extra["recalibrated"]`` records
    the change.

    Raises:
        InputError: the checkpoint has no validation patients, or its cohort is gone.
    """
    path = Path(path)
    model, config, extra = load_checkpoint(path)
    val_patients = list(extra.get("val_patients") or [])
    if not val_patients:
        raise InputError(path, "the checkpoint has no validation patients to calibrate on")
    if cohort is None:
        if not extra.get("cohort"):
            raise InputError(path, "the checkpoint does not name its cohort; pass cohort=")
        cohort = extra["cohort"]
    if not isinstance(cohort, Cohort):
        if not Path(cohort).is_dir():
            raise InputError(path, f"its training cohort {cohort} is not there; pass cohort=")
        cohort = read_cohort(cohort)
    missing = sorted(set(val_patients) - set(cohort.patients))
    if missing:
        raise InputError(path, f"validation patient(s) {', '.join(missing[:5])} are not in "
                         f"the cohort {cohort.root}")
    pair_mode = extra.get("pair_mode") or "consecutive"
    pairs = cohort.pairs(pair_mode, val_patients)
    graphs = matcher_graphs(pairs, config, cache_dir=cache_dir)
    before = config.flat()[decision_key(config)]
    result = calibrate_on_validation(
        model, config, cohort, pairs, graphs,
        unusable=validation_problem(cohort, val_patients, pair_mode))
    extra = {**extra, **result.extra(), "val_metrics": result.val_metrics,
             "calibration_skipped": result.skipped,
             "recalibrated": {"threshold_before": before,
                              "threshold": result.config.flat()[decision_key(result.config)]}}
    save_checkpoint(path if out is None else out, model, result.config, extra)
    return result


class TrainingDiverged(ValueError):
    """The selected epoch's weights are not finite: the run produced no usable model (a
    setting the user can change, e.g. a lower learning rate, usually fixes it)."""


#: File name of the lngraph checkpoint inside the output folder.
CHECKPOINT_NAME = "model.ckpt"


@dataclass
class FitResult:
    """What :func:`fit_matcher` produced.

    Args:
        checkpoint: ``out_dir/model.ckpt``.
        val_metrics: every metric (docs/design.md, *Metrics*) of the saved model on the
            validation pairs, plus ``score`` (the selection score); empty when not
            ``validated``.
        train_seconds: wall-clock time of Lightning's fit (training and validation epochs).
        pairs_per_second: training pairs per second of training steps (forward, backward and
            optimiser step; validation and data preparation excluded).
        best_epoch: the selected epoch (0-based).
        epochs: epochs run.
        log_dir: the CSV log folder.
        extra: what the checkpoint stores as ``extra``.
        validated: whether validation pairs selected the epoch (and could calibrate); false
            without validation patients or when theirs have no scan pair with nodes (the
            epoch with the lowest training loss is kept; module docstring).
        calibration_skipped: ``{step: reason}`` for each calibration the config asked for
            but the validation pairs could not support (``"fusion"``, ``"threshold"``,
            ``"confidence"``); empty when every requested step ran.
    """

    checkpoint: Path
    val_metrics: dict
    train_seconds: float
    pairs_per_second: float
    best_epoch: int = 0
    epochs: int = 0
    log_dir: Path | None = None
    extra: dict = field(default_factory=dict)
    validated: bool = False
    calibration_skipped: dict = field(default_factory=dict)


class _Throughput(Callback):
    """Counts training pairs and the time spent in training steps."""

    def __init__(self):
        self.pairs = 0
        self.seconds = 0.0
        self._start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seconds += time.perf_counter() - self._start
        self.pairs += batch.num_graphs


@contextlib.contextmanager
def _quiet_lightning(quiet: bool) -> Iterator[None]:
    """Silence Lightning's informational messages (devices, model summary) when ``quiet``, and
    always its deprecation notice about torch's pytree API (nothing a user can act on)."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    if quiet:
        for lg in loggers:
            lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _best_state(path: str) -> dict:
    """The matcher's weights from Lightning's checkpoint (keys without the ``model.`` prefix)."""
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}


def _skipped_message(skipped: dict[str, str], config: MatcherConfig) -> str:
    """The :class:`CalibrationWarning` text for the calibration steps ``skipped``."""
    parts = []
    if "fusion" in skipped:
        parts.append(f"fusion weights not calibrated ({skipped['fusion']}): the trained fusion "
                     "weights are kept")
    if "threshold" in skipped:
        key = decision_key(config)
        parts.append(f"decision threshold not calibrated ({skipped['threshold']}): the "
                     f"config's {key} = {config.flat()[key]:g} is kept")
    if "confidence" in skipped:
        m = config.model
        parts.append(f"confidence not calibrated ({skipped['confidence']}): the config's "
                     f"model.score_temperature = {m.score_temperature:g} and "
                     f"model.score_bias = {m.score_bias:g} are kept")
    return "; ".join(parts)


def fit_matcher(cohort: Cohort, config: MatcherConfig, *, train_patients: Iterable[str],
                val_patients: Iterable[str], out_dir: str | os.PathLike,
                max_epochs: int | None = None, seed: int | None = None, progress: bool = True,
                accelerator: str = "auto", devices: int | str | list = "auto",
                strategy: str = "auto", num_nodes: int = 1,
                cache_dir: str | os.PathLike | None = None, pair_mode: str = "consecutive",
                workers: int = 1, callbacks: Iterable[Callback] | None = None,
                init_from: str | os.PathLike | None = None) -> FitResult:
    """Train a matcher on ``train_patients``, select on ``val_patients``, save the best.

    Args:
        cohort: the cohort; when some scan has no image the config is made geometry-only
            (:func:`~lngraph.train.datamodule.config_for_cohort`) and the checkpoint stores
            that config.
        config: model and training settings (its ``optim`` section, and the defaults of
            ``optim.max_epochs`` and ``protocol.seed``).
        train_patients, val_patients: disjoint patients of ``cohort``; ``val_patients`` may be
            empty (see the module docstring).
        out_dir: output folder (module docstring).
        max_epochs, seed: override the config's values.
        progress: show progress bars and Lightning's messages.
        accelerator, devices, strategy, num_nodes: passed to ``lightning.Trainer``.
        cache_dir: crop cache (default: the user's,
            :func:`~lngraph.data.cache.default_cache_dir`).
        pair_mode: ``"consecutive"`` or ``"all"`` scan pairs of each patient.
        workers: processes that fill the crop cache.
        callbacks: extra Lightning callbacks (e.g. Optuna pruning,
            :class:`~lngraph.tune.objective.PruningCallback`).
        init_from: an lngraph checkpoint whose weights start the training (fine-tuning,
            e.g. a geometry model trained on synthetic cohorts, then on real pairs); its
            model must have the same architecture and sizes as ``config``'s.

    Warns:
        CalibrationWarning: validation patients without a usable scan pair, or validation
            pairs too one-sided for a requested calibration (module docstring).

    Raises:
        InputError: (a ``ValueError`` naming the cohort folder) the training patients have no
            scan pair with a node in either scan; nothing is written.
        ValueError: unknown or overlapping patients, a seed outside ``0 .. 2**32 - 1``, or a
            training that diverged to non-finite weights (no ``model.ckpt`` is written).
        InputError: ``init_from`` is unreadable or its weights do not fit ``config``'s model.
    """
    config = config_for_cohort(config, cohort)
    max_epochs = config.optim.max_epochs if max_epochs is None else int(max_epochs)
    config = config.with_values({"optim.max_epochs": max_epochs})   # the schedule's length
    seed = config.protocol.seed if seed is None else int(seed)
    if not 0 <= seed < 2**32:
        raise ValueError(f"the seed must be in 0 .. {2**32 - 1}, got {seed}")
    data = PairDataModule(cohort, config, train_patients=train_patients,
                          val_patients=val_patients, pair_mode=pair_mode, cache_dir=cache_dir,
                          workers=workers, progress=progress, seed=seed)
    problem = training_pair_problem(cohort, data.train_patients, pair_mode)
    if problem:
        raise InputError(cohort.root if cohort.root is not None else "cohort", problem)
    unusable = validation_problem(cohort, data.val_patients, pair_mode)
    validate = unusable is None
    if data.val_patients and not validate:
        warnings.warn(f"validation skipped: {unusable}; training runs {max_epochs} epoch(s), "
                      "keeps the epoch with the lowest training loss and calibrates nothing",
                      CalibrationWarning, stacklevel=2)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "lightning" / "best.ckpt").unlink(missing_ok=True)  # a previous run's
    with _quiet_lightning(not progress):
        L.seed_everything(seed, workers=True, verbose=progress)
        module = MatcherModule(config)
        if init_from is not None:
            start, _, _ = load_checkpoint(init_from)
            try:
                module.model.load_state_dict(start.state_dict())
            except RuntimeError as exc:
                raise InputError(init_from, "its weights do not fit the model of the "
                                 f"config: {str(exc).splitlines()[0]}") from None
        monitor, mode = ("val_score", "max") if validate else ("train_total", "min")
        best = ModelCheckpoint(dirpath=out_dir / "lightning", filename="best", monitor=monitor,
                               mode=mode, save_top_k=1, save_weights_only=True,
                               enable_version_counter=False)
        throughput = _Throughput()
        callbacks = [best, throughput, *(callbacks or ())]
        if validate:
            callbacks.append(EarlyStopping(monitor=monitor, mode=mode,
                                           patience=config.optim.patience))
        logger = CSVLogger(out_dir, name="logs")
        trainer = L.Trainer(
            max_epochs=max_epochs, accelerator=accelerator, devices=devices, strategy=strategy,
            num_nodes=num_nodes, callbacks=callbacks, logger=logger, log_every_n_steps=1,
            enable_progress_bar=progress, enable_model_summary=progress,
            limit_val_batches=1.0 if validate else 0, num_sanity_val_steps=0)
        start = time.perf_counter()
        trainer.fit(module, datamodule=data)
        train_seconds = time.perf_counter() - start
        device = trainer.strategy.root_device

    model = build_matcher(config)
    model.load_state_dict(_best_state(best.best_model_path))
    model.to(device)
    best_epoch = int(torch.load(best.best_model_path, map_location="cpu",
                                weights_only=True)["epoch"])
    diverged = nonfinite_weights(model.state_dict())
    if diverged:
        raise TrainingDiverged(f"training diverged: the best epoch ({best_epoch}) has {diverged}; "
                         f"no {CHECKPOINT_NAME} was written — try a lower optim.lr")
    calibrated = calibrate_on_validation(model, config, cohort, data.val_pairs,
                                         data.val_graphs, unusable=unusable)
    config, skipped = calibrated.config, calibrated.skipped
    if validate and skipped:       # (without validation the warning above said it all)
        warnings.warn(_skipped_message(skipped, config), CalibrationWarning, stacklevel=2)
    val_metrics = calibrated.val_metrics if validate else {}
    extra = {
        "train_patients": data.train_patients, "val_patients": data.val_patients,
        "pair_mode": pair_mode, "seed": seed, "max_epochs": max_epochs,
        "init_from": None if init_from is None else os.fspath(init_from),
        "best_epoch": best_epoch, "epochs": trainer.current_epoch,
        "val_metrics": val_metrics,
        **calibrated.extra(),
        "cohort": str(cohort.root) if cohort.root is not None else None,
        "validated": validate,
        "calibration_skipped": skipped,
    }
    checkpoint = out_dir / CHECKPOINT_NAME
    if trainer.is_global_zero:
        save_checkpoint(checkpoint, model, config, extra)
    return FitResult(
        checkpoint=checkpoint, val_metrics=val_metrics, train_seconds=train_seconds,
        pairs_per_second=throughput.pairs / throughput.seconds if throughput.seconds else 0.0,
        best_epoch=best_epoch, epochs=trainer.current_epoch, log_dir=Path(logger.log_dir),
        extra=extra, validated=validate, calibration_skipped=skipped)
