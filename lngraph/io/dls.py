"""Reader for the DeepLesion "DLS" follow-up lesion pairs (Cai et al., Deep Lesion Tracker, 2021).

A DLS JSON file maps record keys to one *directed* lesion correspondence each: a lesion in a
``source`` sub-volume and the same lesion in a ``target`` sub-volume. Sub-volumes are named
``PPPPPP_SS_II_aaa-bbb.nii.gz`` (patient, study, series, first-last slice); centres are voxel
``(x, y, z)`` with ``z`` counted from the sub-volume's first slice; spacings are in mm; the
``recist diameter`` is ``(long, short)`` in pixels. Every correspondence is stored both ways.

The reader turns the file into a geometry-only cohort:

* one :class:`~lngraph.io.cohort.Scan` per series ``PPPPPP_SS_II`` (patient ``PPPPPP``;
  timepoint ``100·SS + II``, so studies keep DeepLesion's order and the series of one study
  follow each other);
* lesion centre in mm ``(x·sx, y·sy, (first slice + z)·sz)``, long and short axis = RECIST
  diameters × in-plane spacing (the radius is half the long axis);
* lesions of a series seen in several records are merged when their centres lie within
  ``tolerance_mm`` (distinct DLS lesions of one series are at least 14 mm apart);
* ``track_id``: the two ends of every record are joined with union-find, so a lesion followed
  through three studies keeps one track.

**Frame.** DeepLesion gives no scan origins, so positions are millimetres from the corner of
the series along its image axes (columns, rows, slice number); for these axial CTs x and y point
the way LPS does, but two scans' positions agree only up to a translation. Methods that need a
common frame must estimate it (as the ``nearest`` baseline does).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lngraph.io.cohort import NodeTable, Scan, position_problem, size_problem
from lngraph.io.errors import InputError, read_json

_VOLUME = re.compile(r"^(\d+)_(\d+)_(\d+)_(\d+)-(\d+)\.nii(\.gz)?$")
#: Default distance (mm) below which two centres in one series are the same lesion.
DEDUP_TOLERANCE_MM = 1.0


@dataclass(frozen=True)
class DLSLesion:
    """One end of a DLS record: a lesion in a series, in that series' mm frame."""

    patient_id: str
    scan_id: str
    timepoint: str
    pos: tuple[float, float, float]
    long_axis_mm: float
    short_axis_mm: float


def _numbers(record: dict, key: str, n: int, path, what: str) -> list[float]:
    value = record.get(key)
    if not isinstance(value, list) or len(value) != n or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)
            for v in value):
        raise InputError(path, f"{key!r} must be a list of {n} finite numbers, got {value!r}",
                         what=what)
    return [float(v) for v in value]


def _lesion(record: dict, side: str, path, what: str) -> DLSLesion:
    name = record.get(side)
    match = _VOLUME.match(name) if isinstance(name, str) else None
    if match is None:
        raise InputError(path, f"{side!r} must name a sub-volume 'PPPPPP_SS_II_aaa-bbb.nii.gz', "
                         f"got {name!r}", what=what)
    patient, study, series, first, _ = match.groups()[:5]
    sx, sy, sz = _numbers(record, f"{side} spacing", 3, path, what)
    if min(sx, sy, sz) <= 0 or not np.isclose(sx, sy, rtol=1e-6):
        raise InputError(path, f"'{side} spacing' must be positive with equal in-plane values "
                         f"(RECIST diameters are in pixels), got {[sx, sy, sz]}", what=what)
    cx, cy, cz = _numbers(record, f"{side} center", 3, path, what)
    long_px, short_px = _numbers(record, f"{side} recist diameter", 2, path, what)
    if min(long_px, short_px) <= 0:
        raise InputError(path, f"'{side} recist diameter' must be positive, got "
                         f"{[long_px, short_px]}", what=what)
    short_px, long_px = sorted((short_px, long_px))
    pos = (cx * sx, cy * sy, (int(first) + cz) * sz)
    problem = position_problem(pos) or size_problem(short_px * sx, long_px * sx)
    if problem:
        raise InputError(path, f"{side}: {problem}", what=what)
    return DLSLesion(
        patient_id=patient,
        scan_id=f"{patient}_{study}_{series}",
        timepoint=str(100 * int(study) + int(series)),
        pos=pos,
        long_axis_mm=long_px * sx,
        short_axis_mm=short_px * sx,
    )


def read_dls_pairs(path: str | os.PathLike) -> list[tuple[DLSLesion, DLSLesion]]:
    """Read every record of a DLS JSON file → ``(source, target)`` lesions, in key order."""
    path = Path(path)
    records = read_json(path)
    if not isinstance(records, dict) or not records:
        raise InputError(path, "expected a non-empty JSON object of DLS records")
    pairs = []
    for key in sorted(records):
        record, what = records[key], f"record {key}"
        if not isinstance(record, dict):
            raise InputError(path, "a record must be a JSON object", what=what)
        pairs.append((_lesion(record, "source", path, what), _lesion(record, "target", path, what)))
    return pairs


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)


def dls_scans(pairs: list[tuple[DLSLesion, DLSLesion]], *, tolerance_mm: float = DEDUP_TOLERANCE_MM,
              path: str | os.PathLike = "DLS pairs") -> list[Scan]:
    """Merge DLS lesions into scans with deduplicated nodes and union-find ``track_id`` s.

    Node ids are ``"0", "1", …`` per scan and track ids ``"T0", "T1", …`` per patient, both
    in order of first appearance. Raises :class:`InputError` if two lesions of one series end
    up in one track.
    """
    lesions: list[DLSLesion] = []  # unique lesions, by global index
    by_scan: dict[str, list[int]] = {}
    index_pairs = []
    for pair in pairs:
        ends = []
        for lesion in pair:
            seen = by_scan.setdefault(lesion.scan_id, [])
            near = [g for g in seen if np.linalg.norm(np.subtract(lesions[g].pos, lesion.pos))
                    <= tolerance_mm]
            if not near:
                near = [len(lesions)]
                seen.append(len(lesions))
                lesions.append(lesion)
            ends.append(near[0])
        index_pairs.append(ends)
    tracks = _UnionFind(len(lesions))
    for a, b in index_pairs:
        tracks.union(a, b)
    track_names: dict[int, str] = {}
    per_patient: dict[str, int] = {}
    members: dict[tuple[int, str], DLSLesion] = {}
    for g, lesion in enumerate(lesions):
        root = tracks.find(g)
        if root not in track_names:
            k = per_patient.get(lesion.patient_id, 0)
            per_patient[lesion.patient_id] = k + 1
            track_names[root] = f"T{k}"
        other = members.setdefault((root, lesion.scan_id), lesion)
        if other is not lesion:
            raise InputError(path, f"two lesions of scan {lesion.scan_id} (at "
                             f"{np.round(other.pos, 2).tolist()} and "
                             f"{np.round(lesion.pos, 2).tolist()} mm) are linked into one track "
                             "by the pairs")
    scans = []
    for scan_id, indices in by_scan.items():
        first = lesions[indices[0]]
        nodes = NodeTable.from_arrays(
            pos=[lesions[g].pos for g in indices],
            short_axis_mm=[lesions[g].short_axis_mm for g in indices],
            long_axis_mm=[lesions[g].long_axis_mm for g in indices],
            track_id=[track_names[tracks.find(g)] for g in indices],
        )
        scans.append(Scan(first.patient_id, scan_id, first.timepoint, None, nodes))
    return sorted(scans, key=lambda s: s.scan_id)


def read_dls(path: str | os.PathLike, *, tolerance_mm: float = DEDUP_TOLERANCE_MM) -> list[Scan]:
    """Read a DLS pair JSON file into geometry-only scans (see the module docstring)."""
    return dls_scans(read_dls_pairs(path), tolerance_mm=tolerance_mm, path=path)
