"""Generate a synthetic longitudinal cohort and write it as a cohort folder (docs/design.md,
*Cohort folder*).

``OUT/scans.csv``, ``OUT/nodes.csv``, ``OUT/images/<scan_id>.nii.gz`` (int16 HU, LPS) and
``OUT/synth.json`` (the parameters that produced it). Patient ``i`` gets the ``i``-th child of
``SeedSequence(seed)``, so the cohort is a deterministic function of ``(seed, patients, preset,
layouts, grid, timepoints)`` whatever the number of workers, and patient ``i`` is the same in a
cohort of 10 or of 100. The cohort is written into a hidden temporary folder beside ``OUT``
that replaces ``OUT`` at the end (:func:`lngraph.io.atomic.atomic_folder`), so an interrupted
or failed run leaves an earlier cohort in ``OUT`` untouched, and a finished one holds no file
of an earlier generation (no stale images of patients a smaller cohort no longer has).

**Scans per patient.** By default 2 or 3 (``SynthPreset.scans_per_patient``). A follow-up
*series* (``timepoints``: ``N``, or a range ``(A, B)`` drawn per patient) has ``N`` scans, and
nodes may miss one inner scan and come back with their identity
(:func:`lngraph.synth.followup.transient_gaps`); new nodes appear at every follow-up. Without
``timepoints`` nothing of this is drawn, so earlier cohorts are reproduced byte for byte.
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
from lngraph.synth.followup import gap_probability, transient_gaps
from lngraph.synth.nodes import (
    NihCase,
    read_nih_cases,
)
from lngraph.synth.phantom import (
    LAYOUTS,
    PatientRenderer,
    PatientSim,
    simulate_patient,
)
from lngraph.synth.presets import DEFAULT_GRID, ScanGrid, SynthPreset, get_preset

IMAGE_DIR = "images"
#: Fewest and most scans of a patient in a follow-up series (``timepoints``).
MIN_TIMEPOINTS, MAX_TIMEPOINTS = 2, 20


def parse_timepoints(value: int | str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``timepoints`` as ``(fewest, most)`` scans per patient: ``N`` → ``(N, N)``, ``"A-B"`` or
    ``(A, B)`` → ``(A, B)``, ``None`` → ``None`` (the preset's 2–3 scans).

    Raises:
        ValueError: not an integer or a range ``A-B``, ``A > B``, or outside
            ``MIN_TIMEPOINTS..MAX_TIMEPOINTS``.
    """
    if value is None:
        return None
    if isinstance(value, tuple | list):
        bounds = tuple(value)
    else:
        text = str(value).strip()
        parts = text.split("-") if "-" in text else [text, text]
        try:
            bounds = tuple(int(part) for part in parts)
        except ValueError:
            raise ValueError(f"timepoints must be an integer N or a range A-B, got "
                             f"{value!r}") from None
    if len(bounds) != 2 or any(not isinstance(b, int | np.integer) for b in bounds):
        raise ValueError(f"timepoints must be an integer N or a range A-B, got {value!r}")
    low, high = (int(b) for b in bounds)
    if low > high:
        raise ValueError(f"timepoints range {low}-{high} is empty (A must not exceed B)")
    if low < MIN_TIMEPOINTS or high > MAX_TIMEPOINTS:
        raise ValueError(f"timepoints must lie in {MIN_TIMEPOINTS}..{MAX_TIMEPOINTS}, got "
                         f"{value!r}")
    return low, high


def patient_id(index: int) -> str:
    return f"P{index + 1:04d}"


def patient_scans(sim: PatientSim, images: dict[int, Path] | None = None) -> list[Scan]:
    """The :class:`Scan` objects of a simulated patient (``images``: path per scan index)."""
    return [Scan(patient_id=sim.patient_id, scan_id=sim.scan_id(t), timepoint=sim.dates[t],
                 image=None if images is None else images[t], nodes=sim.node_table(t))
            for t in range(sim.n_scans)]


def simulate_series(patient_id: str, seed: int | np.random.SeedSequence,
                    timepoints: tuple[int, int], preset: str | SynthPreset = "default",
                    layout: str = "prior", nih_case: NihCase | None = None, *,
                    gaps: bool = True) -> PatientSim:
    """Simulate a patient of a follow-up series: like
    :func:`~lngraph.synth.phantom.simulate_patient`, with the number of scans drawn uniformly
    from ``timepoints = (A, B)`` and one-scan gaps (:func:`~lngraph.synth.followup.
    transient_gaps`).

    Both draws use a sixth child of the patient's seed, so the rest follows the very streams of
    :func:`~lngraph.synth.phantom.simulate_patient`: with ``gaps=False`` and the number of scans
    that function draws, the two give the same patient.

    Args:
        patient_id: the id (prefix of scan and track ids).
        seed: the patient's seed.
        timepoints: fewest and most scans (:func:`parse_timepoints`).
        preset, layout, nih_case: as for :func:`~lngraph.synth.phantom.simulate_patient`.
        gaps: add the one-scan gaps.
    """
    low, high = parse_timepoints(timepoints)
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)

    def fresh() -> np.random.SeedSequence:   # spawning is stateful: children from the start
        return np.random.SeedSequence(ss.entropy, spawn_key=ss.spawn_key,
                                      pool_size=ss.pool_size)

    series = np.random.default_rng(fresh().spawn(6)[5])
    n_scans = int(series.integers(low, high + 1))
    preset = get_preset(preset)
    edit = (lambda timeline: transient_gaps(timeline, preset, series)) if gaps else None
    return simulate_patient(patient_id, fresh(), preset, layout, nih_case, n_scans=n_scans,
                            edit_timeline=edit)


def _nih_cases(layouts: str, patients: int, seed: int, nih_root) -> list[NihCase | None]:
    """The NIH case of each patient (a seeded permutation, cycled), or ``None``s."""
    if layouts == "prior":
        return [None] * patients
    cases = read_nih_cases(nih_root)
    order = np.random.default_rng(np.random.SeedSequence([seed, 7])).permutation(len(cases))
    return [cases[order[i % len(cases)]] for i in range(patients)]


def _make_patient(job) -> list[Scan]:
    """Worker: simulate one patient, render and write its images; returns its scans."""
    index, seed, preset, layout, case, grid, out, timepoints = job
    if timepoints is None:
        sim = simulate_patient(patient_id(index), seed, preset, layout, case)
    else:
        sim = simulate_series(patient_id(index), seed, timepoints, preset, layout, case)
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
                    overwrite: bool = True,
                    timepoints: int | str | tuple[int, int] | None = None) -> Path:
    """Generate a synthetic cohort into the folder ``out`` and return it.

    The folder is written whole or not at all (module docstring).

    Args:
        out: the cohort folder (created; with ``overwrite``, a folder already there is
            replaced as a whole, whatever it holds).
        patients: number of patients (each has 2 or 3 scans, unless ``timepoints``).
        seed: cohort seed.
        preset: ``"easy"``, ``"default"``, ``"hard"`` or a :class:`SynthPreset`.
        layouts: baseline node layouts, ``"prior"`` (built in) or ``"nih"`` (real NIH
            abdominal layouts shipped with lngraph, see :func:`read_nih_cases`).
        workers: worker processes (results do not depend on it). They are *spawned*, so a
            script that asks for more than one must call this under
            ``if __name__ == "__main__":``.
        progress: show a progress bar (tqdm, on stderr).
        images: write CT images; ``False`` gives a geometry-only cohort with the same nodes.
        grid: image grid (the default is documented in :mod:`lngraph.synth.presets`).
        nih_root: for ``layouts="nih"``, a folder of the original NIH annotations to read
            instead of the shipped layouts (``None``).
        overwrite: replace a non-empty ``out``; ``False`` refuses it (an empty folder is
            always used).
        timepoints: a follow-up series: ``N`` scans per patient, or a range ``"A-B"`` /
            ``(A, B)`` drawn per patient (:func:`simulate_series`); ``None`` (default) keeps
            the preset's 2–3 scans.

    Raises:
        ValueError: bad ``patients``, ``preset``, ``layouts`` or ``timepoints``.
        InputError: ``out`` is a file, or a non-empty folder without ``overwrite``, or
            ``layouts="nih"`` with an ``nih_root`` that holds no NIH annotations.
    """
    if int(patients) < 1:
        raise ValueError(f"patients must be at least 1, got {patients}")
    if layouts not in LAYOUTS:
        raise ValueError(f"layouts must be one of {', '.join(LAYOUTS)}, got {layouts!r}")
    preset = get_preset(preset)
    timepoints = parse_timepoints(timepoints)
    cases = _nih_cases(layouts, int(patients), int(seed), nih_root)
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise InputError(root, "exists and is not a folder; give a folder for the cohort")
    seeds = np.random.SeedSequence(int(seed)).spawn(int(patients))
    with atomic_folder(root, overwrite=overwrite) as tmp:
        jobs = [(i, seeds[i], preset, layouts, cases[i], grid, tmp if images else None,
                 timepoints) for i in range(int(patients))]
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
        if timepoints is not None:  # absent by default: earlier cohorts stay byte-identical
            meta["timepoints"] = {"min": timepoints[0], "max": timepoints[1],
                                  "gap_probability": gap_probability(preset)}
        write_text_atomic(tmp / "synth.json", json.dumps(meta, indent=2) + "\n")
    return root
