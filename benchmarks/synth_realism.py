"""Realism of the synthetic cohort: side by side with the real data of docs/design.md, *Reference
data*.

Columns: the real value (NIH CT Lymph Nodes abdominal annotations, 86 patients; DeepLesion
DLS validation pairs), the ``prior`` layout and the ``nih`` layout (both with the ``default``
preset, geometry only — the node tables do not depend on the images).

Rows: annotated nodes per patient, nearest-neighbour distance between nodes of a scan, short
and long axis (the baseline scans), and the residual displacement after robust translation —
each matched node's later centre predicted from its earlier centre plus the median displacement
of the *other* matched nodes of the scan pair (real: the 95 DLS scan pairs with ≥ 2 matched
lesions; synthetic: consecutive scan pairs with ≥ 2 matches). A second table gives the
residual and the unmatched share of each preset.

Run: ``python benchmarks/synth_realism.py`` (writes ``benchmarks/results/synth_realism.md``;
needs ``../shared/data``).
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

from lngraph.io import read_cohort, write_text_atomic
from lngraph.io.cohort import NodeTable
from lngraph.io.dls import read_dls_pairs
from lngraph.synth import PRESETS, generate_cohort
from lngraph.synth.nodes import NIH_DEFAULT_ROOT, read_nih_cases
from lngraph.synth.realism import (
    nearest_neighbour_distances,
    pair_residuals,
    quantiles,
    residual_displacements,
    unmatched_share,
)

RESULTS = Path(__file__).resolve().parent / "results" / "synth_realism.md"
DLS = NIH_DEFAULT_ROOT.parent / "dls" / "valid.json"



def layout_stats(tables: list[NodeTable]) -> dict[str, dict]:
    return {
        "count": quantiles([len(t) for t in tables], (25, 50, 75, 90)),
        "nn": quantiles(nearest_neighbour_distances(tables)),
        "short": quantiles(np.concatenate([t.short_axis_mm for t in tables])),
        "long": quantiles(np.concatenate([t.long_axis_mm for t in tables])),
    }


def dls_residuals(path: Path) -> np.ndarray:
    """Residuals over the scan pairs that DLS records define (each pair counted once)."""
    groups: dict[tuple[str, str], dict] = {}
    for a, b in read_dls_pairs(path):
        if (b.scan_id, a.scan_id) in groups:
            continue
        groups.setdefault((a.scan_id, b.scan_id), {})[(a.pos, b.pos)] = None
    src = [np.array([p for p, _ in g]) for g in groups.values()]
    dst = [np.array([q for _, q in g]) for g in groups.values()]
    return residual_displacements(src, dst)


def synthetic(folder: Path, patients: int, seed: int, preset: str, layouts: str,
              workers: int) -> tuple[dict, np.ndarray, float]:
    cohort = read_cohort(generate_cohort(folder, patients, seed, preset=preset, layouts=layouts,
                                         workers=workers, images=False, progress=False))
    baseline = [cohort.scans_of(p)[0].nodes for p in cohort.patients]
    pairs = cohort.pairs("consecutive")
    return layout_stats(baseline), pair_residuals(pairs), unmatched_share(pairs)


def fmt(q: dict, keys: str) -> str:
    return " / ".join(f"{q[k]:.1f}" for k in keys.split())


ROWS = (
    ("LNs per patient: median (q25–q75), max", "count",
     lambda q: f"{q['p50']:.0f} ({q['p25']:.0f}–{q['p75']:.0f}), {q['max']:.0f}"),
    ("NN distance mm: p10 / p25 / median / p75 / p90", "nn", lambda q: fmt(q,
                                                                           "p10 p25 p50 p75 p90")),
    ("short axis mm: p10 / median / p90", "short", lambda q: fmt(q, "p10 p50 p90")),
    ("long axis mm: median / p90 / max", "long", lambda q: fmt(q, "p50 p90 max")),
)


def residual_cell(r: np.ndarray) -> str:
    q = quantiles(r)
    return (f"{q['mean']:.1f} / {q['p50']:.1f} / {q['p75']:.1f} / {q['p90']:.1f}; "
            f"{100 * (r <= 10).mean():.0f}% ≤ 10 mm (n={len(r)})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100,
                        help="patients of the prior-layout cohorts (the nih layout uses 86)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    cases = read_nih_cases()
    real = layout_stats([NodeTable.from_arrays(c.pos, c.short_mm, c.long_mm) for c in cases])
    real_residual = dls_residuals(DLS)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prior, prior_res, prior_share = synthetic(tmp / "prior", args.patients, args.seed,
                                                  "default", "prior", args.workers)
        nih, nih_res, _ = synthetic(tmp / "nih", len(cases), args.seed, "default", "nih",
                                    args.workers)
        per_preset = {name: synthetic(tmp / name, args.patients, args.seed, name, "prior",
                                      args.workers)[1:] if name != "default"
                      else (prior_res, prior_share) for name in PRESETS}

    lines = [
        "# Synthetic cohort realism",
        "",
        f"- command: `{' '.join(['python benchmarks/synth_realism.py', *sys.argv[1:]])}`",
        f"- commit: `{commit()}`",
        f"- machine: {platform.platform()}, {os.cpu_count()} CPUs",
        f"- synthetic: seed {args.seed}, `default` preset, {args.patients} patients (prior) "
        f"and {len(cases)} (nih layout, one per NIH case), geometry only",
        "- real: NIH CT Lymph Nodes abdominal annotations (86 patients, 595 nodes); residual: "
        "DeepLesion DLS validation pairs (scan pairs with ≥ 2 matched lesions)",
        "",
        "| statistic | real | prior | nih layout |",
        "|---|---|---|---|",
    ]
    for label, key, cell in ROWS:
        lines.append(f"| {label} | {cell(real[key])} | {cell(prior[key])} | {cell(nih[key])} |")
    lines.append("| residual after robust translation mm: mean / median / p75 / p90 | "
                 f"{residual_cell(real_residual)} | {residual_cell(prior_res)} | "
                 f"{residual_cell(nih_res)} |")
    lines += [
        "",
        "Per preset (prior layout, consecutive scan pairs):",
        "",
        "| preset | residual mm: mean / median / p75 / p90 | unmatched share (stated bounds) |",
        "|---|---|---|",
    ]
    for name, (res, share) in per_preset.items():
        lo, hi = PRESETS[name].unmatched_bounds
        lines.append(f"| {name} | {residual_cell(res)} | {100 * share:.1f}% "
                     f"({100 * lo:.0f}–{100 * hi:.0f}%) |")
    text = "\n".join(lines) + "\n"
    write_text_atomic(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
