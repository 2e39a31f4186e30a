r"""What an Optuna trial does: sample a config, train it, score it on validation patients.

**Objective** (maximised) — :func:`lngraph.train.module.selection_score`, the number early
stopping and checkpoint choice use:

.. math::
    \mathrm{objective} = F_1 + \tfrac{1}{2}\,(F_1^{new} + F_1^{dis}) \in [0, 2],

where :math:`F_1^{new}` is the harmonic mean of NLR and the precision of the predicted new
nodes (:math:`F_1^{dis}` likewise from DLR), so that "everything unmatched" cannot score,
pooled over the scan pairs of the **validation patients** of the chosen split, for the model of
the trial's best validation epoch. A trial trains on the split's training patients only; the
fold's test patients are never read, so a tuned config can still be reported on them without
leaking.

**Pruning** — :class:`PruningCallback` reports the validation score after every epoch
(``trial.report``) and stops the trial with :class:`optuna.TrialPruned` when the study's
pruner says so. It is our own small Lightning callback: Optuna's Lightning integration lives in
the separate ``optuna-integration`` package, which lngraph does not depend on. A trial trains on
one device in one process (trials run side by side instead, see :mod:`lngraph.tune.study`),
so the report needs no synchronisation between processes.

Each trial writes its training run (``model.ckpt``, Lightning logs) to
``OUT/trials/trial_NNNN/`` and records on the trial, as user attributes: ``config`` (the
sampled :class:`~lngraph.models.MatcherConfig` as a dict), ``worker`` (``host:pid`` of the
process that ran it), ``val_metrics``, ``checkpoint``, ``best_epoch``, ``epochs``,
``train_seconds`` and ``calibration_skipped`` (``{step: reason}`` of the calibrations the
validation pairs could not support, :func:`~lngraph.train.fit.fit_matcher`).

**Failures.** A split that cannot be tuned on — unknown or overlapping patients, training
patients without a scan pair with nodes, validation patients without one — is a ``ValueError``
when the objective is made, before any trial. A trial whose training fails with a
``ValueError`` (a sampled config that diverged to non-finite weights, a cohort problem that
training reports) is a failed trial, not a traceback: the objective logs one line (``Trial N
failed: …``), records the message as the user attribute ``error`` and returns NaN, which Optuna
records as ``FAIL``; the study goes on. Other errors are handled by
:func:`lngraph.tune.study.optimize`.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import optuna

from lngraph.io.cohort import Cohort
from lngraph.models.config import MatcherConfig
from lngraph.tune.search_space import sample_config

#: The metric the objective maximises and the pruner watches (logged by the training module).
MONITOR = "val_score"
#: The objective in words (stored on the study).
OBJECTIVE = ("F1 + mean(F1 of new, F1 of disappeared nodes) on the validation patients' scan "
             "pairs, for the best validation epoch (lngraph.train.module.selection_score)")


class PruningCallback(L.Callback):
    """Report ``monitor`` to an Optuna trial after each validation epoch; prune on request.

    Args:
        trial: the running trial.
        monitor: the logged metric to report (default ``val_score``).

    Raises:
        optuna.TrialPruned: from the end of a validation epoch whose report makes the study's
            pruner stop the trial; it propagates out of ``Trainer.fit``.
    """

    def __init__(self, trial: optuna.Trial, monitor: str = MONITOR):
        super().__init__()
        self.trial = trial
        self.monitor = monitor

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        epoch = trainer.current_epoch
        value = float(trainer.callback_metrics[self.monitor])
        self.trial.report(value, step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch}: {self.monitor} = {value:.4f}")


def _interrupted() -> KeyboardInterrupt:
    """Lightning turns Ctrl-C during ``fit`` into ``sys.exit(1)`` and ignores further Ctrl-C.
    Undo both, so that Optuna marks the trial failed and the caller sees the interruption."""
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return KeyboardInterrupt()


def _plain_metrics(metrics: dict) -> dict:
    """Metrics as JSON-safe floats (NaN as None)."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v
            for k, v in metrics.items() if isinstance(v, int | float)}


@dataclass
class TuneObjective:
    """The callable Optuna optimises (module docstring); picklable, so worker processes get
    a copy.

    Args:
        cohort: the cohort to train on.
        base: the config every trial starts from (the fields the search space leaves alone);
            made geometry-only, as training would, when the cohort has scans without images.
        train_patients, val_patients: the fold's training and validation patients.
        out_dir: the tuning output folder; trial runs go to ``out_dir/trials/``.
        max_epochs: epochs per trial (default: the sampled config's ``max_epochs``); the
            config recorded for the trial keeps the base's ``max_epochs``.
        seed: training seed of every trial (default: the config's).
        accelerator: Lightning accelerator of every trial (one device each).
        cache_dir: crop cache (default: the user's,
            :func:`~lngraph.data.cache.default_cache_dir`).
        pair_mode: ``"consecutive"`` or ``"all"`` scan pairs.
    """

    cohort: Cohort
    base: MatcherConfig
    train_patients: tuple[str, ...]
    val_patients: tuple[str, ...]
    out_dir: Path
    max_epochs: int | None = None
    seed: int | None = None
    accelerator: str = "cpu"
    cache_dir: Path | None = None
    pair_mode: str = "consecutive"

    def __post_init__(self):
        from lngraph.train.datamodule import (
            config_for_cohort,
            patient_problem,
            training_pair_problem,
            validation_problem,
        )

        self.base = config_for_cohort(self.base, self.cohort)
        self.train_patients = tuple(self.train_patients)
        self.val_patients = tuple(self.val_patients)
        self.out_dir = Path(self.out_dir)
        if not self.val_patients:
            raise ValueError("tuning needs validation patients: the objective is measured on "
                             "them")
        problem = patient_problem(self.cohort, self.train_patients, self.val_patients)
        problem = problem or training_pair_problem(self.cohort, self.train_patients,
                                                   self.pair_mode)
        if problem:
            raise ValueError(problem)
        problem = validation_problem(self.cohort, self.val_patients, self.pair_mode)
        if problem:
            raise ValueError(f"tuning needs validation pairs with nodes (the objective is "
                             f"measured on them): {problem}")

    def trial_dir(self, number: int) -> Path:
        """``out_dir/trials/trial_NNNN``."""
        return self.out_dir / "trials" / f"trial_{number:04d}"

    def __call__(self, trial: optuna.Trial) -> float:
        from lngraph.train import fit_matcher

        config = sample_config(trial, self.base)
        trial.set_user_attr("config", config.to_dict())
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        try:
            result = fit_matcher(
                self.cohort, config, train_patients=self.train_patients,
                val_patients=self.val_patients, out_dir=self.trial_dir(trial.number),
                max_epochs=self.max_epochs, seed=self.seed, progress=False,
                accelerator=self.accelerator, devices=1, cache_dir=self.cache_dir,
                pair_mode=self.pair_mode, callbacks=[PruningCallback(trial)])
            if not result.validated:    # __post_init__ checked the patients: not expected
                raise ValueError("the validation patients gave no validation pair with nodes, "
                                 "so there is no objective")
        except SystemExit as exc:
            raise _interrupted() from exc
        except ValueError as exc:    # InputError included
            trial.set_user_attr("error", str(exc))
            # under optuna's logger: its format, its verbosity (`optuna.logging.set_verbosity`)
            optuna.logging.get_logger("optuna.lngraph").warning(
                f"Trial {trial.number} failed: {exc}")
            return float("nan")
        trial.set_user_attr("val_metrics", _plain_metrics(result.val_metrics))
        trial.set_user_attr("calibration_skipped", dict(result.calibration_skipped))
        trial.set_user_attr("checkpoint", os.fspath(result.checkpoint))
        trial.set_user_attr("best_epoch", result.best_epoch)
        trial.set_user_attr("epochs", result.epochs)
        trial.set_user_attr("train_seconds", result.train_seconds)
        return float(result.val_metrics["score"])


def config_of(trial: optuna.trial.FrozenTrial) -> MatcherConfig:
    """The config a finished trial trained (its ``config`` user attribute)."""
    return MatcherConfig.from_dict(trial.user_attrs["config"])

