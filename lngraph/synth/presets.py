"""Parameters of the synthetic cohort: the image grid and the difficulty presets.

A :class:`SynthPreset` holds everything that sets how hard a cohort is to match — how far the
anatomy moves between scans, how much the nodes change, how many appear or vanish, how noisy
the images and the annotations are. ``easy``, ``default`` and ``hard`` are calibrated against
the ``nearest`` baseline and the real follow-up statistics of docs/design.md, *Reference data* (see
``docs/synth.md``
and ``benchmarks/synth_difficulty.py``); they are never tuned to flatter a learned model.

:class:`ScanGrid` is the voxel grid of every written image. The default, 192×160×96 voxels of
1.6×1.6×3.0 mm, gives a 307×256×288 mm field of view (a clinical abdominal CT at a modest
resolution); tests use :meth:`ScanGrid.scaled` for a coarser grid with the same field of view,
which changes the images but not the geometry (node tables are independent of the grid).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


@dataclass(frozen=True)
class ScanGrid:
    """Voxel grid of a written scan: ``shape`` (i, j, k) voxels of ``spacing`` mm.

    The grid is axis-aligned (identity direction, LPS) and centred on the world point
    ``centre`` (x, y, z) mm.
    """

    shape: tuple[int, int, int] = (192, 160, 96)
    spacing: tuple[float, float, float] = (1.6, 1.6, 3.0)
    centre: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def fov_mm(self) -> np.ndarray:
        return np.asarray(self.shape) * np.asarray(self.spacing)

    @property
    def origin(self) -> np.ndarray:
        """World position of voxel ``(0, 0, 0)``."""
        return np.asarray(self.centre) - (np.asarray(self.shape) - 1) / 2 * np.asarray(
            self.spacing)

    def scaled(self, factor: float) -> ScanGrid:
        """A grid with the same field of view and ``factor`` times as many voxels per axis."""
        shape = tuple(max(8, round(n * factor)) for n in self.shape)
        spacing = tuple(float(f) / n for f, n in zip(self.fov_mm, shape, strict=True))
        return replace(self, shape=shape, spacing=spacing)


#: The grid of ``lngraph synth`` images.
DEFAULT_GRID = ScanGrid()


@dataclass(frozen=True)
class SynthPreset:
    """Difficulty parameters of a synthetic cohort.

    Args:
        name: preset name.
        scans_per_patient: probabilities of 2 and 3 scans per patient.
        translation_mm: maximal patient repositioning per axis (x, y, z) between scans.
        rotation_deg: maximal rotation of the patient between scans.
        deformation_mm: range of the RMS magnitude of the smooth non-rigid displacement of a
            follow-up (drawn uniformly per scan), before the smoothness cap.
        visceral_share: share of the deformation carried by the mobile, anterior (mesenteric)
            compartment rather than the whole abdomen.
        linear_strain: maximal norm of the linear (whole-abdomen girth and shape) part of the
            displacement, a strain (e.g. 0.08 = 8 %).
        local_shift_mm: maximal shift of the local (mesenteric) displacement bumps.
        breathing_mm: maximal cranio-caudal shift of the upper abdomen (diaphragm position).
        p_disappear: per interval, probability that an annotated node is no longer annotated
            (resolved below the size threshold or gone).
        p_new: per interval, expected number of new annotated nodes per annotated node.
        size_sigma: log-normal spread of the ordinary per-interval diameter change.
        p_shrink, p_grow, p_surge: per interval, probabilities of a strong shrink (0.3–0.6×),
            growth (1.5–3×) and a rare surge (3–10×, capped at 50 mm short axis).
        shape_sigma: per-interval log-normal change of a node's axis ratios.
        texture_change: per-interval change of a node's texture phases (radians, std).
        rotation_change_deg: per-interval rotation of a node's orientation (std, degrees).
        noise_hu: range of the scanner noise standard deviation (HU), drawn per scan.
        centre_jitter_mm: annotation jitter of node centres (std per axis, mm).
        size_jitter: annotation jitter of node diameters (log-normal std).
        unmatched_bounds: stated bounds of the pooled unmatched share of consecutive pairs,
            ``(|D| + |N|) / (n_src + n_dst)``; tests hold the generator to them.
    """

    name: str
    scans_per_patient: tuple[float, float] = (0.5, 0.5)
    translation_mm: tuple[float, float, float] = (12.0, 12.0, 25.0)
    rotation_deg: float = 5.0
    deformation_mm: tuple[float, float] = (3.0, 18.0)
    visceral_share: float = 0.1
    linear_strain: float = 0.08
    local_shift_mm: float = 12.0
    breathing_mm: float = 10.0
    p_disappear: float = 0.08
    p_new: float = 0.09
    size_sigma: float = 0.12
    p_shrink: float = 0.06
    p_grow: float = 0.06
    p_surge: float = 0.005
    shape_sigma: float = 0.05
    texture_change: float = 0.25
    rotation_change_deg: float = 8.0
    noise_hu: tuple[float, float] = (10.0, 25.0)
    centre_jitter_mm: float = 1.0
    size_jitter: float = 0.08
    unmatched_bounds: tuple[float, float] = field(default=(0.06, 0.13))


EASY = SynthPreset(
    name="easy",
    translation_mm=(8.0, 8.0, 15.0),
    rotation_deg=2.0,
    deformation_mm=(2.0, 8.0),
    local_shift_mm=4.0,
    breathing_mm=4.0,
    p_disappear=0.04,
    p_new=0.04,
    size_sigma=0.08,
    p_shrink=0.03,
    p_grow=0.03,
    p_surge=0.0,
    shape_sigma=0.03,
    texture_change=0.1,
    rotation_change_deg=4.0,
    noise_hu=(8.0, 15.0),
    centre_jitter_mm=0.7,
    size_jitter=0.05,
    unmatched_bounds=(0.02, 0.07),
)

DEFAULT = SynthPreset(name="default")

HARD = SynthPreset(
    name="hard",
    translation_mm=(15.0, 15.0, 30.0),
    rotation_deg=6.0,
    deformation_mm=(6.0, 30.0),
    local_shift_mm=16.0,
    breathing_mm=15.0,
    p_disappear=0.13,
    p_new=0.15,
    size_sigma=0.18,
    p_shrink=0.10,
    p_grow=0.10,
    p_surge=0.01,
    shape_sigma=0.08,
    texture_change=0.45,
    rotation_change_deg=12.0,
    noise_hu=(15.0, 30.0),
    centre_jitter_mm=1.5,
    size_jitter=0.12,
    unmatched_bounds=(0.10, 0.20),
)

#: Presets by name.
PRESETS: dict[str, SynthPreset] = {p.name: p for p in (EASY, DEFAULT, HARD)}


def get_preset(preset: str | SynthPreset) -> SynthPreset:
    """A preset by name (or the preset itself)."""
    if isinstance(preset, SynthPreset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[preset]
