"""Generate a synthetic longitudinal cohort and write it as a cohort folder (docs/design.md,
*Cohort folder*).

``OUT/scans.csv``, ``OUT/nodes.csv``, ``OUT/images/<scan_id>.nii.gz`` (int16 HU, LPS) and
``OUT/synth.json`` (the parameters that produced it). Patient ``i`` gets the ``i``-th child of
``SeedSequence(seed)``, so the cohort is a deterministic function of ``(seed, patients, preset,
layouts, grid)`` whatever the number of workers, and patient ``i`` is the same in a cohort of
10 or of 100. The cohort is written into a hidden temporary folder beside ``OUT`` that replaces
``OUT`` at the end (:func:`lngraph.io.atomic.atomic_folder`), so an interrupted or failed run
leaves an earlier cohort in ``OUT`` untouched, and a finished one holds no file of an earlier
generation (no stale images of patients a smaller cohort no longer has).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np

from lngraph.io.atomic import atomic_folder, write_text_atomic
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


def _ignore_sigint() -> None:
    """Worker initializer: Ctrl-C is the parent's to handle (it cancels the pool)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run(jobs: list, workers: int) -> Iterator[list[Scan]]:
    if workers <= 1 or len(jobs) <= 1:
        yield from map(_make_patient, jobs)
        return
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context,
                               initializer=_ignore_sigint)
    try:
        yield from pool.map(_make_patient, jobs)
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)  # no queued patient starts after an error
        raise
    finally:
        pool.shutdown(wait=True)


def generate_cohort(out: str | os.PathLike, patients: int, seed: int,
                    preset: str | SynthPreset = "default", layouts: str = "prior",
                    workers: int = 1, progress: bool = True, *, images: bool = True,
                    grid: ScanGrid = DEFAULT_GRID, nih_root: str | os.PathLike | None = None,
                    overwrite: bool = True) -> Path:
    """Generate a synthetic cohort into the folder ``out`` and return it.

    The folder is written whole or not at all (module docstring).

    Args:
        out: the cohort folder (created; with ``overwrite``, a folder already there is
            replaced as a whole, whatever it holds).
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
        overwrite: replace a non-empty ``out``; ``False`` refuses it (an empty folder is
            always used).

    Raises:
        ValueError: bad ``patients``, ``preset`` or ``layouts``.
        InputError: ``out`` is a file, or a non-empty folder without ``overwrite``, or
            ``layouts="nih"`` and the NIH annotations are missing.
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
    seeds = np.random.SeedSequence(int(seed)).spawn(int(patients))
    with atomic_folder(root, overwrite=overwrite) as tmp:
        jobs = [(i, seeds[i], preset, layouts, cases[i], grid, tmp if images else None)
                for i in range(int(patients))]
        made = _run(jobs, int(workers))
        try:
            results = made
            if progress:
                from tqdm import tqdm

                results = tqdm(made, total=len(jobs), desc="synth", unit="patient")
            scans = [scan for patient in results for scan in patient]
        finally:
            made.close()  # on an error: stop the workers before the folder is deleted
        write_cohort(tmp, scans)
        meta = {
            "generator": "lngraph.synth", "seed": int(seed), "patients": int(patients),
            "layouts": layouts, "images": bool(images), "preset": asdict(preset),
            "grid": {"shape": list(grid.shape), "spacing_mm": list(grid.spacing),
                     "centre_mm": list(grid.centre)},
            "scans": len(scans), "nodes": int(sum(len(s.nodes) for s in scans)),
        }
        write_text_atomic(tmp / "synth.json", json.dumps(meta, indent=2) + "\n")
    return root
