"""One synthetic patient: its geometry over time (:func:`simulate_patient`) and its CT images
(:class:`PatientRenderer`).

The geometry — anatomy, nodes, motion, annotations — depends only on the patient's seed, the
preset and the layout, never on the image grid, so geometry-only cohorts and cohorts written at
any resolution have identical ``nodes.csv``. Rendering a scan: the canonical volume (the
anatomy, rendered once per patient, plus that scan's bowel contents and nodes) is pulled back
through the scan's transform (trilinear), blurred slightly (Gaussian, 0.5 voxel in-plane, 0.3
through-plane) and given correlated scanner noise; it is stored as int16 HU.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lngraph.io.cohort import NodeTable
from lngraph.io.coords import ImageGeometry
from lngraph.synth.anatomy import Anatomy, render_anatomy, sample_anatomy
from lngraph.synth.bowel import (
    BowelField,
    BowelLoop,
    BowelState,
    plan_bowel,
    sample_bowel_state,
)
from lngraph.synth.followup import (
    Annotation,
    NodeTimeline,
    ScanTransform,
    annotate,
    evolve_nodes,
    sample_transform,
)
from lngraph.synth.nodes import (
    ANNOTATION_MIN_SHORT_MM,
    FreeSpace,
    NihCase,
    NodeSpec,
    nih_layout,
    node_semi_axes,
    paint_node,
    place_nodes,
    prior_layout,
)
from lngraph.synth.presets import DEFAULT_GRID, ScanGrid, SynthPreset, get_preset
from lngraph.synth.raster import VolumeGrid

LAYOUTS = ("prior", "nih")
#: Margin (mm) of the canonical volume around the scan field of view (x, y, z): room for the
#: repositioning and the deformation.
CANONICAL_MARGIN_MM = np.array([26.0, 26.0, 48.0])
#: Every node centre stays this far (mm) inside the field of view of every scan.
VIEW_MARGIN_MM = 15.0
AIR_HU = -1000.0


class AnnotatedPatient:
    """Ids and node tables of a simulated patient with ``patient_id`` and per-scan
    ``annotations`` (shared by the phantom's :class:`PatientSim` and the real-texture
    patients of :mod:`lngraph.synth.texture`)."""

    def scan_id(self, t: int) -> str:
        return f"{self.patient_id}_T{t}"

    def track_id(self, node: int) -> str:
        return f"{self.patient_id}_L{node:03d}"

    def node_table(self, t: int) -> NodeTable:
        """Scan ``t``'s annotated nodes (shuffled order, ids ``n0, n1, …``)."""
        a = self.annotations[t]
        return NodeTable.from_arrays(
            a.pos, a.short_mm, a.long_mm,
            node_id=[f"n{k}" for k in range(len(a.index))],
            track_id=[self.track_id(int(i)) for i in a.index])


@dataclass(frozen=True)
class PatientSim(AnnotatedPatient):
    """The simulated geometry of one patient (all scans).

    Args:
        patient_id: e.g. ``"P0001"``.
        anatomy: the phantom.
        timeline: true node states per scan.
        transforms: per scan, scan world ↔ canonical.
        annotations: per scan, the recorded nodes.
        dates: per scan, ISO acquisition date.
        bowel: the planned bowel loops; ``bowel_states`` their contents per scan.
        stool_k: ``[8, 3]`` wave vectors of the stool pattern.
        noise_hu: per scan, the scanner noise std.
        render_entropy: seed entropy of the textures and noise.
    """

    patient_id: str
    anatomy: Anatomy
    timeline: NodeTimeline
    transforms: tuple[ScanTransform, ...]
    annotations: tuple[Annotation, ...]
    dates: tuple[str, ...]
    bowel: tuple[BowelLoop, ...]
    bowel_states: tuple[BowelState, ...]
    stool_k: np.ndarray
    noise_hu: tuple[float, ...]
    render_entropy: int

    @property
    def n_scans(self) -> int:
        return len(self.transforms)



def _hidden_nodes(anatomy: Anatomy, free: FreeSpace, rng: np.random.Generator,
                  baseline: list[NodeSpec]) -> list[NodeSpec]:
    """Small (3–4.8 mm) unannotated nodes near the annotated ones: image distractors, and the
    seeds of some new nodes."""
    n = int(rng.poisson(1.5 + 0.3 * len(baseline)))
    short = rng.uniform(3.0, ANNOTATION_MIN_SHORT_MM - 0.2, n)
    sizes = list(zip(short, short * rng.uniform(1.1, 1.5, n), strict=True))
    placed = [(s.centre, s.short_mm) for s in baseline]
    near = np.array([s.centre for s in baseline]) if baseline else None
    return place_nodes(anatomy, free, rng, sizes, placed, near=near)


def _transform_in_view(preset: SynthPreset, anatomy: Anatomy, rng: np.random.Generator,
                       probe: np.ndarray, centres: np.ndarray, baseline: bool) -> ScanTransform:
    """A scan's transform that keeps every node at least :data:`VIEW_MARGIN_MM` inside the
    field of view of :data:`DEFAULT_GRID` (shared by all grids of ``ScanGrid.scaled``):
    a draw that would carry a node out of the scan is redrawn."""
    half = DEFAULT_GRID.fov_mm / 2 - VIEW_MARGIN_MM
    for _ in range(100):
        transform = sample_transform(preset, anatomy, rng, probe, baseline)
        pos = transform.from_canonical(centres) - np.asarray(DEFAULT_GRID.centre)
        if np.all(np.abs(pos) <= half):
            return transform
    raise RuntimeError("could not place the patient so that all nodes are in the scan")


def _dates(n: int, rng: np.random.Generator) -> tuple[str, ...]:
    day = dt.date(2014, 1, 1) + dt.timedelta(days=int(rng.integers(0, 3000)))
    out = [day]
    for _ in range(n - 1):
        out.append(out[-1] + dt.timedelta(days=int(rng.integers(60, 200))))
    return tuple(d.isoformat() for d in out)


def simulate_patient(patient_id: str, seed: int | np.random.SeedSequence,
                     preset: str | SynthPreset = "default", layout: str = "prior",
                     nih_case: NihCase | None = None, *, n_scans: int | None = None,
                     edit_timeline: Callable[[NodeTimeline], NodeTimeline] | None = None
                     ) -> PatientSim:
    """Simulate one patient's anatomy, nodes, motion and annotations (no images).

    Args:
        patient_id: the id (prefix of scan and track ids).
        seed: the patient's seed; everything is a deterministic function of it.
        preset: difficulty preset.
        layout: ``"prior"`` or ``"nih"`` (then ``nih_case`` gives the baseline nodes).
        nih_case: the NIH case for the ``nih`` layout.
        n_scans: the number of scans (default: drawn from ``preset.scans_per_patient``; the
            draw is made either way, so the other random streams do not depend on it).
        edit_timeline: applied to the node timeline before imaging and annotation (e.g.
            :func:`~lngraph.synth.followup.transient_gaps`).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if layout == "nih" and nih_case is None:
        raise ValueError("the 'nih' layout needs an NIH case")
    preset = get_preset(preset)
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    s_anat, s_layout, s_follow, s_annot, s_render = ss.spawn(5)
    rng = np.random.default_rng(s_anat)
    anatomy = sample_anatomy(rng)
    free = FreeSpace.of(anatomy)

    rng = np.random.default_rng(s_layout)
    if layout == "prior":
        baseline = prior_layout(anatomy, free, rng)
    else:
        baseline = nih_layout(nih_case, anatomy, free, rng)
    hidden = _hidden_nodes(anatomy, free, rng, baseline)

    rng = np.random.default_rng(s_follow)
    drawn = int(rng.choice([2, 3], p=np.asarray(preset.scans_per_patient)
                           / sum(preset.scans_per_patient)))
    n_scans = drawn if n_scans is None else int(n_scans)
    timeline = evolve_nodes(baseline, hidden, n_scans, preset, anatomy, free, rng)
    if edit_timeline is not None:
        timeline = edit_timeline(timeline)
    probe = np.concatenate([st.path for st in anatomy.stations])
    centres = np.array([s.centre for s in timeline.specs]).reshape(-1, 3)
    transforms = tuple(_transform_in_view(preset, anatomy, rng, probe, centres, t == 0)
                       for t in range(n_scans))
    reach = np.array([node_semi_axes(s, timeline.short_mm[:, i].max(),
                                     timeline.long_mm[:, i].max()).max()
                      for i, s in enumerate(timeline.specs)])
    bowel = tuple(plan_bowel(anatomy, free, centres, reach, rng))
    oral = rng.random() < 0.3
    states = tuple(sample_bowel_state(list(bowel), rng, oral and rng.random() < 0.8)
                   for _ in range(n_scans))
    stool_k = rng.standard_normal((8, 3))
    stool_k *= (2 * np.pi / rng.uniform(6, 14, 8) / np.linalg.norm(stool_k, axis=1))[:, None]
    noise = tuple(float(rng.uniform(*preset.noise_hu)) for _ in range(n_scans))
    dates = _dates(n_scans, rng)

    rng = np.random.default_rng(s_annot)
    annotations = tuple(annotate(timeline, t, transforms[t], preset, rng)
                        for t in range(n_scans))
    return PatientSim(patient_id, anatomy, timeline, transforms, annotations, dates, bowel,
                      states, stool_k, noise, int(s_render.generate_state(1)[0]))


def _interp_matrix(n: int, m: int) -> np.ndarray:
    """``[n, m]`` linear interpolation from ``m`` samples spanning ``0..n-1`` to ``n``."""
    pos = np.linspace(0, m - 1, n)
    lo = np.minimum(np.floor(pos).astype(int), m - 2) if m > 1 else np.zeros(n, int)
    out = np.zeros((n, m))
    if m == 1:
        out[:, 0] = 1.0
        return out
    frac = pos - lo
    out[np.arange(n), lo] = 1 - frac
    out[np.arange(n), lo + 1] = frac
    return out


def pull_back_coordinates(transform: ScanTransform, grid: ScanGrid,
                          step_mm=(6.4, 6.4, 9.0)) -> list[np.ndarray]:
    """Canonical world coordinates ψ(x) of every voxel of ``grid``, as three ``(k, j, i)``
    arrays. ψ is evaluated on a sub-grid of about ``step_mm`` and interpolated linearly (it is
    smooth: the error stays well below a voxel)."""
    origin, spacing = grid.origin, np.asarray(grid.spacing)
    counts = [min(n, max(2, int(np.ceil((n - 1) * sp / st)) + 1))
              for n, sp, st in zip(grid.shape, spacing, step_mm, strict=True)]
    axes = [origin[d] + np.linspace(0, grid.shape[d] - 1, counts[d]) * spacing[d]
            for d in range(3)]
    zz, yy, xx = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    coarse = transform.to_canonical(np.stack([xx, yy, zz], axis=-1))
    mx, my, mz = (_interp_matrix(grid.shape[d], counts[d]) for d in range(3))
    out = []
    for c in range(3):
        a = coarse[..., c] @ mx.T
        a = np.einsum("ij,ajk->aik", my, a)
        out.append(np.tensordot(mz, a, axes=(1, 0)).astype(np.float32))
    return out


class PatientRenderer:
    """Renders the scans of one simulated patient on a :class:`ScanGrid`.

    The canonical anatomy is rendered once (on construction); :meth:`scan` adds one scan's
    bowel contents and nodes, moves it into the scan and adds blur and noise.
    """

    def __init__(self, sim: PatientSim, grid: ScanGrid = DEFAULT_GRID):
        self.sim, self.grid = sim, grid
        spacing = np.asarray(grid.spacing, dtype=np.float64)
        lo = grid.origin - CANONICAL_MARGIN_MM
        shape = np.ceil((grid.fov_mm + 2 * CANONICAL_MARGIN_MM) / spacing).astype(int) + 1
        self.canonical_grid = VolumeGrid(tuple(lo), tuple(spacing), tuple(int(v) for v in shape))
        self.edge_mm = float(spacing[:2].min())
        seeds = np.random.SeedSequence(sim.render_entropy).spawn(1 + sim.n_scans)
        self._noise_seeds = seeds[1:]
        self.background, _ = render_anatomy(sim.anatomy, self.canonical_grid,
                                            rng=np.random.default_rng(seeds[0]),
                                            edge_mm=self.edge_mm, labels=False)
        self.bowel = BowelField.of(list(sim.bowel), self.canonical_grid, self.edge_mm)

    def canonical(self, t: int) -> np.ndarray:
        """The canonical volume (HU, float32) with scan ``t``'s bowel contents and nodes."""
        vol = self.background.copy()
        self.bowel.paint(vol, self.sim.bowel_states[t], self.sim.stool_k, self.edge_mm)
        tl = self.sim.timeline
        for i in np.flatnonzero(tl.present[t]):
            paint_node(vol, self.canonical_grid, tl.specs[i], tl.short_mm[t, i],
                       tl.long_mm[t, i], tl.rotation[t, i], tl.phase[t, i], self.edge_mm)
        return vol

    def geometry(self) -> ImageGeometry:
        return ImageGeometry(origin=tuple(float(v) for v in self.grid.origin),
                             spacing=tuple(float(v) for v in self.grid.spacing),
                             direction=tuple(np.eye(3).ravel()), size=tuple(self.grid.shape))

    def scan(self, t: int, noise: bool = True) -> np.ndarray:
        """Scan ``t`` as int16 HU, array order ``(k, j, i)`` on :attr:`grid`."""
        coords = pull_back_coordinates(self.sim.transforms[t], self.grid)
        g = self.canonical_grid
        index = [(coords[a] - g.origin[a]) / g.spacing[a] for a in (2, 1, 0)]
        img = ndimage.map_coordinates(self.canonical(t), index, order=1, cval=AIR_HU,
                                      output=np.float32)
        sigma = np.array([0.3, 0.5, 0.5]) * min(1.0, 1.6 / min(self.grid.spacing))
        img = ndimage.gaussian_filter(img, sigma)
        if noise:
            rng = np.random.default_rng(self._noise_seeds[t])
            grain = ndimage.gaussian_filter(rng.standard_normal(img.shape, dtype=np.float32),
                                            (0.4, 0.7, 0.7))
            img += grain * (self.sim.noise_hu[t] / max(float(grain.std()), 1e-6))
        return np.clip(np.rint(img), -1024, 3071).astype(np.int16)
