"""Slabs: the world-aligned, projected view of a scan that a figure panel shows.

With images, each panel of :func:`~lngraph.viz.figure.match_figure` is a *slab* of its scan:
the image is resampled (linear, air outside) onto a grid aligned with the world LPS axes — not
with the voxel axes, so oblique acquisitions show the anatomy upright — covering the nodes plus
a margin, then projected through the slab's thickness by the mean (default) or the maximum.
Without images the nodes are drawn in world millimetres.

* ``coronal``: horizontal = x, vertical = z (superior up), projected along y;
* ``axial``: horizontal = x, vertical = y (anterior up), projected along z;

both in radiological convention (the patient's right on the image's left, since LPS x grows
towards the patient's left). ``plane="auto"`` projects along whichever of y and z the nodes
spread less (:func:`choose_plane`). Both panels have the same field of view and pixel size, so
sizes compare (:func:`panel_boxes`).

**Coordinates.** The slab grid is an :class:`~lngraph.io.coords.ImageGeometry` with identity
direction; node centres go world LPS → continuous array index ``(k, j, i)`` through it
(:meth:`~lngraph.io.coords.ImageGeometry.world_to_array`) and are drawn at that pixel; a
radius in pixels is the radius in mm over the pixel size.

Needs numpy and SimpleITK only (no matplotlib).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from lngraph.io.cohort import Scan, ScanPair
from lngraph.io.coords import ImageGeometry

#: World axes (0 = x, 1 = y, 2 = z) shown horizontally, vertically, and projected, per plane.
PLANES = {"coronal": (0, 2, 1), "axial": (0, 1, 2)}
PROJECTIONS = ("mean", "max")
#: Margin around the nodes in the panel plane, and along the slab's depth, mm.
MARGIN_MM = 30.0
SLAB_MARGIN_MM = 5.0
#: Smallest half field of view of a panel, mm.
MIN_HALF_FOV_MM = 40.0
#: Most pixels per panel side and samples through a slab (they bound the resampling cost).
MAX_PANEL_PIXELS = 512
MAX_SLAB_SAMPLES = 64
AIR_HU = -1000.0


@dataclass(frozen=True)
class Box:
    """A world-axis-aligned box: centre and half sizes along (x, y, z), LPS mm."""

    centre: np.ndarray
    half: np.ndarray


@dataclass(frozen=True)
class Slab:
    """A projected slab of one scan.

    Args:
        pixels: ``[rows, cols]`` HU; row ``r`` lies at array index ``r`` of the vertical axis
            (it grows with the world coordinate), column ``c`` at index ``c`` of x.
        geometry: the resampled 3D grid (identity direction: i, j, k run along x, y, z).
        plane: ``"coronal"`` or ``"axial"``.
    """

    pixels: np.ndarray
    geometry: ImageGeometry
    plane: str

    @property
    def pixel_mm(self) -> float:
        return float(self.geometry.spacing[PLANES[self.plane][0]])

    def to_pixels(self, points) -> np.ndarray:
        """``[N, 3]`` world LPS → ``[N, 2]`` continuous (column, row) of :attr:`pixels`."""
        array = self.geometry.world_to_array(np.asarray(points, dtype=np.float64).reshape(-1, 3))
        horizontal, vertical, _ = PLANES[self.plane]
        # numpy order is (k, j, i) = (z, y, x): world axis a is array axis 2 - a
        return np.stack([array[:, 2 - horizontal], array[:, 2 - vertical]], axis=1)


def choose_plane(pair: ScanPair) -> str:
    """``"axial"`` if the pair's nodes spread less along z than along y, else ``"coronal"``."""
    pos = np.concatenate([pair.src.nodes.pos, pair.dst.nodes.pos])
    if len(pos) < 2:
        return "coronal"
    spread = np.ptp(pos, axis=0)
    return "axial" if spread[2] < spread[1] else "coronal"


def _node_box(scan: Scan, image: sitk.Image | None) -> Box:
    """The bounding box of a scan's node spheres; without nodes, the image (or world) centre."""
    nodes = scan.nodes
    if len(nodes):
        r = nodes.radius_mm[:, None]
        lo, hi = (nodes.pos - r).min(axis=0), (nodes.pos + r).max(axis=0)
        return Box((lo + hi) / 2, (hi - lo) / 2)
    if image is not None:
        geometry = ImageGeometry.from_image(image)
        return Box(geometry.index_to_world((np.asarray(geometry.size) - 1) / 2.0), np.zeros(3))
    return Box(np.zeros(3), np.zeros(3))


def panel_boxes(pair: ScanPair, plane: str, images: Sequence[sitk.Image | None] = (None, None)
                ) -> tuple[Box, Box]:
    """The box each scan's panel shows: centred on its nodes, the same square in-plane size for
    both scans (the larger node extent plus :data:`MARGIN_MM`), as deep as its own nodes plus
    :data:`SLAB_MARGIN_MM`."""
    horizontal, vertical, depth = PLANES[plane]
    boxes = [_node_box(scan, image) for scan, image in zip((pair.src, pair.dst), images,
                                                            strict=True)]
    half_side = max(MIN_HALF_FOV_MM, max(float(max(b.half[horizontal], b.half[vertical]))
                                         for b in boxes) + MARGIN_MM)
    out = []
    for box in boxes:
        half = np.empty(3)
        half[[horizontal, vertical]] = half_side
        half[depth] = box.half[depth] + SLAB_MARGIN_MM
        out.append(Box(box.centre, half))
    return out[0], out[1]


def slab(image: sitk.Image, box: Box, plane: str, projection: str = "mean",
         pixel_mm: float | None = None) -> Slab:
    """Resample ``image`` on a world-aligned grid over ``box`` and project it (module doc).

    Args:
        image: a 3D CT in HU with LPS geometry.
        box: the world box to show.
        plane: ``"coronal"`` or ``"axial"``.
        projection: ``"mean"`` or ``"max"`` through the slab's depth.
        pixel_mm: in-plane pixel size (default: the image's finest spacing, coarsened so that
            a side has at most :data:`MAX_PANEL_PIXELS` pixels).
    """
    if projection not in PROJECTIONS:
        raise ValueError(f"projection must be one of {PROJECTIONS}, got {projection!r}")
    horizontal, vertical, depth = PLANES[plane]
    finest = float(min(image.GetSpacing()))
    side = 2 * float(box.half[horizontal])
    thickness = 2 * float(box.half[depth])
    if pixel_mm is None:
        pixel_mm = max(finest, side / MAX_PANEL_PIXELS)
    spacing, size = np.empty(3), np.empty(3, dtype=np.int64)
    spacing[[horizontal, vertical]] = pixel_mm
    size[[horizontal, vertical]] = max(1, math.ceil(side / pixel_mm))
    spacing[depth] = max(finest, thickness / MAX_SLAB_SAMPLES)
    size[depth] = max(1, math.ceil(thickness / spacing[depth]))
    origin = box.centre - (size - 1) / 2.0 * spacing
    geometry = ImageGeometry(tuple(origin.tolist()), tuple(spacing.tolist()),
                             tuple(np.eye(3).ravel().tolist()), tuple(size.tolist()))
    resampled = sitk.Resample(image, size.tolist(), sitk.Transform(), sitk.sitkLinear,
                              geometry.origin, geometry.spacing, geometry.direction, AIR_HU,
                              sitk.sitkFloat32)
    volume = sitk.GetArrayViewFromImage(resampled)  # numpy order (z, y, x)
    reduce = np.mean if projection == "mean" else np.max
    # the two axes left are (z, x) for coronal and (y, x) for axial: rows = vertical axis
    return Slab(np.asarray(reduce(volume, axis=2 - depth), dtype=np.float32), geometry, plane)


def central_slice(cube: np.ndarray, plane: str) -> np.ndarray:
    """The central slice of a crop ``[S, S, S]`` (numpy order z, y, x) in ``plane``:
    ``(z, x)`` for coronal, ``(y, x)`` for axial (rows = the vertical world axis)."""
    cube = np.asarray(cube).reshape(cube.shape[-3:])
    middle = cube.shape[0] // 2
    return cube[:, middle, :] if plane == "coronal" else cube[middle]
