"""Difficulty of the synthetic presets for pure geometry: the ``nearest`` baseline.

For each preset (``easy``, ``default``, ``hard``) and each of a few cohort seeds, a
geometry-only cohort (the node tables are those of the imaged cohort) is matched by
``nearest`` (robust translation + gated Hungarian, 15 mm gate) on consecutive scan pairs;
metrics (docs/design.md, *Metrics*, :mod:`lngraph.metrics`) are pooled per cohort and reported as
mean ± sample standard deviation (``ddof=1``) over the seeds. A second table sweeps the gate on
``default``: no gate makes geometry alone enough, which is what the preset is calibrated for.

Run: ``python benchmarks/synth_difficulty.py`` (writes ``benchmarks/results/
synth_difficulty.md``).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
from provenance import commit

from lngraph.baselines.nearest import Nearest
from lngraph.io import read_cohort, write_text_atomic
from lngraph.metrics import pair_counts, summarize
from lngraph.synth import PRESETS, generate_cohort
from lngraph.synth.realism import unmatched_share

RESULTS = Path(__file__).resolve().parent / "results" / "synth_difficulty.md"
METRICS = (("precision", "Precision"), ("recall", "Recall"), ("f1", "F1"), ("nlr", "NLR"),
           ("dlr", "DLR"), ("new_precision", "new prec."),
           ("disappeared_precision", "disapp. prec."))
GATES_MM = (10.0, 15.0, 20.0, 25.0)



def evaluate(pairs, gate_mm: float) -> dict:
    method = Nearest(gate_mm=gate_mm)
    return summarize([pair_counts(p, method.predict(p)) for p in pairs])


def mean_std(values) -> str:
    """``mean ± sample standard deviation`` (``ddof=1``) in % over the finite values; ``n/a``
    where there are none (mean) or fewer than two (spread)."""
    v = 100 * np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return "n/a"
    spread = f"{np.std(v, ddof=1):.1f}" if len(v) > 1 else "n/a"
    return f"{np.mean(v):.1f} ± {spread}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    results: dict[str, list[dict]] = {name: [] for name in PRESETS}
    shares: dict[str, list[float]] = {name: [] for name in PRESETS}
    sweep: dict[float, list[dict]] = {g: [] for g in GATES_MM}
    n_pairs = {name: 0 for name in PRESETS}
    with tempfile.TemporaryDirectory() as tmp:
        for name in PRESETS:
            for seed in args.seeds:
                folder = generate_cohort(Path(tmp) / f"{name}_{seed}", args.patients, seed,
                                         preset=name, workers=args.workers, images=False,
                                         progress=False)
                pairs = read_cohort(folder).pairs("consecutive")
                n_pairs[name] += len(pairs)
                results[name].append(evaluate(pairs, 15.0))
                shares[name].append(unmatched_share(pairs))
                if name == "default":
                    for gate in GATES_MM:
                        sweep[gate].append(evaluate(pairs, gate))

    lines = [
        "# Synthetic cohort difficulty: the `nearest` baseline",
        "",
        f"- command: `{' '.join(['python benchmarks/synth_difficulty.py', *sys.argv[1:]])}`",
        f"- commit: `{commit()}`",
        f"- machine: {platform.platform()}, {os.cpu_count()} CPUs",
        f"- data: per preset, {len(args.seeds)} cohorts (seeds {args.seeds}) of {args.patients} "
        "patients, prior layout, consecutive scan pairs; metrics pooled per cohort, "
        "mean ± sample standard deviation over cohorts (%)",
        "",
        "| preset | pairs | unmatched share | " + " | ".join(m for _, m in METRICS) + " |",
        "|---|---|---|" + "---|" * len(METRICS),
    ]
    for name in PRESETS:
        cells = [mean_std([r[key] for r in results[name]]) for key, _ in METRICS]
        lines.append(f"| {name} | {n_pairs[name]} | {mean_std(shares[name])} | "
                     + " | ".join(cells) + " |")
    lines += [
        "",
        "Gate sweep on `default` (same cohorts):",
        "",
        "| gate (mm) | " + " | ".join(m for _, m in METRICS) + " |",
        "|---|" + "---|" * len(METRICS),
    ]
    for gate, runs in sweep.items():
        lines.append(f"| {gate:g} | " + " | ".join(mean_std([r[key] for r in runs])
                                                    for key, _ in METRICS) + " |")
    text = "\n".join(lines) + "\n"
    write_text_atomic(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
