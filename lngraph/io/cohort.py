"""The cohort folder contract (docs/design.md, *Cohort folder*): ``scans.csv`` + ``nodes.csv``.

``scans.csv``: ``patient_id, scan_id, timepoint, image`` — ``image`` relative to the folder,
may be empty (geometry-only data). ``nodes.csv``: ``scan_id, node_id, x, y, z, short_axis_mm,
long_axis_mm, track_id`` — centres in world LPS mm; ``long_axis_mm`` and ``track_id`` may be
empty. Two nodes of a patient with the same ``track_id`` are the same lymph node.

Reading validates everything and raises :class:`~lngraph.io.errors.InputError` naming the file,
line and problem; writing is atomic. Among the checks: no column name twice in a header (pandas
would silently rename the second ``x`` to ``x.1``); coordinates finite and within
``±MAX_ABS_MM`` (100 m: anything beyond is not a position in millimetres); sizes finite,
positive and at most ``MAX_ABS_MM``; ``long_axis_mm`` not smaller than ``short_axis_mm``. The
other node readers (:mod:`lngraph.io.nih`, :mod:`lngraph.io.slicer`, :mod:`lngraph.io.dls`) apply
the same rules through :func:`position_problem` and :func:`size_problem`.
"""

from __future__ import annotations

import csv
import datetime as _dt
import itertools
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lngraph.io.atomic import atomic_path
from lngraph.io.errors import InputError

SCAN_COLUMNS = ("patient_id", "scan_id", "timepoint", "image")
NODE_COLUMNS = ("scan_id", "node_id", "x", "y", "z", "short_axis_mm", "long_axis_mm", "track_id")
#: Largest coordinate magnitude and size (mm) a node may have: 100 m, far beyond any CT.
MAX_ABS_MM = 1e5


def position_problem(pos) -> str | None:
    """What is wrong with a node centre ``(x, y, z)`` in mm, or ``None`` if it is fine."""
    for axis, value in zip("xyz", np.asarray(pos, dtype=np.float64).reshape(3), strict=True):
        if not np.isfinite(value):
            return f"{axis} is not a finite number: {value!r}"
        if abs(value) > MAX_ABS_MM:
            return (f"{axis} = {value:g} mm is outside the sane range ±{MAX_ABS_MM:g} mm (not a "
                    "world position in millimetres)")
    return None


def size_problem(short_axis_mm: float, long_axis_mm: float) -> str | None:
    """What is wrong with a node's diameters (``long_axis_mm`` NaN = unknown), or ``None``."""
    for name, value in (("short_axis_mm", short_axis_mm), ("long_axis_mm", long_axis_mm)):
        if name == "long_axis_mm" and np.isnan(value):
            continue
        if not np.isfinite(value):
            return f"{name} is not a finite number: {value!r}"
        if value <= 0:
            return f"{name} must be positive, got {value:g}"
        if value > MAX_ABS_MM:
            return f"{name} = {value:g} mm is above the sane maximum of {MAX_ABS_MM:g} mm"
    if long_axis_mm < short_axis_mm:
        return (f"long_axis_mm {long_axis_mm:g} is smaller than short_axis_mm "
                f"{short_axis_mm:g} (the long axis is the larger diameter; columns swapped?)")
    return None


@dataclass(frozen=True, eq=False)
class NodeTable:
    """The annotated lymph nodes of one scan.

    Args:
        node_id: ``[N]`` unique string ids.
        pos: ``[N, 3]`` centres, world LPS mm ``(x, y, z)``.
        short_axis_mm: ``[N]`` short-axis diameters in mm.
        long_axis_mm: ``[N]`` long-axis diameters in mm, NaN where unknown.
        track_id: ``[N]`` ground-truth identity across scans, ``None`` where unknown.
    """

    node_id: np.ndarray
    pos: np.ndarray
    short_axis_mm: np.ndarray
    long_axis_mm: np.ndarray
    track_id: np.ndarray

    def __post_init__(self):
        n = len(self.node_id)
        object.__setattr__(self, "node_id", np.asarray(self.node_id, dtype=object).reshape(n))
        object.__setattr__(self, "pos", np.asarray(self.pos, dtype=np.float64).reshape(n, 3))
        for name in ("short_axis_mm", "long_axis_mm"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), np.float64).reshape(n))
        object.__setattr__(self, "track_id", np.asarray(self.track_id, dtype=object).reshape(n))

    @classmethod
    def empty(cls) -> NodeTable:
        return cls(np.empty(0, object), np.zeros((0, 3)), np.zeros(0), np.zeros(0),
                   np.empty(0, object))

    @classmethod
    def from_arrays(cls, pos, short_axis_mm, long_axis_mm=None, node_id=None,
                    track_id=None) -> NodeTable:
        """Build a table from arrays; ids default to ``"0", "1", …`` and unknown tracks."""
        pos = np.asarray(pos, dtype=np.float64).reshape(-1, 3)
        n = len(pos)
        return cls(
            node_id=np.array([str(i) for i in range(n)] if node_id is None else node_id, object),
            pos=pos,
            short_axis_mm=short_axis_mm,
            long_axis_mm=np.full(n, np.nan) if long_axis_mm is None else long_axis_mm,
            track_id=np.full(n, None, object) if track_id is None else track_id,
        )

    def __len__(self) -> int:
        return len(self.node_id)

    @property
    def radius_mm(self) -> np.ndarray:
        """``long/2`` where the long axis is known, else ``short/2`` (docs/design.md,
        *Cohort folder*)."""
        return np.where(np.isfinite(self.long_axis_mm), self.long_axis_mm, self.short_axis_mm) / 2

    def take(self, index) -> NodeTable:
        """The rows at ``index`` (an integer array or a boolean mask), in that order."""
        return NodeTable(self.node_id[index], self.pos[index], self.short_axis_mm[index],
                         self.long_axis_mm[index], self.track_id[index])

    def index_of(self, node_id: str) -> int:
        hits = np.flatnonzero(self.node_id == str(node_id))
        if len(hits) == 0:
            raise KeyError(node_id)
        return int(hits[0])


@dataclass(frozen=True, eq=False)
class Scan:
    """One CT scan of a patient with its annotated nodes. ``image`` is absolute or ``None``."""

    patient_id: str
    scan_id: str
    timepoint: str
    image: Path | None
    nodes: NodeTable = field(default_factory=NodeTable.empty)


@dataclass(frozen=True, eq=False)
class ScanPair:
    """An earlier (``src``) and a later (``dst``) scan of one patient."""

    src: Scan
    dst: Scan

    @property
    def patient_id(self) -> str:
        return self.src.patient_id

    @property
    def has_ground_truth(self) -> bool:
        """True when every node of both scans has a ``track_id``."""
        return all(t is not None for t in itertools.chain(self.src.nodes.track_id,
                                                           self.dst.nodes.track_id))

    def gt_matches(self) -> np.ndarray:
        """``[M, 2]`` int64 (src index, dst index) of nodes sharing a ``track_id``."""
        dst_index = {t: j for j, t in enumerate(self.dst.nodes.track_id) if t is not None}
        rows = [(i, dst_index[t]) for i, t in enumerate(self.src.nodes.track_id)
                if t is not None and t in dst_index]
        return np.asarray(rows, dtype=np.int64).reshape(-1, 2)

    def gt_disappeared(self) -> np.ndarray:
        """Indices of src nodes with a known ``track_id`` that is absent from dst."""
        dst_tracks = {t for t in self.dst.nodes.track_id if t is not None}
        return np.asarray([i for i, t in enumerate(self.src.nodes.track_id)
                           if t is not None and t not in dst_tracks], dtype=np.int64)

    def gt_new(self) -> np.ndarray:
        """Indices of dst nodes with a known ``track_id`` that is absent from src."""
        src_tracks = {t for t in self.src.nodes.track_id if t is not None}
        return np.asarray([j for j, t in enumerate(self.dst.nodes.track_id)
                           if t is not None and t not in src_tracks], dtype=np.int64)


def timepoint_key(timepoints: Sequence[str], *, path="scans.csv", what="") -> list:
    """Sort keys for a patient's timepoints: all integers, or all ISO dates."""
    try:
        return [int(t) for t in timepoints]
    except ValueError:
        pass
    try:
        return [_dt.date.fromisoformat(str(t)) for t in timepoints]
    except ValueError:
        raise InputError(path, f"timepoints {list(timepoints)} are neither all integers nor all "
                         "ISO dates (YYYY-MM-DD)", what=what) from None


class Cohort:
    """A validated cohort: scans grouped by patient and ordered by timepoint.

    Args:
        scans: the scans (any order).
        root: the cohort folder, if read from disk.
    """

    def __init__(self, scans: Iterable[Scan], root: Path | None = None):
        self.root = Path(root) if root is not None else None
        by_patient: dict[str, list[Scan]] = {}
        for scan in scans:
            by_patient.setdefault(scan.patient_id, []).append(scan)
        self._by_patient: dict[str, list[Scan]] = {}
        for patient in sorted(by_patient):
            items = by_patient[patient]
            try:
                keys = timepoint_key([s.timepoint for s in items])
            except InputError as exc:
                raise InputError("scans.csv", f"patient {patient}: {exc.problem}") from None
            if len(set(keys)) != len(keys):
                raise InputError("scans.csv", f"patient {patient}: two scans share a timepoint "
                                 f"({', '.join(s.timepoint for s in items)})")
            order = sorted(range(len(items)), key=lambda i: keys[i])
            self._by_patient[patient] = [items[i] for i in order]
        self.scans: dict[str, Scan] = {s.scan_id: s for ss in self._by_patient.values() for s in ss}

    def __len__(self) -> int:
        return len(self.scans)

    def __repr__(self) -> str:
        n_nodes = sum(len(s.nodes) for s in self.scans.values())
        return (f"Cohort(patients={len(self._by_patient)}, scans={len(self.scans)}, "
                f"nodes={n_nodes})")

    @property
    def patients(self) -> list[str]:
        return list(self._by_patient)

    @property
    def has_images(self) -> bool:
        return len(self.scans) > 0 and all(s.image is not None for s in self.scans.values())

    def scans_of(self, patient_id: str) -> list[Scan]:
        """A patient's scans, earliest first."""
        return list(self._by_patient[patient_id])

    def pairs(self, mode: str = "consecutive", patients: Iterable[str] | None = None
              ) -> list[ScanPair]:
        """Scan pairs (earlier, later): consecutive timepoints, or ``mode="all"`` i<j pairs."""
        if mode not in ("consecutive", "all"):
            raise ValueError(f"mode must be 'consecutive' or 'all', got {mode!r}")
        out = []
        for patient in self.patients if patients is None else patients:
            scans = self._by_patient[patient]
            if mode == "consecutive":
                out += [ScanPair(a, b) for a, b in itertools.pairwise(scans)]
            else:
                out += [ScanPair(a, b) for a, b in itertools.combinations(scans, 2)]
        return out

    def subset(self, patients: Iterable[str]) -> Cohort:
        """The cohort restricted to ``patients``."""
        return Cohort([s for p in patients for s in self._by_patient[p]], root=self.root)

    def pair(self, src_scan: str, dst_scan: str) -> ScanPair:
        return ScanPair(self.scans[src_scan], self.scans[dst_scan])


def _check_header(path: Path) -> None:
    """Raise if a column name occurs twice in the header (pandas renames the second ``x`` to
    ``x.1`` and would read the first one silently). Empty names are not compared."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        header = next(csv.reader(fh, skipinitialspace=True), [])
    seen = set()
    for name in (n.strip() for n in header):
        if name and name in seen:
            raise InputError(path, f"column {name!r} appears twice in the header", line=1)
        seen.add(name)


def read_csv_table(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    """``path`` as a table of stripped strings holding at least ``columns`` (trailing blank rows
    dropped).

    Raises:
        InputError: the file is missing or not CSV, a column is missing or named twice, or a
            blank row lies inside the table.
    """
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)  # a row with extra fields
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True,
                                skip_blank_lines=False, index_col=False)
    except (pd.errors.ParserError, pd.errors.ParserWarning, pd.errors.EmptyDataError,
            UnicodeDecodeError) as exc:
        raise InputError(path, f"not a readable CSV file ({exc})") from None
    _check_header(path)
    frame.columns = [c.strip() for c in frame.columns]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(path, f"missing column(s) {', '.join(missing)}; expected "
                         f"{', '.join(columns)}", line=1)
    frame = frame.map(str.strip)
    empty = (frame == "").all(axis=1).to_numpy()
    n_rows = 0 if empty.all() else len(empty) - int(np.argmin(empty[::-1]))  # drop trailing blanks
    if empty[:n_rows].any():
        raise InputError(path, "blank row inside the table", line=int(np.argmax(empty)) + 2)
    return frame.iloc[:n_rows]


def _node_what(frame: pd.DataFrame, row: int) -> str:
    return f"node {frame['node_id'].iat[row]!s} of scan {frame['scan_id'].iat[row]!s}"


def _numbers(frame: pd.DataFrame, column: str, path: Path, *, required: bool,
             positive: bool = False) -> np.ndarray:
    """The column as floats: finite, within ``±MAX_ABS_MM``, and ``> 0`` if ``positive``."""
    raw = frame[column]
    values = pd.to_numeric(raw.replace("", np.nan), errors="coerce").to_numpy(np.float64)
    for row, (text, value) in enumerate(zip(raw, values, strict=True)):
        if text == "" and not required:
            continue
        if text == "" or not np.isfinite(value):
            problem = "is empty" if text == "" else f"is not a finite number: {text!r}"
            raise InputError(path, f"{column} {problem}", line=row + 2,
                             what=_node_what(frame, row))
        if positive and value <= 0:
            raise InputError(path, f"{column} must be positive, got {text}", line=row + 2,
                             what=_node_what(frame, row))
        if abs(value) > MAX_ABS_MM:
            problem = (f"is above the sane maximum of {MAX_ABS_MM:g} mm" if positive else
                       f"is outside the sane range ±{MAX_ABS_MM:g} mm (not a world position in "
                       "millimetres)")
            raise InputError(path, f"{column} = {text} {problem}", line=row + 2,
                             what=_node_what(frame, row))
    return values


def read_nodes_frame(frame: pd.DataFrame, path: Path, known_scans: Iterable[str] | None
                     ) -> dict[str, NodeTable]:
    """Validate a nodes table (all strings) and split it into one :class:`NodeTable` per scan."""
    known = None if known_scans is None else set(known_scans)
    for row, (scan, node) in enumerate(zip(frame["scan_id"], frame["node_id"], strict=True)):
        if scan == "" or node == "":
            raise InputError(path, "scan_id and node_id must not be empty", line=row + 2)
        if known is not None and scan not in known:
            raise InputError(path, f"scan_id {scan!r} is not in scans.csv", line=row + 2,
                             what=f"node {node}")
    xyz = [_numbers(frame, c, path, required=True) for c in ("x", "y", "z")]
    short = _numbers(frame, "short_axis_mm", path, required=True, positive=True)
    long_ = _numbers(frame, "long_axis_mm", path, required=False, positive=True)
    swapped = np.flatnonzero(long_ < short)  # NaN (an unknown long axis) compares False
    if len(swapped):
        row = int(swapped[0])
        raise InputError(path, f"long_axis_mm {frame['long_axis_mm'].iat[row]} is smaller than "
                         f"short_axis_mm {frame['short_axis_mm'].iat[row]} (the long axis is "
                         "the larger diameter; columns swapped?)", line=row + 2,
                         what=_node_what(frame, row))
    pos = np.stack(xyz, axis=1)
    tables = {}
    for scan, rows in frame.groupby("scan_id", sort=False).indices.items():
        seen_nodes: dict[str, int] = {}
        seen_tracks: dict[str, int] = {}
        for r in rows:
            node, track = frame["node_id"].iat[r], frame["track_id"].iat[r]
            if node in seen_nodes:
                raise InputError(path, f"duplicate node_id {node!r} in scan {scan!r} (first on "
                                 f"line {seen_nodes[node] + 2})", line=r + 2)
            seen_nodes[node] = r
            if track:
                if track in seen_tracks:
                    raise InputError(path, f"track_id {track!r} appears twice in scan {scan!r} "
                                     f"(first on line {seen_tracks[track] + 2}); a lymph node "
                                     "occurs at most once per scan", line=r + 2,
                                     what=f"node {node}")
                seen_tracks[track] = r
        tables[scan] = NodeTable(
            node_id=frame["node_id"].to_numpy(object)[rows],
            pos=pos[rows],
            short_axis_mm=short[rows],
            long_axis_mm=long_[rows],
            track_id=np.array([t if t else None for t in frame["track_id"].to_numpy()[rows]],
                              dtype=object),
        )
    return tables


def read_cohort(path: str | os.PathLike, *, check_images: bool = True) -> Cohort:
    """Read and validate a cohort folder.

    Args:
        path: folder holding ``scans.csv`` and ``nodes.csv``.
        check_images: raise if a non-empty ``image`` path does not exist.

    Raises:
        InputError: naming the file, line and problem, for any contract violation.
    """
    root = Path(path)
    if not root.is_dir():
        raise InputError(root, "cohort folder not found")
    scans_path, nodes_path = root / "scans.csv", root / "nodes.csv"
    scans = read_csv_table(scans_path, SCAN_COLUMNS)
    from lngraph.io.image import image_exists

    nodes = read_csv_table(nodes_path, NODE_COLUMNS)
    seen: dict[str, int] = {}
    for row, values in enumerate(scans[list(SCAN_COLUMNS)].itertuples(index=False)):
        patient, scan, timepoint, image = values
        for name, value in (("patient_id", patient), ("scan_id", scan), ("timepoint", timepoint)):
            if value == "":
                raise InputError(scans_path, f"{name} is empty", line=row + 2)
        if scan in seen:
            raise InputError(scans_path, f"duplicate scan_id {scan!r} (first on line "
                             f"{seen[scan] + 2})", line=row + 2)
        seen[scan] = row
        if image and check_images and not image_exists(root / image):
            raise InputError(scans_path, f"image {image!r} not found (looked for "
                             f"{root / image})", line=row + 2, what=f"scan {scan}")
    tables = read_nodes_frame(nodes, nodes_path, known_scans=seen)
    out = [
        Scan(patient_id=p, scan_id=s, timepoint=t, image=(root / im).resolve() if im else None,
             nodes=tables.get(s, NodeTable.empty()))
        for p, s, t, im in scans[list(SCAN_COLUMNS)].itertuples(index=False)
    ]
    try:
        return Cohort(out, root=root)
    except InputError as exc:
        raise InputError(scans_path, exc.problem) from None


def _fmt(value: float) -> str:
    return "" if not np.isfinite(value) else f"{value:.4f}".rstrip("0").rstrip(".")


def nodes_frame(scans: Iterable[Scan]) -> pd.DataFrame:
    """All nodes of ``scans`` as a ``nodes.csv`` table (strings, numbers rounded to 1e-4 mm)."""
    rows = []
    for scan in scans:
        t = scan.nodes
        for k in range(len(t)):
            rows.append((scan.scan_id, str(t.node_id[k]), *(_fmt(v) for v in t.pos[k]),
                         _fmt(t.short_axis_mm[k]), _fmt(t.long_axis_mm[k]),
                         "" if t.track_id[k] is None else str(t.track_id[k])))
    return pd.DataFrame(rows, columns=list(NODE_COLUMNS))


def write_cohort(path: str | os.PathLike, scans: Iterable[Scan] | Cohort) -> Path:
    """Write ``scans.csv`` and ``nodes.csv`` into ``path`` atomically (each file).

    Image paths are stored relative to ``path``. Returns the folder.
    """
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    scans = list(scans.scans.values()) if isinstance(scans, Cohort) else list(scans)
    Cohort(scans)  # validates timepoints and grouping before anything is written
    table = pd.DataFrame(
        [(s.patient_id, s.scan_id, s.timepoint,
          "" if s.image is None else os.path.relpath(Path(s.image).resolve(), root.resolve()))
         for s in scans],
        columns=list(SCAN_COLUMNS),
    )
    with atomic_path(root / "scans.csv") as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(root / "nodes.csv") as tmp:
        nodes_frame(scans).to_csv(tmp, index=False)
    return root

