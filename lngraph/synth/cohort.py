"""Generate a synthetic longitudinal cohort and write it as a cohort folder (docs/design.md,
*Cohort folder*).

``OUT/scans.csv``, ``OUT/nodes.csv``, ``OUT/images/<scan_id>.nii.gz`` (int16 HU, LPS) and
``OUT/synth.json`` (the parameters that produced it). Patient ``i`` gets the ``i``-th child of
``SeedSequence(seed)``, so the cohort is a deterministic function of ``(seed, patients, preset,
layouts, grid)`` whatever the number of workers, and patient ``i`` is the same in a cohort of
10 or of 100. The old ``scans.csv``/``nodes.csv`` are removed first and written last (each
atomically), so an interrupted run never leaves a cohort that mixes two generations.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np

from lngraph.io.atomic import write_text_atomic
from lngraph.io.cohort import Scan, write_cohort
from lngraph.io.errors import InputError
from lngraph.synth.nodes import NihCase, read_nih_cases
from lngraph.synth.phantom import LAYOUTS, PatientRenderer, PatientSim, simulate_patient
from lngraph.synth.presets import DEFAULT_GRID, ScanGrid, SynthPreset, get_preset

IMAGE_DIR = "images"


def patient_id(index: int) -> str:
    return f"P{index + 1:04d}"


def patient_scans(sim: PatientSim, images: dict[int, Path] | None = None) -> list[Scan]:
    """The :class:`Scan` objects of a simulated patient (``images``: path per scan index)."""
    return [Scan(patient_id=sim.patient_id, scan_id=sim.scan_id(t), timepoint=sim.dates[t],
                 image=None if images is None else images[t], nodes=sim.node_table(t))
            for t in range(sim.n_scans)]


def _nih_cases(layouts: str, patients: int, seed: int, nih_root) -> list[NihCase | None]:
    """The NIH case of each patient (a seeded permutation, cycled), or ``None``s."""
    if layouts == "prior":
        return [None] * patients
    cases = read_nih_cases(nih_root)
    order = np.random.default_rng(np.random.SeedSequence([seed, 7])).permutation(len(cases))
    return [cases[order[i % len(cases)]] for i in range(patients)]


def _make_patient(job) -> list[Scan]:
    """Worker: simulate one patient, render and write its images; returns its scans."""
    index, seed, preset, layout, case, grid, out = job
    sim = simulate_patient(patient_id(index), seed, preset, layout, case)
    images = None
    if out is not None:
        import SimpleITK as sitk

        from lngraph.io.image import write_image

        renderer = PatientRenderer(sim, grid)
        geometry = renderer.geometry()
        images = {}
        for t in range(sim.n_scans):
            image = sitk.GetImageFromArray(renderer.scan(t))
            image.SetOrigin(geometry.origin)
            image.SetSpacing(geometry.spacing)
            image.SetDirection(geometry.direction)
            images[t] = write_image(image, Path(out) / IMAGE_DIR / f"{sim.scan_id(t)}.nii.gz")
    return patient_scans(sim, images)


def _run(jobs: list, workers: int) -> Iterator[list[Scan]]:
    if workers <= 1 or len(jobs) <= 1:
        yield from map(_make_patient, jobs)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context) as pool:
        yield from pool.map(_make_patient, jobs)


def generate_cohort(out: str | os.PathLike, patients: int, seed: int,
                    preset: str | SynthPreset = "default", layouts: str = "prior",
                    workers: int = 1, progress: bool = True, *, images: bool = True,
                    grid: ScanGrid = DEFAULT_GRID, nih_root: str | os.PathLike | None = None
                    ) -> Path:
    """Generate a synthetic cohort into the folder ``out`` and return it.

    Args:
        out: the cohort folder (created; an old cohort there is replaced).
        patients: number of patients (each has 2 or 3 scans).
        seed: cohort seed.
        preset: ``"easy"``, ``"default"``, ``"hard"`` or a :class:`SynthPreset`.
        layouts: baseline node layouts, ``"prior"`` (built in) or ``"nih"`` (real NIH
            abdominal layouts; needs the annotations, see :func:`read_nih_cases`).
        workers: worker processes (results do not depend on it). They are *spawned*, so a
            script that asks for more than one must call this under
            ``if __name__ == "__main__":``.
        progress: show a progress bar (tqdm, on stderr).
        images: write CT images; ``False`` gives a geometry-only cohort with the same nodes.
        grid: image grid (the default is documented in :mod:`lngraph.synth.presets`).
        nih_root: folder of the NIH annotations for ``layouts="nih"``.

    Raises:
        ValueError: bad ``patients``, ``preset`` or ``layouts``.
        InputError: ``out`` is a file, or ``layouts="nih"`` and the NIH annotations are
            missing.
    """
    if int(patients) < 1:
        raise ValueError(f"patients must be at least 1, got {patients}")
    if layouts not in LAYOUTS:
        raise ValueError(f"layouts must be one of {', '.join(LAYOUTS)}, got {layouts!r}")
    preset = get_preset(preset)
    cases = _nih_cases(layouts, int(patients), int(seed), nih_root)
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise InputError(root, "exists and is not a folder; give a folder for the cohort")
    root.mkdir(parents=True, exist_ok=True)
    for name in ("scans.csv", "nodes.csv"):
        (root / name).unlink(missing_ok=True)
    seeds = np.random.SeedSequence(int(seed)).spawn(int(patients))
    jobs = [(i, seeds[i], preset, layouts, cases[i], grid, root if images else None)
            for i in range(int(patients))]
    results = _run(jobs, int(workers))
    if progress:
        from tqdm import tqdm

        results = tqdm(results, total=len(jobs), desc="synth", unit="patient")
    scans = [scan for patient in results for scan in patient]
    write_cohort(root, scans)
    meta = {
        "generator": "lngraph.synth", "seed": int(seed), "patients": int(patients),
        "layouts": layouts, "images": bool(images), "preset": asdict(preset),
        "grid": {"shape": list(grid.shape), "spacing_mm": list(grid.spacing),
                 "centre_mm": list(grid.centre)},
        "scans": len(scans), "nodes": int(sum(len(s.nodes) for s in scans)),
    }
    write_text_atomic(root / "synth.json", json.dumps(meta, indent=2) + "\n")
    return root
