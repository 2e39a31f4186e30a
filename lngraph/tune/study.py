"""Optuna studies for :class:`~lngraph.tune.objective.TuneObjective`: storage, workers, report.

**Storage URLs** (:func:`open_storage`):

* none — ``sqlite:///OUT/study.db``, a file in the output folder;
* ``sqlite:///PATH``, ``postgresql://USER:PASS@HOST/DB``, ``mysql+pymysql://…`` — any
  SQLAlchemy URL (an Optuna ``RDBStorage``; PostgreSQL and MySQL need their driver installed);
* ``journal:PATH`` — an append-only journal file (``JournalStorage(JournalFileBackend(PATH))``),
  safe for several processes on one machine or on a shared file system that supports file locks.

**Workers.** A study is identified by ``(storage, study name)``. Every process that opens the
same pair — ``--n-jobs`` processes of one command, or ``lngraph tune`` on several machines
against one PostgreSQL database — adds trials to the same study; the sampler sees all of them.
Workers are processes, not threads: training is CPU-bound Python (threads would share one
interpreter lock) and Lightning's seeding and logging are process-global.

**Budget and resuming.** ``trials`` is the number of *finished* (complete or pruned) trials
the study should hold: a worker stops once the study has them, so running the same command
again after an interruption resumes where it stopped, and raising ``trials`` extends a study.
Workers running at the moment the budget is reached finish their trial, so a study may end
with up to ``n_jobs - 1`` extra trials. Ctrl-C marks the running trials failed (they are not
counted). A worker killed outright leaves its trial ``RUNNING``: on an RDB storage a heartbeat
(every :data:`HEARTBEAT_S` seconds) lets the next worker fail it after :data:`GRACE_S` seconds
and re-queue its parameters once; on a journal file it stays ``RUNNING`` and uncounted.

A study remembers the base config and the patients it was started with (study user
attributes); resuming it with others is an error rather than a silently mixed study.

**Sampler and pruner.** TPE (seeded; worker ``k`` uses ``seed + k``) and a median pruner that
stops a trial whose validation score after an epoch is below the median of earlier trials at
that epoch (from the third trial on, never after the first epoch).

**Report** (:func:`write_report`)::

    OUT/best_config.yaml   the best trial's config — `lngraph train --config` reads it
    OUT/best.json          its value, trial number, parameters, validation metrics, checkpoint
    OUT/trials.csv         every trial: number, state, value, parameters, duration
    OUT/history.png        objective per trial and best so far
    OUT/intermediate.png   validation score per epoch of every trial (pruning at a glance)
    OUT/importance.png     parameter importances by Optuna's default evaluator (PED-ANOVA in
                           Optuna 5, no scikit-learn needed); needs two complete trials
"""

from __future__ import annotations

import json
import math
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

import optuna
from optuna.storages import (
    BaseStorage,
    JournalStorage,
    RDBStorage,
    RetryHeartbeatStaleTrialCallback,
)
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from lngraph.io.atomic import atomic_path, write_text_atomic
from lngraph.tune.objective import OBJECTIVE, TuneObjective, config_of

#: Default storage file inside the output folder.
DEFAULT_DB = "study.db"
#: Prefix of a journal-file storage URL.
JOURNAL_PREFIX = "journal:"
#: Seconds between heartbeats of a running trial (RDB storages).
HEARTBEAT_S = 60
#: Seconds without a heartbeat after which a running trial counts as dead (RDB storages).
GRACE_S = 180
#: Trial states that count towards the budget.
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def default_storage_url(out_dir: str | os.PathLike) -> str:
    """``sqlite:///<absolute OUT>/study.db``."""
    return f"sqlite:///{(Path(out_dir) / DEFAULT_DB).resolve()}"


def display_url(url: str) -> str:
    """``url`` with any password masked, for messages and reports."""
    if url.startswith(JOURNAL_PREFIX):
        return url
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def open_storage(url: str) -> BaseStorage:
    """The Optuna storage behind a URL (module docstring); an SQLite file's folder is created.

    Raises:
        ValueError: not a storage URL, or the storage cannot be opened (the message says why
            and never shows a password).
    """
    if url.startswith(JOURNAL_PREFIX):
        path = Path(url[len(JOURNAL_PREFIX):]).expanduser()
        if not path.name:
            raise ValueError(f"{url!r}: a journal storage needs a file, journal:PATH")
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(os.fspath(path)))
    if "://" not in url:
        raise ValueError(f"{url!r} is not a storage URL; use sqlite:///FILE, "
                         "postgresql://USER:PASSWORD@HOST/DB, mysql+pymysql://... or "
                         "journal:FILE")
    engine_kwargs = None
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # several processes write one file: wait for its lock instead of failing at once
        engine_kwargs = {"connect_args": {"timeout": 60}}
    try:
        with warnings.catch_warnings():  # heartbeats are marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S,
                              grace_period=GRACE_S,
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                                  max_retry=1))
    except Exception as exc:  # SQLAlchemy and driver errors have no common base class
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"cannot open storage {display_url(url)}: {first}") from None


def _identity(objective: TuneObjective) -> dict:
    return {"base_config": objective.base.to_dict(),
            "train_patients": list(objective.train_patients),
            "val_patients": list(objective.val_patients),
            "objective": OBJECTIVE}


def open_study(storage: BaseStorage, study_name: str, objective: TuneObjective, *,
               seed: int | None = None) -> optuna.Study:
    """Create the study (maximising the objective), or load it if it exists.

    Raises:
        ValueError: the existing study was started with another base config, other patients
            or another objective (the message names the first difference).
    """
    sampler = optuna.samplers.TPESampler(seed=seed)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize",
                                sampler=sampler, pruner=pruner, load_if_exists=True)
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise ValueError(f"study {study_name!r} minimises; lngraph tune maximises its "
                         "objective — choose another study name")
    stored = study.user_attrs
    for key, value in _identity(objective).items():
        if key not in stored:
            study.set_user_attr(key, value)
        elif stored[key] != value:
            raise ValueError(f"study {study_name!r} was started with a different {key} "
                             f"({_difference(stored[key], value)}); resume it with the same "
                             "settings or choose another study name")
    return study


def _dotted(values: dict, prefix: str = "") -> dict:
    """Nested dicts flattened to dotted keys (a config's sections to ``model.feature_dim``…)."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _difference(old, new) -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        old, new = _dotted(old), _dotted(new)
        keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        return ", ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in keys[:3])
    return f"{old!r} there, {new!r} now"


def finished_trials(study: optuna.Study) -> int:
    """Complete and pruned trials of the study."""
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def _run_trials(url: str, study_name: str, objective: TuneObjective, trials: int,
                timeout: float | None, seed: int | None) -> None:
    """Run trials until the study holds ``trials`` finished ones or ``timeout`` passes."""
    study = open_study(open_storage(url), study_name, objective, seed=seed)
    remaining = trials - finished_trials(study)
    if remaining > 0:
        study.optimize(objective, n_trials=remaining, timeout=timeout,
                       catch=(RuntimeError, ValueError),
                       callbacks=[optuna.study.MaxTrialsCallback(trials, states=FINISHED)])


def _process_worker(url: str, study_name: str, objective: TuneObjective, trials: int,
                    timeout: float | None, seed: int | None, threads: int) -> None:
    """:func:`_run_trials` in a worker process with ``threads`` torch threads; Ctrl-C ends it
    quietly (Optuna has marked its running trial failed)."""
    import torch

    torch.set_num_threads(threads)
    try:
        _run_trials(url, study_name, objective, trials, timeout, seed)
    except KeyboardInterrupt:
        pass


def optimize(url: str, study_name: str, objective: TuneObjective, *, trials: int,
             timeout: float | None = None, n_jobs: int = 1, seed: int | None = None) -> None:
    """Run ``n_jobs`` workers (processes; 1 = this process) on the study until it holds
    ``trials`` finished trials or ``timeout`` seconds pass (module docstring). Worker
    processes share the CPU cores: each uses ``cpu_count // n_jobs`` torch threads.

    A trial that raises ``RuntimeError`` (e.g. out of GPU memory for a large sampled model) or
    ``ValueError`` (e.g. a sampled learning rate that makes training diverge, or a cohort
    problem training reports) is recorded as failed, with Optuna's warning naming the error,
    and the search goes on; failed trials do not count towards ``trials``, but each worker
    stops after as many attempts as it had trials to run. Other errors stop the worker and
    are raised here.

    Raises:
        ValueError: the storage cannot be opened or the study does not fit ``objective``.
        KeyboardInterrupt: Ctrl-C in this process (worker processes stop quietly).
    """
    if n_jobs <= 1:
        _run_trials(url, study_name, objective, trials, timeout, seed)
        return
    open_study(open_storage(url), study_name, objective, seed=seed)  # create it once
    seeds = [None if seed is None else seed + k for k in range(n_jobs)]
    threads = max(1, (os.cpu_count() or 1) // n_jobs)
    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_process_worker, url, study_name, objective, trials, timeout,
                               s, threads) for s in seeds]
        for future in futures:
            future.result()


def _save_axes(axes, path: Path) -> Path:
    import matplotlib.pyplot as plt

    figure = axes.figure
    figure.set_size_inches(8, 5)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    plt.close(figure)
    return path


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def write_report(study: optuna.Study, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write the study's report into ``out_dir`` (module docstring); returns ``name -> path``
    of what was written. Without a complete trial only ``trials.csv`` is written; the
    importance plot needs two complete trials."""
    from optuna.visualization import matplotlib as plots

    out_dir = Path(out_dir)
    written: dict[str, Path] = {}
    frame = study.trials_dataframe(attrs=("number", "state", "value", "params",
                                          "datetime_start", "duration"))
    with atomic_path(out_dir / "trials.csv") as tmp:
        frame.to_csv(tmp, index=False)
    written["trials"] = out_dir / "trials.csv"
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return written
    best = study.best_trial
    config = replace(config_of(best), name=f"{study.study_name}-trial{best.number}")
    config.to_yaml(out_dir / "best_config.yaml")
    written["best_config"] = out_dir / "best_config.yaml"
    summary = {"study": study.study_name, "objective": OBJECTIVE, "value": best.value,
               "trial": best.number, "params": best.params,
               "val_metrics": best.user_attrs.get("val_metrics", {}),
               "checkpoint": best.user_attrs.get("checkpoint"),
               "finished_trials": finished_trials(study),
               "states": {s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,)))
                          for s in TrialState}}
    written["best"] = write_text_atomic(out_dir / "best.json",
                                        json.dumps(_json_safe(summary), indent=2) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        written["history"] = _save_axes(plots.plot_optimization_history(study),
                                         out_dir / "history.png")
        written["intermediate"] = _save_axes(plots.plot_intermediate_values(study),
                                             out_dir / "intermediate.png")
        if len(complete) >= 2:
            written["importance"] = _save_axes(plots.plot_param_importances(study),
                                               out_dir / "importance.png")
    return written

