"""Geometry-only matching on real follow-up lesions: the DeepLesion DLS pairs.

The DLS validation pairs (``../shared/data/dls/valid.json``, Cai et al., CVPR 2021) are read
with :func:`lngraph.io.dls.read_dls` into an in-memory, image-free cohort (one scan per
series; ``track_id`` from the recorded correspondences). The config's matcher in
geometry-only mode (default ``lite``: the graph matcher with geometric tokens from sizes and
neighbour distances, ``model.geometry_only: true``) is trained on the DLS patients alone with
patient-level ``--folds``-fold CV (validation carved from the training patients: epoch and
threshold) and scored on the held-out patients' consecutive scan pairs beside ``nearest`` on
the same pairs; metrics (docs/design.md, *Metrics*) are pooled per fold, mean ± sample
standard deviation (``ddof=1``) over folds. The DLS leaderboard
(``benchmarks/leaderboard.py --dls``) compares every method on these folds, with synthetic
training patients and the frame prior; this study is the plain model on real pairs only.

DeepLesion scans share no exact frame: positions agree between two scans only up to a few
centimetres, which ``nearest`` and the matcher's alignment estimate. Skips cleanly (exit 0,
a message) when the file is absent.

Run: ``python benchmarks/dls_geometry.py [--max-epochs E]`` (writes
``benchmarks/results/dls_geometry.md`` and ``.csv``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from model_quality import (
    DATA,
    HERE,
    commit,
    cross_validate,
    load_config,
    machine,
    parse_overrides,
    write_report,
)

from lngraph.io.cohort import Cohort
from lngraph.io.dls import read_dls

DLS = HERE.parent.parent / "shared" / "data" / "dls" / "valid.json"
RESULTS = HERE / "results" / "dls_geometry"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dls", type=Path, default=DLS, help="DLS pair JSON")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--config", default="lite", help="lite, paper or a YAML file")
    parser.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE",
                        help="config overrides by dotted key, e.g. optim.lr=3e-3")
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="results path without suffix (.md and .csv are written)")
    args = parser.parse_args(argv)
    if not args.dls.is_file():
        print(f"skipped: the DLS pairs are not at {args.dls} (only present in the "
              "development workplace)")
        return 0
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    header_machine = machine()
    cohort = Cohort(read_dls(args.dls))
    config = load_config(args.config, parse_overrides(args.set)).with_values(
        {"model.geometry_only": True})
    rows = cross_validate(cohort, config, folds=args.folds, split_seed=args.split_seed,
                          max_epochs=args.max_epochs, runs=DATA / "runs" / "dls_geometry",
                          trainer={"accelerator": "cpu"})
    ours = [r for r in rows if r["method"] == "matcher"]
    pairs = cohort.pairs("consecutive")
    overrides = ", ".join(["model.geometry_only=true", *args.set])
    lines = [
        "# Geometry-only matching on the DeepLesion DLS follow-up pairs",
        "",
        f"- command: `{' '.join(['python benchmarks/dls_geometry.py', *sys.argv[1:]])}`",
        f"- commit: `{commit()}` (working tree may hold uncommitted changes)",
        f"- machine: {header_machine}",
        f"- data: `{args.dls.name}` read by `lngraph.io.dls.read_dls`: "
        f"{len(cohort.patients)} patients, {len(cohort.scans)} scans (series), "
        f"{sum(len(s.nodes) for s in cohort.scans.values())} lesions, {len(pairs)} "
        f"consecutive scan pairs, {sum(len(p.gt_matches()) for p in pairs)} ground-truth "
        "matches",
        f"- protocol: {args.folds}-fold patient-level CV (split seed {args.split_seed}); "
        f"{config.protocol.val_fraction:.0%} of each fold's training patients validate; test = "
        "held-out patients' consecutive pairs; pooled per fold, mean ± sample standard "
        "deviation over folds",
        f"- model: `{config.name}` config, overrides: {overrides}; max epochs "
        f"{args.max_epochs}, patience {config.optim.patience}, lr {config.optim.lr:g}",
        f"- training: {np.mean([r['train_pairs_per_second'] for r in ours]):.0f} pairs/s; "
        f"whole run {time.perf_counter() - started:.0f} s",
    ]
    write_report(args.out, lines, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
