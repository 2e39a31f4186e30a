"""Quality of lngraph's matcher: patient-level K-fold CV beside ``nearest``.

A ``default`` synthetic cohort (``lngraph.synth.generate_cohort``, cached under
``benchmarks/.data/``) is split into ``--folds`` patient-level folds
(:func:`lngraph.train.patient_folds`; each fold's validation patients come from its training
patients). Per fold the matcher (``--config``, default ``lite``) is trained with early stopping
on validation and scored on the held-out patients' consecutive scan pairs; ``nearest`` is
scored on exactly the same pairs. Every docs/design.md, *Metrics* metric is pooled per fold and
reported as
mean ± sample standard deviation (``ddof=1``) over folds, with training throughput. Nothing is
selected on test folds: ``--set key=value`` changes config values, and the validation columns
are what to compare when choosing them.

Run: ``python benchmarks/model_quality.py [--patients 100 --folds 5 --max-epochs E]`` (writes
``benchmarks/results/model_quality.md`` and ``.csv``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import yaml
from provenance import commit

from lngraph.baselines.nearest import Nearest
from lngraph.data.cache import precompute_crops
from lngraph.io import read_cohort, write_text_atomic
from lngraph.io.cohort import Cohort
from lngraph.metrics import evaluate_predictions, mean_std_over_folds
from lngraph.models import MatcherConfig, load_checkpoint, predict_pairs, preset
from lngraph.train import fit_matcher, patient_folds
from lngraph.train.datamodule import config_for_cohort

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "model_quality"
DATA = HERE / ".data"
#: (metric key, column label, unit): every metric (docs/design.md, *Metrics*).
METRICS = (("precision", "Precision", "%"), ("recall", "Recall", "%"), ("f1", "F1", "%"),
           ("nlr", "NLR", "%"), ("new_precision", "new prec.", "%"), ("dlr", "DLR", "%"),
           ("disappeared_precision", "disapp. prec.", "%"), ("cpm_radius", "CPM@Radius", "%"),
           ("cpm_10mm", "CPM@10mm", "%"), ("med_mm", "MED", "mm"))


def machine() -> str:
    text = f"{platform.platform()}, {os.cpu_count()} CPUs, torch {torch.get_num_threads()} " \
           "thread(s)"
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(0)}"
    return text + f"; load average at start {os.getloadavg()[0]:.1f}"


def synthetic_cohort(patients: int, seed: int, preset_name: str, workers: int,
                     regenerate: bool = False) -> Cohort:
    """The cached cohort ``benchmarks/.data/<preset>-p<patients>-s<seed>``, generated when
    absent, when its ``synth.json`` records other settings, or when ``regenerate`` (after a
    change of the generator's code)."""
    from lngraph.synth import generate_cohort, get_preset

    folder = DATA / f"{preset_name}-p{patients}-s{seed}"
    meta = folder / "synth.json"
    wanted = (patients, seed, json.loads(json.dumps(asdict(get_preset(preset_name)))))
    stored = json.loads(meta.read_text(encoding="utf-8")) if meta.is_file() else None
    if regenerate or stored is None or _identity(stored) != wanted:
        generate_cohort(folder, patients, seed, preset_name, workers=workers, progress=True)
    return read_cohort(folder)


def _identity(meta: dict) -> tuple:
    return meta["patients"], meta["seed"], meta["preset"]


def parse_overrides(items: list[str]) -> dict:
    """``section.key=value`` strings (values parsed as YAML) → ``{dotted key: value}``."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set wants section.key=value, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def load_config(text: str, overrides: dict) -> MatcherConfig:
    base = preset(text) if text in ("lite", "paper") else MatcherConfig.from_yaml(text)
    return base.with_values(overrides) if overrides else base


def pair_metrics(cohort: Cohort, pairs, predictions) -> dict:
    return evaluate_predictions(cohort, {(p.src.scan_id, p.dst.scan_id): q
                                         for p, q in zip(pairs, predictions, strict=True)}, pairs)


def cross_validate(cohort: Cohort, config: MatcherConfig, *, folds: int, split_seed: int,
                   max_epochs: int | None, runs: Path, trainer: dict, cache_dir=None,
                   progress: bool = False) -> list[dict]:
    """One row per (method, fold): the test metrics, plus validation and timing columns."""
    rows = []
    nearest = Nearest()
    for k, split in enumerate(patient_folds(cohort.patients, folds, split_seed,
                                            config.protocol.val_fraction)):
        test_pairs = cohort.pairs("consecutive", split.test)
        start = time.perf_counter()
        fit = fit_matcher(cohort, config, train_patients=split.train,
                          val_patients=split.val, out_dir=runs / f"fold{k}",
                          max_epochs=max_epochs, progress=progress, cache_dir=cache_dir,
                          **trainer)
        model, model_config, _ = load_checkpoint(fit.checkpoint)
        tic = time.perf_counter()
        predictions = predict_pairs(model, test_pairs, cache_dir=cache_dir)
        predict_seconds = time.perf_counter() - tic
        ours = pair_metrics(cohort, test_pairs, predictions)
        base = pair_metrics(cohort, test_pairs, [nearest.predict(p) for p in test_pairs])
        common = {"fold": k, "train_patients": len(split.train),
                  "val_patients": len(split.val), "test_patients": len(split.test)}
        rows.append({"method": "matcher", **common, **ours,
                     "val_f1": fit.val_metrics.get("f1", np.nan),
                     "val_nlr": fit.val_metrics.get("nlr", np.nan),
                     "val_dlr": fit.val_metrics.get("dlr", np.nan),
                     "val_score": fit.val_metrics.get("score", np.nan),
                     "best_epoch": fit.best_epoch, "epochs": fit.epochs,
                     "train_seconds": fit.train_seconds,
                     "train_pairs_per_second": fit.pairs_per_second,
                     "test_pairs_per_second": len(test_pairs) / predict_seconds,
                     "fold_seconds": time.perf_counter() - start})
        rows.append({"method": "nearest", **common, **base})
        print(f"fold {k}: matcher F1 {ours['f1']:.3f} NLR {ours['nlr']:.3f} DLR "
              f"{ours['dlr']:.3f} | nearest F1 {base['f1']:.3f} NLR {base['nlr']:.3f} DLR "
              f"{base['dlr']:.3f} | {fit.epochs} epochs, {fit.train_seconds:.0f} s",
              flush=True)
    return rows


def cell(stats: tuple[float, float], unit: str) -> str:
    """``mean ± std`` (the sample standard deviation over folds); ``n/a`` where missing (a
    single fold has no spread)."""
    mean, std = stats
    if np.isnan(mean):
        return "n/a"
    scale = 100 if unit == "%" else 1
    spread = "n/a" if np.isnan(std) else f"{scale * std:.1f}"
    return f"{scale * mean:.1f} ± {spread}"


def sample_std(values) -> float:
    """Sample standard deviation (``ddof=1``) of ``values``; NaN with fewer than two."""
    values = np.asarray(values, dtype=np.float64)
    return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def results_table(rows: list[dict], methods=("matcher", "nearest")) -> list[str]:
    """Markdown rows: one line per method, every metric as mean ± std over folds."""
    lines = ["| method | " + " | ".join(f"{label} ({unit})" for _, label, unit in METRICS)
             + " |", "|---|" + "---|" * len(METRICS)]
    for method in methods:
        stats = mean_std_over_folds([r for r in rows if r["method"] == method])
        lines.append(f"| {method} | " + " | ".join(cell(stats[key], unit)
                                                   for key, _, unit in METRICS) + " |")
    return lines


def write_csv(path: Path, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def fold_lines(rows: list[dict]) -> list[str]:
    ours = [r for r in rows if r["method"] == "matcher"]
    lines = ["| fold | train/val/test patients | epochs (best) | train s | train pairs/s | "
             "val F1 | val NLR | val DLR | test F1 | nearest test F1 |", "|---" * 10 + "|"]
    for r in ours:
        base = next(b for b in rows if b["method"] == "nearest" and b["fold"] == r["fold"])
        lines.append(
            f"| {r['fold']} | {r['train_patients']}/{r['val_patients']}/{r['test_patients']} "
            f"| {r['epochs']} ({r['best_epoch']}) | {r['train_seconds']:.0f} | "
            f"{r['train_pairs_per_second']:.1f} | {100 * r['val_f1']:.1f} | "
            f"{100 * r['val_nlr']:.1f} | {100 * r['val_dlr']:.1f} | {100 * r['f1']:.1f} | "
            f"{100 * base['f1']:.1f} |")
    return lines



def write_report(out: Path, header: list[str], rows: list[dict]) -> None:
    """Write ``out.md`` (``header``, then the test-fold and per-fold tables) and ``out.csv``."""
    lines = [*header, "", "## Test folds (mean ± std over folds)", "", *results_table(rows), "",
             "## Per fold", "", *fold_lines(rows), ""]
    text = "\n".join(lines)
    write_text_atomic(out.with_suffix(".md"), text)
    write_csv(out.with_suffix(".csv"), rows)
    print(text)

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--cohort-seed", type=int, default=0)
    parser.add_argument("--preset", default="default", help="synthetic difficulty preset")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--config", default="lite", help="lite, paper or a YAML file")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides by dotted key, e.g. optim.lr=3e-3 "
                        "model.length_scale_mm=30")
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--devices", default="auto")
    parser.add_argument("--workers", type=int, default=1, help="synth and crop processes")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="results path without suffix (.md and .csv are written)")
    parser.add_argument("--runs", type=Path, default=None,
                        help="training folder (default benchmarks/.data/runs/model_quality-"
                             "PRESET-pPATIENTS); separate runs that go on at once")
    parser.add_argument("--regenerate", action="store_true",
                        help="regenerate the cached cohort (after changing the generator)")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    started = time.perf_counter()
    header_machine = machine()
    cohort = synthetic_cohort(args.patients, args.cohort_seed, args.preset, args.workers,
                              args.regenerate)
    config = config_for_cohort(load_config(args.config, parse_overrides(args.set)), cohort)
    tic = time.perf_counter()
    if cohort.has_images and not config.model.geometry_only:
        precompute_crops(cohort, config.crops, workers=args.workers, progress=False)
    crop_seconds = time.perf_counter() - tic
    runs = args.runs or DATA / "runs" / f"model_quality-{args.preset}-p{args.patients}"
    rows = cross_validate(cohort, config, folds=args.folds, split_seed=args.split_seed,
                          max_epochs=args.max_epochs, runs=runs,
                          trainer={"accelerator": args.accelerator, "devices": args.devices},
                          progress=args.progress)
    ours = [r for r in rows if r["method"] == "matcher"]
    n_nodes = sum(len(s.nodes) for s in cohort.scans.values())
    n_pairs = len(cohort.pairs("consecutive"))
    overrides = ", ".join(args.set) or "none"
    lines = [
        "# Model quality: lngraph's matcher vs `nearest`, patient-level cross-validation",
        "",
        f"- command: `{' '.join(['python benchmarks/model_quality.py', *sys.argv[1:]])}`",
        f"- commit: `{commit()}` (working tree may hold uncommitted changes)",
        f"- machine: {header_machine}",
        f"- data: synthetic `{args.preset}` cohort, {len(cohort.patients)} patients, "
        f"{len(cohort.scans)} scans, {n_nodes} nodes, {n_pairs} consecutive scan pairs "
        f"(cohort seed {args.cohort_seed})",
        f"- protocol: {args.folds}-fold patient-level CV (split seed {args.split_seed}); per "
        f"fold {config.protocol.val_fraction:.0%} of the training patients validate (early "
        "stopping, best epoch); test = held-out patients' consecutive pairs; metrics pooled "
        "per fold, mean ± sample standard deviation over folds",
        f"- model: `{config.name}` config, overrides: {overrides}; max epochs "
        f"{args.max_epochs or config.optim.max_epochs}, patience {config.optim.patience}, "
        f"batch {config.optim.batch_size}, lr {config.optim.lr:g}",
        f"- training throughput: {np.mean([r['train_pairs_per_second'] for r in ours]):.1f} "
        f"± {sample_std([r['train_pairs_per_second'] for r in ours]):.1f} pairs/s (training "
        f"steps only); crop cache filled in {crop_seconds:.0f} s; whole run "
        f"{time.perf_counter() - started:.0f} s",
    ]
    write_report(args.out, lines, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
