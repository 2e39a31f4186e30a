"""3D Slicer point files (``.mrk.json`` and the legacy ``.fcsv``): read point lists, write
one ``.mrk.json`` per scan.

**Reading ``.mrk.json``.** Every point list (markup ``"type": "Fiducial"``) in the file
contributes its placed control points (``positionStatus`` ``"defined"`` or absent); other markup
types (lines, curves, planes, ROIs) and unplaced points are skipped. Per control point:

* ``position`` → the node centre, converted to LPS mm. Each markup must state its
  ``coordinateSystem`` (``"LPS"`` or ``"RAS"``). Slicer itself assumes LPS when the key is
  missing, but hand-written files often hold the RAS coordinates that Slicer's GUI displays, so
  lngraph refuses to guess and raises :class:`~lngraph.io.errors.InputError`.
  ``coordinateUnits`` may be ``"mm"`` (the default) or ``"um"``.
* ``label`` → ``node_id`` (non-empty, unique within the file).
* ``description`` → ``track_id`` and sizes, by this rule:

  - empty: no track, no size;
  - without ``=``: the whole text is the ``track_id`` (e.g. ``LN7``);
  - with ``=``: ``key=value`` items separated by ``;``, keys ``track`` (the track id),
    ``short`` and ``long`` (diameters in mm), e.g. ``track=LN7; short=8.5; long=12``.

  A node needs a short axis: without ``short=`` the ``default_short_axis_mm`` is used, and
  with no default that is an error naming the file, the control point and
  ``--default-short-axis``. A long axis smaller than the short axis, a size above 100 m or a
  position beyond ±100 m (``MAX_ABS_MM`` of :mod:`lngraph.io.cohort`) is an error too.

**Reading ``.fcsv``** (:func:`read_fcsv`), Slicer's fiducial CSV: ``#`` header lines, then one
point per line, columns ``id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID`` (or
those of a ``# columns =`` line). The header ``# CoordinateSystem = LPS`` or ``RAS`` (``1`` or
``0`` in Slicer before 4.11) must be present; RAS is converted to LPS. ``label`` and ``desc``
follow the rules above; every line is a placed point.

**Writing.** :func:`write_markups` writes one scan's nodes as a single point list in LPS mm,
label = ``node_id``, description in the ``key=value`` form above, so that the file opens in
3D Slicer and reads back unchanged (atomic write).

**Scans.** One file per scan. :func:`read_markups_folder` reads a folder of files named
``PATIENT_TIMEPOINT.mrk.json`` or ``PATIENT_TIMEPOINT.fcsv``: the text after the last ``_`` is
the timepoint (an integer or an ISO date ``YYYY-MM-DD``), the text before it the patient, and
the whole stem the ``scan_id`` (e.g. ``case07_2021-03-04.mrk.json``); or one file of any name
with the patient and timepoint given. :func:`read_markups_table` reads the files a table lists
(``file,patient_id,timepoint[,scan_id][,image]``), so names do not matter.
:func:`write_scan_markups` writes a folder :func:`read_markups_folder` reads.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lngraph.io.atomic import write_text_atomic
from lngraph.io.cohort import (
    NodeTable,
    Scan,
    position_problem,
    read_csv_table,
    size_problem,
    timepoint_key,
)
from lngraph.io.coords import ras_to_lps
from lngraph.io.errors import InputError, read_json
from lngraph.io.image import check_image

SCHEMA = ("https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/"
          "Resources/Schema/markups-schema-v1.0.3.json#")
POINT_LIST_TYPE = "Fiducial"
_UNITS_TO_MM = {"mm": 1.0, "um": 1e-3}
_DESCRIPTION_KEYS = ("track", "short", "long")


def parse_description(text: str, path, what: str) -> tuple[str | None, float, float]:
    """``description`` → ``(track_id or None, short mm or NaN, long mm or NaN)`` (module rule)."""
    text = text.strip()
    if "=" not in text:
        return (text or None), np.nan, np.nan
    items: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        key, sep, value = (s.strip() for s in item.partition("="))
        if not sep or key not in _DESCRIPTION_KEYS or key in items:
            raise InputError(path, f"description item {item!r} is not one of "
                             f"{', '.join(k + '=…' for k in _DESCRIPTION_KEYS)} (each at most "
                             "once, separated by ';')", what=what)
        items[key] = value
    sizes = []
    for key in ("short", "long"):
        if key not in items:
            sizes.append(np.nan)
            continue
        try:
            value = float(items[key])
        except ValueError:
            value = np.nan
        if not np.isfinite(value) or value <= 0:
            raise InputError(path, f"{key}={items[key]!r} in the description is not a "
                             "positive number of mm", what=what)
        sizes.append(value)
    return items.get("track") or None, sizes[0], sizes[1]


def format_description(track_id: str | None, short_axis_mm: float, long_axis_mm: float) -> str:
    """The ``key=value`` description :func:`parse_description` reads back."""
    items = []
    if track_id is not None:
        if any(c in str(track_id) for c in ";="):
            raise ValueError(f"track_id {track_id!r} must not contain ';' or '='")
        items.append(f"track={track_id}")
    for key, value in (("short", short_axis_mm), ("long", long_axis_mm)):
        if np.isfinite(value):
            items.append(f"{key}={value:.4f}".rstrip("0").rstrip("."))
    return "; ".join(items)


def _load(path: Path) -> dict:
    document = read_json(path)
    if not isinstance(document, dict) or not isinstance(document.get("markups"), list):
        raise InputError(path, "not a Slicer markups file: no 'markups' list")
    return document


def _to_lps(markup: dict, path: Path, what: str):
    """The function mapping this markup's positions to LPS mm."""
    if "coordinateSystem" not in markup:
        raise InputError(path, "no coordinateSystem: state \"LPS\" or \"RAS\" (lngraph does not "
                         "guess the frame)", what=what)
    system = markup["coordinateSystem"]
    if system not in ("LPS", "RAS"):
        raise InputError(path, f"coordinateSystem must be \"LPS\" or \"RAS\", got {system!r}",
                         what=what)
    units = markup.get("coordinateUnits", "mm")
    units = units[0] if isinstance(units, list) and units else units
    if units not in _UNITS_TO_MM:
        raise InputError(path, f"coordinateUnits must be \"mm\" or \"um\", got {units!r}",
                         what=what)
    return _frame(system, _UNITS_TO_MM[units])


def _frame(system: str, scale: float = 1.0):
    """The function mapping positions given in ``system`` (``"LPS"`` or ``"RAS"``) to LPS mm."""
    if system == "RAS":
        return lambda p: ras_to_lps(p) * scale
    return lambda p: np.asarray(p, dtype=np.float64) * scale


def _is_xyz(position) -> bool:
    return isinstance(position, list) and len(position) == 3 and all(
        isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)
        for v in position)


class _PointRows:
    """The validated control points of one file, gathered into a :class:`NodeTable` (the
    per-point rules of the module docstring, shared by the JSON and ``.fcsv`` readers)."""

    def __init__(self, path: Path, default_short_axis_mm: float | None):
        self.path = path
        self.default_short_axis_mm = default_short_axis_mm
        self.ids, self.pos, self.short, self.long, self.tracks = [], [], [], [], []
        self.seen_ids: dict[str, str] = {}
        self.seen_tracks: dict[str, str] = {}

    def add(self, label, position, description: str, to_lps, *, what: str | None,
            line: int | None = None) -> None:
        """Check one point (``position`` as given in the file) and add it."""
        path = self.path
        label = str(label).strip()
        if not label:
            raise InputError(path, "empty label (the label is the node_id)", line=line,
                             what=what)
        what = f"{what} {label!r}" if what else f"label {label!r}"
        first = what if line is None else f"line {line}"
        if not _is_xyz(position):
            raise InputError(path, f"position must be three finite numbers, got {position!r}",
                             line=line, what=what)
        if label in self.seen_ids:
            raise InputError(path, f"duplicate label {label!r} (first at "
                             f"{self.seen_ids[label]})", line=line, what=what)
        self.seen_ids[label] = first
        try:
            track, short_mm, long_mm = parse_description(description, path, what)
        except InputError as exc:
            if line is None:
                raise
            raise InputError(path, exc.problem, line=line, what=what) from None
        if track is not None:
            if track in self.seen_tracks:
                raise InputError(path, f"track {track!r} appears twice (first at "
                                 f"{self.seen_tracks[track]}); a lymph node occurs at most once "
                                 "per scan", line=line, what=what)
            self.seen_tracks[track] = first
        if not np.isfinite(short_mm):
            if self.default_short_axis_mm is None:
                raise InputError(path, "no short axis: add 'short=<mm>' to the control point "
                                 "description, or give one for every such point with "
                                 "--default-short-axis MM", line=line, what=what)
            short_mm = self.default_short_axis_mm
        problem = size_problem(short_mm, long_mm)
        if problem:
            raise InputError(path, problem, line=line, what=what)
        lps = to_lps(position)
        problem = position_problem(lps)
        if problem:
            raise InputError(path, f"position {position}: {problem}", line=line, what=what)
        self.ids.append(label)
        self.pos.append(lps)
        self.short.append(short_mm)
        self.long.append(long_mm)
        self.tracks.append(track)

    def table(self) -> NodeTable:
        return NodeTable.from_arrays(np.asarray(self.pos, dtype=np.float64).reshape(-1, 3),
                                     self.short, self.long, node_id=self.ids,
                                     track_id=np.array(self.tracks, dtype=object))


def read_markups(path: str | os.PathLike, *, default_short_axis_mm: float | None = None
                 ) -> NodeTable:
    """Read the placed points of a ``.mrk.json`` file into a :class:`NodeTable` (LPS mm).

    Args:
        path: the markups file.
        default_short_axis_mm: short axis of nodes whose description gives none; ``None``
            makes such a node an error.

    Raises:
        InputError: naming the file, the markup or control point, and the problem.
    """
    path = Path(path)
    document = _load(path)
    rows = _PointRows(path, default_short_axis_mm)
    n_lists = 0
    for m, markup in enumerate(document["markups"], start=1):
        if not isinstance(markup, dict) or markup.get("type") != POINT_LIST_TYPE:
            continue
        n_lists += 1
        to_lps = _to_lps(markup, path, f"markup {m}")
        points = markup.get("controlPoints", [])
        if not isinstance(points, list):
            raise InputError(path, "controlPoints must be a list", what=f"markup {m}")
        for c, point in enumerate(points, start=1):
            what = f"markup {m}, control point {c}"
            if not isinstance(point, dict):
                raise InputError(path, "a control point must be a JSON object", what=what)
            if point.get("positionStatus", "defined") != "defined":
                continue
            rows.add(point.get("label", ""), point.get("position"),
                     str(point.get("description", "")), to_lps, what=what)
    if n_lists == 0:
        raise InputError(path, f"no point list (markup of type {POINT_LIST_TYPE!r}) in the file")
    return rows.table()


#: Columns of a ``.fcsv`` file when its header has no ``# columns =`` line (Slicer 4.4+).
FCSV_COLUMNS = ("id", "x", "y", "z", "ow", "ox", "oy", "oz", "vis", "sel", "lock", "label",
                "desc", "associatedNodeID")
#: ``# CoordinateSystem =`` values of ``.fcsv`` files: names, and the numbers of Slicer < 4.11.
_FCSV_SYSTEMS = {"LPS": "LPS", "RAS": "RAS", "0": "RAS", "1": "LPS"}


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not a text file ({exc})") from None


def _number(text: str):
    """``text`` as a float, or ``text`` itself when it is not a finite number."""
    try:
        value = float(text)
    except ValueError:
        return text
    return value if np.isfinite(value) else text


def read_fcsv(path: str | os.PathLike, *, default_short_axis_mm: float | None = None
              ) -> NodeTable:
    """Read a Slicer fiducial CSV file (``.fcsv``) into a :class:`NodeTable` (LPS mm).

    The header line ``# CoordinateSystem = LPS`` or ``RAS`` (``1`` or ``0`` in files of Slicer
    before 4.11) gives the frame of the ``x,y,z`` columns (mm); a file without it is refused.
    ``# columns = …`` names the columns (default :data:`FCSV_COLUMNS`); ``label`` is the
    ``node_id`` and ``desc`` the description, read as in :func:`read_markups`.

    Args:
        path: the ``.fcsv`` file.
        default_short_axis_mm: as in :func:`read_markups`.

    Raises:
        InputError: naming the file, the line and the problem.
    """
    path = Path(path)
    text = _read_text(path)
    system, columns, points = None, list(FCSV_COLUMNS), []
    for n, line in enumerate(text.splitlines(), start=1):
        if line.startswith("#"):
            key, sep, value = (part.strip() for part in line[1:].partition("="))
            if sep and key.lower() == "coordinatesystem":
                if value.upper() not in _FCSV_SYSTEMS:
                    raise InputError(path, f"CoordinateSystem must be LPS or RAS (1 or 0), got "
                                     f"{value!r}", line=n)
                system = _FCSV_SYSTEMS[value.upper()]
            elif sep and key.lower() == "columns":
                columns = [c.strip() for c in value.split(",")]
            continue
        if line.strip():
            points.append((n, line))
    if system is None:
        raise InputError(path, "no '# CoordinateSystem = LPS' (or RAS) header line: state the "
                         "frame of the x,y,z columns (lngraph does not guess it)")
    missing = [c for c in ("x", "y", "z", "label") if c not in columns]
    if missing:
        raise InputError(path, f"the '# columns =' line lacks {', '.join(missing)}")
    where = {c: columns.index(c) for c in ("x", "y", "z", "label")}
    desc = columns.index("desc") if "desc" in columns else None
    rows = _PointRows(path, default_short_axis_mm)
    to_lps = _frame(system)
    for n, line in points:
        fields = next(csv.reader([line]))
        if len(fields) <= max(where.values()):
            raise InputError(path, f"{len(fields)} fields, expected {len(columns)} "
                             f"({','.join(columns)})", line=n)
        position = [_number(fields[where[c]].strip()) for c in "xyz"]
        description = fields[desc] if desc is not None and desc < len(fields) else ""
        rows.add(fields[where["label"]], position, description, to_lps, what=None, line=n)
    return rows.table()


def read_points(path: str | os.PathLike, *, default_short_axis_mm: float | None = None
                ) -> NodeTable:
    """Read a Slicer point file of either format: ``.fcsv`` (:func:`read_fcsv`) or markups JSON
    (:func:`read_markups`), told apart by the name's ending (``.fcsv``, ``.json``) or, for any
    other name, by the first character (``{`` for JSON)."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".fcsv"):
        return read_fcsv(path, default_short_axis_mm=default_short_axis_mm)
    if not name.endswith(".json") and not _read_text(path).lstrip().startswith("{"):
        return read_fcsv(path, default_short_axis_mm=default_short_axis_mm)
    return read_markups(path, default_short_axis_mm=default_short_axis_mm)


def markups_document(nodes: NodeTable, name: str | None = None) -> dict:
    """The ``.mrk.json`` content for ``nodes``: one point list, LPS mm."""
    markup = {
        "type": POINT_LIST_TYPE,
        "coordinateSystem": "LPS",
        "coordinateUnits": "mm",
        "locked": False,
        "labelFormat": "%N-%d",
        "controlPoints": [
            {
                "id": str(k + 1),
                "label": str(nodes.node_id[k]),
                "description": format_description(nodes.track_id[k], nodes.short_axis_mm[k],
                                                  nodes.long_axis_mm[k]),
                "position": [float(v) for v in nodes.pos[k]],
                "positionStatus": "defined",
            }
            for k in range(len(nodes))
        ],
        "display": {"pointLabelsVisibility": True},
    }
    if name is not None:
        markup = {"name": name, **markup}
    return {"@schema": SCHEMA, "markups": [markup]}


def write_markups(path: str | os.PathLike, nodes: NodeTable, *, name: str | None = None) -> Path:
    """Write ``nodes`` as a Slicer point list (LPS mm) to ``path`` atomically.

    Args:
        path: the output file, by convention ``<name>.mrk.json``.
        nodes: the scan's nodes; ``track_id`` and sizes go into the descriptions.
        name: the point list's name shown in Slicer (default: Slicer uses the file name).
    """
    text = json.dumps(markups_document(nodes, name), indent=2) + "\n"
    return write_text_atomic(path, text)


MARKUPS_SUFFIX = ".mrk.json"
FCSV_SUFFIX = ".fcsv"
#: Point files :func:`read_markups_folder` reads from a folder.
POINT_SUFFIXES = (MARKUPS_SUFFIX, FCSV_SUFFIX)
#: Image names tried by :func:`read_markups_folder` (``<scan_id><suffix>``, or a folder).
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
#: Columns of the table :func:`read_markups_table` reads (and optionally scan_id, image).
TABLE_COLUMNS = ("file", "patient_id", "timepoint")
#: How a user names the scan of a file whose name does not (flags of ``lngraph import slicer``).
NAMING_HINT = ("or name the scan with --patient P --timepoint T (one file) or --table FILE.csv "
               "(columns file,patient_id,timepoint[,image])")


def timepoint_problem(timepoint: str) -> str | None:
    """What is wrong with a timepoint (an integer or an ISO date ``YYYY-MM-DD``, as
    :func:`~lngraph.io.cohort.timepoint_key` reads them), or ``None``."""
    try:
        timepoint_key([timepoint])
        return None
    except InputError:
        return f"timepoint {timepoint!r} is neither an integer nor an ISO date (YYYY-MM-DD)"


def scan_name(path: str | os.PathLike) -> tuple[str, str, str]:
    """``PATIENT_TIMEPOINT.mrk.json`` (or ``.fcsv``) → ``(patient_id, timepoint, scan_id)``.

    Raises:
        InputError: the name does not parse; the message names the flags that name the scan
            instead (:data:`NAMING_HINT`).
    """
    path = Path(path)
    suffix = next((s for s in POINT_SUFFIXES if path.name.endswith(s)), None)
    rule = (f"file name must be PATIENT_TIMEPOINT{MARKUPS_SUFFIX} or PATIENT_TIMEPOINT"
            f"{FCSV_SUFFIX} (timepoint an integer or YYYY-MM-DD after the last '_', e.g. "
            f"case07_1{MARKUPS_SUFFIX})")
    if suffix is None:
        raise InputError(path, f"{rule}; {NAMING_HINT}")
    stem = path.name[: -len(suffix)]
    patient, sep, timepoint = stem.rpartition("_")
    if not sep or not patient or not timepoint:
        raise InputError(path, f"{rule}; {NAMING_HINT}")
    problem = timepoint_problem(timepoint)
    if problem:
        raise InputError(path, f"{rule}, but the {problem}; {NAMING_HINT}")
    return patient, timepoint, stem


def _image_for(scan_id: str, images: Path) -> Path:
    for candidate in [images / (scan_id + suffix) for suffix in IMAGE_SUFFIXES] + [
            images / scan_id]:
        if candidate.exists():
            return check_image(candidate, how_to_choose=(
                f"giving the scans' images in the image column of a --table FILE.csv, "
                f"there as FOLDER#SERIESUID (--images takes the folder {scan_id}/ whole)"))
    raise InputError(images, f"no image for scan {scan_id}: expected {scan_id}.nii.gz (or "
                     f"{', '.join(IMAGE_SUFFIXES[1:])}) or a DICOM folder {scan_id}/ in the "
                     "--images folder, or give the scan's image in the image column of a "
                     "--table FILE.csv")


def _images_folder(images: str | os.PathLike | None) -> Path | None:
    if images is not None and not Path(images).is_dir():
        raise InputError(images, "image folder (--images) not found")
    return None if images is None else Path(images)


def read_markups_folder(path: str | os.PathLike, *, default_short_axis_mm: float | None = None,
                        images: str | os.PathLike | None = None, patient_id: str | None = None,
                        timepoint: str | None = None) -> list[Scan]:
    """Read Slicer point files (a folder of them, or one file) into scans.

    Each file is one scan, named ``PATIENT_TIMEPOINT.mrk.json`` or ``PATIENT_TIMEPOINT.fcsv``
    (:func:`scan_name`), unless ``patient_id`` and ``timepoint`` name the scan of a single file
    (of any name; its ``scan_id`` is then ``PATIENT_TIMEPOINT``).

    Args:
        path: a folder (its ``*.mrk.json`` and ``*.fcsv`` files, not recursive) or one file.
        default_short_axis_mm: as in :func:`read_markups`.
        images: optional folder holding each scan's image as ``<scan_id>.nii.gz`` (or another
            suffix of :data:`IMAGE_SUFFIXES`, or a DICOM series folder ``<scan_id>/``, which
            must hold one series); a missing image is an error. Without it the scans are
            geometry-only.
        patient_id, timepoint: the scan of a single file (both or neither).

    Raises:
        InputError: a file, name or image is wrong (naming it and the flags that help).
    """
    path = Path(path)
    if (patient_id is None) != (timepoint is None):
        raise ValueError("give both patient_id and timepoint, or neither")
    if path.is_dir():
        if patient_id is not None:
            raise InputError(path, "--patient/--timepoint name the scan of one file, but this "
                             "is a folder; name the scan of each file with --table FILE.csv "
                             "(columns file,patient_id,timepoint[,image])")
        files = sorted(f for f in path.iterdir() if f.name.endswith(POINT_SUFFIXES))
        if not files:
            raise InputError(path, f"no *{MARKUPS_SUFFIX} or *{FCSV_SUFFIX} files in the folder")
    elif path.is_file():
        files = [path]
    else:
        raise InputError(path, "file or folder not found")
    images = _images_folder(images)
    if patient_id is not None:
        problem = timepoint_problem(timepoint) or (None if patient_id.strip() else
                                                   "the patient id is empty")
        if problem:
            raise InputError(path, f"--patient/--timepoint: {problem}")
        names = [(patient_id, timepoint, f"{patient_id}_{timepoint}")]
    else:
        names = [scan_name(file) for file in files]  # every name checked before any file read
    scans = []
    for file, (patient, tp, scan_id) in zip(files, names, strict=True):
        nodes = read_points(file, default_short_axis_mm=default_short_axis_mm)
        image = None if images is None else _image_for(scan_id, images)
        scans.append(Scan(patient, scan_id, tp, image, nodes))
    return scans


@dataclass(frozen=True)
class ScanRow:
    """One row of an import table (``lngraph import seg``, ``slicer --table``).

    ``values`` holds the row's other columns, stripped; :meth:`path` resolves one of them
    relative to the table's folder.
    """

    table: Path
    line: int
    patient_id: str
    timepoint: str
    scan_id: str
    values: dict[str, str]

    @property
    def what(self) -> str:
        return f"scan {self.scan_id}"

    def path(self, column: str) -> Path | None:
        """The column's path, relative to the table's folder unless absolute; ``None`` if
        empty."""
        value = self.values.get(column, "")
        return (self.table.parent / value) if value else None

    def error(self, problem: str) -> InputError:
        return InputError(self.table, problem, line=self.line, what=self.what)


def read_scan_table(path: str | os.PathLike, columns: Sequence[str],
                    optional: Sequence[str] = (), *, may_be_empty: Sequence[str] = ()
                    ) -> list[ScanRow]:
    """Read an import table, one scan per row.

    ``columns`` (in the order messages list them, including ``patient_id`` and ``timepoint``)
    must be present and filled in, except those in ``may_be_empty``; ``optional`` columns may
    be absent or empty; ``scan_id`` is always optional (default ``PATIENT_TIMEPOINT``).

    Raises:
        InputError: naming the table, the line and the problem: a missing or unknown column, an
            empty value, a timepoint that is neither an integer nor an ISO date, timepoints of
            a patient of both kinds, a scan_id or a (patient, timepoint) twice.
    """
    path = Path(path)
    known = tuple(columns)
    if "patient_id" not in known or "timepoint" not in known:
        raise ValueError("columns must include patient_id and timepoint")
    frame = read_csv_table(path, known)
    allowed = {*known, "scan_id", *optional}
    unknown = [c for c in frame.columns if c not in allowed]
    if unknown:
        hint = ("; a DICOM series is chosen in the image column as FOLDER#SERIESUID"
                if any("series" in c.lower() for c in unknown) else "")
        raise InputError(path, f"unknown column(s) {', '.join(map(repr, unknown))}; the columns "
                         f"are {', '.join(known)} and optionally "
                         f"{', '.join(['scan_id', *optional])}{hint}", line=1)
    if frame.empty:
        raise InputError(path, "the table has no rows")
    rows: list[ScanRow] = []
    seen_scans: dict[str, int] = {}
    seen_times: dict[tuple[str, str], int] = {}
    for r, record in enumerate(frame.to_dict("records")):
        line = r + 2
        for column in known:
            if record[column] == "" and column not in may_be_empty:
                raise InputError(path, f"{column} is empty", line=line)
        patient, timepoint = record["patient_id"], record["timepoint"]
        problem = timepoint_problem(timepoint)
        if problem:
            raise InputError(path, problem, line=line)
        scan_id = record.get("scan_id") or f"{patient}_{timepoint}"
        if scan_id in seen_scans:
            raise InputError(path, f"scan_id {scan_id!r} appears twice (first on line "
                             f"{seen_scans[scan_id]})", line=line)
        if (patient, timepoint) in seen_times:
            raise InputError(path, f"patient {patient!r} has two rows at timepoint "
                             f"{timepoint!r} (first on line {seen_times[patient, timepoint]})",
                             line=line)
        seen_scans[scan_id] = seen_times[patient, timepoint] = line
        values = {k: v for k, v in record.items() if k not in ("patient_id", "timepoint",
                                                               "scan_id")}
        rows.append(ScanRow(path, line, patient, timepoint, scan_id, values))
    by_patient: dict[str, list[ScanRow]] = {}
    for row in rows:
        by_patient.setdefault(row.patient_id, []).append(row)
    for patient, items in by_patient.items():
        odd = [row for row in items if _is_integer(row.timepoint) != _is_integer(
            items[0].timepoint)]
        if odd:
            raise InputError(path, f"patient {patient!r} mixes integer and date timepoints "
                             f"({', '.join(row.timepoint for row in items)}); use one kind per "
                             "patient", line=odd[0].line)
    return rows


def _is_integer(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def read_markups_table(table: str | os.PathLike, *,
                       default_short_axis_mm: float | None = None,
                       images: str | os.PathLike | None = None) -> list[Scan]:
    """Read the Slicer point files a table lists, one scan per row.

    Columns: ``file`` (a ``.mrk.json`` or ``.fcsv`` file of any name), ``patient_id``,
    ``timepoint``, optional ``scan_id`` (default ``PATIENT_TIMEPOINT``) and ``image`` (may be
    empty; a DICOM folder with several series is chosen as ``FOLDER#SERIESUID``). Paths are
    relative to the table's folder unless absolute.

    Args:
        table: the CSV table.
        default_short_axis_mm: as in :func:`read_markups`.
        images: as in :func:`read_markups_folder`; not together with an ``image`` column.

    Raises:
        InputError: naming the table, line and problem, or the point file and its problem.
    """
    rows = read_scan_table(table, TABLE_COLUMNS, ("image",))
    has_image_column = any("image" in row.values for row in rows)
    if has_image_column and images is not None:
        raise InputError(table, "the table has an image column and --images was given too; "
                         "use one of them", line=1)
    images = _images_folder(images)
    scans = []
    for row in rows:
        file = row.path("file")
        if not file.is_file():
            raise row.error(f"file {row.values['file']!r} not found (looked for {file})")
        nodes = read_points(file, default_short_axis_mm=default_short_axis_mm)
        if images is not None:
            image = _image_for(row.scan_id, images)
        elif row.path("image") is not None:
            try:
                image = check_image(row.path("image"))
            except InputError as exc:
                raise row.error(f"image {row.values['image']!r}: {exc}") from None
        else:
            image = None
        scans.append(Scan(row.patient_id, row.scan_id, row.timepoint, image, nodes))
    return scans


def write_scan_markups(folder: str | os.PathLike, scans: Iterable[Scan]) -> list[Path]:
    """Write each scan's nodes to ``folder/PATIENT_TIMEPOINT.mrk.json`` (readable by
    :func:`read_markups_folder`); returns the paths."""
    folder = Path(folder)
    return [write_markups(folder / f"{s.patient_id}_{s.timepoint}{MARKUPS_SUFFIX}", s.nodes,
                          name=s.scan_id) for s in scans]
