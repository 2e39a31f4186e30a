"""3D Slicer markups files (``.mrk.json``): read point lists, write one file per scan.

**Reading.** Every point list (markup ``"type": "Fiducial"``) in the file contributes its
placed control points (``positionStatus`` ``"defined"`` or absent); other markup types (lines,
curves, planes, ROIs) and unplaced points are skipped. Per control point:

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
  with no default that is an error naming the file and control point. A long axis smaller than
  the short axis, a size above 100 m or a position beyond ±100 m (``MAX_ABS_MM`` of
  :mod:`lngraph.io.cohort`) is an error too.

**Writing.** :func:`write_markups` writes one scan's nodes as a single point list in LPS mm,
label = ``node_id``, description in the ``key=value`` form above, so that the file opens in
3D Slicer and reads back unchanged (atomic write).

**Folders.** One file per scan, named ``PATIENT_TIMEPOINT.mrk.json``: the text after the last
``_`` is the timepoint (an integer or an ISO date ``YYYY-MM-DD``), the text before it the
patient, and the whole stem the ``scan_id`` (e.g. ``case07_2021-03-04.mrk.json``).
:func:`read_markups_folder` reads such a folder; :func:`write_scan_markups` writes one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from lngraph.io.atomic import write_text_atomic
from lngraph.io.cohort import NodeTable, Scan, position_problem, size_problem
from lngraph.io.coords import ras_to_lps
from lngraph.io.errors import InputError, read_json

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
    scale = _UNITS_TO_MM[units]
    if system == "RAS":
        return lambda p: ras_to_lps(p) * scale
    return lambda p: np.asarray(p, dtype=np.float64) * scale


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
    ids, pos, short, long_, tracks = [], [], [], [], []
    seen_ids: dict[str, str] = {}
    seen_tracks: dict[str, str] = {}
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
            label = str(point.get("label", "")).strip()
            if not label:
                raise InputError(path, "empty label (the label is the node_id)", what=what)
            what = f"{what} {label!r}"
            position = point.get("position")
            if not isinstance(position, list) or len(position) != 3 or not all(
                    isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)
                    for v in position):
                raise InputError(path, f"position must be three finite numbers, got "
                                 f"{position!r}", what=what)
            if label in seen_ids:
                raise InputError(path, f"duplicate label {label!r} (first at "
                                 f"{seen_ids[label]})", what=what)
            seen_ids[label] = what
            track, short_mm, long_mm = parse_description(str(point.get("description", "")),
                                                         path, what)
            if track is not None:
                if track in seen_tracks:
                    raise InputError(path, f"track {track!r} appears twice (first at "
                                     f"{seen_tracks[track]}); a lymph node occurs at most once "
                                     "per scan", what=what)
                seen_tracks[track] = what
            if not np.isfinite(short_mm):
                if default_short_axis_mm is None:
                    raise InputError(path, "no short axis: add 'short=<mm>' to the control "
                                     "point description or give a default short axis",
                                     what=what)
                short_mm = default_short_axis_mm
            problem = size_problem(short_mm, long_mm)
            if problem:
                raise InputError(path, problem, what=what)
            lps = to_lps(position)
            problem = position_problem(lps)
            if problem:
                raise InputError(path, f"position {position}: {problem}", what=what)
            ids.append(label)
            pos.append(lps)
            short.append(short_mm)
            long_.append(long_mm)
            tracks.append(track)
    if n_lists == 0:
        raise InputError(path, f"no point list (markup of type {POINT_LIST_TYPE!r}) in the file")
    return NodeTable.from_arrays(np.asarray(pos, dtype=np.float64).reshape(-1, 3), short,
                                 long_, node_id=ids, track_id=np.array(tracks, dtype=object))


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
#: Image names tried by :func:`read_markups_folder` (``<scan_id><suffix>``, or a folder).
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def scan_name(path: str | os.PathLike) -> tuple[str, str, str]:
    """``PATIENT_TIMEPOINT.mrk.json`` → ``(patient_id, timepoint, scan_id)``."""
    path = Path(path)
    if not path.name.endswith(MARKUPS_SUFFIX):
        raise InputError(path, f"a markups file name must end in {MARKUPS_SUFFIX}")
    stem = path.name[: -len(MARKUPS_SUFFIX)]
    patient, sep, timepoint = stem.rpartition("_")
    if not sep or not patient or not timepoint:
        raise InputError(path, "file name must be PATIENT_TIMEPOINT.mrk.json (timepoint an "
                         "integer or YYYY-MM-DD after the last '_'), e.g. case07_1.mrk.json")
    return patient, timepoint, stem


def _image_for(scan_id: str, images: Path) -> Path:
    for candidate in [images / (scan_id + suffix) for suffix in IMAGE_SUFFIXES] + [
            images / scan_id]:
        if candidate.exists():
            return candidate
    raise InputError(images, f"no image for scan {scan_id}: expected {scan_id}.nii.gz (or "
                     f"{', '.join(IMAGE_SUFFIXES[1:])}) or a DICOM folder {scan_id}/")


def read_markups_folder(path: str | os.PathLike, *, default_short_axis_mm: float | None = None,
                        images: str | os.PathLike | None = None) -> list[Scan]:
    """Read ``PATIENT_TIMEPOINT.mrk.json`` files (a folder of them, or one file) into scans.

    Args:
        path: a folder (its ``*.mrk.json`` files, not recursive) or a single file.
        default_short_axis_mm: as in :func:`read_markups`.
        images: optional folder holding each scan's image as ``<scan_id>.nii.gz`` (or another
            suffix of :data:`IMAGE_SUFFIXES`, or a DICOM series folder ``<scan_id>/``); a
            missing image is an error. Without it the scans are geometry-only.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob(f"*{MARKUPS_SUFFIX}"))
        if not files:
            raise InputError(path, f"no *{MARKUPS_SUFFIX} files in the folder")
    elif path.is_file():
        files = [path]
    else:
        raise InputError(path, "file or folder not found")
    if images is not None and not Path(images).is_dir():
        raise InputError(images, "image folder not found")
    scans = []
    for file in files:
        patient, timepoint, scan_id = scan_name(file)
        nodes = read_markups(file, default_short_axis_mm=default_short_axis_mm)
        image = None if images is None else _image_for(scan_id, Path(images))
        scans.append(Scan(patient, scan_id, timepoint, image, nodes))
    return scans


def write_scan_markups(folder: str | os.PathLike, scans: Iterable[Scan]) -> list[Path]:
    """Write each scan's nodes to ``folder/PATIENT_TIMEPOINT.mrk.json`` (readable by
    :func:`read_markups_folder`); returns the paths."""
    folder = Path(folder)
    return [write_markups(folder / f"{s.patient_id}_{s.timepoint}{MARKUPS_SUFFIX}", s.nodes,
                          name=s.scan_id) for s in scans]
