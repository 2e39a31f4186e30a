"""What a leaderboard run writes: the per-method summary, the Markdown report, the plot and the
CSV files.

:func:`write_leaderboard` writes, into one folder and each file atomically, for the rows
:func:`~lngraph.bench.leaderboard.run_leaderboard` returns:

* ``<stem>.csv`` — :func:`summarize_leaderboard`: one row per method, ``<metric>_mean`` /
  ``<metric>_std`` over its folds (the sample standard deviation, ``ddof=1``; empty with a
  single fold) for every entry of :data:`METRICS` and :data:`TIMINGS`, ``status`` and
  ``note``;
* ``<stem>_folds.csv`` — the rows themselves: one per method, seed and fold, with the patients
  of the fold;
* ``<stem>.md`` — :func:`leaderboard_markdown`: the header lines (:func:`header_lines`: the
  command, :func:`commit`, :func:`machine`, :func:`describe_cohort` and the protocol), the
  mean ± std table (:func:`markdown_table`), skipped and failed methods, extra sections, then
  every fold;
* ``<stem>.png`` — :func:`plot_leaderboard`: F1 / NLR / DLR, CPM@Radius / CPM@10mm and MED
  with error bars.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lngraph.io.atomic import atomic_path, write_text_atomic
from lngraph.io.cohort import Cohort
from lngraph.metrics import mean_std_over_folds

#: (metric key, column label, unit) of every matching metric
#: (:func:`~lngraph.metrics.summarize`), in table order.
METRICS = (
    ("precision", "Precision", "%"), ("recall", "Recall", "%"), ("f1", "F1", "%"),
    ("nlr", "NLR", "%"), ("new_precision", "new prec.", "%"), ("dlr", "DLR", "%"),
    ("disappeared_precision", "disapp. prec.", "%"), ("cpm_radius", "CPM@Radius", "%"),
    ("cpm_10mm", "CPM@10mm", "%"), ("med_mm", "MED", "mm"),
)
#: Timing columns: (key, label, unit).
TIMINGS = (("seconds_per_pair", "s/pair", "s"), ("train_seconds", "train", "s"))


def summarize_leaderboard(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per method (in ``rows``' order): mean and sample standard deviation over its
    ``ok`` folds (:func:`~lngraph.metrics.mean_std_over_folds`; NaN with one fold) of every
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
    """``mean ± std`` scaled to ``unit``; ``n/a`` for a missing mean, ``mean ± n/a`` for a
    missing spread (a single fold has no sample standard deviation)."""
    if not np.isfinite(mean):
        return "n/a"
    scale, digits = (100, 1) if unit == "%" else (1, 3 if unit == "s" and mean < 1 else 1)
    spread = f"{scale * std:.{digits}f}" if np.isfinite(std) else "n/a"
    return f"{scale * mean:.{digits}f} ± {spread}"


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
    """``repr`` of a value; a path is shown as text, a dataclass only with the fields that
    differ from its defaults."""
    if isinstance(value, os.PathLike):
        return f"`{os.fspath(value)}`"
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


def header_lines(cohort: Cohort, *, names: Sequence[str], folds: int, seeds: Sequence[int],
                 quick: bool, max_epochs: int | None, options: Mapping[str, Mapping],
                 val_fraction: float, pair_mode: str, provenance: Mapping[str, str],
                 seconds: float, command: str | None = None, source: str | None = None
                 ) -> list[str]:
    """The ``.md`` header: command (default: this process's), ``provenance['commit']`` and
    ``provenance['machine']`` (:func:`commit`, :func:`machine` at the start), the cohort, the
    protocol, the budget and options, the methods and the wall time so far."""
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
        "mean ± sample standard deviation over folds"
        + (" and seeds" if len(seeds) > 1 else ""),
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
