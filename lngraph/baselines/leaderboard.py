"""The leaderboard: every registered method on the same patient folds, every DESIGN §5 metric.

:func:`run_leaderboard` is the protocol behind ``lngraph bench`` and
``benchmarks/leaderboard.py``:

1. **Folds.** For each seed, :func:`~lngraph.train.folds.patient_folds` cuts the cohort's
   patients into ``folds`` test folds and carves ``val_fraction`` of each fold's training
   patients out for validation. Every method sees exactly these splits.
2. **Fit.** A fresh instance per (method, seed, fold) is fitted on the training patients with
   the validation patients for selection (early stopping, thresholds); test patients are never
   seen before scoring. Geometric methods' ``fit`` is a no-op.
3. **Predict.** The method matches the test patients' scan pairs (``consecutive`` by default)
   through ``predict_many`` when it has one (batched), else ``predict`` pair by pair.
4. **Score.** :func:`~lngraph.metrics.pair_counts` per pair, pooled per fold
   (:func:`~lngraph.metrics.summarize`), then mean ± std over folds (and seeds,
   :func:`~lngraph.metrics.mean_std_over_folds`). Training seconds and inference seconds per
   pair are measured as wall-clock time.

A method that needs images is skipped on a geometry-only cohort, and a method that raises is
recorded as failed with its error; both appear in the outputs with a note, never silently.

**Method names.** Names resolve through :data:`~lngraph.baselines.base.REGISTRY` after
:func:`load_registry` has imported the modules that register methods: the baselines,
:mod:`lngraph.train` (``asymmetric``) and :mod:`lngraph.train.ablations` — imported inside the
function, because :mod:`lngraph.baselines` sits below :mod:`lngraph.train` and must not import
it at module level — plus any extra module or ``.py`` file named by the caller (how a new
method joins the leaderboard without touching lngraph).

**Constructor arguments.** Each method is built as ``REGISTRY[name](**options[name])``; on top
of these, a constructor that names a ``seed`` parameter or takes ``**kwargs`` receives the
seed, and ``max_epochs`` goes to a constructor parameter named ``max_epochs`` or ``epochs``.
``quick=True`` is a small version (2 folds, one seed, at most 2 epochs and the lighter
settings of :data:`QUICK_OPTIONS`) that runs in minutes.

**Outputs** (in ``out_dir``, each written atomically): ``leaderboard.csv`` (one row per
method: ``<metric>_mean`` / ``<metric>_std``, timings, status), ``leaderboard_folds.csv`` (one
row per method, seed and fold, with the patients of the fold), ``leaderboard.md`` (the command,
commit, machine, cohort and protocol, then the tables) and ``leaderboard.png`` (F1 / NLR / DLR,
CPM@Radius / CPM@10mm and MED with error bars).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import math
import os
import platform
import shlex
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lngraph.baselines.base import REGISTRY, Method
from lngraph.baselines.registration import RegistrationParams
from lngraph.io.atomic import atomic_path, write_text_atomic
from lngraph.io.cohort import Cohort, read_cohort
from lngraph.metrics import mean_std_over_folds, pair_counts, summarize

#: (metric key, column label, unit) of every DESIGN §5 metric, in table order.
METRICS = (
    ("precision", "Precision", "%"), ("recall", "Recall", "%"), ("f1", "F1", "%"),
    ("nlr", "NLR", "%"), ("new_precision", "new prec.", "%"), ("dlr", "DLR", "%"),
    ("disappeared_precision", "disapp. prec.", "%"), ("cpm_radius", "CPM@Radius", "%"),
    ("cpm_10mm", "CPM@10mm", "%"), ("med_mm", "MED", "mm"),
)
#: Timing columns: (key, label, unit).
TIMINGS = (("seconds_per_pair", "s/pair", "s"), ("train_seconds", "train", "s"))
#: Leaderboard order of the built-in methods; other registered methods follow by name.
METHOD_ORDER = ("nearest", "pointset", "registration", "lgm", "dlt_lite", "sam_lite",
                "tlt_lite", "abl_appearance", "abl_seag", "abl_te", "abl_se", "abl_scb",
                "asymmetric", "asymmetric_geometry")
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


def load_registry(extra: Sequence[str] = ()) -> dict[str, type[Method]]:
    """Import every module that registers methods and return the registry.

    Args:
        extra: more modules to import — dotted module names or paths of ``.py`` files —
            whose ``@register`` classes join the registry.

    Raises:
        ValueError: an extra ``.py`` file or module that cannot be found.
    """
    importlib.import_module("lngraph.baselines")
    importlib.import_module("lngraph.train")
    importlib.import_module("lngraph.train.ablations")
    for item in extra:
        path = Path(item)
        if path.suffix == ".py":
            if not path.is_file():
                raise ValueError(f"method file {item} does not exist")
            spec = importlib.util.spec_from_file_location(f"lngraph_user_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            try:
                importlib.import_module(item)
            except ModuleNotFoundError as exc:
                raise ValueError(f"cannot import method module {item!r}: {exc}") from exc
    return REGISTRY


def method_names(names: str | Sequence[str]) -> list[str]:
    """``"all"`` (or ``["all"]``) → every registered name in leaderboard order; otherwise the
    given names, checked against the registry (call :func:`load_registry` first).

    Raises:
        ValueError: an unknown name, listing the known ones.
    """
    names = [names] if isinstance(names, str) else list(names)
    if names == ["all"]:
        known = [n for n in METHOD_ORDER if n in REGISTRY]
        return known + sorted(set(REGISTRY) - set(known))
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; registered: "
                         f"{', '.join(method_names('all'))}")
    return list(dict.fromkeys(names))


def build_method(name: str, *, seed: int = 0, max_epochs: int | None = None,
                 options: Mapping | None = None) -> Method:
    """A fresh instance of method ``name`` (see "Constructor arguments" in the module doc)."""
    cls = REGISTRY[name]
    kwargs = dict(options or {})
    params = inspect.signature(cls).parameters
    var_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if "seed" in params or var_keyword:
        kwargs.setdefault("seed", seed)
    if max_epochs is not None:
        for key in ("max_epochs", "epochs"):
            if key in params:
                kwargs[key] = min(max_epochs, kwargs.get(key, max_epochs))
                break
    return cls(**kwargs)


def _predict(method: Method, pairs: list) -> list:
    many = getattr(method, "predict_many", None)
    if many is not None:
        return many(pairs) if pairs else []
    return [method.predict(p) for p in pairs]


def _fold_row(method: Method, cohort: Cohort, split, pair_mode: str) -> dict:
    """Fit on the split's training patients (select on validation), score its test pairs."""
    train, val = cohort.subset(split.train), cohort.subset(split.val) if split.val else None
    start = time.perf_counter()
    method.fit(train, val)
    train_seconds = time.perf_counter() - start
    pairs = cohort.pairs(pair_mode, split.test)
    start = time.perf_counter()
    predictions = _predict(method, pairs)
    predict_seconds = time.perf_counter() - start
    metrics = summarize([pair_counts(p, q) for p, q in zip(pairs, predictions, strict=True)])
    return {**metrics, "train_seconds": train_seconds, "predict_seconds": predict_seconds,
            "seconds_per_pair": predict_seconds / len(pairs) if pairs else math.nan}


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
                    source: str | None = None, progress: bool = True) -> pd.DataFrame:
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
        extra_modules: passed to :func:`load_registry`.
        command: the command line recorded in ``leaderboard.md`` (default: this process's).
        stem, title: output file names (``<stem>.csv``, ...) and the Markdown title.
        sections: more Markdown lines for the ``.md``, made from the
            :func:`summarize_leaderboard` frame (e.g. the paper's tables).
        source: where the cohort comes from, for the ``.md`` (default: its folder).
        progress: one line per fold on stderr.

    Returns:
        One row per (method, seed, fold): ``method, status`` (``ok | skipped | failed``),
        ``note, seed, fold``, the patient counts and ids of the split, every
        :func:`~lngraph.metrics.summarize` key, ``train_seconds, predict_seconds,
        seconds_per_pair``. A skipped method has one row with ``seed``/``fold`` empty.
    """
    started = time.perf_counter()
    provenance = {"commit": commit(), "machine": machine()}
    load_registry(extra_modules)
    names = method_names(methods)
    if not names:
        raise ValueError("no methods to run")
    if not isinstance(cohort, Cohort):
        cohort = read_cohort(cohort)
    if quick:
        folds, seeds = min(folds, QUICK_FOLDS), list(seeds)[:1]
        max_epochs = min(max_epochs or QUICK_MAX_EPOCHS, QUICK_MAX_EPOCHS)
        given = options or {}
        options = {name: {**QUICK_OPTIONS.get(name, {}), **given.get(name, {})}
                   for name in {*QUICK_OPTIONS, *given}}
    options = dict(options or {})
    from lngraph.train.folds import patient_folds

    splits = {seed: patient_folds(cohort.patients, folds, seed, val_fraction)
              for seed in seeds}
    rows = []
    for name in names:
        def build(seed: int, name=name) -> Method:
            return build_method(name, seed=seed, max_epochs=max_epochs,
                                options=options.get(name))

        try:
            needs_images = build(seeds[0]).needs_images
        except Exception as exc:  # noqa: BLE001 - a crash is a result to record
            rows.append(_failed({"method": name}, exc, progress))
            needs_images = None
        if needs_images and not cohort.has_images:
            rows.append({"method": name, "status": "skipped",
                         "note": "needs images; the cohort is geometry-only"})
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
                               **_fold_row(build(seed), cohort, split, pair_mode)}
                    except Exception as exc:  # noqa: BLE001 - a crash is a result to record
                        rows.append(_failed(base, exc, progress))
                        continue
                    _log(progress, f"{name} seed {seed} fold {k}: F1 {row['f1']:.3f} NLR "
                         f"{row['nlr']:.3f} DLR {row['dlr']:.3f}, train "
                         f"{row['train_seconds']:.1f} s, {row['seconds_per_pair']:.3f} s/pair")
                    rows.append(row)
        if out_dir is not None:
            header = _header(cohort, source, names, folds, seeds, quick, max_epochs, options,
                             val_fraction, pair_mode, command, provenance,
                             time.perf_counter() - started)
            write_leaderboard(pd.DataFrame(rows), out_dir, header, stem, title, sections)
    return pd.DataFrame(rows)


def _failed(base: dict, exc: Exception, progress: bool) -> dict:
    """The row of a method that raised ``exc`` (the traceback goes to stderr)."""
    traceback.print_exception(exc, file=sys.stderr)
    note = f"{type(exc).__name__}: {exc}".splitlines()[0]
    where = f" seed {base['seed']} fold {base['fold']}" if "fold" in base else ""
    _log(progress, f"{base['method']}{where}: FAILED ({note})")
    return {**base, "status": "failed", "note": note}


def summarize_leaderboard(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per method (in ``rows``' order): mean and std over its ``ok`` folds of every
    metric and timing (``<key>_mean``, ``<key>_std``), ``folds`` run, ``status`` and ``note``
    (``failed`` when any fold failed), and ``n_gt_matches`` / ``n_cpm_missed`` per seed (the
    GT pairs scored and those without a predicted location)."""
    out = []
    for name, group in rows.groupby("method", sort=False):
        ok = group[group["status"] == "ok"]
        failed = group[group["status"] == "failed"]
        entry = {"method": name, "folds": len(ok)}
        if len(group) == 1 and group["status"].iloc[0] == "skipped":
            entry.update(status="skipped", note=group["note"].iloc[0])
        elif len(failed):
            entry.update(status="failed", note=f"failed in {len(failed)} of {len(group)} "
                                               f"folds: {failed['note'].iloc[0]}")
        else:
            entry.update(status="ok", note="")
        keys = [k for k, _, _ in METRICS + TIMINGS]
        stats = mean_std_over_folds(ok[keys].to_dict("records")) if len(ok) else {}
        for key in keys:
            mean, std = stats.get(key, (math.nan, math.nan))
            entry[f"{key}_mean"], entry[f"{key}_std"] = mean, std
        n_seeds = max(ok["seed"].nunique(), 1) if len(ok) else 1
        for key in ("n_gt_matches", "n_cpm_missed"):
            entry[key] = ok[key].sum() / n_seeds if len(ok) else math.nan
        out.append(entry)
    return pd.DataFrame(out)


def _cell(mean: float, std: float, unit: str) -> str:
    if not np.isfinite(mean):
        return "n/a"
    scale, digits = (100, 1) if unit == "%" else (1, 3 if unit == "s" and mean < 1 else 1)
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


def markdown_table(summary: pd.DataFrame, methods: Sequence[str] | None = None,
                   columns: Sequence[tuple[str, str, str]] = METRICS + TIMINGS,
                   labels: Mapping[str, str] | None = None, missed: bool = False
                   ) -> list[str]:
    """Markdown lines: one row per method (``methods`` order; default every method of
    ``summary`` that was not skipped), each ``columns`` entry as mean ± std; ``labels``
    renames methods; ``missed`` adds the GT pairs without a predicted location (per seed)."""
    indexed = summary.set_index("method")
    if methods is None:
        methods = summary.loc[summary["status"] != "skipped", "method"].tolist()
    methods = [m for m in methods if m in indexed.index]
    labels = labels or {}
    lines = ["| method | " + " | ".join(f"{label} ({unit})" for _, label, unit in columns)
             + (" | CPM missed / GT pairs |" if missed else " |"),
             "|---|" + "---|" * (len(columns) + missed)]
    for name in methods:
        row = indexed.loc[name]
        cells = [_cell(row[f"{key}_mean"], row[f"{key}_std"], unit) for key, _, unit in columns]
        if missed:
            cells.append(f"{row['n_cpm_missed']:g} / {row['n_gt_matches']:g}")
        lines.append(f"| {labels.get(name, f'`{name}`')} | " + " | ".join(cells) + " |")
    return lines


def _status_lines(summary: pd.DataFrame) -> list[str]:
    other = summary[summary["status"] != "ok"]
    if other.empty:
        return ["Every method ran on every fold."]
    return ["| method | status | note |", "|---|---|---|",
            *[f"| `{r.method}` | {r.status} | {r.note.replace('|', '/')} |"
              for r in other.itertuples()]]


def _fold_lines(rows: pd.DataFrame) -> list[str]:
    ok = rows[rows["status"] == "ok"]
    lines = ["| method | seed | fold | train/val/test patients | test pairs | F1 (%) | NLR (%) "
             "| DLR (%) | CPM missed / GT pairs | train (s) | s/pair |", "|---" * 11 + "|"]
    for r in ok.itertuples():
        lines.append(
            f"| `{r.method}` | {int(r.seed)} | {int(r.fold)} | {int(r.train_patients)}/"
            f"{int(r.val_patients)}/{int(r.test_patients)} | {int(r.n_pairs)} | "
            f"{_pct(r.f1)} | {_pct(r.nlr)} | {_pct(r.dlr)} | {int(r.n_cpm_missed)} / "
            f"{int(r.n_gt_matches)} | {r.train_seconds:.1f} | {r.seconds_per_pair:.3f} |")
    return lines


def _pct(value: float) -> str:
    return f"{100 * value:.1f}" if np.isfinite(value) else "n/a"


def commit() -> str:
    """``git rev-parse --short HEAD`` of the checkout holding lngraph, or ``"unknown"``."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, cwd=Path(__file__).parent,
                              timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> str:
    """Platform, CPUs, torch threads, GPU and load average, in one line."""
    import torch

    text = (f"{platform.platform()}, {os.cpu_count()} CPUs, torch {torch.get_num_threads()} "
            "thread(s)")
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(0)}"
    if hasattr(os, "getloadavg"):
        text += f"; load average {os.getloadavg()[0]:.1f}"
    return text


def describe_cohort(cohort: Cohort, pair_mode: str = "consecutive",
                    source: str | None = None) -> str:
    """Source (default: the folder), patients, scans, nodes, scored pairs, GT matches and
    images, in one line."""
    pairs = cohort.pairs(pair_mode)
    where = f"{source}: " if source else ""
    if cohort.root is not None and not source:
        root = Path(cohort.root).resolve()
        where = f"`{root.relative_to(Path.cwd()) if root.is_relative_to(Path.cwd()) else root}`: "
    return (f"{where}{len(cohort.patients)} patients, {len(cohort.scans)} scans, "
            f"{sum(len(s.nodes) for s in cohort.scans.values())} nodes, {len(pairs)} "
            f"{pair_mode} scan pairs with {sum(len(p.gt_matches()) for p in pairs)} "
            f"ground-truth matches, {sum(len(p.gt_disappeared()) for p in pairs)} disappeared "
            f"and {sum(len(p.gt_new()) for p in pairs)} new nodes; "
            f"{'with' if cohort.has_images else 'without'} images")


def _value_text(value) -> str:
    """``repr`` of a value; a dataclass shows only the fields that differ from its defaults."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        default = type(value)()
        changed = ", ".join(f"{f.name}={getattr(value, f.name)!r}"
                            for f in dataclasses.fields(value)
                            if getattr(value, f.name) != getattr(default, f.name))
        return f"{type(value).__name__}({changed})"
    return repr(value)


def _options_text(options: Mapping[str, Mapping], names: Sequence[str]) -> str:
    used = {name: values for name, values in options.items() if name in names and values}
    if not used:
        return "defaults"
    return "; ".join(f"`{name}`: " + ", ".join(f"{k}={_value_text(v)}" for k, v in values.items())
                     for name, values in used.items())


def _header(cohort: Cohort, source, names, folds, seeds, quick, max_epochs, options,
            val_fraction, pair_mode, command, provenance, seconds) -> list[str]:
    return [
        f"- command: `{command or shlex.join(sys.argv)}`",
        f"- commit: `{provenance['commit']}` at the start (the working tree may hold "
        "uncommitted changes)",
        f"- machine: {provenance['machine']} (at the start)",
        f"- cohort: {describe_cohort(cohort, pair_mode, source)}",
        f"- protocol: {folds}-fold patient-level cross-validation, seed(s) "
        f"{', '.join(map(str, seeds))} (each reshuffles the folds and seeds the methods); "
        f"{val_fraction:.0%} of each fold's training patients validate (selection only); "
        f"test = the held-out patients' {pair_mode} scan pairs; metrics pooled per fold, "
        "mean ± std over folds" + (" and seeds" if len(seeds) > 1 else ""),
        f"- budget: {'quick; ' if quick else ''}max epochs "
        f"{max_epochs if max_epochs is not None else 'each method default'}; options: "
        f"{_options_text(options, names)}",
        f"- methods: {', '.join(f'`{n}`' for n in names)}; wall time so far {seconds:.0f} s",
    ]


def leaderboard_markdown(rows: pd.DataFrame, header: Sequence[str],
                         title: str = "Leaderboard",
                         sections: Callable[[pd.DataFrame], list[str]] | None = None) -> str:
    """The ``leaderboard.md`` text: header lines, the mean ± std table, skipped and failed
    methods, ``sections(summary)``, the per-fold table."""
    summary = summarize_leaderboard(rows)
    return "\n".join([
        f"# {title}", "", *header, "",
        "## Test folds (mean ± std over folds)", "",
        "Precision/recall/F1 judge predicted pairs; NLR/DLR are the new/disappeared rates and "
        "'prec.' their precisions; CPM and MED use each ground-truth pair's predicted location "
        "(the predicted partner's centre, or a tracker's point); s/pair is inference time, "
        "train the fit time per fold.", "",
        *markdown_table(summary, missed=True), "",
        "## Skipped and failed", "",
        *_status_lines(summary), "",
        *(sections(summary) if sections is not None else []),
        "## Per fold", "",
        *_fold_lines(rows), "",
    ])


def plot_leaderboard(summary: pd.DataFrame, path: str | os.PathLike) -> Path:
    """PNG of the ``ok`` methods: F1 / NLR / DLR, CPM@Radius / CPM@10mm (%) and MED (mm),
    mean ± std over folds; written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ok = summary[summary["status"] != "skipped"].reset_index(drop=True)
    panels = (("Matching (%)", (("f1", "F1"), ("nlr", "NLR"), ("dlr", "DLR")), 100),
              ("Centre points (%)", (("cpm_radius", "CPM@Radius"), ("cpm_10mm", "CPM@10mm")),
               100),
              ("Mean error distance (mm)", (("med_mm", "MED"),), 1))
    figure = Figure(figsize=(max(8.0, 0.9 * len(ok) + 3), 9), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(3, 1, sharex=True)
    x = np.arange(len(ok))
    for ax, (title, bars, scale) in zip(axes, panels, strict=True):
        width = 0.8 / len(bars)
        for b, (key, label) in enumerate(bars):
            ax.bar(x + (b - (len(bars) - 1) / 2) * width, scale * ok[f"{key}_mean"].fillna(0),
                   width, yerr=scale * ok[f"{key}_std"].fillna(0), capsize=2, label=label)
        ax.set_title(title, loc="left")
        ax.grid(axis="y", alpha=0.3)
        if len(bars) > 1:
            ax.legend(loc="lower right", fontsize="small", ncols=len(bars))
    axes[0].set_ylim(0, 105)
    axes[1].set_ylim(0, 105)
    axes[-1].set_xticks(x, ok["method"], rotation=30, ha="right")
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    return Path(path)


def write_csv(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """``frame`` as CSV, atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return Path(path)


def write_leaderboard(rows: pd.DataFrame, out_dir: str | os.PathLike,
                      header: Sequence[str] = (), stem: str = "leaderboard",
                      title: str = "Leaderboard",
                      sections: Callable[[pd.DataFrame], list[str]] | None = None) -> Path:
    """Write ``<stem>.csv``, ``<stem>_folds.csv``, ``<stem>.md`` and ``<stem>.png`` of
    ``rows`` (as :func:`run_leaderboard` returns) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize_leaderboard(rows)
    write_csv(summary, out / f"{stem}.csv")
    write_csv(rows, out / f"{stem}_folds.csv")
    write_text_atomic(out / f"{stem}.md", leaderboard_markdown(rows, header, title, sections))
    plot_leaderboard(summary, out / f"{stem}.png")
    return out
