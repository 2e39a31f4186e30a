"""Lymph nodes from segmentation masks (``lngraph import seg``).

A mask is an image on the grid of its CT (same size, spacing, origin and direction; checked)
whose nonzero voxels mark lymph nodes. It is read one of two ways:

* **components** — a binary mask (any nonzero value is foreground): each connected component
  is a node (26-connectivity: voxels touching at a face, an edge or a corner belong together).
  Node ids are ``1, 2, …`` in the order the components are met scanning the image slice by
  slice (ITK's order, kept after small ones are dropped); the nodes get no ``track_id``.
* **instances** — a label map: each distinct nonzero value is one node (its voxels need not
  touch), ``node_id`` = the value. Instance labels that agree across a patient's timepoints
  (label 3 is the same lymph node in every scan) become the ``track_id`` = the value, unless
  turned off (``tracks=False``) for label maps numbered per scan.

``labels="auto"`` reads every mask of a table as instances when any of them holds more than one
distinct nonzero value, and as components otherwise (so a label map whose scan happens to hold
a single node is still read as instances).

Per node, in LPS mm:

* **centre** — the centroid of its voxels (``sitk.LabelShapeStatisticsImageFilter``, which maps
  the mean voxel index through origin, spacing and direction).
* **volume** — voxel count × voxel volume; nodes below ``min_volume_mm3`` are dropped (specks).
* **long and short axis**, RECIST-style, measured in the image's slices (constant ``k``, the
  acquisition plane: axial for an axial CT). In each slice the node's voxels are the union of
  their in-plane squares, placed in millimetres by the spacing and direction cosines, so the
  measurement is edge to edge, as a reader measures on screen. The **long axis** is the
  longest diameter over all slices (the largest distance between two points of a slice's
  region); the **short axis** is the longest chord perpendicular to that diameter in the same
  slice. Both are measured on the convex hull of the slice's region (equal to the region for
  convex nodes). When several diameters or slices tie, the one with the longest perpendicular
  chord is taken. A box of ``W × H`` mm (``W ≥ H``) has long axis ``L = √(W² + H²)`` (the
  diagonal) and short axis ``H·L/W``; an ellipse has its two axes, up to the pixel steps.

:func:`nodes_from_mask` reads one mask; :func:`read_seg_table` reads the table
``patient_id,timepoint,image,mask[,scan_id]`` (paths relative to the table's folder; ``image``
may be ``FOLDER#SERIESUID`` or empty for a geometry-only scan) into scans; :func:`import_seg`
writes them as a cohort folder, all or nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lngraph.io.atomic import atomic_folder
from lngraph.io.cohort import NodeTable, Scan, write_cohort
from lngraph.io.coords import ImageGeometry
from lngraph.io.errors import InputError
from lngraph.io.image import image_geometry, read_image, split_series
from lngraph.io.slicer import ScanRow, read_scan_table

LABEL_MODES = ("auto", "components", "instances")
#: Default smallest node volume kept (mm³): a few voxels of a CT.
DEFAULT_MIN_VOLUME_MM3 = 10.0
#: Columns of a mask table (and optionally scan_id).
SEG_COLUMNS = ("patient_id", "timepoint", "image", "mask")
#: Largest geometry difference of a mask from its image: origin in voxels, spacing relative,
#: direction cosines absolute (room for the float32 of NIfTI headers, nothing more).
_ORIGIN_TOLERANCE_VOXELS = 1e-3
_SPACING_TOLERANCE = 1e-4
_DIRECTION_TOLERANCE = 1e-4
_TIE = 1e-9  # mm: diameters this close are equal


@dataclass(frozen=True)
class MaskNodes:
    """The nodes of one mask.

    Args:
        nodes: centres (LPS mm), axes (mm), ids and tracks.
        volume_mm3: ``[N]`` volume of each node.
        dropped: how many components or labels were below the minimum volume.
        mode: ``"components"`` or ``"instances"``, how the mask was read.
    """

    nodes: NodeTable
    volume_mm3: np.ndarray
    dropped: int
    mode: str


@dataclass(frozen=True)
class SegImport:
    """The scans of a mask table, and how many specks were dropped (``mode`` as in
    :class:`MaskNodes`)."""

    scans: list[Scan]
    dropped: int
    mode: str


# ---- geometry of one node: RECIST-style axes ----


def _hull(points: np.ndarray) -> np.ndarray:
    """Convex hull of 2D points, counter-clockwise, without collinear points (monotone chain)."""
    points = np.unique(points, axis=0)  # sorted by x, then y
    if len(points) <= 2:
        return points

    def half(sequence) -> list:
        chain: list = []
        for x, y in sequence:
            while len(chain) >= 2 and ((chain[-1][0] - chain[-2][0]) * (y - chain[-2][1])
                                       - (chain[-1][1] - chain[-2][1]) * (x - chain[-2][0])) <= 0:
                chain.pop()
            chain.append((x, y))
        return chain

    points = points.tolist()
    lower, upper = half(points), half(points[::-1])
    return np.asarray(lower[:-1] + upper[:-1], dtype=np.float64)


def _chord(hull: np.ndarray, u: np.ndarray) -> float:
    """The longest chord of a convex polygon perpendicular to the unit vector ``u``."""
    v = np.array([-u[1], u[0]])
    along, across = hull @ u, hull @ v
    a0, a1 = along, np.roll(along, -1)
    c0, c1 = across, np.roll(across, -1)
    best = 0.0
    for t in along:  # the chord length is concave in t: its maximum lies at a vertex
        on = np.abs(along - t) <= _TIE
        values = list(across[on])
        crossing = (a0 - t) * (a1 - t) < 0
        if crossing.any():
            w = (t - a0[crossing]) / (a1[crossing] - a0[crossing])
            values += list(c0[crossing] + w * (c1[crossing] - c0[crossing]))
        best = max(best, max(values) - min(values))
    return best


def _slice_axes(hull: np.ndarray) -> tuple[float, float]:
    """(longest diameter, longest chord perpendicular to it) of a convex polygon, mm."""
    if len(hull) < 2:
        return 0.0, 0.0
    gaps = hull[:, None, :] - hull[None, :, :]
    lengths = np.sqrt(np.einsum("abk,abk->ab", gaps, gaps))
    longest = float(lengths.max())
    short = 0.0
    for a, b in zip(*np.nonzero(np.triu(lengths >= longest - _TIE, 1)), strict=True):
        short = max(short, _chord(hull, (hull[b] - hull[a]) / lengths[a, b]))
    return longest, short


def _in_plane(geometry: ImageGeometry) -> np.ndarray:
    """``2 × 2`` R mapping in-plane index steps ``(di, dj)`` to orthonormal in-plane mm.

    The slice axes in world mm are the columns of ``D[:, :2] · diag(s_i, s_j)``; with
    ``Q R`` its QR factorisation, ``R (di, dj)`` are coordinates along the orthonormal ``Q``,
    so distances are kept for any direction matrix.
    """
    direction = np.reshape(geometry.direction, (3, 3))
    axes = direction[:, :2] * np.asarray(geometry.spacing[:2])[None, :]
    return np.linalg.qr(axes)[1]


def recist_axes(region: np.ndarray, in_plane: np.ndarray) -> tuple[float, float]:
    """Long and short axis (mm) of a node given as a boolean array ``[k, j, i]``.

    Args:
        region: the node's voxels (array order; any crop of the image, same spacing).
        in_plane: the ``2 × 2`` map from in-plane index steps to mm (:func:`_in_plane`).

    Returns:
        ``(long, short)``: the longest in-slice diameter of the node's voxel squares and the
        longest chord perpendicular to it in that slice (module docstring).
    """
    best = (-1.0, -1.0)
    for plane in region:
        rows = np.flatnonzero(plane.any(axis=1))
        if len(rows) == 0:
            continue
        first = plane[rows].argmax(axis=1)
        last = plane.shape[1] - 1 - plane[rows, ::-1].argmax(axis=1)
        # the outer corners of each row's first and last voxel square, as (i, j)
        corners = np.concatenate([
            np.stack([first - 0.5, rows - 0.5], 1), np.stack([first - 0.5, rows + 0.5], 1),
            np.stack([last + 0.5, rows - 0.5], 1), np.stack([last + 0.5, rows + 0.5], 1)])
        long_mm, short_mm = _slice_axes(_hull(corners @ in_plane.T))
        if long_mm > best[0] + _TIE or (long_mm > best[0] - _TIE and short_mm > best[1]):
            best = (long_mm, short_mm)
    return best


# ---- one mask ----


def _geometry_problem(mask: ImageGeometry, image: ImageGeometry) -> str | None:
    """How the mask's grid differs from the image's, or ``None``."""
    if tuple(mask.size) != tuple(image.size):
        return f"size {tuple(mask.size)} vs the image's {tuple(image.size)} voxels"
    spacing_m, spacing_i = np.asarray(mask.spacing), np.asarray(image.spacing)
    if np.any(np.abs(spacing_m - spacing_i) > _SPACING_TOLERANCE * spacing_i):
        return f"spacing {_fmt(spacing_m)} vs the image's {_fmt(spacing_i)} mm"
    origin_m, origin_i = np.asarray(mask.origin), np.asarray(image.origin)
    if np.any(np.abs(origin_m - origin_i) > _ORIGIN_TOLERANCE_VOXELS * spacing_i.min()):
        return f"origin {_fmt(origin_m)} vs the image's {_fmt(origin_i)} mm (LPS)"
    direction_m, direction_i = np.asarray(mask.direction), np.asarray(image.direction)
    if np.any(np.abs(direction_m - direction_i) > _DIRECTION_TOLERANCE):
        return f"direction {_fmt(direction_m)} vs the image's {_fmt(direction_i)}"
    return None


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"


def _label_image(mask: sitk.Image, where) -> sitk.Image:
    """The mask as a ``UInt32`` label image; non-integer or negative values are refused."""
    pixel = mask.GetPixelID()
    if pixel in (sitk.sitkFloat32, sitk.sitkFloat64):
        values = sitk.GetArrayViewFromImage(mask)
        odd = values[values != np.round(values)]
        if odd.size:
            raise InputError(where, f"the mask holds non-integer values (e.g. {odd[0]:g}): "
                             "expected a binary mask or a label map of whole numbers")
    elif pixel not in (sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt16,
                       sitk.sitkUInt32, sitk.sitkInt32, sitk.sitkUInt64, sitk.sitkInt64):
        raise InputError(where, f"the mask's voxel type {mask.GetPixelIDTypeAsString()} is not "
                         "a binary mask or a label map")
    stats = sitk.MinimumMaximumImageFilter()
    stats.Execute(mask)
    if stats.GetMinimum() < 0:
        raise InputError(where, f"the mask holds negative values (down to "
                         f"{stats.GetMinimum():g}): labels are 0 (background) or positive")
    if stats.GetMaximum() > np.iinfo(np.uint32).max:
        raise InputError(where, f"the mask holds labels up to {stats.GetMaximum():g}; at most "
                         f"{np.iinfo(np.uint32).max} are supported")
    return sitk.Cast(mask, sitk.sitkUInt32)


def _shape_stats(labels: sitk.Image) -> sitk.LabelShapeStatisticsImageFilter:
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.ComputePerimeterOff()
    stats.Execute(labels)
    return stats


def _nodes(labels: sitk.Image, stats: sitk.LabelShapeStatisticsImageFilter, *,
           instances: bool, min_volume_mm3: float, tracks: bool) -> MaskNodes:
    """Nodes of a label image (each label one node) with their statistics ``stats``."""
    geometry = ImageGeometry.from_image(labels)
    in_plane = _in_plane(geometry)
    array = sitk.GetArrayViewFromImage(labels)
    ids, pos, short, long_, volume = [], [], [], [], []
    dropped = 0
    for label in sorted(stats.GetLabels()):
        size = stats.GetPhysicalSize(label)
        if size < min_volume_mm3:
            dropped += 1
            continue
        i0, j0, k0, ni, nj, nk = stats.GetBoundingBox(label)
        region = array[k0:k0 + nk, j0:j0 + nj, i0:i0 + ni] == label
        long_mm, short_mm = recist_axes(region, in_plane)
        ids.append(str(label) if instances else str(len(ids) + 1))
        pos.append(stats.GetCentroid(label))
        long_.append(long_mm)
        short.append(short_mm)
        volume.append(size)
    track = np.array(ids if instances and tracks else [None] * len(ids), dtype=object)
    nodes = NodeTable.from_arrays(np.asarray(pos, np.float64).reshape(-1, 3), short, long_,
                                  node_id=ids, track_id=track)
    return MaskNodes(nodes, np.asarray(volume, np.float64), dropped,
                     "instances" if instances else "components")


def _components(labels: sitk.Image, **kwargs) -> MaskNodes:
    components = sitk.ConnectedComponent(labels != 0, True)
    return _nodes(components, _shape_stats(components), instances=False, **kwargs)


def _read_mask(mask, image, where) -> sitk.Image:
    """The mask (path or image) as a label image, checked against the image's geometry."""
    if not isinstance(mask, sitk.Image):
        mask = read_image(mask)
    labels = _label_image(mask, where)
    if image is not None:
        if not isinstance(image, ImageGeometry):
            image = (ImageGeometry.from_image(image) if isinstance(image, sitk.Image)
                     else image_geometry(image))
        problem = _geometry_problem(ImageGeometry.from_image(labels), image)
        if problem:
            raise InputError(where, f"the mask is not on the image's grid: {problem}; a mask "
                             "must have the size, spacing, origin and direction of its image")
    return labels


def _check_options(labels: str, min_volume_mm3: float) -> None:
    if labels not in LABEL_MODES:
        raise ValueError(f"labels must be one of {', '.join(LABEL_MODES)}, got {labels!r}")
    if not min_volume_mm3 >= 0:
        raise ValueError(f"min_volume_mm3 must be a number ≥ 0, got {min_volume_mm3!r}")


def nodes_from_mask(image, mask, *, labels: str = "auto",
                    min_volume_mm3: float = DEFAULT_MIN_VOLUME_MM3,
                    tracks: bool = True) -> MaskNodes:
    """The lymph nodes of one mask (module docstring), centres in LPS mm.

    Args:
        image: the CT (path, ``sitk.Image`` or :class:`~lngraph.io.coords.ImageGeometry`)
            the mask must lie on; ``None`` skips the check.
        mask: the mask (path or ``sitk.Image``): binary, or a label map.
        labels: ``"components"``, ``"instances"``, or ``"auto"`` (instances when the mask
            holds more than one distinct nonzero value).
        min_volume_mm3: smaller nodes are dropped (and counted).
        tracks: in instance mode, the label becomes the ``track_id``.

    Raises:
        InputError: the mask or image cannot be read, the mask is not on the image's grid, or
            holds negative or non-integer values.
    """
    _check_options(labels, min_volume_mm3)
    where = mask if not isinstance(mask, sitk.Image) else "mask"
    label_image = _read_mask(mask, image, where)
    stats = _shape_stats(label_image)
    instances = labels == "instances" or (labels == "auto" and stats.GetNumberOfLabels() > 1)
    if instances:
        return _nodes(label_image, stats, instances=True, min_volume_mm3=min_volume_mm3,
                      tracks=tracks)
    return _components(label_image, min_volume_mm3=min_volume_mm3, tracks=tracks)


# ---- a table of masks ----


def read_seg_table(table: str | os.PathLike, *, labels: str = "auto",
                   min_volume_mm3: float = DEFAULT_MIN_VOLUME_MM3,
                   tracks: bool = True) -> SegImport:
    """Read the masks a table lists into scans, one per row.

    Columns ``patient_id, timepoint, image, mask`` and optionally ``scan_id`` (default
    ``PATIENT_TIMEPOINT``); paths relative to the table's folder unless absolute. ``image``
    may be ``FOLDER#SERIESUID`` (one series of a DICOM folder) or empty (a geometry-only scan,
    the mask's grid unchecked). ``labels="auto"`` decides for the whole table (module
    docstring).

    Raises:
        InputError: naming the table, the line and scan, and the problem (a missing or
            unreadable file, a mask not on its image's grid, …).
    """
    _check_options(labels, min_volume_mm3)
    rows = read_scan_table(table, SEG_COLUMNS, may_be_empty=("image",))
    options = {"min_volume_mm3": min_volume_mm3, "tracks": tracks}
    # per row, the nodes each reading gives that ``labels`` may still need (masks are read
    # once and not kept: a label image of a CT is hundreds of MB)
    found: list[tuple[ScanRow, Path | None, dict[str, MaskNodes]]] = []
    for row in rows:
        image = row.path("image")
        geometry = None
        if image is not None:
            try:
                geometry = image_geometry(image)
            except InputError as exc:
                raise row.error(f"image {row.values['image']!r}: {exc}") from None
        try:
            label_image = _read_mask(row.path("mask"), geometry, row.path("mask"))
        except InputError as exc:
            raise row.error(f"mask {row.values['mask']!r}: {exc}") from None
        stats = _shape_stats(label_image)
        readings = {}
        if labels != "components":
            readings["instances"] = _nodes(label_image, stats, instances=True, **options)
        if labels == "components" or (labels == "auto" and stats.GetNumberOfLabels() <= 1):
            readings["components"] = _components(label_image, **options)
        found.append((row, image, readings))
        del label_image, stats
    mode = labels
    if labels == "auto":  # instances as soon as one mask is a label map of several values
        mode = ("components" if all("components" in r for *_, r in found) else "instances")
    scans = [Scan(row.patient_id, row.scan_id, row.timepoint, image, readings[mode].nodes)
             for row, image, readings in found]
    return SegImport(scans, sum(readings[mode].dropped for *_, readings in found), mode)


def seg_inputs(table: str | os.PathLike) -> list[tuple[str, Path]]:
    """``(what, path)`` of every file a mask table names (the table, images and masks), for
    refusing an output folder that holds one of them."""
    rows = read_scan_table(table, SEG_COLUMNS, may_be_empty=("image",))
    out = [("the mask table", Path(table))]
    for row in rows:
        for column in ("image", "mask"):
            path = row.path(column)
            if path is not None:
                out.append((f"the {column} of {row.what}", split_series(path)[0]))
    return out


def import_seg(table: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False,
               labels: str = "auto", min_volume_mm3: float = DEFAULT_MIN_VOLUME_MM3,
               tracks: bool = True) -> SegImport:
    """Read a mask table (:func:`read_seg_table`) and write it as the cohort folder ``out``,
    all or nothing (:func:`~lngraph.io.atomic.atomic_folder`: a non-empty ``out`` is refused
    unless ``overwrite``)."""
    root = Path(os.path.realpath(out))
    for what, path in seg_inputs(table):
        target = Path(os.path.realpath(path))
        if target == root or root in target.parents:
            raise InputError(out, f"holds {what} ({path}); the output folder is replaced as a "
                             "whole, so write it elsewhere")
    with atomic_folder(out, overwrite=overwrite) as tmp:
        result = read_seg_table(table, labels=labels, min_volume_mm3=min_volume_mm3,
                                tracks=tracks)
        write_cohort(tmp, result.scans)
    return result
