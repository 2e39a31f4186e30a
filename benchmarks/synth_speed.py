"""Speed and memory of ``lngraph synth``.

Part 1 (one process): for a few patients of the ``default`` preset, the seconds spent in
simulating the geometry, rendering the canonical anatomy and bowel (once per patient),
rendering each scan and writing it (NIfTI, gzip), and the process's peak resident memory.
Part 2: wall time of the whole default cohort (20 patients, images) with ``--workers``
processes, and its size on disk.

Run: ``python benchmarks/synth_speed.py`` (writes ``benchmarks/results/synth_speed.md``).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import SimpleITK as sitk
from provenance import commit

from lngraph.io import write_image, write_text_atomic
from lngraph.synth import DEFAULT_GRID, PatientRenderer, generate_cohort, simulate_patient

RESULTS = Path(__file__).resolve().parent / "results" / "synth_speed.md"
STAGES = (("simulate", "simulate geometry", "patient"),
          ("canonical", "canonical anatomy + bowel", "patient"),
          ("scan", "render scan", "scan"), ("write", "write NIfTI", "scan"))



def per_stage(patients: int, folder: Path) -> dict[str, list[float]]:
    """Seconds per stage: ``simulate`` and ``canonical`` per patient, ``scan`` and ``write``
    per scan."""
    out: dict[str, list[float]] = {"simulate": [], "canonical": [], "scan": [], "write": []}
    for index in range(patients):
        t = time.perf_counter()
        sim = simulate_patient(f"P{index + 1:04d}", index, "default")
        out["simulate"].append(time.perf_counter() - t)
        t = time.perf_counter()
        renderer = PatientRenderer(sim, DEFAULT_GRID)
        out["canonical"].append(time.perf_counter() - t)
        geometry = renderer.geometry()
        for scan in range(sim.n_scans):
            t = time.perf_counter()
            array = renderer.scan(scan)
            out["scan"].append(time.perf_counter() - t)
            t = time.perf_counter()
            image = sitk.GetImageFromArray(array)
            image.SetOrigin(geometry.origin)
            image.SetSpacing(geometry.spacing)
            write_image(image, folder / f"{sim.scan_id(scan)}.nii.gz")
            out["write"].append(time.perf_counter() - t)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=4, help="patients timed per stage")
    parser.add_argument("--cohort", type=int, default=20, help="patients of the timed cohort")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        stages = per_stage(args.patients, Path(tmp))
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t = time.perf_counter()
        folder = generate_cohort(Path(tmp) / "cohort", args.cohort, 0, workers=args.workers,
                                 progress=False)
        wall = time.perf_counter() - t
        scans = len(list((folder / "images").iterdir()))
        size_mb = sum(p.stat().st_size for p in (folder / "images").iterdir()) / 2 ** 20
    n_scans = len(stages["scan"])
    per_scan = (sum(stages["simulate"]) + sum(stages["canonical"]) + sum(stages["scan"])
                + sum(stages["write"])) / n_scans
    g = DEFAULT_GRID
    lines = [
        "# `lngraph synth` speed",
        "",
        f"- command: `{' '.join(['python benchmarks/synth_speed.py', *sys.argv[1:]])}`",
        f"- commit: `{commit()}`",
        f"- machine: {platform.platform()}, {os.cpu_count()} CPUs; load average before the "
        f"run {load:.2f} (the machine may be shared)",
        f"- grid: {g.shape[0]}×{g.shape[1]}×{g.shape[2]} voxels of "
        f"{g.spacing[0]}×{g.spacing[1]}×{g.spacing[2]} mm, int16 NIfTI (gzip)",
        "",
        f"Per stage, one process, {args.patients} patients / {n_scans} scans (median, min–max "
        "seconds):",
        "",
        "| stage | per | median s | min–max s |",
        "|---|---|---|---|",
    ]
    for key, stage, per in STAGES:
        v = stages[key]
        lines.append(f"| {stage} | {per} | {statistics.median(v):.2f} | "
                     f"{min(v):.2f}–{max(v):.2f} |")
    lines += [
        "",
        f"- all stages per scan: {per_scan:.2f} s; peak resident memory of the process: "
        f"{peak_mb:.0f} MB",
        f"- default cohort: {args.cohort} patients, {scans} scans, {args.workers} workers: "
        f"{wall:.0f} s wall ({wall / scans:.2f} s per scan); images {size_mb:.0f} MB on disk",
    ]
    text = "\n".join(lines) + "\n"
    write_text_atomic(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
