"""The leaderboard protocol: every method on the same patient folds, every matching metric.

:func:`run_leaderboard` is the protocol behind ``lngraph bench`` and
``benchmarks/leaderboard.py``:

1. **Folds.** For each seed, :func:`~lngraph.train.folds.patient_folds` cuts the cohort's
   patients into ``folds`` test folds and carves ``val_fraction`` of each fold's training
   patients out for validation. Every method sees exactly these splits.
2. **Fit.** A fresh instance per (method, seed, fold) is fitted on the training patients with
   the validation patients for selection (early stopping, thresholds); test patients are never
   seen before scoring. Geometric methods' ``fit`` is a no-op.
3. **Predict.** The method matches the test patients' scan pairs (``consecutive`` by default)
   through ``predict_many`` when it has one (batched), else ``predict`` pair by pair. With a
   ``test_cohort`` (the same patients and scan ids, e.g. a copy with some scans perturbed by
   :func:`lngraph.synth.rotate_cohort`), the test pairs are taken from it instead: methods are
   fitted and selected on ``cohort`` exactly as without it, on the same folds.
4. **Score.** :func:`~lngraph.metrics.pair_counts` per pair, pooled per fold
   (:func:`~lngraph.metrics.summarize`), then mean and sample standard deviation
   (``ddof=1``) over folds (and seeds, :func:`~lngraph.metrics.mean_std_over_folds`).
   Training seconds and inference seconds per pair are measured as wall-clock time.

A method that needs images is skipped on a geometry-only cohort, and a method that raises is
recorded as failed with its error; both appear in the outputs with a note, never silently.

**Methods.** Names resolve through :func:`lngraph.bench.registry.available_methods` (the
built-ins of :data:`~lngraph.bench.registry.BUILTIN_METHODS` in order, then the user's
registered methods, loaded from ``extra_modules``), and each method is built by
:meth:`Method.build <lngraph.baselines.base.Method.build>` ``(options[name], seed=...,
max_epochs=...)``: the seed reaches methods that declare ``seeded``, the epoch cap those that
declare an ``epochs_option``. ``quick=True`` is a small version (2 folds, one seed, at most 2
epochs and the lighter settings of :data:`QUICK_OPTIONS`) that runs in minutes.

**Reusing an earlier run.** ``reuse`` takes the per-fold rows of an earlier run
(``leaderboard_folds.csv``); the rows of its methods that are not run again are kept, after a
check that every kept row was scored on the same test patients as this run's split of its seed
and fold. One method can so be rerun (a new default, a fix) without refitting the others.

**Outputs** (in ``out_dir``, see :mod:`lngraph.bench.report`): ``leaderboard.csv``,
``leaderboard_folds.csv``, ``leaderboard.md`` and ``leaderboard.png``.
"""

from __future__ import annotations

import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence

import pandas as pd

from lngraph.baselines.base import Method
from lngraph.baselines.registration import RegistrationParams
from lngraph.bench.registry import build_method, import_methods, method_names
from lngraph.bench.report import (
    commit,
    describe_cohort,
    header_lines,
    machine,
    write_leaderboard,
)
from lngraph.io.cohort import Cohort, read_cohort
from lngraph.metrics import pair_counts, summarize
from lngraph.train.folds import patient_folds

#: ``quick=True``: constructor options of the built-in methods that would otherwise take long.
QUICK_OPTIONS: dict[str, dict] = {
    "registration": {"params": RegistrationParams(samples=5000, affine_iterations=40,
                                                   bspline_iterations=5)},
    "dlt_lite": {"steps": 10},
    "sam_lite": {"steps": 10},
    "tlt_lite": {"steps": 10},
}
#: ``quick=True``: folds and the epoch cap.
QUICK_FOLDS, QUICK_MAX_EPOCHS = 2, 2


def _predict(method: Method, pairs: list) -> list:
    many = getattr(method, "predict_many", None)
    if many is not None:
        return many(pairs) if pairs else []
    return [method.predict(p) for p in pairs]


def fold_row(method: Method, cohort: Cohort, split, pair_mode: str,
             test_cohort: Cohort | None = None, extra_val: Cohort | None = None) -> dict:
    """Fit on the split's training patients of ``cohort`` (select on validation: the split's
    validation patients, and ``extra_val``'s patients when given), score its test patients'
    pairs of ``test_cohort`` (default: ``cohort``). A method that reports its validation
    metrics (lngraph's matchers: ``result.val_metrics``) adds them as ``val_f1`` and
    ``val_score`` (the selection score), so that variants can be chosen on validation."""
    train, val = cohort.subset(split.train), cohort.subset(split.val) if split.val else None
    if extra_val is not None:
        scans = [*(val.scans.values() if val is not None else ()), *extra_val.scans.values()]
        val = Cohort(scans, root=cohort.root)
    start = time.perf_counter()
    method.fit(train, val)
    train_seconds = time.perf_counter() - start
    scores = score_pairs(method, (cohort if test_cohort is None else test_cohort)
                         .pairs(pair_mode, split.test))
    predict = {k: scores.pop(k) for k in ("predict_seconds", "seconds_per_pair")}
    val_metrics = getattr(getattr(method, "result", None), "val_metrics", None) or {}
    return {**scores, "train_seconds": train_seconds, **predict,
            **{f"val_{k}": float(val_metrics[k]) for k in ("f1", "score") if k in val_metrics}}


def score_pairs(method: Method, pairs: list) -> dict:
    """A fitted ``method``'s pooled metrics on ``pairs`` (every
    :func:`~lngraph.metrics.summarize` key) with ``predict_seconds`` and
    ``seconds_per_pair``."""
    start = time.perf_counter()
    predictions = _predict(method, pairs)
    predict_seconds = time.perf_counter() - start
    metrics = summarize([pair_counts(p, q) for p, q in zip(pairs, predictions, strict=True)])
    return {**metrics, "predict_seconds": predict_seconds,
            "seconds_per_pair": predict_seconds / len(pairs) if pairs else math.nan}


def check_same_scans(cohort: Cohort, test_cohort: Cohort) -> None:
    """Raise :class:`ValueError` unless both cohorts have the same patients, each with the
    same scan ids in the same timepoint order (so the folds and pairs correspond)."""
    train_patients, test_patients = set(cohort.patients), set(test_cohort.patients)
    if train_patients != test_patients:
        only_train = sorted(train_patients - test_patients)
        only_test = sorted(test_patients - train_patients)
        raise ValueError(
            "test_cohort must have the same patients as cohort: "
            + "; ".join(f"{len(ids)} only in {where} ({', '.join(ids[:5])}"
                        f"{', ...' if len(ids) > 5 else ''})"
                        for where, ids in (("cohort", only_train), ("test_cohort", only_test))
                        if ids))
    for patient in cohort.patients:
        ours = [s.scan_id for s in cohort.scans_of(patient)]
        theirs = [s.scan_id for s in test_cohort.scans_of(patient)]
        if ours != theirs:
            raise ValueError(f"test_cohort must have the same scan ids as cohort: patient "
                             f"{patient} has {ours} in cohort but {theirs} in test_cohort "
                             "(earliest first)")


def check_extra_val(cohort: Cohort, extra_val: Cohort) -> None:
    """Raise :class:`ValueError` when ``extra_val`` (validation patients for every fold) has
    patient ids of ``cohort``."""
    shared = sorted(set(extra_val.patients) & set(cohort.patients))
    if shared:
        raise ValueError(f"extra_val shares patient id(s) with the cohort: "
                         f"{', '.join(shared[:5])} are also in the cohort; validation patients "
                         "must be other patients")


def reused_rows(reuse: pd.DataFrame | str | os.PathLike, names: Sequence[str],
                splits: Mapping[int, Sequence]) -> pd.DataFrame:
    """The rows of ``reuse`` (an earlier run's per-fold rows or their CSV) whose method is not
    in ``names``, checked against this run's ``splits`` (``{seed: [split, ...]}``).

    Raises:
        ValueError: a kept row's seed or fold is not one of this run's, or its test patients
            differ from this run's split (naming the method, seed and fold).
    """
    frame = reuse if isinstance(reuse, pd.DataFrame) else pd.read_csv(reuse, dtype={
        "test_ids": str, "note": str})
    kept = frame[~frame["method"].isin(list(names))]
    for row in kept.itertuples(index=False):
        if row.status == "skipped":
            continue
        seed, fold = int(row.seed), int(row.fold)
        if seed not in splits or not 0 <= fold < len(splits[seed]):
            raise ValueError(f"reused row {row.method} seed {seed} fold {fold}: this run has "
                             "no such seed and fold")
        expected = " ".join(splits[seed][fold].test)
        if str(row.test_ids) != expected:
            raise ValueError(f"reused row {row.method} seed {seed} fold {fold} was tested on "
                             "other patients than this run's fold (another cohort, seed or "
                             "number of folds?)")
    return kept


def _log(progress: bool, text: str) -> None:
    if progress:
        print(f"[leaderboard] {text}", file=sys.stderr, flush=True)


def run_leaderboard(cohort: Cohort | str | os.PathLike, methods: str | Sequence[str], *,
                    folds: int = 5, seeds: Sequence[int] = (0,),
                    out_dir: str | os.PathLike | None = None, quick: bool = False,
                    max_epochs: int | None = None, options: Mapping[str, Mapping] | None = None,
                    val_fraction: float = 0.2, pair_mode: str = "consecutive",
                    extra_modules: Sequence[str] = (), command: str | None = None,
                    stem: str = "leaderboard", title: str = "Leaderboard",
                    sections: Callable[[pd.DataFrame], list[str]] | None = None,
                    source: str | None = None, progress: bool = True,
                    test_cohort: Cohort | str | os.PathLike | None = None,
                    extra_val: Cohort | str | os.PathLike | None = None,
                    reuse: pd.DataFrame | str | os.PathLike | None = None) -> pd.DataFrame:
    """Run ``methods`` on the same patient folds of ``cohort`` (module docstring).

    Args:
        cohort: a cohort or its folder.
        methods: registered names, or ``"all"``.
        folds: patient-level test folds per seed.
        seeds: each seed reshuffles the folds and seeds the methods.
        out_dir: where the outputs go (none written when ``None``).
        quick: the small version (module docstring).
        max_epochs: cap of the learned methods' epochs.
        options: constructor keyword arguments per method name (over :data:`QUICK_OPTIONS`
            when ``quick``).
        val_fraction: share of each fold's training patients used for validation.
        pair_mode: ``"consecutive"`` or ``"all"`` scan pairs of each test patient.
        extra_modules: the user's method modules or ``.py`` files
            (:func:`~lngraph.bench.registry.import_methods`).
        command: the command line recorded in ``leaderboard.md`` (default: this process's).
        stem, title: output file names (``<stem>.csv``, ...) and the Markdown title.
        sections: more Markdown lines for the ``.md``, made from the
            :func:`~lngraph.bench.report.summarize_leaderboard` frame (e.g. the paper's tables).
        source: where the cohort comes from, for the ``.md`` (default: its folder).
        progress: one line per fold on stderr.
        test_cohort: a cohort or folder with the same patients and scan ids as ``cohort``
            whose scans are scored instead of ``cohort``'s (methods are still fitted and
            selected on ``cohort``, on the same folds); default ``cohort`` itself.
        extra_val: a cohort or folder whose patients join every fold's validation patients
            (of every method), e.g. held-out synthetic patients of another seed, so that
            epochs, thresholds and the recorded ``val_score`` rest on more patients; its
            patient ids must differ from ``cohort``'s.
        reuse: an earlier run's per-fold rows (or ``leaderboard_folds.csv``) whose methods
            not in ``methods`` are kept (module docstring).

    Raises:
        ValueError: no methods, ``test_cohort``'s patients or scan ids differ from
            ``cohort``'s, ``extra_val`` shares patient ids with ``cohort``, or a reused row
            was tested on other patients.

    Returns:
        One row per (method, seed, fold): ``method, status`` (``ok | skipped | failed``),
        ``note, seed, fold``, the patient counts and ids of the split, every
        :func:`~lngraph.metrics.summarize` key, ``train_seconds, predict_seconds,
        seconds_per_pair``, and ``val_f1, val_score`` for methods that report them
        (:func:`fold_row`). A skipped method has one row with ``seed``/``fold`` empty.
    """
    started = time.perf_counter()
    provenance = {"commit": commit(), "machine": machine()}
    import_methods(extra_modules)
    names = method_names(methods)
    if not names:
        raise ValueError("no methods to run")
    if not isinstance(cohort, Cohort):
        cohort = read_cohort(cohort)
    if test_cohort is not None:
        if not isinstance(test_cohort, Cohort):
            test_cohort = read_cohort(test_cohort)
        check_same_scans(cohort, test_cohort)
    if extra_val is not None:
        if not isinstance(extra_val, Cohort):
            extra_val = read_cohort(extra_val)
        check_extra_val(cohort, extra_val)
    has_images = cohort.has_images and (test_cohort is None or test_cohort.has_images)
    if quick:
        folds, seeds = min(folds, QUICK_FOLDS), list(seeds)[:1]
        max_epochs = min(max_epochs or QUICK_MAX_EPOCHS, QUICK_MAX_EPOCHS)
        given = options or {}
        options = {name: {**QUICK_OPTIONS.get(name, {}), **given.get(name, {})}
                   for name in {*QUICK_OPTIONS, *given}}
    options = dict(options or {})
    splits = {seed: patient_folds(cohort.patients, folds, seed, val_fraction)
              for seed in seeds}
    kept = (reused_rows(reuse, names, splits) if reuse is not None
            else pd.DataFrame(columns=["method"]))
    reused = list(kept["method"].unique())
    for name in reused:
        _log(progress, f"{name}: fold rows reused from the earlier run")
    rows = [{**row, "note": row["note"] if isinstance(row.get("note"), str) else "",
             **({"seed": int(row["seed"]), "fold": int(row["fold"])}
                if row["status"] != "skipped" else {})}
            for row in kept.to_dict("records")]
    for name in names:
        def build(seed: int, name=name) -> Method:
            return build_method(name, seed=seed, max_epochs=max_epochs,
                                options=options.get(name))

        try:
            needs_images = build(seeds[0]).needs_images
        except Exception as exc:  # noqa: BLE001 - a crash is a result to record
            rows.append(failed_row({"method": name}, exc, progress))
            needs_images = None
        if needs_images and not has_images:
            rows.append({"method": name, "status": "skipped",
                         "note": "needs images; the cohort is geometry-only"
                         if not cohort.has_images else "needs images; the test cohort is "
                         "geometry-only"})
            _log(progress, f"{name}: skipped (needs images)")
        elif needs_images is not None:
            for seed in seeds:
                for k, split in enumerate(splits[seed]):
                    base = {"method": name, "seed": seed, "fold": k,
                            "train_patients": len(split.train),
                            "val_patients": len(split.val), "test_patients": len(split.test),
                            "test_ids": " ".join(split.test)}
                    try:
                        row = {**base, "status": "ok", "note": "",
                               **fold_row(build(seed), cohort, split, pair_mode,
                                          test_cohort, extra_val)}
                    except Exception as exc:  # noqa: BLE001 - a crash is a result to record
                        rows.append(failed_row(base, exc, progress))
                        continue
                    _log(progress, f"{name} seed {seed} fold {k}: F1 {row['f1']:.3f} NLR "
                         f"{row['nlr']:.3f} DLR {row['dlr']:.3f}, train "
                         f"{row['train_seconds']:.1f} s, {row['seconds_per_pair']:.3f} s/pair")
                    rows.append(row)
        if out_dir is not None:
            header = header_lines(cohort, names=[*reused, *names], folds=folds, seeds=seeds,
                                  quick=quick, max_epochs=max_epochs, options=options,
                                  val_fraction=val_fraction, pair_mode=pair_mode,
                                  provenance=provenance,
                                  seconds=time.perf_counter() - started, command=command,
                                  source=source)
            if reused:
                header.append("- reused: the fold rows of " + ", ".join(
                    f"`{n}`" for n in reused) + " come from an earlier run on the same folds "
                    "(test patients checked equal); their train and predict times are that "
                    "run's")
            if extra_val is not None:
                header.append("- extra validation: every fold's validation patients plus "
                              f"{describe_cohort(extra_val, pair_mode)}")
            if test_cohort is not None:
                header.append("- test scans: from another cohort with the same patients and "
                              "scan ids (methods fitted on the cohort above): "
                              f"{describe_cohort(test_cohort, pair_mode)}")
            write_leaderboard(_in_order(rows), out_dir, header, stem, title, sections)
    return _in_order(rows)


def _in_order(rows: list[dict]) -> pd.DataFrame:
    """``rows`` with the methods in leaderboard order (reused ones among the others)."""
    order = {name: k for k, name in enumerate(method_names("all"))}
    return pd.DataFrame(sorted(rows, key=lambda r: order.get(r["method"], len(order))))


def failed_row(base: dict, exc: Exception, progress: bool = True) -> dict:
    """The row of a method that raised ``exc`` (the traceback goes to stderr)."""
    traceback.print_exception(exc, file=sys.stderr)
    note = f"{type(exc).__name__}: {exc}".splitlines()[0]
    where = f" seed {base['seed']} fold {base['fold']}" if "fold" in base else ""
    _log(progress, f"{base['method']}{where}: FAILED ({note})")
    return {**base, "status": "failed", "note": note}
