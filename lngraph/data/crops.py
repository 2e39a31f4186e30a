r"""Per-node cubes resampled directly in physical space (docs/design.md, *Crops and views*).

For every node a small output grid of ``size³`` points is built around its centre, and the CT
is sampled there by trilinear interpolation (SimpleITK's resampler with one reference grid per
node); the whole CT is never resampled or copied, so the cost grows with the number of nodes,
not with the volume. SimpleITK was chosen over scipy's ``map_coordinates`` on the voxel array,
which gives the same values but ran slower, and runs on one thread: a ``24³`` output is too
small to split (ITK's threads made it several times slower); parallelism comes from
:func:`~lngraph.data.cache.precompute_crops`' worker processes (``benchmarks/crop_speed.py``).

**Grid orientation.** The output grid is axis-aligned with the LPS *world* axes, not with the
image's voxel axes: crops of scans taken with different direction cosines (oblique
acquisitions, NIfTI files flipped to LPS on read) show the anatomy the same way round. For the
usual axial CT with an identity direction the two coincide.

**Array order.** A cube is returned in numpy order ``(z, y, x)``: ``cube[a, b, c]`` is the
sample at world point

.. math::
    p = c_n + \big((c - m)\, s_x,\ (b - m)\, s_y,\ (a - m)\, s_z\big), \qquad m = (S - 1) / 2,

where :math:`c_n` is the node centre, :math:`S` the size and :math:`s` the grid spacing. The
centre therefore lies at the continuous array index :math:`(m, m, m)` (between two voxels when
``S`` is even), and a cube spans ``S · s`` mm per axis.

**Modes.** ``fixed``: spacing ``(0.7, 0.7, 2.0)`` mm along x, y, z (the paper's setting).
``radius`` (the default): an isotropic cube whose field of view is ``2 × radius_factor ×
radius`` (default factor :data:`RADIUS_FACTOR` = 2.5, chosen on validation; the paper's "50%
expanded radii" are :data:`RADIUS_EXPANSION` = 1.5), floored at ``min_fov_mm`` (default
:data:`MIN_FOV_MM`).

**Intensities.** Points outside the image (beyond the outer faces of its edge voxels) read air
(-1000 HU); the HU window ``(lo, hi)`` is then mapped linearly onto ``[0, 1]`` and clipped.
A node whose centre lies outside the image is an error, not a cube of air.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import SimpleITK as sitk

from lngraph.io.coords import ImageGeometry
from lngraph.io.errors import InputError
from lngraph.io.fields import FieldsError, coerce_fields

#: Crop spacing of the paper's fixed mode, mm along (x, y, z).
PAPER_SPACING_MM = (0.7, 0.7, 2.0)
#: Abdominal soft-tissue HU window.
ABDOMEN_WINDOW = (-160.0, 240.0)
#: Default smallest field of view of a ``radius``-mode cube, about the in-plane field of view of
#: a fixed-mode cube of 24 voxels (24 × 0.7 = 16.8 mm), so that a small node keeps about as much
#: context as the paper's crops.
MIN_FOV_MM = 16.0
#: Value of points outside the image (air), in HU.
AIR_HU = -1000.0
#: Default expansion of the radius in ``radius`` mode: field of view 2 × 2.5 × radius (the
#: node's surroundings help tell it apart; chosen on validation, see ``docs/method.md``).
RADIUS_FACTOR = 2.5
#: The paper's expansion of the radius ("50% expanded radii").
RADIUS_EXPANSION = 1.5

MODES = ("fixed", "radius")


@dataclass(frozen=True)
class CropParams:
    """Everything that determines a crop besides the image and the nodes (see the module doc);
    the ``crops`` section of :class:`~lngraph.models.MatcherConfig`. Defaults are the ``lite``
    setting; the ``paper`` preset uses ``mode="fixed"``.

    Args:
        mode: ``"fixed"`` (spacing ``spacing_mm``) or ``"radius"`` (field of view from the
            node's radius).
        size: voxels per side of the cube (and of the nine views).
        window: HU window ``(lo, hi)`` mapped onto ``[0, 1]``.
        spacing_mm: grid spacing along (x, y, z) in ``fixed`` mode.
        min_fov_mm: smallest field of view in ``radius`` mode.
        radius_factor: field of view ``2 × radius_factor × radius`` in ``radius`` mode.

    Values are converted to the annotated types (lists to tuples, numeric strings to numbers).

    Raises:
        ValueError: listing every invalid value (a :class:`~lngraph.io.fields.FieldsError`).
    """

    mode: str = "radius"
    size: int = 24
    window: tuple[float, float] = ABDOMEN_WINDOW
    spacing_mm: tuple[float, float, float] = PAPER_SPACING_MM
    min_fov_mm: float = MIN_FOV_MM
    radius_factor: float = RADIUS_FACTOR

    def __post_init__(self):
        problems = coerce_fields(self)
        if problems:
            raise FieldsError(problems)
        if self.mode not in MODES:
            problems.append(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.size < 1:
            problems.append(f"size must be positive, got {self.size}")
        if len(self.window) != 2 or not self.window[0] < self.window[1]:
            problems.append(f"window must be (lo, hi) with lo < hi, got {self.window}")
        if len(self.spacing_mm) != 3 or min(self.spacing_mm, default=0.0) <= 0:
            problems.append(f"spacing_mm must be three positive numbers, got {self.spacing_mm}")
        if not self.min_fov_mm > 0:
            problems.append(f"min_fov_mm must be positive, got {self.min_fov_mm}")
        if not self.radius_factor > 0:
            problems.append(f"radius_factor must be positive, got {self.radius_factor}")
        if problems:
            raise FieldsError(problems)

    def as_dict(self) -> dict:
        """The parameters as plain JSON-able values (the keyword arguments of crop_cubes)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def grid_spacing(params: CropParams, n: int, radii_mm=None) -> np.ndarray:
    """``[n, 3]`` grid spacing in mm along (x, y, z) of each of ``n`` nodes' cubes."""
    if params.mode == "fixed":
        return np.tile(np.asarray(params.spacing_mm), (n, 1))
    if radii_mm is None:
        raise ValueError("mode='radius' needs radii_mm")
    radii = np.asarray(radii_mm, dtype=np.float64).reshape(-1)
    if len(radii) != n:
        raise ValueError(f"{n} centres but {len(radii)} radii")
    if not np.all(np.isfinite(radii) & (radii > 0)):
        raise ValueError(f"radii_mm must be positive and finite, got {radii}")
    fov = np.maximum(2.0 * params.radius_factor * radii, params.min_fov_mm)
    return np.repeat((fov / params.size)[:, None], 3, axis=1)


def window_to_unit(values: np.ndarray, window: Sequence[float]) -> np.ndarray:
    """Map HU ``values`` linearly so that ``window`` becomes ``[0, 1]``, clip; in place."""
    lo, hi = window
    values -= lo
    values /= hi - lo
    return np.clip(values, 0.0, 1.0, out=values)


def _check_inside(geometry: ImageGeometry, centers: np.ndarray, node_ids, source) -> None:
    inside = geometry.contains(centers)
    if inside.all():
        return
    n = int(np.flatnonzero(~inside)[0])
    label = n if node_ids is None else node_ids[n]
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)])
    world = geometry.index_to_world(corners * np.asarray(geometry.size) - 0.5)
    lo, hi = world.min(axis=0), world.max(axis=0)
    box = ", ".join(f"{a:.1f}..{b:.1f}" for a, b in zip(lo, hi, strict=True))
    x, y, z = centers[n]
    raise InputError(source if source is not None else "<image>",
                     f"centre ({x:.1f}, {y:.1f}, {z:.1f}) mm (LPS) lies outside the image, "
                     f"whose world box is x, y, z = {box} mm ({int((~inside).sum())} node(s) "
                     "outside; a RAS/LPS mix-up flips the signs of x and y)",
                     what=f"node {label}")


def crop_cubes(image: sitk.Image, centers_mm, radii_mm=None, *, mode: str = "radius",
               size: int = 24, window: Sequence[float] = ABDOMEN_WINDOW,
               spacing_mm: Sequence[float] = PAPER_SPACING_MM, min_fov_mm: float = MIN_FOV_MM,
               radius_factor: float = RADIUS_FACTOR, node_ids: Sequence | None = None,
               source=None) -> np.ndarray:
    """Resample a windowed cube around every node centre (see the module doc).

    Args:
        image: a 3D scalar CT in HU with LPS geometry (:func:`lngraph.io.read_image`).
        centers_mm: ``[N, 3]`` node centres, world LPS mm ``(x, y, z)``.
        radii_mm: ``[N]`` node radii in mm (needed in ``radius`` mode, the default, only).
        mode, size, window, spacing_mm, min_fov_mm, radius_factor: see :class:`CropParams`
            (same defaults; ``mode="fixed"`` crops without radii).
        node_ids: names of the nodes for error messages (default: their indices).
        source: the image's file for error messages.

    Returns:
        ``float32 [N, size, size, size]`` in ``[0, 1]``, numpy order ``(z, y, x)``.

    Raises:
        InputError: a node centre lies outside the image (naming the node and ``source``).
    """
    params = CropParams(mode=mode, size=size, window=tuple(window),
                        spacing_mm=tuple(spacing_mm), min_fov_mm=min_fov_mm,
                        radius_factor=radius_factor)
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError("crop_cubes needs a 3D scalar image")
    centers = np.asarray(centers_mm, dtype=np.float64).reshape(-1, 3)
    spacing = grid_spacing(params, len(centers), radii_mm)
    s = params.size
    if len(centers) == 0:
        return np.zeros((0, s, s, s), dtype=np.float32)
    geometry = ImageGeometry.from_image(image)
    _check_inside(geometry, centers, node_ids, source)
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([s, s, s])
    resampler.SetInterpolator(sitk.sitkLinear)
    resampler.SetDefaultPixelValue(AIR_HU)
    resampler.SetOutputPixelType(sitk.sitkFloat32)
    resampler.SetNumberOfThreads(1)
    cubes = np.empty((len(centers), s, s, s), dtype=np.float32)
    for n, (centre, step) in enumerate(zip(centers, spacing, strict=True)):
        resampler.SetOutputSpacing(tuple(step))
        resampler.SetOutputOrigin(tuple(centre - step * (s - 1) / 2.0))
        cube = resampler.Execute(image)  # keep it alive while its array view is copied
        cubes[n] = sitk.GetArrayViewFromImage(cube)
    return window_to_unit(cubes, params.window)
