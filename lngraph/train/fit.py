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
(:func:`~lngraph.train.calibrate.fit_fusion`) and ``config.protocol.calibrate_threshold``
chooses the decision threshold (:func:`~lngraph.train.calibrate.calibrate_threshold`, stored in the
checkpoint's config).

Output folder::

    out_dir/model.ckpt             lngraph checkpoint of the best epoch
    out_dir/lightning/best.ckpt    Lightning's checkpoint of the same epoch
    out_dir/logs/version_N/        CSV logs (metrics.csv: losses and validation metrics)

Without validation patients there is nothing to select on: training runs ``max_epochs``
epochs and keeps the epoch with the lowest training loss.
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

from lngraph.io.cohort import Cohort
from lngraph.metrics import evaluate_predictions
from lngraph.models import AsymmetricMatcher, MatcherConfig, predict_graphs, save_checkpoint
from lngraph.train.calibrate import calibrate_threshold, decision_key, fit_fusion
from lngraph.train.datamodule import PairDataModule, config_for_cohort
from lngraph.train.module import MatcherModule, selection_score

#: File name of the lngraph checkpoint inside the output folder.
CHECKPOINT_NAME = "model.ckpt"


@dataclass
class FitResult:
    """What :func:`fit_matcher` produced.

    Args:
        checkpoint: ``out_dir/model.ckpt``.
        val_metrics: every metric (docs/design.md, *Metrics*) of the saved model on the
            validation pairs, plus ``score`` (the selection score); empty without validation
            patients.
        train_seconds: wall-clock time of Lightning's fit (training and validation epochs).
        pairs_per_second: training pairs per second of training steps (forward, backward and
            optimiser step; validation and data preparation excluded).
        best_epoch: the selected epoch (0-based).
        epochs: epochs run.
        log_dir: the CSV log folder.
    """

    checkpoint: Path
    val_metrics: dict
    train_seconds: float
    pairs_per_second: float
    best_epoch: int = 0
    epochs: int = 0
    log_dir: Path | None = None
    extra: dict = field(default_factory=dict)


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


def fit_matcher(cohort: Cohort, config: MatcherConfig, *, train_patients: Iterable[str],
                val_patients: Iterable[str], out_dir: str | os.PathLike,
                max_epochs: int | None = None, seed: int | None = None, progress: bool = True,
                accelerator: str = "auto", devices: int | str | list = "auto",
                strategy: str = "auto", num_nodes: int = 1,
                cache_dir: str | os.PathLike | None = None, pair_mode: str = "consecutive",
                workers: int = 1, callbacks: Iterable[Callback] | None = None) -> FitResult:
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
        cache_dir: crop cache (default ``<cohort>/.lngraph_cache``).
        pair_mode: ``"consecutive"`` or ``"all"`` scan pairs of each patient.
        workers: processes that fill the crop cache.
        callbacks: extra Lightning callbacks (e.g. Optuna pruning,
            :class:`~lngraph.tune.objective.PruningCallback`).

    Raises:
        ValueError: no training pair, or unknown or overlapping patients.
    """
    config = config_for_cohort(config, cohort)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    max_epochs = config.optim.max_epochs if max_epochs is None else int(max_epochs)
    seed = config.protocol.seed if seed is None else int(seed)
    data = PairDataModule(cohort, config, train_patients=train_patients,
                          val_patients=val_patients, pair_mode=pair_mode, cache_dir=cache_dir,
                          workers=workers, progress=progress)
    if not data.train_pairs:
        raise ValueError("no training pair with nodes among the training patients")
    validate = bool(data.val_pairs)
    (out_dir / "lightning" / "best.ckpt").unlink(missing_ok=True)  # a previous run's
    with _quiet_lightning(not progress):
        L.seed_everything(seed, workers=True, verbose=progress)
        module = MatcherModule(config)
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

    model = AsymmetricMatcher(config)
    model.load_state_dict(_best_state(best.best_model_path))
    model.to(device)
    best_epoch = int(torch.load(best.best_model_path, map_location="cpu",
                                weights_only=True)["epoch"])
    val_metrics: dict = {}
    calibration = fusion = None
    if validate and config.protocol.calibrate_fusion and config.model.position_prior:
        fusion = fit_fusion(model, config, data.val_pairs, graphs=data.val_graphs)
    if validate and config.protocol.calibrate_threshold:
        calibration = calibrate_threshold(model, config, cohort, data.val_pairs,
                                          graphs=data.val_graphs)
        config = config.with_values({decision_key(config): calibration.threshold})
        model.config = config
    if calibration is not None:    # the metrics at the chosen threshold, already computed
        val_metrics = calibration.metrics
    elif validate:
        predictions = predict_graphs(model, data.val_graphs)
        val_metrics = evaluate_predictions(cohort, {(p.src.scan_id, p.dst.scan_id): pred for p, pred
                                                    in zip(data.val_pairs, predictions,
                                                           strict=True)}, data.val_pairs)
        val_metrics["score"] = selection_score(val_metrics)
    extra = {
        "train_patients": data.train_patients, "val_patients": data.val_patients,
        "pair_mode": pair_mode, "seed": seed, "max_epochs": max_epochs,
        "best_epoch": best_epoch, "epochs": trainer.current_epoch,
        "val_metrics": val_metrics,
        "fusion": fusion,
        "calibration": None if calibration is None else {
            "key": decision_key(config), "threshold": calibration.threshold,
            "scores": {f"{t:g}": v for t, v in calibration.scores.items()}},
        "cohort": str(cohort.root) if cohort.root is not None else None,
    }
    checkpoint = out_dir / CHECKPOINT_NAME
    if trainer.is_global_zero:
        save_checkpoint(checkpoint, model, config, extra)
    return FitResult(
        checkpoint=checkpoint, val_metrics=val_metrics, train_seconds=train_seconds,
        pairs_per_second=throughput.pairs / throughput.seconds if throughput.seconds else 0.0,
        best_epoch=best_epoch, epochs=trainer.current_epoch, log_dir=Path(logger.log_dir),
        extra=extra)
