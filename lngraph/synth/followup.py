"""What changes between the scans of a synthetic patient.

**Motion.** Each scan ``t`` sees the canonical patient through a :class:`ScanTransform`: a
rigid repositioning (rotation about the abdomen's centre, translation) followed by a smooth
non-rigid displacement (:class:`DisplacementField`). The transform maps scan world
coordinates to canonical ones,

.. math::
    \\psi_t(x) = y_0 + d_t(y_0), \\qquad y_0 = R_t (x - c) + c + \\tau_t,

so the image is rendered by pulling the canonical volume back through :math:`\\psi_t`, and a
node at canonical :math:`y` is at :math:`\\psi_t^{-1}(y)` in the scan (the displacement is
kept contractive over the nodal region, ``‖∇d‖ ≤ 0.8``, so the inverse is a convergent
fixed-point iteration). The
image and the node centres therefore move by the same deformation. The field has three parts:
slow whole-abdomen modes, faster modes confined to the mobile anterior (mesenteric)
compartment, and a cranio-caudal shift of the upper abdomen (breathing).

**Nodes.** :func:`evolve_nodes` runs a node's life over the scans: ordinary size change
(log-normal around a per-patient trend: stable, responding or progressing), occasional strong
shrinking (0.3–0.6×), growth (1.5–3×) and rare surges (3–10×, capped), small changes of shape,
orientation and texture, disappearance (shrinking below the annotation threshold or vanishing)
and new nodes (a hidden small node growing, or a fresh one). :func:`annotate` turns the true
state into what a radiologist would record: jittered centres and sizes.

**Gaps** (long follow-up series only, :func:`transient_gaps`): a node annotated in the scans
before and after an inner scan may be left out of that scan's annotations — missed by the
reader, or too faint to be recorded that time — and comes back with its identity (the same
``track_id``) in the next scan.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from lngraph.synth.anatomy import Anatomy, axis_rotation
from lngraph.synth.nodes import (
    ANNOTATION_MIN_SHORT_MM,
    N_TEXTURE,
    FreeSpace,
    NodeSpec,
    place_nodes,
    sample_sizes,
)
from lngraph.synth.presets import SynthPreset

#: Upper bound of the displacement field's Jacobian norm (keeps ψ invertible).
MAX_FIELD_GRADIENT = 0.8
#: Wave modes of a displacement field (whole-abdomen, visceral) and their wavelengths (mm).
N_MODES = (3, 6)
GLOBAL_WAVELENGTH_MM = (140.0, 260.0)
VISCERAL_WAVELENGTH_MM = (60.0, 120.0)
#: Local shifts of the mesentery per follow-up (Gaussian bumps of 15–30 mm radius).
N_LOCAL_SHIFTS = 6
#: Probability that a node is missing from one inner scan of a series (and back in the next),
#: as a share of the preset's per-interval ``p_disappear`` (:func:`transient_gaps`).
GAP_SHARE = 0.5


@dataclass(frozen=True)
class DisplacementField:
    """A smooth displacement field ``d(p)`` (mm) on canonical points.

    ``d(p) = s(p) [A (p - c) + Σ_m w_m(p) a_m sin(k_m · p + φ_m) + b σ((p_z - z_d) / 30)
    (0, 0.25, 1) + Σ_j e_j exp(-‖p - q_j‖² / 2 r_j²)]``: a linear part (change of girth and
    shape of the abdomen), wave modes with ``w_m = 1`` for whole-abdomen modes and
    ``σ((y_v - p_y) / 25)`` (the anterior compartment) for visceral ones, a breathing shift of
    the upper abdomen, and local shifts of parts of the mesentery (Gaussian bumps). The soft
    tissues inside the abdomen move fully; towards the body wall the motion fades,
    ``s = 0.35 + 0.65 σ((1 - ρ) 100 / 15)`` with ``ρ`` the normalised radius of the core
    ellipse (half-axes ``core_axes`` around ``c``), so the outline of the body stays plausible.

    Args:
        linear: ``(3, 3)`` the matrix ``A``; ``centre``: ``(3,)`` the point ``c``.
        core_axes: ``(2,)`` x and y half-axes (mm) of the fully moving core.
        k: ``[M, 3]`` wave vectors (rad/mm).
        phase: ``[M]`` phases.
        amp: ``[M, 3]`` amplitudes (mm).
        visceral: ``[M]`` which modes act on the anterior compartment only.
        y_visceral: the compartment's posterior limit (canonical y, mm).
        breathing_mm: cranio-caudal shift of the upper abdomen.
        z_diaphragm: where that shift is half-way (canonical z, mm).
        bump_centre, bump_shift, bump_radius: ``[J, 3]``, ``[J, 3]``, ``[J]`` the local
            shifts ``q_j``, ``e_j`` (mm) and ``r_j`` (mm).
    """

    linear: np.ndarray
    centre: np.ndarray
    core_axes: np.ndarray
    k: np.ndarray
    phase: np.ndarray
    amp: np.ndarray
    visceral: np.ndarray
    y_visceral: float
    breathing_mm: float
    z_diaphragm: float
    bump_centre: np.ndarray
    bump_shift: np.ndarray
    bump_radius: np.ndarray

    def __call__(self, points) -> np.ndarray:
        p = np.asarray(points, dtype=np.float64)
        flat = p.reshape(-1, 3)
        waves = np.sin(flat @ self.k.T + self.phase)
        anterior = 1.0 / (1.0 + np.exp(-(self.y_visceral - flat[:, 1:2]) / 25.0))
        waves = np.where(self.visceral[None, :], waves * anterior, waves)
        d = waves @ self.amp + (flat - self.centre) @ self.linear.T
        shift = self.breathing_mm / (1.0 + np.exp(-(flat[:, 2] - self.z_diaphragm) / 30.0))
        d += shift[:, None] * np.array([0.0, 0.25, 1.0])
        dist2 = ((flat[:, None, :] - self.bump_centre[None]) ** 2).sum(axis=-1)
        d += np.exp(-dist2 / (2 * self.bump_radius ** 2)) @ self.bump_shift
        rel = (flat[:, :2] - self.centre[:2]) / self.core_axes
        rho = np.sqrt((rel ** 2).sum(axis=1))
        d *= (0.35 + 0.65 / (1.0 + np.exp(-(1.0 - rho) * 100.0 / 15.0)))[:, None]
        return d.reshape(p.shape)

    def scaled(self, factor: float) -> DisplacementField:
        return replace(self, linear=self.linear * factor, amp=self.amp * factor,
                       breathing_mm=self.breathing_mm * factor,
                       bump_shift=self.bump_shift * factor)

    def max_gradient(self, points: np.ndarray, h: float = 1.0) -> float:
        """Largest spectral norm of the Jacobian at ``points`` (central differences)."""
        cols = [(self(points + h * e) - self(points - h * e)) / (2 * h) for e in np.eye(3)]
        jac = np.stack(cols, axis=-1)
        return float(np.linalg.norm(jac, ord=2, axis=(-2, -1)).max()) if len(points) else 0.0


@dataclass(frozen=True)
class ScanTransform:
    """Scan world ↔ canonical map of one scan (see the module docstring)."""

    rotation: np.ndarray
    translation: np.ndarray
    centre: np.ndarray
    field: DisplacementField | None = None

    def rigid(self, points) -> np.ndarray:
        p = np.asarray(points, dtype=np.float64)
        return (p - self.centre) @ self.rotation.T + self.centre + self.translation

    def to_canonical(self, points) -> np.ndarray:
        """ψ: scan world → canonical."""
        y0 = self.rigid(points)
        return y0 if self.field is None else y0 + self.field(y0)

    def from_canonical(self, points, tol: float = 1e-6) -> np.ndarray:
        """ψ⁻¹: canonical → scan world (fixed-point inversion of the displacement)."""
        y = np.asarray(points, dtype=np.float64)
        y0 = y.copy()
        if self.field is not None:
            for _ in range(300):
                nxt = y - self.field(y0)
                done = np.abs(nxt - y0).max(initial=0.0) < tol
                y0 = nxt
                if done:
                    break
        return (y0 - self.centre - self.translation) @ self.rotation + self.centre


def _random_axis(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(3)
    return v / np.linalg.norm(v)


def sample_field(preset: SynthPreset, anatomy: Anatomy, rng: np.random.Generator,
                 probe: np.ndarray) -> DisplacementField:
    """A follow-up's displacement: wave modes with an RMS magnitude drawn from
    ``preset.deformation_mm`` over the ``probe`` points (the nodal region), a linear part, a
    breathing shift and local mesenteric shifts up to ``preset.local_shift_mm``; the whole
    field is scaled down where needed to stay contractive on ``probe``."""
    n_global, n_visc = N_MODES
    m = n_global + n_visc
    wavelength = np.concatenate([rng.uniform(*GLOBAL_WAVELENGTH_MM, n_global),
                                 rng.uniform(*VISCERAL_WAVELENGTH_MM, n_visc)])
    k = np.stack([_random_axis(rng) for _ in range(m)]) * (2 * np.pi / wavelength)[:, None]
    amp = np.stack([_random_axis(rng) for _ in range(m)])
    visceral = np.arange(m) >= n_global
    share = preset.visceral_share
    amp[~visceral] *= np.sqrt((1 - share) / n_global)
    amp[visceral] *= np.sqrt(share / n_visc)
    field = DisplacementField(
        linear=np.zeros((3, 3)), centre=anatomy.centre,
        core_axes=np.array([anatomy.body.a - 25.0, anatomy.body.b - 15.0]), k=k,
        phase=rng.uniform(0, 2 * np.pi, m),
        amp=amp, visceral=visceral, y_visceral=anatomy.vertebra_y - 38.0, breathing_mm=0.0,
        z_diaphragm=60.0, bump_centre=np.zeros((0, 3)), bump_shift=np.zeros((0, 3)),
        bump_radius=np.zeros(0))
    rms = float(np.sqrt((field(probe) ** 2).sum(axis=1).mean()))
    field = field.scaled(rng.uniform(*preset.deformation_mm) / max(rms, 1e-9))
    g = rng.standard_normal((3, 3))
    g = (g + g.T) / 2
    linear = g / np.linalg.norm(g, ord=2) * rng.uniform(0, preset.linear_strain)
    mesentery = np.concatenate([st.path for st in anatomy.stations if st.name == "mesenteric"]
                               or [probe])
    field = replace(field, linear=linear,
                    breathing_mm=rng.uniform(-1, 1) * preset.breathing_mm,
                    bump_centre=mesentery[rng.integers(len(mesentery), size=N_LOCAL_SHIFTS)],
                    bump_shift=np.stack([_random_axis(rng) for _ in range(N_LOCAL_SHIFTS)])
                    * rng.uniform(0, preset.local_shift_mm, (N_LOCAL_SHIFTS, 1)),
                    bump_radius=rng.uniform(15.0, 30.0, N_LOCAL_SHIFTS))
    grad = field.max_gradient(probe)
    return field.scaled(min(1.0, MAX_FIELD_GRADIENT / max(grad, 1e-9)))


def sample_transform(preset: SynthPreset, anatomy: Anatomy, rng: np.random.Generator,
                     probe: np.ndarray, baseline: bool) -> ScanTransform:
    """Repositioning (and, for follow-ups, deformation) of one scan.

    The baseline scan gets only a small pose (≤ 1 mm, ≤ 0.5°) so that every scan is resampled
    alike; a follow-up gets translation up to ``preset.translation_mm`` per axis, rotation up to
    ``preset.rotation_deg`` about a random axis, and a displacement field.
    """
    if baseline:
        rotation = axis_rotation(_random_axis(rng), np.deg2rad(rng.uniform(0, 0.5)))
        return ScanTransform(rotation, rng.uniform(-1, 1, 3), anatomy.centre)
    rotation = axis_rotation(_random_axis(rng), np.deg2rad(rng.uniform(0, preset.rotation_deg)))
    translation = rng.uniform(-1, 1, 3) * np.asarray(preset.translation_mm)
    return ScanTransform(rotation, translation, anatomy.centre,
                         sample_field(preset, anatomy, rng, probe))


@dataclass
class NodeTimeline:
    """True state of every node of a patient at every scan.

    Args:
        specs: ``N`` node identities (baseline nodes first, then hidden, then fresh ones).
        short_mm, long_mm: ``[T, N]`` true diameters.
        rotation: ``[T, N, 3, 3]`` orientation.
        phase: ``[T, N, K]`` texture phases.
        present: ``[T, N]`` rendered in the scan.
        annotated: ``[T, N]`` recorded in ``nodes.csv``.
    """

    specs: list[NodeSpec]
    short_mm: np.ndarray
    long_mm: np.ndarray
    rotation: np.ndarray
    phase: np.ndarray
    present: np.ndarray
    annotated: np.ndarray


def _trend(rng: np.random.Generator) -> float:
    """A patient's log size drift per interval: stable, responding or progressing."""
    u = rng.random()
    if u < 0.5:
        return 0.0
    return float(rng.uniform(0.05, 0.25) * (-1 if u < 0.75 else 1))


def _size_factor(preset: SynthPreset, rng: np.random.Generator, trend: float) -> float:
    u = rng.random()
    if u < preset.p_surge:
        return float(rng.uniform(3.0, 10.0))
    u -= preset.p_surge
    if u < preset.p_grow:
        return float(np.exp(rng.uniform(np.log(1.5), np.log(3.0))))
    u -= preset.p_grow
    if u < preset.p_shrink:
        return float(rng.uniform(0.3, 0.6))
    return float(np.exp(trend * rng.uniform(0.5, 1.5) + rng.normal(0.0, preset.size_sigma)))


def evolve_nodes(baseline: list[NodeSpec], hidden: list[NodeSpec], n_scans: int,
                 preset: SynthPreset, anatomy: Anatomy, free: FreeSpace,
                 rng: np.random.Generator) -> NodeTimeline:
    """Simulate the nodes over ``n_scans`` scans (see the module docstring)."""
    specs = list(baseline) + list(hidden)
    n0 = len(specs)
    short = [[s.short_mm for s in specs]]
    ratio = [[s.long_mm / s.short_mm for s in specs]]
    rot = [[s.rotation for s in specs]]
    phase = [[s.texture_phase for s in specs]]
    present = [[True] * n0]
    annotated = [[i < len(baseline) for i in range(n0)]]
    trend = _trend(rng)
    for _ in range(1, n_scans):
        prev_short, prev_ann, prev_present = short[-1], annotated[-1], present[-1]
        cur_short, cur_ann, cur_present = [], [], []
        for i in range(len(specs)):
            s, a, p = prev_short[i], prev_ann[i], prev_present[i]
            if not p:
                cur_short.append(s), cur_ann.append(False), cur_present.append(False)
            elif a and rng.random() < preset.p_disappear:
                gone = rng.random() < 0.5
                cur_short.append(rng.uniform(2.0, 4.0)), cur_ann.append(False)
                cur_present.append(not gone)
            elif a:
                factor = _size_factor(preset, rng, trend)
                cur_short.append(float(np.clip(s * factor, ANNOTATION_MIN_SHORT_MM + 0.5,
                                               50.0)))
                cur_ann.append(True), cur_present.append(True)
            else:
                cur_short.append(float(np.clip(s * np.exp(rng.normal(0, 0.1)), 2.0,
                                               ANNOTATION_MIN_SHORT_MM - 0.2)))
                cur_ann.append(False), cur_present.append(True)
        n_new = rng.poisson(preset.p_new * max(sum(prev_ann), 1))
        dormant = [i for i in range(len(specs)) if cur_present[i] and not cur_ann[i]]
        fresh = 0
        for _ in range(n_new):
            if dormant and rng.random() < 0.5:
                i = dormant.pop(int(rng.integers(len(dormant))))
                cur_short[i] = float(rng.uniform(6.0, 12.0))
                cur_ann[i] = True
            else:
                fresh += 1
        if fresh:
            placed = [(sp.centre, max(sh, sp.short_mm)) for sp, sh in zip(specs, cur_short,
                                                                          strict=True)]
            near = np.array([sp.centre for sp, a in zip(specs, prev_ann, strict=True) if a])
            sizes = list(zip(*(v * rng.uniform(0.5, 0.9, fresh) for v in sample_sizes(
                rng, fresh)), strict=True))
            new_specs = place_nodes(anatomy, free, rng, sizes, placed,
                                    near=near if len(near) else None)
            for spec in new_specs:
                specs.append(spec)
                for hist, value in ((short, spec.short_mm), (ratio, spec.long_mm
                                                             / spec.short_mm),
                                    (rot, spec.rotation), (phase, spec.texture_phase),
                                    (present, False), (annotated, False)):
                    for row in hist:
                        row.append(value)
                cur_short.append(spec.short_mm), cur_ann.append(True)
                cur_present.append(True)
        prev_ratio, prev_rot, prev_phase = ratio[-1], rot[-1], phase[-1]
        n = len(specs)
        cur_ratio = [max(1.0, prev_ratio[i] * np.exp(rng.normal(0, preset.shape_sigma)))
                     for i in range(n)]
        cur_rot = [axis_rotation(_random_axis(rng),
                                 np.deg2rad(rng.normal(0, preset.rotation_change_deg)))
                   @ prev_rot[i] for i in range(n)]
        cur_phase = [prev_phase[i] + rng.normal(0, preset.texture_change, N_TEXTURE)
                     for i in range(n)]
        for hist, cur in ((short, cur_short), (ratio, cur_ratio), (rot, cur_rot),
                          (phase, cur_phase), (present, cur_present), (annotated, cur_ann)):
            hist.append(cur)
    short_a = np.asarray(short, dtype=np.float64)
    return NodeTimeline(
        specs=specs,
        short_mm=short_a,
        long_mm=np.minimum(short_a * np.asarray(ratio), 90.0),
        rotation=np.asarray(rot, dtype=np.float64),
        phase=np.asarray(phase, dtype=np.float64),
        present=np.asarray(present, dtype=bool),
        annotated=np.asarray(annotated, dtype=bool),
    )


def gap_probability(preset: SynthPreset) -> float:
    """Per inner scan and node, the probability of a one-scan gap: ``GAP_SHARE · p_disappear``."""
    return GAP_SHARE * preset.p_disappear


def transient_gaps(timeline: NodeTimeline, preset: SynthPreset,
                   rng: np.random.Generator) -> NodeTimeline:
    """``timeline`` with one-scan annotation gaps (module docstring, *Gaps*).

    For every inner scan ``0 < t < T - 1`` (in order) and every node annotated at ``t - 1``,
    ``t`` and ``t + 1``, the node is left unannotated at ``t`` with probability
    :func:`gap_probability`; it stays in the image (``present``) with its size unchanged, so
    the size trend of its track runs on. Gaps never touch the first or the last scan, and two
    gaps of a node are never adjacent (the scan before a gap must be annotated).
    """
    annotated = timeline.annotated.copy()
    p = gap_probability(preset)
    for t in range(1, annotated.shape[0] - 1):
        eligible = np.flatnonzero(annotated[t - 1] & annotated[t] & annotated[t + 1])
        draws = rng.random(len(eligible))
        annotated[t, eligible[draws < p]] = False
    return replace(timeline, annotated=annotated)


@dataclass(frozen=True)
class Annotation:
    """What is recorded for one scan: node indices (into the timeline), centres in the scan's
    world frame, diameters."""

    index: np.ndarray
    pos: np.ndarray
    short_mm: np.ndarray
    long_mm: np.ndarray


def annotate(timeline: NodeTimeline, t: int, transform: ScanTransform, preset: SynthPreset,
             rng: np.random.Generator) -> Annotation:
    """The annotated nodes of scan ``t`` with centre and size jitter, in shuffled order."""
    index = rng.permutation(np.flatnonzero(timeline.annotated[t]))
    centres = transform.from_canonical(np.array([timeline.specs[i].centre for i in index])
                                       .reshape(-1, 3))
    pos = centres + rng.normal(0.0, preset.centre_jitter_mm, centres.shape)
    short = timeline.short_mm[t, index] * np.exp(rng.normal(0, preset.size_jitter, len(index)))
    long_ = timeline.long_mm[t, index] * np.exp(rng.normal(0, preset.size_jitter, len(index)))
    return Annotation(index, pos, short, np.maximum(long_, short))
