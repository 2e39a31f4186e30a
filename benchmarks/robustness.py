"""Robustness to patient repositioning: the F1 drop when one scan of every test pair is rotated.

A ``default`` synthetic cohort of ``--patients`` patients (:func:`lngraph.synth.generate_cohort`,
cached under ``benchmarks/.data/robustness-*``; ``--geometry-only`` drops the images) is split
into ``--folds`` patient-level folds (seed ``--seed``, as
:func:`lngraph.bench.leaderboard.run_leaderboard` splits it). Each method is fitted and
selected once per fold on the unrotated training patients
(:func:`lngraph.bench.leaderboard.fold_row`), and that one fitted method scores the fold's
test pairs twice (:func:`lngraph.bench.leaderboard.score_pairs`), so that the drop is the
rotation's alone, not a second training's:

* **plain** — the test pairs as they are;
* **rotated** — the test pairs taken from a copy of the cohort
  (:func:`lngraph.synth.rotate_cohort`, in a temporary folder) in which every scan whose
  timepoint index within its patient is odd is rotated rigidly by ``--angle`` degrees
  (default 10) about a uniformly random axis through its node centroid, as if the patient had
  lain rotated in the scanner: image voxels unchanged, direction cosines and origin rotated,
  node centres rotated with them. Every consecutive pair therefore has exactly one rotated
  scan.

Per method: F1, NLR and DLR as mean ± std over folds (each fold's metrics pooled over its test
pairs), plain and rotated, and the drop (plain − rotated, per fold, then mean ± std over
folds: positive = worse when rotated).

Run: ``python benchmarks/robustness.py`` (writes ``benchmarks/results/robustness.{md,csv}``);
``--geometry-only`` for node tables without images; a tiny check:
``python benchmarks/robustness.py --patients 6 --methods nearest --folds 2 --out /tmp/rob``.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from cohorts import cached_cohort

from lngraph.bench import build_method, method_names
from lngraph.bench.leaderboard import check_same_scans, failed_row, fold_row, score_pairs
from lngraph.bench.report import commit, describe_cohort, machine, write_csv
from lngraph.data.folds import patient_folds
from lngraph.io import write_text_atomic
from lngraph.io.cohort import Cohort, read_cohort
from lngraph.metrics import mean_std_over_folds
from lngraph.synth import rotate_cohort

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DATA = HERE / ".data"
STEM = "robustness"
#: (key, label) of the metrics compared.
METRICS = (("f1", "F1"), ("nlr", "NLR"), ("dlr", "DLR"))
RUNS = ("plain", "rotated")


def study_cohort(data: Path, patients: int, seed: int, images: bool, workers: int) -> Cohort:
    """The study's cached ``default`` cohort, ``<data>/robustness-p<N>-s<seed>[-geo]``."""
    return cached_cohort(data / f"robustness-p{patients}-s{seed}{'' if images else '-geo'}",
                         patients, seed, images=images, workers=workers)


def paired_runs(cohort: Cohort, rotated: Cohort, methods, folds: int, seed: int,
                max_epochs: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per (method, fold): fit once on ``cohort``'s training patients, score the test pairs of
    ``cohort`` and of ``rotated`` (same patients and scan ids). Returns the plain and the
    rotated rows, in :func:`~lngraph.bench.leaderboard.run_leaderboard`'s layout."""
    check_same_scans(cohort, rotated)
    splits = patient_folds(cohort.patients, folds, seed)   # run_leaderboard's split
    plain_rows, rotated_rows = [], []
    for name in method_names(methods):
        if build_method(name, seed=seed).needs_images and not cohort.has_images:
            for rows in (plain_rows, rotated_rows):
                rows.append({"method": name, "status": "skipped",
                             "note": "needs images; the cohort is geometry-only"})
            continue
        for k, split in enumerate(splits):
            base = {"method": name, "seed": seed, "fold": k, "n_pairs": 0,
                    "test_ids": " ".join(split.test)}
            try:
                method = build_method(name, seed=seed, max_epochs=max_epochs)
                plain = fold_row(method, cohort, split, "consecutive")
                turned = score_pairs(method, rotated.pairs("consecutive", split.test))
            except Exception as exc:  # noqa: BLE001 - a crash is a result to record
                failed = failed_row(base, exc)
                plain_rows.append(failed)
                rotated_rows.append(dict(failed))
                continue
            plain_rows.append({**base, "status": "ok", "note": "", **plain})
            rotated_rows.append({**base, "status": "ok", "note": "", **turned})
            print(f"[robustness] {name} fold {k}: F1 plain {plain['f1']:.3f}, rotated "
                  f"{turned['f1']:.3f} (train {plain['train_seconds']:.1f} s)",
                  file=sys.stderr, flush=True)
    return pd.DataFrame(plain_rows), pd.DataFrame(rotated_rows)


def compare(plain: pd.DataFrame, rotated: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-fold rows of both runs side by side, and one summary row per method.

    The folds of a method are paired by ``(seed, fold)``; the drop is computed per fold and
    only over folds that ran in both runs."""
    key = ["method", "seed", "fold"]
    metric_keys = [k for k, _ in METRICS]
    ok = [r[r["status"] == "ok"].reindex(columns=key + ["test_ids", "n_pairs", *metric_keys])
          for r in (plain, rotated)]
    folds = ok[0].merge(ok[1].drop(columns=["test_ids", "n_pairs"]), on=key,
                        suffixes=("_plain", "_rotated"))
    for k in metric_keys:
        folds[f"{k}_drop"] = folds[f"{k}_plain"] - folds[f"{k}_rotated"]
    summary = []
    for name in dict.fromkeys(plain["method"]):
        entry = {"method": name}
        for run, rows in zip(RUNS, (plain, rotated), strict=True):
            mine = rows[rows["method"] == name]
            statuses = set(mine["status"])
            entry[f"status_{run}"] = ("ok" if statuses == {"ok"} else
                                      "skipped" if "skipped" in statuses else "failed")
            bad = mine[mine["status"] != "ok"]
            entry[f"note_{run}"] = bad["note"].iloc[0] if len(bad) else ""
        mine = folds[folds["method"] == name]
        entry["folds"] = len(mine)
        stats = mean_std_over_folds(mine.drop(columns=key + ["test_ids"]).to_dict("records"))
        for k in metric_keys:
            for suffix in (*RUNS, "drop"):
                mean, std = stats.get(f"{k}_{suffix}", (math.nan, math.nan))
                entry[f"{k}_{suffix}_mean"], entry[f"{k}_{suffix}_std"] = mean, std
        summary.append(entry)
    return folds, pd.DataFrame(summary)


def _cell(mean: float, std: float, signed: bool = False) -> str:
    if not np.isfinite(mean):
        return "n/a"
    spread = f"{100 * std:.1f}" if np.isfinite(std) else "n/a"
    return f"{100 * mean:{'+' if signed else ''}.1f} ± {spread}"


def markdown(summary: pd.DataFrame, folds: pd.DataFrame, header: list[str], title: str
             ) -> str:
    lines = [f"# {title}", "", *header, "",
             "## Plain vs rotated (mean ± std over folds, %)", "",
             "Drop = plain − rotated, per fold (the same fitted method), then mean ± std over "
             "folds (positive: worse when one scan of each pair is rotated). NLR/DLR are the "
             "new/disappeared rates; a fold without new (disappeared) nodes has no NLR (DLR) "
             "and is left out of it.", "",
             "| method | folds | " + " | ".join(
                 f"{label} plain | {label} rotated | {label} drop" for _, label in METRICS)
             + " |",
             "|---|---|" + "---|" * (3 * len(METRICS))]
    for r in summary.itertuples():
        if r.status_plain == "skipped":
            continue
        row = r._asdict()
        cells = [_cell(row[f"{k}_{s}_mean"], row[f"{k}_{s}_std"], signed=s == "drop")
                 for k, _ in METRICS for s in (*RUNS, "drop")]
        lines.append(f"| `{r.method}` | {r.folds} | " + " | ".join(cells) + " |")
    other = summary[(summary["status_plain"] != "ok") | (summary["status_rotated"] != "ok")]
    lines += ["", "## Skipped and failed", ""]
    if other.empty:
        lines.append("Every method ran on every fold of both runs.")
    else:
        lines += ["| method | plain | rotated |", "|---|---|---|"]
        lines += [f"| `{r.method}` | {r.status_plain} {r.note_plain} | "
                  f"{r.status_rotated} {r.note_rotated} |".replace("  |", " |")
                  for r in other.itertuples()]
    lines += ["", "## Per fold", "",
              "| method | fold | test pairs | " + " | ".join(
                  f"{label} plain | {label} rotated" for _, label in METRICS) + " |",
              "|---|---|---|" + "---|" * (2 * len(METRICS))]
    for r in folds.itertuples():
        row = r._asdict()
        cells = [f"{100 * row[f'{k}_{s}']:.1f}" if np.isfinite(row[f"{k}_{s}"]) else "n/a"
                 for k, _ in METRICS for s in RUNS]
        lines.append(f"| `{r.method}` | {int(r.fold)} | {int(r.n_pairs)} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _command() -> str:
    return shlex.join(["python", "benchmarks/robustness.py", *sys.argv[1:]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="nearest,pointset,lgm",
                        help="comma-separated registered method names (or 'all')")
    parser.add_argument("--patients", type=int, default=20, help="synthetic cohort size")
    parser.add_argument("--max-epochs", type=int, default=10,
                        help="epoch cap of the learned methods")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--angle", type=float, default=10.0,
                        help="rotation of one scan of each pair, degrees")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the cohort, the folds, the methods and the rotation axes")
    parser.add_argument("--geometry-only", action="store_true",
                        help="drop the images (node tables only)")
    parser.add_argument("--workers", type=int, default=2, help="synth worker processes")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--data", type=Path, default=DATA, help="cohort cache folder")
    parser.add_argument("--out", type=Path, default=RESULTS, help="output folder")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    methods = methods[0] if methods == ["all"] else methods

    started = time.perf_counter()
    provenance = {"commit": commit(), "machine": machine()}
    cohort = study_cohort(args.data, args.patients, args.seed, not args.geometry_only,
                          args.workers)
    with tempfile.TemporaryDirectory(prefix="lngraph-rotated-") as tmp:
        folder = rotate_cohort(cohort, Path(tmp) / "rotated", args.angle, args.seed)
        rotated_cohort = read_cohort(folder)
        rotated_text = describe_cohort(rotated_cohort, source="the rotated copy")
        plain, rotated = paired_runs(cohort, rotated_cohort, methods, args.folds, args.seed,
                                     args.max_epochs)
    folds, summary = compare(plain, rotated)

    names = list(dict.fromkeys(plain["method"]))
    header = [
        f"- command: `{_command()}`",
        f"- commit: `{provenance['commit']}` at the start (the working tree may hold "
        "uncommitted changes)",
        f"- machine: {provenance['machine']} (at the start)",
        f"- cohort: {describe_cohort(cohort)}",
        f"- rotated test scans: every scan with an odd timepoint index within its patient "
        f"(one scan of every consecutive pair) rotated rigidly by {args.angle:g}° about a "
        f"uniformly random axis (seed {args.seed}) through its node centroid; image voxels "
        f"unchanged, direction and origin rotated, node centres with them ({rotated_text})",
        f"- protocol: {args.folds}-fold patient-level cross-validation, seed {args.seed}; "
        "each method fitted and selected once per fold on the unrotated training patients, "
        "and that fitted method scores the held-out patients' consecutive scan pairs twice: "
        "plain and from the rotated copy; metrics pooled per fold, mean ± std over folds",
        f"- budget: max epochs {args.max_epochs}; methods: "
        f"{', '.join(f'`{n}`' for n in names)}; wall time {time.perf_counter() - started:.0f} s",
    ]
    kind = "geometry-only" if args.geometry_only else "with images"
    title = (f"Robustness to repositioning: `default` synthetic cohort ({kind}), "
             f"{args.patients} patients, one scan per pair rotated {args.angle:g}°")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = STEM + ("_geometry" if args.geometry_only else "")
    write_csv(summary, args.out / f"{stem}.csv")
    text = markdown(summary, folds, header, title)
    write_text_atomic(args.out / f"{stem}.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
