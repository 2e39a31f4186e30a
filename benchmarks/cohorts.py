"""The synthetic cohorts the studies cache under ``benchmarks/.data`` (imported by the scripts)."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

from lngraph.io.cohort import Cohort, nodes_frame, read_cohort, write_cohort
from lngraph.synth import generate_cohort, get_preset


def cached_cohort(folder: Path, patients: int, seed: int, *, images: bool = True,
                  workers: int = 2, preset: str = "default") -> Cohort:
    """The cohort of a synthetic ``preset`` cached in ``folder``, generated again when it is
    missing or was made with other patients, seed, images or preset values (a folder per
    study, so that a study regenerating its cohort cannot change another's mid-run)."""
    meta = folder / "synth.json"
    wanted = {"patients": patients, "seed": seed, "images": images,
              "preset": json.loads(json.dumps(asdict(get_preset(preset))))}
    if not meta.is_file() or {k: json.loads(meta.read_text(encoding="utf-8")).get(k)
                              for k in wanted} != wanted:
        generate_cohort(folder, patients, seed, preset, workers=workers, progress=True,
                        images=images)
    return read_cohort(folder)


def prefixed_cohort(folder: Path, sources: dict[str, Cohort]) -> Cohort:
    """The scans of each ``{prefix: cohort}`` of ``sources`` written to ``folder`` with its
    prefix before every patient and scan id, so that they can join another cohort's training
    (``MatcherMethod(extra_train=…)``) whose ids they would otherwise share; rewritten when
    the scans changed."""
    scans = [replace(s, patient_id=prefix + s.patient_id, scan_id=prefix + s.scan_id)
             for prefix, source in sources.items() for s in source.scans.values()]
    if (folder / "scans.csv").is_file():
        cached = read_cohort(folder)
        if nodes_frame(cached.scans.values()).equals(nodes_frame(scans)):
            return cached
    return read_cohort(write_cohort(folder, scans))


def extra_cohort(folders: Path | list[Path], prefix: str = "extra") -> Path:
    """The cohort of ``folders`` as a copy whose patient and scan ids start with ``extra-``
    (or another ``prefix``; :func:`prefixed_cohort`; images stay where they are), so that its
    patients cannot clash with a study cohort's when they join its training or validation.
    One folder is cached beside it as ``<folder>-extra``; several are joined (ids
    ``extra-1-…``, ``extra-2-…`` in the given order) as ``<folder1>+<folder2>…-extra``
    beside the first."""
    folders = [folders] if isinstance(folders, Path) else list(folders)
    prefixes = ([f"{prefix}-"] if len(folders) == 1
                else [f"{prefix}-{k}-" for k in range(1, len(folders) + 1)])
    copy = folders[0].with_name("+".join(f.name for f in folders) + f"-{prefix}")
    prefixed_cohort(copy, {p: read_cohort(f) for p, f in zip(prefixes, folders, strict=True)})
    return copy
