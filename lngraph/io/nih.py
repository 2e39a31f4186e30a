"""Reader for the NIH/TCIA "CT Lymph Nodes" annotation folders (Roth et al., MICCAI 2014).

The collection ships one folder per patient (``ABD_LYMPH_001``, ``MED_LYMPH_001``, …) holding

* ``<CASE>_lymphnodes_physicalPoints.txt`` — one lymph node per line, ``x y z`` in world mm;
* ``<CASE>_lymphnodes_physicalPoints.mps`` — the same points as an MITK point-set XML file;
* ``<CASE>_lymphnodes_sizes.txt`` — one line per node, in the same order: ``short long`` (mm)
  for the abdominal cases, ``short`` alone for the mediastinal ones;
* ``<CASE>_lymphnodes_indices.txt`` — voxel indices of the same nodes (not needed here).

**Frame.** The physical points are ITK/DICOM **LPS** millimetres, so they are stored unchanged.
Evidence, checked on all 176 cases: between any two nodes of a case, x grows with the voxel
index i, y with j and z with k (per-axis fits of ``physicalPoints`` against ``indices`` have
residuals below 0.001 mm and positive slopes equal to the pixel spacing). For an axial CT, i
runs towards the patient's left and j towards the back, which is +x and +y only in LPS; in RAS
both would decrease.

**Sizes.** Sizes are diameters in mm. A ``0`` means "not measured" (one mediastinal node has
it): the short axis becomes ``unmeasured_size_mm`` (default 10 mm, the RECIST 1.1 short-axis
threshold of a pathological lymph node) and the long axis is left unknown, with a warning
naming the file and line. A row written ``long short`` is read as ``short long`` (the short
axis is the smaller by definition), also with a warning.

Each case becomes one geometry-only :class:`~lngraph.io.cohort.Scan` (patient and scan id = the
case name, timepoint ``0``); node ids are ``"0", "1", …`` in file order (the ids of the
``.mps`` file); ``track_id`` is unknown, as the collection has a single time point.
"""

from __future__ import annotations

import os
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from lngraph.io.cohort import NodeTable, Scan, position_problem, size_problem
from lngraph.io.errors import InputError

POINTS_SUFFIX = "_lymphnodes_physicalPoints"
SIZES_SUFFIX = "_lymphnodes_sizes.txt"
#: Short axis (mm) given to a node whose size file says 0 ("not measured").
UNMEASURED_SIZE_MM = 10.0


def _parse_number(text: str, path, line: int | None, what: str | None = None) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise InputError(path, f"not a number: {text!r}", line=line, what=what) from None
    if not np.isfinite(value):
        raise InputError(path, f"not a finite number: {text!r}", line=line, what=what)
    return value


def _rows(path: Path) -> list[tuple[int, list[str]]]:
    """Non-blank lines of a text file as ``(1-based line number, fields)``."""
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not a text file ({exc})") from None
    return [(n, line.split()) for n, line in enumerate(lines, start=1) if line.strip()]


def read_point_list(path: str | os.PathLike) -> np.ndarray:
    """Read a whitespace-separated ``x y z`` file (one point per line) → ``[N, 3]`` float64.

    Blank lines are skipped; anything else that is not three finite numbers within
    ``±MAX_ABS_MM`` (:mod:`lngraph.io.cohort`) is an :class:`InputError` naming the line.
    """
    path = Path(path)
    points = []
    for n, fields in _rows(path):
        if len(fields) != 3:
            raise InputError(path, f"expected three numbers 'x y z', got {len(fields)} "
                             f"field(s): {' '.join(fields)!r}", line=n)
        points.append([_parse_number(f, path, n) for f in fields])
        problem = position_problem(points[-1])
        if problem:
            raise InputError(path, problem, line=n)
    return np.asarray(points, dtype=np.float64).reshape(-1, 3)


def read_mps(path: str | os.PathLike) -> np.ndarray:
    """Read the points of an MITK point-set file (``.mps``) → ``[N, 3]`` world mm, file order.

    Only a single point set with a single time step is accepted. A time step carrying a
    ``Geometry3D`` element stores its points in that geometry's local frame; lngraph does not
    apply such transforms and says so instead of returning wrong coordinates.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise InputError(path, f"not valid XML ({exc})", line=exc.position[0]) from None
    point_sets = root.findall("point_set")
    if root.tag != "point_set_file" or len(point_sets) != 1:
        raise InputError(path, "expected one <point_set> inside <point_set_file> (an MITK "
                         f"point set), found {len(point_sets)} in <{root.tag}>")
    series = point_sets[0].findall("time_series") or [point_sets[0]]
    if len(series) != 1:
        raise InputError(path, f"holds {len(series)} time steps; lngraph reads point sets "
                         "with one")
    if series[0].find("Geometry3D") is not None:
        raise InputError(path, "the time step carries a Geometry3D transform; lngraph reads "
                         "only point sets whose points are world coordinates (MITK file "
                         "version 0.1 without geometry)")
    points = []
    for k, point in enumerate(series[0].findall("point")):
        what = f"point {point.findtext('id', default=str(k)).strip()}"
        coords = [point.findtext(axis) for axis in "xyz"]
        if any(c is None for c in coords):
            raise InputError(path, "a point needs <x>, <y> and <z>", what=what)
        points.append([_parse_number(c.strip(), path, None, what) for c in coords])
        problem = position_problem(points[-1])
        if problem:
            raise InputError(path, problem, what=what)
    return np.asarray(points, dtype=np.float64).reshape(-1, 3)


def read_nih_sizes(path: str | os.PathLike, *,
                   unmeasured_size_mm: float | None = UNMEASURED_SIZE_MM
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Read a ``*_lymphnodes_sizes.txt`` file → ``(short_axis_mm, long_axis_mm)``, each ``[N]``.

    A row is ``short`` or ``short long`` (mm); the long axis is NaN where absent. ``0`` means
    not measured: see the module docstring; with ``unmeasured_size_mm=None`` it is an error.
    """
    path = Path(path)
    short, long_ = [], []
    for n, fields in _rows(path):
        if len(fields) not in (1, 2):
            raise InputError(path, f"expected 'short' or 'short long' (mm), got {len(fields)} "
                             f"fields: {' '.join(fields)!r}", line=n)
        values = [_parse_number(f, path, n) for f in fields]
        if min(values) < 0:
            raise InputError(path, f"sizes must not be negative, got {' '.join(fields)!r}",
                             line=n)
        if 0 in values:
            if unmeasured_size_mm is None:
                raise InputError(path, "size 0 (not measured)", line=n)
            warnings.warn(f"{path}, line {n}: size 0 means not measured; using a short axis "
                          f"of {unmeasured_size_mm:g} mm", stacklevel=2)
            values = [unmeasured_size_mm]
        if len(values) == 2 and values[0] > values[1]:
            warnings.warn(f"{path}, line {n}: first size {fields[0]} exceeds second "
                          f"{fields[1]}; read as short {fields[1]}, long {fields[0]}",
                          stacklevel=2)
            values = sorted(values)
        problem = size_problem(values[0], values[1] if len(values) == 2 else np.nan)
        if problem:
            raise InputError(path, problem, line=n)
        short.append(values[0])
        long_.append(values[1] if len(values) == 2 else np.nan)
    return np.asarray(short, dtype=np.float64), np.asarray(long_, dtype=np.float64)


def _case_name(folder: Path) -> str | None:
    """The ``<CASE>`` of ``<CASE>_lymphnodes_physicalPoints.txt|.mps`` in ``folder``, if any."""
    names = sorted({p.name[: -len(p.suffix) - len(POINTS_SUFFIX)]
                    for p in folder.glob(f"*{POINTS_SUFFIX}.*") if p.suffix in (".txt", ".mps")})
    if len(names) > 1:
        raise InputError(folder, f"holds annotations of several cases ({', '.join(names)}); "
                         "expected one case per folder")
    return names[0] if names else None


def read_nih_case(folder: str | os.PathLike, *, points: str = "txt",
                  unmeasured_size_mm: float | None = UNMEASURED_SIZE_MM) -> Scan:
    """Read one NIH case folder into a geometry-only :class:`Scan`.

    Args:
        folder: the case folder (e.g. ``ABD_LYMPH_001``).
        points: the point source, ``"txt"`` (``*_physicalPoints.txt``) or ``"mps"``.
        unmeasured_size_mm: short axis used where the sizes file says 0 (``None``: error).
    """
    if points not in ("txt", "mps"):
        raise ValueError(f"points must be 'txt' or 'mps', got {points!r}")
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "folder not found")
    case = _case_name(folder)
    if case is None:
        raise InputError(folder, f"no *{POINTS_SUFFIX}.txt or .mps file: not an NIH CT Lymph "
                         "Nodes case folder")
    points_path = folder / f"{case}{POINTS_SUFFIX}.{points}"
    pos = read_point_list(points_path) if points == "txt" else read_mps(points_path)
    sizes_path = folder / f"{case}{SIZES_SUFFIX}"
    short, long_ = read_nih_sizes(sizes_path, unmeasured_size_mm=unmeasured_size_mm)
    if len(short) != len(pos):
        raise InputError(sizes_path, f"{len(short)} size rows for {len(pos)} points in "
                         f"{points_path.name}; expected one row per point")
    nodes = NodeTable.from_arrays(pos, short, long_)
    return Scan(patient_id=case, scan_id=case, timepoint="0", image=None, nodes=nodes)


def read_nih(path: str | os.PathLike, *, points: str = "txt",
             unmeasured_size_mm: float | None = UNMEASURED_SIZE_MM) -> list[Scan]:
    """Read a folder of NIH case folders (or one case folder) → one :class:`Scan` per case.

    Cases are returned sorted by name; arguments as in :func:`read_nih_case`.
    """
    root = Path(path)
    if not root.is_dir():
        raise InputError(root, "folder not found")
    if _case_name(root) is not None:
        return [read_nih_case(root, points=points, unmeasured_size_mm=unmeasured_size_mm)]
    cases = sorted(p for p in root.iterdir() if p.is_dir() and _case_name(p) is not None)
    if not cases:
        raise InputError(root, f"no NIH CT Lymph Nodes case folders (holding "
                         f"*{POINTS_SUFFIX}.txt) found")
    return [read_nih_case(c, points=points, unmeasured_size_mm=unmeasured_size_mm)
            for c in cases]
