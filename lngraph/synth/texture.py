"""Real-texture cohorts: lymph-node-like nodes inserted into a real CT.

The phantom cohort (:mod:`lngraph.synth.cohort`) has analytic textures, so appearance learned on
it may not carry over to real scans. :func:`generate_texture_cohort` writes a cohort folder
(docs/design.md, *Cohort folder*) whose backgrounds are a real CT, the *texture source*, and
whose nodes are the phantom's nodes (:func:`~lngraph.synth.nodes.sample_identity`,
:func:`~lngraph.synth.nodes.paint_node`) painted into it. Every patient has two scans, a
baseline ``T0`` and a follow-up ``T1``.

**Source slab.** Only the slices ``z_range = (first, stop)`` of the source (array order k,
half-open, like a Python slice) are kept (:func:`load_texture_source`); the rest of the image
is dropped right after reading. Every voxel of every scan is sampled from the slab: a sample
position beyond the slab along k is clamped onto its first or last slice, one beyond the image
in-plane is air (−1024 HU). Two cohorts made from disjoint z-ranges therefore share no voxel
of the source (one half of a CT can train, the other half test). A scan box (``fov_mm``) that
does not fit in the slab is refused.

**Frames.** The *canonical* frame is the source's world frame (LPS mm). Each patient has a box
of ``fov_mm`` (along the source's i, j, k axes) centred on a random fat or soft-tissue point
``c`` of the slab's middle slice. Scan ``t`` sees the canonical frame through a
:class:`~lngraph.synth.followup.ScanTransform` ψ_t (scan world → canonical; the same
convention as the phantom's follow-ups, :mod:`lngraph.synth.followup`):

* baseline: ψ_0(x) = R_0 (x − c) + c, an in-plane rotation by up to ``pose_deg`` about ``c``
  (patients drawn from one slab differ by more than their box);
* follow-up: ψ_1(x) = y_0 + d(y_0), y_0 = R_1 (x − c) + c + τ, with R_1 = (a rotation by up to
  ``rotation_deg`` about a random axis) · R_0, a translation τ up to ``translation_mm`` per
  axis and a smooth displacement ``d`` (a :class:`~lngraph.synth.followup.DisplacementField`:
  wave modes of 60–200 mm wavelength scaled to an RMS drawn from ``deformation_mm`` over the
  box, a small linear strain and local Gaussian shifts up to ``local_shift_mm``; its gradient
  is capped so ψ stays invertible).

A node at canonical ``y`` is at ψ_t⁻¹(y) in scan ``t``; the image of scan ``t`` at ``x`` is the
source at ψ_t(x) (ψ evaluated on a 4 mm lattice and interpolated linearly, well under 0.5 mm
from the exact map). Image and node tables therefore move together.

**Nodes.** Baseline count and sizes are the phantom's NIH-like draws
(:func:`~lngraph.synth.nodes.sample_count`, :func:`~lngraph.synth.nodes.sample_sizes`),
clipped to ``nodes`` and ``short_mm``; each node is an ellipsoid with lobulated outline,
internal texture, optional fatty hilum and smooth edges (1 mm ramp), mean attenuation drawn
from ``node_hu``. Centres are drawn in the box (clear of its faces in both scans), at least
``min_gap_mm`` apart (between long-axis spheres). A place is preferred
(:data:`PLACED_CONTRAST`) when the source, smoothed in-plane (σ 3 mm), lies in ``tissue_hu``
(fat and soft tissue) at the centre and in the body (> −500 HU) at 14 points of the node's
sphere (no node pokes into lung or air), and the node's mean HU differs from it by at least
``contrast_hu`` (no node hidden in muscle or heart; most end up in fat); the first such draw is
taken. When 400 draws find none, the best place seen is taken: in ``tissue_hu`` without the
contrast (:data:`PLACED_TISSUE`), or only the centre in the body (:data:`PLACED_BODY`); a node
with no place in the body is left out. ``texture.json`` counts the tiers.
Follow-up edits follow the phantom
(:mod:`lngraph.synth.followup`, with ``params.preset``): a node disappears with probability
``p_disappear`` (it is then neither drawn nor annotated), otherwise its size changes
(log-normal around a patient trend, strong shrink, growth, rare surge), its shape, orientation
and texture change a little; ``Poisson(p_new · n)`` new nodes appear. Annotations jitter
centres and diameters (:func:`~lngraph.synth.followup.annotate`).

**Scan differences.** Each scan draws its own :class:`ScanEffects`: slice thickness (= slice
spacing; the object is averaged over the slice, sampled at ≤ 1 mm), in-plane pixel spacing,
reconstruction kernel (in-plane Gaussian blur), added noise (slightly correlated) and a global
HU offset (contrast phase).

**Geometry of the written images.** Direction = the source's; spacing (pixel, pixel, slice);
origin such that the grid is centred on ``c``, so origin, spacing and direction are those of a
real scan of that region. int16 HU, NIfTI.

Knows no learner: nothing here imports torch.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from lngraph.io.atomic import atomic_folder, write_text_atomic
from lngraph.io.cohort import Scan, write_cohort
from lngraph.io.coords import ImageGeometry
from lngraph.io.errors import InputError
from lngraph.synth.anatomy import axis_rotation
from lngraph.synth.followup import (
    MAX_FIELD_GRADIENT,
    Annotation,
    DisplacementField,
    NodeTimeline,
    ScanTransform,
    _size_factor,
    _trend,
    annotate,
)
from lngraph.synth.nodes import (
    ANNOTATION_MIN_SHORT_MM,
    N_TEXTURE,
    NodeSpec,
    paint_node,
    sample_count,
    sample_identity,
    sample_sizes,
)
from lngraph.synth.phantom import AnnotatedPatient
from lngraph.synth.presets import DEFAULT, SynthPreset
from lngraph.synth.raster import VolumeGrid

IMAGE_DIR = "images"
#: Name of the metadata file of a real-texture cohort.
META_NAME = "texture.json"
AIR_HU = -1024.0
#: A node centre off fat and soft tissue must still be in the body (smoothed HU above this).
BODY_HU = -500.0
#: In-plane Gaussian σ (mm) of the smoothed source that node placement tests.
TISSUE_SMOOTH_MM = 3.0
#: Draws per node before a fallback place (in the body, off ``tissue_hu``) is taken.
PLACE_TRIES = 400
#: Least distance (mm) of a node's long-axis sphere from the faces of the scan box.
BOX_MARGIN_MM = 5.0
#: Width (mm) of the soft edge of a painted node.
EDGE_MM = 1.0
#: Largest step (mm) along k at which the object is sampled inside one slice.
FINE_STEP_MM = 1.0
#: Lattice step (mm) on which ψ is evaluated exactly before linear interpolation.
LATTICE_MM = 4.0
#: Wave modes of a follow-up's displacement and their wavelengths (mm).
N_WAVES = 8
WAVELENGTH_MM = (60.0, 200.0)
#: Local Gaussian shifts of a follow-up's displacement and their radii (mm).
N_BUMPS = 4
BUMP_RADIUS_MM = (15.0, 30.0)
#: Largest linear strain of a follow-up's displacement.
MAX_STRAIN = 0.02
#: Largest short axis (mm) a node may grow to, and largest long axis.
MAX_SHORT_MM, MAX_LONG_MM = 30.0, 60.0
#: A core so wide that :class:`DisplacementField` applies its motion everywhere alike.
_NO_CORE_MM = 1e6


@dataclass(frozen=True)
class TextureParams:
    """What a real-texture cohort draws (module docstring). Ranges are ``(low, high)`` and
    drawn uniformly; ``low == high`` fixes a value.

    Args:
        fov_mm: the scan box (mm) along the source's i, j, k axes.
        nodes: fewest and most annotated nodes of a baseline.
        short_mm: range the baseline short axes (mm) are clipped to.
        node_hu: range of a node's mean attenuation (HU).
        tissue_hu: range of the smoothed source HU at a node centre (fat and soft tissue).
        contrast_hu: least difference between a node's mean HU and the smoothed source at
            its centre for a preferred place (a node is not hidden in muscle or heart).
        min_gap_mm: least gap (mm) between the long-axis spheres of two nodes.
        pose_deg: largest in-plane rotation of a patient's baseline about its box centre.
        rotation_deg: largest rotation of the follow-up (random axis).
        translation_mm: largest follow-up translation (mm) per world axis (x, y, z).
        deformation_mm: range of the RMS (mm) of the follow-up's smooth displacement over the
            box.
        local_shift_mm: largest shift (mm) of the displacement's local Gaussian bumps.
        slice_mm: range of the slice thickness (= slice spacing, mm), per scan.
        pixel_scale: range of the in-plane pixel spacing, in units of the source's, per scan.
        blur_mm: range of the in-plane Gaussian blur σ (mm, reconstruction kernel), per scan.
        noise_hu: range of the standard deviation (HU) of added noise, per scan.
        offset_hu: range of the global HU offset (contrast phase), per scan.
        preset: node dynamics and annotation noise, taken from the phantom's preset:
            ``p_disappear``, ``p_new``, ``size_sigma``, ``p_shrink``, ``p_grow``, ``p_surge``,
            ``shape_sigma``, ``texture_change``, ``rotation_change_deg``, ``centre_jitter_mm``,
            ``size_jitter`` (its motion and noise settings are not used).
    """

    fov_mm: tuple[float, float, float] = (160.0, 160.0, 80.0)
    nodes: tuple[int, int] = (2, 12)
    short_mm: tuple[float, float] = (5.0, 20.0)
    node_hu: tuple[float, float] = (20.0, 60.0)
    tissue_hu: tuple[float, float] = (-150.0, 80.0)
    contrast_hu: float = 30.0
    min_gap_mm: float = 3.0
    pose_deg: float = 15.0
    rotation_deg: float = 4.0
    translation_mm: tuple[float, float, float] = (10.0, 10.0, 6.0)
    deformation_mm: tuple[float, float] = (4.0, 12.0)
    local_shift_mm: float = 8.0
    slice_mm: tuple[float, float] = (1.0, 5.0)
    pixel_scale: tuple[float, float] = (1.0, 1.4)
    blur_mm: tuple[float, float] = (0.0, 0.8)
    noise_hu: tuple[float, float] = (0.0, 15.0)
    offset_hu: tuple[float, float] = (-20.0, 20.0)
    preset: SynthPreset = field(default=DEFAULT)

    def __post_init__(self):
        problems = []
        if len(self.fov_mm) != 3 or min(self.fov_mm) <= 0:
            problems.append(f"fov_mm must be three positive numbers, got {self.fov_mm}")
        if len(self.translation_mm) != 3 or min(self.translation_mm) < 0:
            problems.append(f"translation_mm must be three numbers >= 0, got "
                            f"{self.translation_mm}")
        ranges = ("nodes", "short_mm", "node_hu", "tissue_hu", "deformation_mm", "slice_mm",
                  "pixel_scale", "blur_mm", "noise_hu", "offset_hu")
        for name in ranges:
            value = getattr(self, name)
            if len(value) != 2 or not value[0] <= value[1]:
                problems.append(f"{name} must be a range (low, high) with low <= high, got "
                                f"{value}")
        for name, least in (("nodes", 1), ("short_mm", ANNOTATION_MIN_SHORT_MM),
                            ("slice_mm", 1e-3), ("pixel_scale", 1e-3), ("blur_mm", 0.0),
                            ("noise_hu", 0.0), ("deformation_mm", 0.0)):
            if getattr(self, name)[0] < least:
                problems.append(f"{name} must start at {least:g} or more, got "
                                f"{getattr(self, name)}")
        for name in ("contrast_hu", "min_gap_mm", "pose_deg", "rotation_deg",
                     "local_shift_mm"):
            if not getattr(self, name) >= 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True)
class ScanEffects:
    """What differs between two scans of a patient besides motion and the nodes.

    Args:
        slice_mm: slice thickness = slice spacing (mm).
        pixel_mm: in-plane pixel spacing (mm).
        blur_mm: in-plane Gaussian blur σ (mm), the reconstruction kernel.
        noise_hu: standard deviation of the added noise (HU).
        offset_hu: global HU offset (contrast phase).
    """

    slice_mm: float
    pixel_mm: float
    blur_mm: float
    noise_hu: float
    offset_hu: float


@dataclass(frozen=True, eq=False)
class TextureSource:
    """The part of a real CT a real-texture cohort draws from (:func:`load_texture_source`).

    Args:
        path: the source image.
        z_range: ``(first, stop)``: the slices (array order k, half-open) that were kept.
        slab: float32 HU, array order ``(k, j, i)``, slices ``first .. stop - 1`` only.
        geometry: the slab's geometry (its voxel ``(0, 0, 0)`` is the source's
            ``(0, 0, first)``).
        tissue: ``slab`` smoothed in-plane (σ :data:`TISSUE_SMOOTH_MM`), which node placement
            tests against ``tissue_hu``.
        sha256: SHA-256 of the source file's bytes.
    """

    path: Path
    z_range: tuple[int, int]
    slab: np.ndarray
    geometry: ImageGeometry
    tissue: np.ndarray
    sha256: str

    @property
    def extent_mm(self) -> np.ndarray:
        """Distance (mm) between the first and last voxel centres along i, j, k."""
        return (np.asarray(self.geometry.size) - 1) * np.asarray(self.geometry.spacing)

    def sample(self, volume: np.ndarray, points) -> np.ndarray:
        """Trilinear values of ``volume`` (the slab or :attr:`tissue`) at canonical world
        points ``[..., 3]``, with the clamping of the module docstring (k onto the slab,
        in-plane beyond the image: air)."""
        p = np.asarray(points, dtype=np.float64)
        index = self.geometry.world_to_array(p.reshape(-1, 3)).T
        index[0] = np.clip(index[0], 0, self.slab.shape[0] - 1)
        out = ndimage.map_coordinates(volume, index, order=1, mode="constant", cval=AIR_HU)
        return out.reshape(p.shape[:-1])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_z_range(z_range, n_slices: int, path) -> tuple[int, int]:
    """``z_range`` as ``(first, stop)`` ints, checked against an image of ``n_slices`` slices.

    Raises:
        InputError: (naming ``path``) not two integers, empty, fewer than 2 slices, or
            outside ``0 .. n_slices``.
    """
    try:
        first, stop = (int(v) for v in z_range)
        if any(float(v) != int(v) for v in z_range):
            raise ValueError
    except (TypeError, ValueError):
        raise InputError(path, f"z_range must be two slice indices (first, stop), got "
                         f"{z_range!r}") from None
    if not 0 <= first < stop <= n_slices:
        raise InputError(path, f"z_range ({first}, {stop}) is outside the image, which has "
                         f"{n_slices} slices (array order k); give 0 <= first < stop <= "
                         f"{n_slices} (stop is exclusive, like a Python slice)")
    if stop - first < 2:
        raise InputError(path, f"z_range ({first}, {stop}) holds {stop - first} slice; a "
                         "texture source needs at least 2")
    return first, stop


def load_texture_source(path: str | os.PathLike, z_range) -> TextureSource:
    """Read a real CT and keep the slices ``z_range = (first, stop)`` (array order k,
    half-open) as a texture source; the other slices are dropped at once.

    Raises:
        InputError: the file is missing or not a readable 3D image
            (:func:`~lngraph.io.image.read_image`), or ``z_range`` is not a range of its
            slices (:func:`check_z_range`).
    """
    import SimpleITK as sitk

    from lngraph.io.image import read_image

    path = Path(path)
    image = read_image(path)
    size = tuple(int(v) for v in image.GetSize())
    first, stop = check_z_range(z_range, size[2], path)
    slab = sitk.GetArrayViewFromImage(image)[first:stop].astype(np.float32)
    full = ImageGeometry.from_image(image)
    del image
    geometry = ImageGeometry(origin=tuple(float(v) for v in full.index_to_world((0, 0, first))),
                             spacing=full.spacing, direction=full.direction,
                             size=(size[0], size[1], stop - first))
    sigma = [0.0] + [TISSUE_SMOOTH_MM / s for s in full.spacing[1::-1]]   # (k, j, i)
    tissue = ndimage.gaussian_filter(slab, sigma, mode="nearest")
    return TextureSource(path, (first, stop), slab, geometry, tissue, _sha256(path))


def _check_fits(source: TextureSource, params: TextureParams) -> None:
    """Refuse a scan box that does not fit in the slab (it would need other slices)."""
    extent = source.extent_mm
    for axis, name in enumerate("ijk"):
        if params.fov_mm[axis] > extent[axis] + 1e-6:
            first, stop = source.z_range
            raise InputError(source.path, f"the scan box fov_mm = {tuple(params.fov_mm)} does "
                             f"not fit in slices {first}..{stop - 1} of the image: along "
                             f"{name} the box needs {params.fov_mm[axis]:g} mm, the slab spans "
                             f"{extent[axis]:g} mm; give a wider z_range or a smaller fov_mm")


@dataclass(frozen=True, eq=False)
class TexturePatient(AnnotatedPatient):
    """The simulated geometry of one real-texture patient (both scans).

    Args:
        patient_id: e.g. ``"R0001"``.
        centre: ``(3,)`` box centre ``c``, canonical (= source world) mm.
        fov_mm: ``(3,)`` the box size (mm) along the source's i, j, k axes.
        transforms: per scan, ψ_t (scan world → canonical).
        timeline: true node states per scan (canonical centres).
        annotations: per scan, the recorded nodes.
        effects: per scan, its :class:`ScanEffects`.
        dates: per scan, ISO date.
        placement: ``[N]`` the placement tier of node ``i``: :data:`PLACED_CONTRAST`,
            :data:`PLACED_TISSUE` or :data:`PLACED_BODY` (module docstring, *Nodes*).
        field_rms_mm: RMS of the follow-up displacement over the box (after the smoothness
            cap).
        render_entropy: seed entropy of the noise.
    """

    patient_id: str
    centre: np.ndarray
    fov_mm: tuple[float, float, float]
    transforms: tuple[ScanTransform, ScanTransform]
    timeline: NodeTimeline
    annotations: tuple[Annotation, Annotation]
    effects: tuple[ScanEffects, ScanEffects]
    dates: tuple[str, str]
    placement: np.ndarray
    field_rms_mm: float
    render_entropy: int

    n_scans = 2


    def true_positions(self, t: int) -> np.ndarray:
        """``[N, 3]`` every node's true centre in scan ``t``'s world (drawn or not)."""
        centres = np.array([s.centre for s in self.timeline.specs]).reshape(-1, 3)
        return self.transforms[t].from_canonical(centres)

    def follow_up_position(self, points) -> np.ndarray:
        """Where baseline world points ``[..., 3]`` are in the follow-up: ψ_1⁻¹(ψ_0(p))."""
        return self.transforms[1].from_canonical(self.transforms[0].to_canonical(points))


def _box_axes(source: TextureSource) -> np.ndarray:
    """``[3, 3]`` columns: the world directions of the source's i, j, k axes (the box axes)."""
    return source.geometry.direction_matrix


def _draw_range(rng: np.random.Generator, bounds) -> float:
    low, high = (float(v) for v in bounds)
    return low if low == high else float(rng.uniform(low, high))


def _draw_effects(rng: np.random.Generator, params: TextureParams, pixel_mm: float
                  ) -> ScanEffects:
    return ScanEffects(
        slice_mm=_draw_range(rng, params.slice_mm),
        pixel_mm=pixel_mm * _draw_range(rng, params.pixel_scale),
        blur_mm=_draw_range(rng, params.blur_mm),
        noise_hu=_draw_range(rng, params.noise_hu),
        offset_hu=_draw_range(rng, params.offset_hu))


def _box_centre(source: TextureSource, params: TextureParams, rng: np.random.Generator
                ) -> np.ndarray:
    """A random fat / soft-tissue point of the slab's middle slice whose box (``fov_mm``)
    lies inside the slab (any admissible point when none is tissue)."""
    g = source.geometry
    half = np.asarray(params.fov_mm) / 2
    spacing = np.asarray(g.spacing)
    lo = np.ceil(half / spacing).astype(int)                   # (i, j, k) index bounds
    hi = np.asarray(g.size) - 1 - lo
    k_mid = (g.size[2] - 1) / 2
    tissue = source.tissue[int(round(k_mid))]
    ok = (tissue >= params.tissue_hu[0]) & (tissue <= params.tissue_hu[1])
    window = np.zeros_like(ok)
    window[lo[1]:max(hi[1] + 1, lo[1]), lo[0]:max(hi[0] + 1, lo[0])] = True
    candidates = np.argwhere(ok & window)                      # rows (j, i)
    if len(candidates) == 0:
        candidates = np.argwhere(window)
    if len(candidates) == 0:   # the box spans the whole slab in-plane: its centre
        candidates = np.array([[(g.size[1] - 1) / 2, (g.size[0] - 1) / 2]])
    j, i = candidates[int(rng.integers(len(candidates)))]
    return g.index_to_world((float(i), float(j), k_mid))


def sample_displacement(rng: np.random.Generator, centre: np.ndarray, probe: np.ndarray,
                        rms_mm: float, local_shift_mm: float) -> DisplacementField:
    """A follow-up's smooth displacement over a box (module docstring): :data:`N_WAVES` wave
    modes scaled to RMS ``rms_mm`` over ``probe`` (points ``[P, 3]``), a linear strain up to
    :data:`MAX_STRAIN`, :data:`N_BUMPS` Gaussian shifts up to ``local_shift_mm`` centred on
    probe points; scaled down where needed so that ``‖∇d‖ ≤ MAX_FIELD_GRADIENT`` on
    ``probe``."""
    def units(n: int) -> np.ndarray:
        v = rng.standard_normal((n, 3))
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    wavelength = rng.uniform(*WAVELENGTH_MM, N_WAVES)
    field_ = DisplacementField(
        linear=np.zeros((3, 3)), centre=np.asarray(centre, dtype=np.float64),
        core_axes=np.array([_NO_CORE_MM, _NO_CORE_MM]),
        k=units(N_WAVES) * (2 * np.pi / wavelength)[:, None],
        phase=rng.uniform(0, 2 * np.pi, N_WAVES), amp=units(N_WAVES) / np.sqrt(N_WAVES),
        visceral=np.zeros(N_WAVES, dtype=bool), y_visceral=0.0, breathing_mm=0.0,
        z_diaphragm=0.0, bump_centre=np.zeros((0, 3)), bump_shift=np.zeros((0, 3)),
        bump_radius=np.zeros(0))
    rms = float(np.sqrt((field_(probe) ** 2).sum(axis=1).mean()))
    field_ = field_.scaled(rms_mm / max(rms, 1e-9))
    g = rng.standard_normal((3, 3))
    g = (g + g.T) / 2
    field_ = replace(
        field_, linear=g / np.linalg.norm(g, ord=2) * rng.uniform(0, MAX_STRAIN),
        bump_centre=probe[rng.integers(len(probe), size=N_BUMPS)],
        bump_shift=units(N_BUMPS) * rng.uniform(0, local_shift_mm, (N_BUMPS, 1)),
        bump_radius=rng.uniform(*BUMP_RADIUS_MM, N_BUMPS))
    grad = field_.max_gradient(probe)
    return field_.scaled(min(1.0, MAX_FIELD_GRADIENT / max(grad, 1e-9)))


#: Placement tiers of a node centre (module docstring, *Nodes*).
PLACED_CONTRAST, PLACED_TISSUE, PLACED_BODY = 0, 1, 2
#: Unit directions (6 axes, 8 diagonals) at which a node's sphere must be in the body.
_SPHERE = np.concatenate([np.eye(3), -np.eye(3),
                          np.array(np.meshgrid(*[[-1.0, 1.0]] * 3)).reshape(3, -1).T
                          / np.sqrt(3)])


@dataclass
class _Placer:
    """Draws node centres in a patient's box (module docstring, *Nodes*)."""

    source: TextureSource
    params: TextureParams
    centre: np.ndarray
    axes: np.ndarray
    rng: np.random.Generator
    placed: list = field(default_factory=list)          # (canonical centre, reach mm)

    def _inside(self, transform: ScanTransform, y: np.ndarray, reach: float) -> bool:
        local = self.axes.T @ (transform.from_canonical(y) - self.centre)
        return bool(np.all(np.abs(local) <= np.asarray(self.params.fov_mm) / 2 - reach
                           - BOX_MARGIN_MM))

    def _tier(self, y: np.ndarray, reach: float, hu: float) -> int | None:
        """The placement tier of a centre ``y``, or ``None`` when it is not in the body."""
        values = self.source.sample(self.source.tissue, np.vstack([y, y + reach * _SPHERE]))
        if values[0] <= BODY_HU:
            return None
        lo, hi = self.params.tissue_hu
        if not (lo <= values[0] <= hi and np.all(values[1:] > BODY_HU)):
            return PLACED_BODY
        if abs(hu - values[0]) >= self.params.contrast_hu:
            return PLACED_CONTRAST
        return PLACED_TISSUE

    def place(self, reach: float, hu: float, views: list[ScanTransform]
              ) -> tuple[np.ndarray, int] | None:
        """A canonical centre for a node of long-axis radius ``reach`` and mean attenuation
        ``hu`` that lies inside the box of every scan in ``views`` (drawn in the first), with
        its placement tier; ``None`` when there is no room in the body."""
        half = np.asarray(self.params.fov_mm) / 2 - reach - BOX_MARGIN_MM
        if np.any(half <= 0):
            return None
        best: tuple[np.ndarray, int] | None = None
        last_k = self.source.slab.shape[0] - 1
        for _ in range(PLACE_TRIES):
            local = self.rng.uniform(-half, half)
            y = views[0].to_canonical(self.centre + self.axes @ local)
            if not 0 <= self.source.geometry.world_to_array(y)[0] <= last_k:
                continue
            if any(np.linalg.norm(y - c) < reach + r + self.params.min_gap_mm
                   for c, r in self.placed):
                continue
            tier = self._tier(y, reach, hu)
            if tier is None or (best is not None and tier >= best[1]):
                continue
            if not all(self._inside(t, y, reach) for t in views[1:]):
                continue
            best = (y, tier)
            if tier == PLACED_CONTRAST:
                break
        if best is not None:
            self.placed.append((best[0], reach))
        return best


def _reach(short_mm: float, long_mm: float) -> float:
    """Radius (mm) of a node's long-axis sphere, with room for its lobulated outline."""
    return 0.55 * max(short_mm, long_mm)


def simulate_texture_patient(source: TextureSource, patient_id: str,
                             seed: int | np.random.SeedSequence,
                             params: TextureParams | None = None) -> TexturePatient:
    """Simulate one patient's box, motion, nodes, scan differences and annotations (no
    images); everything is a deterministic function of ``seed`` and the source.

    Raises:
        InputError: the scan box does not fit in the source slab.
    """
    params = TextureParams() if params is None else params
    _check_fits(source, params)
    preset = params.preset
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    s_box, s_motion, s_nodes, s_annot, s_effects, s_render = ss.spawn(6)
    axes = _box_axes(source)

    rng = np.random.default_rng(s_box)
    centre = _box_centre(source, params, rng)
    pose = axis_rotation(axes[:, 2], np.deg2rad(rng.uniform(-1, 1) * params.pose_deg))
    dates = _dates(rng)

    rng = np.random.default_rng(s_motion)
    half = np.asarray(params.fov_mm) / 2
    grid = np.stack(np.meshgrid(*[np.linspace(-0.8, 0.8, 5)] * 3, indexing="ij"), -1)
    probe = centre + (grid.reshape(-1, 3) * half) @ axes.T
    rms = _draw_range(rng, params.deformation_mm)
    displacement = sample_displacement(rng, centre, probe, rms, params.local_shift_mm)
    axis = rng.standard_normal(3)
    motion = axis_rotation(axis / np.linalg.norm(axis),
                           np.deg2rad(rng.uniform(0, params.rotation_deg)))
    translation = rng.uniform(-1, 1, 3) * np.asarray(params.translation_mm)
    transforms = (ScanTransform(pose, np.zeros(3), centre),
                  ScanTransform(motion @ pose, translation, centre, displacement))
    field_rms = float(np.sqrt((displacement(probe) ** 2).sum(axis=1).mean()))

    rng = np.random.default_rng(s_nodes)
    timeline, placement = _simulate_nodes(source, params, preset, centre, axes, transforms, rng)

    rng = np.random.default_rng(s_annot)
    annotations = tuple(annotate(timeline, t, transforms[t], preset, rng) for t in range(2))
    rng = np.random.default_rng(s_effects)
    pixel = float(min(source.geometry.spacing[:2]))
    effects = tuple(_draw_effects(rng, params, pixel) for _ in range(2))
    fov = tuple(float(v) for v in params.fov_mm)
    return TexturePatient(patient_id, centre, fov, transforms, timeline, annotations, effects,
                          dates, placement, field_rms, int(s_render.generate_state(1)[0]))


def _dates(rng: np.random.Generator) -> tuple[str, str]:
    day = dt.date(2014, 1, 1) + dt.timedelta(days=int(rng.integers(0, 3000)))
    later = day + dt.timedelta(days=int(rng.integers(60, 200)))
    return day.isoformat(), later.isoformat()


def _simulate_nodes(source: TextureSource, params: TextureParams, preset: SynthPreset,
                    centre: np.ndarray, axes: np.ndarray,
                    transforms: tuple[ScanTransform, ScanTransform], rng: np.random.Generator
                    ) -> tuple[NodeTimeline, np.ndarray]:
    """Baseline nodes, their follow-up state and the follow-up's new nodes."""
    placer = _Placer(source, params, centre, axes, rng)
    n = int(np.clip(sample_count(rng), *params.nodes))
    short, long_ = sample_sizes(rng, n)
    ratio = long_ / short
    short = np.clip(short, *params.short_mm)
    specs, placement = [], []
    for s, r in zip(short, ratio, strict=True):
        spec = _identity(rng, s, s * r, params)
        spot = placer.place(_reach(s, s * r), spec.hu, list(transforms))
        if spot is not None:
            specs.append(replace(spec, centre=spot[0]))
            placement.append(spot[1])
    n_base = len(specs)
    # follow-up state of the baseline nodes (lngraph.synth.followup.evolve_nodes, two scans)
    trend = _trend(rng)
    present1, short1, ratio1, rot1, phase1 = [], [], [], [], []
    for spec in specs:
        gone = rng.random() < preset.p_disappear
        present1.append(not gone)
        s = spec.short_mm if gone else float(np.clip(
            spec.short_mm * _size_factor(preset, rng, trend), ANNOTATION_MIN_SHORT_MM + 0.5,
            MAX_SHORT_MM))
        short1.append(s)
        ratio1.append(max(1.0, spec.long_mm / spec.short_mm
                          * np.exp(rng.normal(0, preset.shape_sigma))))
        axis = rng.standard_normal(3)
        rot1.append(axis_rotation(axis / np.linalg.norm(axis),
                                  np.deg2rad(rng.normal(0, preset.rotation_change_deg)))
                    @ spec.rotation)
        phase1.append(spec.texture_phase + rng.normal(0, preset.texture_change, N_TEXTURE))
    placer.placed = [(c, max(r, _reach(s, s * q))) for (c, r), s, q in
                     zip(placer.placed, short1, ratio1, strict=True)]
    n_new = int(rng.poisson(preset.p_new * max(n_base, 1)))
    new_short, new_long = sample_sizes(rng, n_new)
    new_ratio = new_long / new_short
    new_short = np.clip(new_short * rng.uniform(0.5, 0.9, n_new), *params.short_mm)
    for s, r in zip(new_short, new_ratio, strict=True):
        spec = _identity(rng, s, s * r, params)
        spot = placer.place(_reach(s, s * r), spec.hu, [transforms[1]])
        if spot is None:
            continue
        specs.append(replace(spec, centre=spot[0]))
        placement.append(spot[1])
        present1.append(True)
        short1.append(spec.short_mm)
        ratio1.append(spec.long_mm / spec.short_mm)
        rot1.append(spec.rotation)
        phase1.append(spec.texture_phase)
    n_all = len(specs)
    present = np.zeros((2, n_all), dtype=bool)
    present[0, :n_base] = True
    present[1] = present1
    short_a = np.array([[s.short_mm for s in specs], short1]).reshape(2, n_all)
    ratio_a = np.array([[s.long_mm / s.short_mm for s in specs], ratio1]).reshape(2, n_all)
    timeline = NodeTimeline(
        specs=specs, short_mm=short_a, long_mm=np.minimum(short_a * ratio_a, MAX_LONG_MM),
        rotation=np.array([[s.rotation for s in specs], rot1]).reshape(2, n_all, 3, 3),
        phase=np.array([[s.texture_phase for s in specs], phase1]).reshape(2, n_all, N_TEXTURE),
        present=present, annotated=present.copy())
    return timeline, np.asarray(placement, dtype=np.int64)


def _identity(rng: np.random.Generator, short_mm: float, long_mm: float,
              params: TextureParams) -> NodeSpec:
    """A node's identity (centre still at the origin) with ``hu`` drawn from ``node_hu``."""
    spec = sample_identity(rng, np.zeros(3), short_mm, long_mm, station="texture")
    return replace(spec, hu=_draw_range(rng, params.node_hu))


def scan_geometry(source: TextureSource, patient: TexturePatient, t: int) -> ImageGeometry:
    """The voxel grid of scan ``t``: the patient's box centred on its centre, the source's
    direction, spacing ``(pixel_mm, pixel_mm, slice_mm)`` of the scan's effects."""
    e = patient.effects[t]
    spacing = np.array([e.pixel_mm, e.pixel_mm, e.slice_mm])
    size = np.maximum(2, np.rint(np.asarray(patient.fov_mm) / spacing)).astype(int)
    origin = patient.centre - _box_axes(source) @ (spacing * (size - 1) / 2)
    return ImageGeometry(origin=tuple(float(v) for v in origin),
                         spacing=tuple(float(v) for v in spacing),
                         direction=source.geometry.direction, size=tuple(int(v) for v in size))


def _interp_matrix(n: int, m: int) -> np.ndarray:
    """``[n, m]`` linear interpolation from ``m`` samples spanning ``0 .. n-1`` to ``n``."""
    if m == 1:
        return np.ones((n, 1))
    pos = np.linspace(0, m - 1, n)
    lo = np.minimum(np.floor(pos).astype(int), m - 2)
    out = np.zeros((n, m))
    out[np.arange(n), lo] = 1 - (pos - lo)
    out[np.arange(n), lo + 1] = pos - lo
    return out


def _background(source: TextureSource, transform: ScanTransform, grid: ImageGeometry,
                chunk: int = 8) -> np.ndarray:
    """The source seen through ψ on ``grid``: float32 HU, array order ``(k, j, i)``.

    ψ is evaluated exactly on a lattice of about :data:`LATTICE_MM` and interpolated linearly
    (separably) to every voxel, as source indices; the slab is sampled trilinearly (clamping
    of the module docstring), ``chunk`` slices at a time."""
    size = np.asarray(grid.size)
    counts = [min(int(n), max(2, int(np.ceil((n - 1) * s / LATTICE_MM)) + 1))
              for n, s in zip(size, grid.spacing, strict=True)]
    u = [np.linspace(0, size[a] - 1, counts[a]) for a in range(3)]
    kk, jj, ii = np.meshgrid(u[2], u[1], u[0], indexing="ij")
    world = grid.index_to_world(np.stack([ii, jj, kk], axis=-1))
    index = source.geometry.world_to_array(transform.to_canonical(world))   # (k, j, i) order
    mx, my, mz = (_interp_matrix(int(size[a]), counts[a]) for a in range(3))
    planes = [np.einsum("jb,abi->aji", my, index[..., c] @ mx.T) for c in range(3)]
    out = np.empty(tuple(size[::-1]), dtype=np.float32)
    last_k = source.slab.shape[0] - 1
    for start in range(0, int(size[2]), chunk):
        rows = mz[start:start + chunk]
        coords = [np.tensordot(rows, plane, axes=(1, 0)) for plane in planes]
        np.clip(coords[0], 0, last_k, out=coords[0])
        out[start:start + len(rows)] = ndimage.map_coordinates(
            source.slab, coords, order=1, mode="constant", cval=AIR_HU, output=np.float32)
    return out


def render_texture_scan(source: TextureSource, patient: TexturePatient, t: int):
    """Scan ``t`` of ``patient`` as a ``SimpleITK.Image`` (int16 HU, LPS) on
    :func:`scan_geometry`: background through ψ_t, the drawn nodes painted at ψ_t⁻¹ of their
    centres (oriented by R_tᵀ), averaged over each slice, blurred in-plane, noise and offset
    added (module docstring)."""
    import SimpleITK as sitk

    e = patient.effects[t]
    out_grid = scan_geometry(source, patient, t)
    n_sub = max(1, int(np.ceil(e.slice_mm / FINE_STEP_MM - 1e-9)))
    axes = _box_axes(source)
    fine_origin = (np.asarray(out_grid.origin)
                   - axes[:, 2] * (e.slice_mm / 2 - e.slice_mm / (2 * n_sub)))
    fine = ImageGeometry(origin=tuple(float(v) for v in fine_origin),
                         spacing=(e.pixel_mm, e.pixel_mm, e.slice_mm / n_sub),
                         direction=out_grid.direction,
                         size=(out_grid.size[0], out_grid.size[1], out_grid.size[2] * n_sub))
    transform = patient.transforms[t]
    volume = _background(source, transform, fine)
    # nodes, in the fine grid's own axis-aligned frame: local = Dᵀ (p − origin)
    local_grid = VolumeGrid((0.0, 0.0, 0.0), fine.spacing, fine.size)
    tl = patient.timeline
    positions = patient.true_positions(t)
    for i in np.flatnonzero(tl.present[t]):
        spec = replace(tl.specs[i], centre=axes.T @ (positions[i] - fine_origin))
        rotation = axes.T @ transform.rotation.T @ tl.rotation[t, i]
        paint_node(volume, local_grid, spec, tl.short_mm[t, i], tl.long_mm[t, i], rotation,
                   tl.phase[t, i], EDGE_MM)
    nk, nj, ni = out_grid.size[2], out_grid.size[1], out_grid.size[0]
    image = volume.reshape(nk, n_sub, nj, ni).mean(axis=1)
    if e.blur_mm > 0:
        sigma = e.blur_mm / e.pixel_mm
        image = ndimage.gaussian_filter(image, (0.0, sigma, sigma))
    if e.noise_hu > 0:
        rng = np.random.default_rng(np.random.SeedSequence(patient.render_entropy).spawn(2)[t])
        grain = ndimage.gaussian_filter(rng.standard_normal(image.shape, dtype=np.float32),
                                        (0.0, 0.6, 0.6))
        image += grain * (e.noise_hu / max(float(grain.std()), 1e-6))
    image += e.offset_hu
    result = sitk.GetImageFromArray(np.clip(np.rint(image), -1024, 3071).astype(np.int16))
    result.SetOrigin(out_grid.origin)
    result.SetSpacing(out_grid.spacing)
    result.SetDirection(out_grid.direction)
    return result


def patient_record(patient: TexturePatient) -> dict:
    """What ``texture.json`` says about one patient."""
    tl = patient.timeline
    rotation = patient.transforms[1].rotation @ patient.transforms[0].rotation.T
    angle = float(np.degrees(np.arccos(np.clip((np.trace(rotation) - 1) / 2, -1, 1))))
    return {
        "patient_id": patient.patient_id,
        "centre_mm": [round(float(v), 3) for v in patient.centre],
        "follow_up_rotation_deg": round(angle, 3),
        "follow_up_translation_mm": [round(float(v), 3) for v in patient.transforms[1].translation],
        "deformation_rms_mm": round(patient.field_rms_mm, 3),
        "nodes": int(len(tl.specs)),
        "placed": {name: int((patient.placement == tier).sum()) for name, tier in
                   (("contrast", PLACED_CONTRAST), ("tissue", PLACED_TISSUE),
                    ("body", PLACED_BODY))},
        "disappeared": int((tl.present[0] & ~tl.present[1]).sum()),
        "new": int((~tl.present[0] & tl.present[1]).sum()),
        "scans": [{"scan_id": patient.scan_id(t), **asdict(patient.effects[t])}
                  for t in range(2)],
    }


def generate_texture_cohort(out: str | os.PathLike, source: str | os.PathLike, z_range,
                            patients: int, seed: int, *, params: TextureParams | None = None,
                            id_prefix: str = "R", progress: bool = True,
                            overwrite: bool = True) -> Path:
    """Write a real-texture cohort (module docstring) into the folder ``out`` and return it.

    ``OUT/scans.csv``, ``OUT/nodes.csv``, ``OUT/images/<scan_id>.nii.gz`` and
    ``OUT/texture.json`` (source file and SHA-256, ``z_range``, seed, parameters, and per
    patient its box, motion and per-scan effects). Patient ``i`` (id ``<id_prefix>0001``, …)
    is simulated from the ``i``-th child of ``SeedSequence(seed)``, so it is the same in a
    cohort of 10 or of 100. The folder is written whole or not at all
    (:func:`~lngraph.io.atomic.atomic_folder`).

    Args:
        out: the cohort folder.
        source: the real CT (any format :func:`~lngraph.io.image.read_image` reads).
        z_range: ``(first, stop)``: the source slices (array order k, half-open) to draw from.
        patients: number of patients (2 scans each).
        seed: cohort seed.
        params: what is drawn (:class:`TextureParams`; default ``TextureParams()``).
        id_prefix: prefix of the patient ids (so cohorts can be merged without clashes).
        progress: show a progress bar (tqdm, on stderr).
        overwrite: replace a non-empty ``out``; ``False`` refuses it.

    Raises:
        ValueError: ``patients < 1``.
        InputError: ``source`` missing or unreadable, ``z_range`` outside it, a scan box that
            does not fit in the slab, or ``out`` not writable as a folder
            (:func:`~lngraph.io.atomic.atomic_folder`).
    """
    from lngraph.io.image import write_image

    if int(patients) < 1:
        raise ValueError(f"patients must be at least 1, got {patients}")
    params = TextureParams() if params is None else params
    texture = load_texture_source(source, z_range)
    _check_fits(texture, params)
    seeds = np.random.SeedSequence(int(seed)).spawn(int(patients))
    root = Path(out)
    with atomic_folder(root, overwrite=overwrite) as tmp:
        scans, records = [], []
        indices = range(int(patients))
        if progress:
            from tqdm import tqdm

            indices = tqdm(indices, desc="texture", unit="patient")
        for i in indices:
            patient = simulate_texture_patient(texture, f"{id_prefix}{i + 1:04d}", seeds[i],
                                               params)
            for t in range(2):
                path = write_image(render_texture_scan(texture, patient, t),
                                   tmp / IMAGE_DIR / f"{patient.scan_id(t)}.nii.gz")
                scans.append(Scan(patient_id=patient.patient_id, scan_id=patient.scan_id(t),
                                  timepoint=patient.dates[t], image=path,
                                  nodes=patient.node_table(t)))
            records.append(patient_record(patient))
        write_cohort(tmp, scans)
        meta = {
            "generator": "lngraph.synth.texture", "source": str(texture.path),
            "source_sha256": texture.sha256, "z_range": list(texture.z_range),
            "slab_z_mm": [float(texture.geometry.index_to_world((0, 0, k))[2])
                          for k in (0, texture.geometry.size[2] - 1)],
            "seed": int(seed), "patients": int(patients), "id_prefix": id_prefix,
            "params": json.loads(json.dumps(asdict(params))),
            "scans": len(scans), "nodes": int(sum(len(s.nodes) for s in scans)),
            "patient_records": records,
        }
        write_text_atomic(tmp / META_NAME, json.dumps(meta, indent=2) + "\n")
    return root
