"""Lymph nodes of the phantom: their identity, baseline layouts and rendering.

A :class:`NodeSpec` is everything that makes a node recognisable across scans — a randomly
oriented ellipsoid (short, middle and long axis), a lobulated outline, a soft-tissue HU
(20–70) with a texture pattern tied to the node's own axes, optionally a fatty hilum and, once
it is large, a necrotic centre. Follow-ups (:mod:`lngraph.synth.followup`) change its size,
shape, orientation and texture a little; the identity stays.

Two baseline layouts:

* ``prior`` (:func:`prior_layout`) — built in. Node counts follow ``1 + NegBin(r=0.9,
  mean=6)``, short axes ``7 + LogNormal(1.72, 0.76)`` mm and long/short ratios
  ``1 + N(0.27, 0.15)`` (floored), fitted to the NIH abdominal annotations; nodes sit in
  clusters at the stations of :class:`~lngraph.synth.anatomy.Station` (para-aortic,
  aortocaval, paracaval, pre-aortic, iliac, portocaval, mesenteric), beside the vessel and in
  fat. ``benchmarks/synth_realism.py`` compares the result with the NIH statistics.
* ``nih`` (:func:`nih_layout`) — the real node positions and sizes of one NIH CT Lymph Nodes
  abdominal case (Roth et al., 2014), centred on the phantom's para-aortic region, shrunk per
  axis only where the case is larger than the phantom's nodal region, and moved into the
  nearest fat where a position falls inside an organ, vessel or bone. The 86 cases ship with
  the package (:data:`NIH_LAYOUTS_CSV`, derived by ``benchmarks/nih_layouts.py``; CC BY 3.0,
  see ``lngraph/synth/data/NOTICE``); :func:`read_nih_cases` reads them, or a folder of the
  original annotations.

Every placement is checked against a :class:`FreeSpace` map (the abdominal fat of the
phantom, rendered on a 4 mm planning grid) so that nodes never sit inside solid structures.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from lngraph.io.errors import InputError
from lngraph.synth.anatomy import (
    LABELS,
    NODE_Z_RANGE,
    Anatomy,
    Station,
    random_rotation,
    render_anatomy,
)
from lngraph.synth.raster import VolumeGrid, blend, occupancy, radial_sdf

#: Where the original NIH CT Lymph Nodes annotations sit in the development workplace
#: (``../shared/data`` beside the repository); ``benchmarks/nih_layouts.py`` reads them.
NIH_DEFAULT_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data" / "nih_ct_lymph_nodes"
#: The abdominal NIH layouts shipped with the package: one row per node (see
#: :func:`read_nih_layouts`).
NIH_LAYOUTS_CSV = Path(__file__).resolve().parent / "data" / "nih_abdominal_layouts.csv"
#: Columns of :data:`NIH_LAYOUTS_CSV`.
NIH_LAYOUT_COLUMNS = ("case", "node", "x_mm", "y_mm", "z_mm", "short_mm", "long_mm")

#: Wave components of a node's texture and of its outline lobulation.
N_TEXTURE, N_LOBES = 6, 4
#: A node is annotated when its true short axis is at least this (mm).
ANNOTATION_MIN_SHORT_MM = 5.0
#: Nodes at least this large (short axis, mm) show their necrotic centre, if they have one.
NECROSIS_MIN_SHORT_MM = 18.0
FAT_HU = -75.0
NECROSIS_HU = 15.0


@dataclass(frozen=True)
class NodeSpec:
    """The time-invariant identity of one lymph node (canonical frame, mm).

    Args:
        centre: ``(3,)`` canonical centre.
        short_mm, long_mm: baseline short and long diameters.
        mid_frac: the middle diameter is ``short + mid_frac (long - short)``.
        rotation: ``(3, 3)`` columns = directions of the long, middle and short axes.
        hu: mean attenuation.
        texture_k, texture_phase, texture_amp: ``[K, 3]`` wave vectors (cycles per unit of
            the node's normalised coordinates), ``[K]`` phases and the amplitude (HU).
        lobe_k, lobe_phase, lobe_amp: the same for the outline (relative radius change).
        hilum: ``(3,)`` direction of the fatty hilum in the node's axes, or ``None``.
        hilum_size: hilum radius relative to the node.
        necrotic: shows a necrotic centre when large.
        station: the station name (``"nih"`` for NIH layouts).
    """

    centre: np.ndarray
    short_mm: float
    long_mm: float
    mid_frac: float
    rotation: np.ndarray
    hu: float
    texture_k: np.ndarray
    texture_phase: np.ndarray
    texture_amp: float
    lobe_k: np.ndarray
    lobe_phase: np.ndarray
    lobe_amp: float
    hilum: np.ndarray | None
    hilum_size: float
    necrotic: bool
    station: str


def sample_count(rng: np.random.Generator) -> int:
    """Annotated nodes of a patient's baseline: ``1 + NegBin(r=0.9, mean=6)``, at most 40."""
    r, mean = 0.9, 6.0
    return int(min(1 + rng.negative_binomial(r, r / (r + mean)), 40))


def sample_sizes(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(short, long)`` diameters (mm) of ``n`` annotated nodes, fitted to NIH abdominal."""
    short = np.minimum(7.0 + np.exp(rng.normal(1.72, 0.76, n)), 60.0)
    ratio = 1.0 + np.maximum(rng.normal(0.27, 0.15, n), 0.02)
    return short, np.minimum(short * ratio, 90.0)


def sample_identity(rng: np.random.Generator, centre, short_mm: float, long_mm: float,
                    station: str) -> NodeSpec:
    """A node with random orientation, attenuation, texture, outline, hilum and necrosis."""
    direction = rng.standard_normal((N_TEXTURE, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    lobes = rng.standard_normal((N_LOBES, 3))
    lobes /= np.linalg.norm(lobes, axis=1, keepdims=True)
    has_hilum = rng.random() < 0.45
    angle = rng.uniform(0, 2 * np.pi)
    return NodeSpec(
        centre=np.asarray(centre, dtype=np.float64),
        short_mm=float(short_mm),
        long_mm=float(max(long_mm, short_mm)),
        mid_frac=float(rng.uniform(0.2, 0.8)),
        rotation=random_rotation(rng),
        hu=float(rng.uniform(20, 70)),
        texture_k=direction * rng.uniform(0.6, 1.6, (N_TEXTURE, 1)),
        texture_phase=rng.uniform(0, 2 * np.pi, N_TEXTURE),
        texture_amp=float(rng.uniform(4, 10)),
        lobe_k=lobes * rng.uniform(1.0, 2.0, (N_LOBES, 1)),
        lobe_phase=rng.uniform(0, 2 * np.pi, N_LOBES),
        lobe_amp=float(rng.uniform(0.02, 0.10)),
        hilum=np.array([0.0, np.cos(angle), np.sin(angle)]) if has_hilum else None,
        hilum_size=float(rng.uniform(0.3, 0.5)),
        necrotic=bool(rng.random() < 0.5),
        station=station,
    )


def node_semi_axes(spec: NodeSpec, short_mm: float, long_mm: float) -> np.ndarray:
    """Semi-axes (long, middle, short) in mm for given diameters."""
    mid = short_mm + spec.mid_frac * (long_mm - short_mm)
    return np.array([long_mm, mid, short_mm]) / 2.0


def paint_node(volume: np.ndarray, grid: VolumeGrid, spec: NodeSpec, short_mm: float,
               long_mm: float, rotation: np.ndarray, phase: np.ndarray, edge_mm: float
               ) -> None:
    """Alpha-blend one node (its state at one scan) into a canonical HU volume."""
    semi = node_semi_axes(spec, short_mm, long_mm)
    reach = semi.max() * (1.0 + spec.lobe_amp) + edge_mm
    box = grid.box(spec.centre - reach, spec.centre + reach)
    if box is None:
        return
    x, y, z = grid.coords(box)
    d = (x - spec.centre[0], y - spec.centre[1], z - spec.centre[2])
    u = [rotation[0, a] * d[0] + rotation[1, a] * d[1] + rotation[2, a] * d[2]
         for a in range(3)]
    q = [ua / sa for ua, sa in zip(u, semi, strict=True)]
    n = np.sqrt(q[0] ** 2 + q[1] ** 2 + q[2] ** 2)
    r = np.sqrt(u[0] ** 2 + u[1] ** 2 + u[2] ** 2)
    inv = 1.0 / np.maximum(n, 1e-9)
    lobe = sum(np.cos(2 * np.pi * (k[0] * q[0] + k[1] * q[1] + k[2] * q[2]) * inv + p)
               for k, p in zip(spec.lobe_k, spec.lobe_phase, strict=True)) / N_LOBES
    n_eff = n / (1.0 + spec.lobe_amp * lobe)
    occ = occupancy(radial_sdf(r, n_eff, semi.min()), edge_mm)
    texture = sum(np.cos(2 * np.pi * (k[0] * q[0] + k[1] * q[1] + k[2] * q[2]) + p)
                  for k, p in zip(spec.texture_k, phase, strict=True)) * np.sqrt(2 / N_TEXTURE)
    value = spec.hu + spec.texture_amp * texture
    if spec.hilum is not None:
        c = 0.9 * spec.hilum
        rel = np.sqrt(sum((qa - ca) ** 2 for qa, ca in zip(q, c, strict=True)))
        hilum = occupancy((rel - spec.hilum_size) * semi.min(), edge_mm)
        value = value + hilum * (FAT_HU - value)
    if spec.necrotic and short_mm >= NECROSIS_MIN_SHORT_MM:
        core = occupancy((n_eff - 0.5 - 0.08 * texture) * semi.min(), edge_mm)
        value = value + core * (NECROSIS_HU - value)
    blend(volume, box, occ, value)


@dataclass(frozen=True)
class FreeSpace:
    """Where nodes (and bowel) may go: signed clearance (mm) to anything that is not abdominal
    fat, on a coarse planning grid; positive inside the fat."""

    grid: VolumeGrid
    clearance: np.ndarray

    @classmethod
    def of(cls, anatomy: Anatomy, spacing: float = 4.0) -> FreeSpace:
        lo = np.array([-160.0, -125.0, NODE_Z_RANGE[0] - 70.0])
        hi = np.array([160.0, 125.0, NODE_Z_RANGE[1] + 70.0])
        shape = tuple(int(v) for v in np.ceil((hi - lo) / spacing) + 1)
        grid = VolumeGrid(tuple(lo), (spacing,) * 3, shape)
        _, label = render_anatomy(anatomy, grid, rng=None, edge_mm=spacing)
        return cls(grid, signed_clearance(label == LABELS["cavity_fat"], spacing))

    def at(self, points) -> np.ndarray:
        """Trilinear clearance at world points ``[..., 3]`` (very negative off the grid)."""
        p = np.asarray(points, dtype=np.float64)
        idx = self.grid.world_to_array(p.reshape(-1, 3)).T
        out = ndimage.map_coordinates(self.clearance, idx, order=1, cval=-100.0)
        return out.reshape(p.shape[:-1])

    def climb(self, point, need: float, max_move: float = 20.0) -> np.ndarray | None:
        """Move ``point`` uphill in clearance until it reaches ``need`` mm; ``None`` if that
        takes more than ``max_move`` mm."""
        p = np.asarray(point, dtype=np.float64).copy()
        step, h = 1.0, self.grid.spacing[0] / 2
        for _ in range(int(max_move / step)):
            if self.at(p) >= need:
                return p
            grad = np.array([self.at(p + h * e) - self.at(p - h * e) for e in np.eye(3)])
            norm = np.linalg.norm(grad)
            if norm < 1e-6:
                return None
            p += step * grad / norm
        return p if self.at(p) >= need else None

    def nearest(self, point, need: float) -> np.ndarray | None:
        """The nearest planning-grid voxel centre with clearance ≥ ``need``, or ``None``."""
        ok = np.argwhere(self.clearance >= need)
        if len(ok) == 0:
            return None
        world = np.asarray(self.grid.origin) + ok[:, ::-1] * np.asarray(self.grid.spacing)
        return world[np.argmin(np.linalg.norm(world - np.asarray(point), axis=1))]


def signed_clearance(free: np.ndarray, spacing: float) -> np.ndarray:
    """Signed distance (mm) to the border of the ``free`` mask: positive inside it."""
    inside = ndimage.distance_transform_edt(free, sampling=spacing)
    outside = ndimage.distance_transform_edt(~free, sampling=spacing)
    return (inside - outside).astype(np.float32)


def needed_clearance(short_mm: float) -> float:
    """Clearance a node centre needs: nodes may touch vessels and organs, not overlap them."""
    return min(0.4 * short_mm, 6.0)


def _station_point(station: Station, rng: np.random.Generator, s: float, short_mm: float,
                   side: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A node centre at arclength fraction ``s`` of ``station``'s path, and the direction it
    was offset in from the vessel (``side`` overrides the station's preference)."""
    path = station.path
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.clip(s, 0.0, 1.0) * cum[-1]
    i = int(np.clip(np.searchsorted(cum, t) - 1, 0, len(seg) - 1))
    f = (t - cum[i]) / max(seg[i], 1e-9)
    centre = path[i] + f * (path[i + 1] - path[i])
    radius = station.radius[i] + f * (station.radius[i + 1] - station.radius[i])
    if not station.beside:
        return centre + rng.normal(0.0, 3.0, 3), np.zeros(3)
    tangent = (path[i + 1] - path[i]) / max(seg[i], 1e-9)
    if side is not None:
        side = side + rng.normal(0.0, 0.3, 3)
    elif station.side is not None:
        side = station.side + rng.normal(0.0, 0.45, 3)
    else:
        side = rng.standard_normal(3)
    side = side - (side @ tangent) * tangent
    side /= max(np.linalg.norm(side), 1e-9)
    return centre + side * (radius + short_mm / 2 + rng.uniform(1.0, 6.0)), side


def _fits(centre, short_mm, placed: list[tuple[np.ndarray, float]], anatomy: Anatomy,
          free: FreeSpace) -> np.ndarray | None:
    """``centre`` (possibly nudged into fat) if a node of ``short_mm`` fits there."""
    centre = free.climb(centre, needed_clearance(short_mm), max_move=10.0)
    if centre is None or not NODE_Z_RANGE[0] <= centre[2] <= NODE_Z_RANGE[1]:
        return None
    if anatomy.mesenteric.distance_to_axis(centre[None])[0] < 0.4 * short_mm:
        return None
    for other, other_short in placed:
        if np.linalg.norm(centre - other) < 0.5 * (short_mm + other_short) + 0.5:
            return None
    return centre


@dataclass(frozen=True)
class ClusterModel:
    """How the prior groups nodes into chains: each node either attaches to a placed node
    (probability ``p_attach``) — on the same station and side of the vessel, ``gap`` × its short
    axis further along it, in either direction — or starts anywhere at a station drawn by
    weight."""

    p_attach: float = 0.3
    gap: tuple[float, float] = (0.5, 1.6)


def _path_length(path: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum())


def _nearest_anchor(anatomy: Anatomy, point: np.ndarray) -> tuple[int, float]:
    """The station and arclength fraction nearest to ``point``."""
    best = (0, 0.0, np.inf)
    for k, st in enumerate(anatomy.stations):
        d = np.linalg.norm(st.path - point, axis=1)
        i = int(np.argmin(d))
        if d[i] < best[2]:
            seg = np.linalg.norm(np.diff(st.path, axis=0), axis=1)
            best = (k, float(seg[:i].sum() / max(seg.sum(), 1e-9)), d[i])
    return best[0], best[1]


def place_nodes(anatomy: Anatomy, free: FreeSpace, rng: np.random.Generator,
                sizes: list[tuple[float, float]], placed: list[tuple[np.ndarray, float]],
                model: ClusterModel = ClusterModel(), near: np.ndarray | None = None
                ) -> list[NodeSpec]:
    """Place nodes of the given ``(short, long)`` sizes at the stations, in chains.

    ``placed`` (centre, short) pairs are obstacles and is extended in place; ``near``
    (``[M, 3]``) are points new nodes may attach to (e.g. the existing nodes). A node that
    finds no room after 80 tries is left out.
    """
    stations = anatomy.stations
    weights = np.array([st.weight for st in stations])
    anchors = [] if near is None else [_nearest_anchor(anatomy, p) + (None,) for p in near]
    out = []
    for short, long_ in sizes:
        for attempt in range(80):
            if anchors and attempt < 60 and rng.random() < model.p_attach:
                k, frac, side = anchors[int(rng.integers(len(anchors)))]
                step = rng.uniform(*model.gap) * short * rng.choice([-1.0, 1.0])
                frac = frac + step / max(_path_length(stations[k].path), 1.0)
            else:
                k, frac = int(rng.choice(len(stations), p=weights / weights.sum())), rng.random()
                side = None
            point, side = _station_point(stations[k], rng, frac, short, side)
            centre = _fits(point, short, placed, anatomy, free)
            if centre is not None:
                break
        else:
            continue
        anchors.append((k, float(np.clip(frac, 0.0, 1.0)), side))
        placed.append((centre, short))
        out.append(sample_identity(rng, centre, short, long_, stations[k].name))
    return out


def prior_layout(anatomy: Anatomy, free: FreeSpace, rng: np.random.Generator
                 ) -> list[NodeSpec]:
    """The built-in baseline layout: NIH-fitted counts and sizes, clustered at stations."""
    n = sample_count(rng)
    short, long_ = sample_sizes(rng, n)
    return place_nodes(anatomy, free, rng, list(zip(short, long_, strict=True)), [])


@dataclass(frozen=True)
class NihCase:
    """One NIH abdominal case: node centres (LPS mm) and sizes (mm)."""

    name: str
    pos: np.ndarray
    short_mm: np.ndarray
    long_mm: np.ndarray


def read_nih_cases(root: str | os.PathLike | None = None) -> list[NihCase]:
    """The abdominal NIH CT Lymph Nodes cases: the packaged ones (``root=None``,
    :func:`packaged_nih_cases`) or the ``ABD_*`` case folders of the original annotations under
    ``root``.

    A node without a long axis gets 1.2 × its short axis (no abdominal node lacks one). The
    reader's warnings about quirks of the collection (one size row written ``long short``) are
    silenced here: the reader resolves them and the layout needs no user action.

    Raises:
        InputError: ``root`` is absent or holds no abdominal case.
    """
    if root is None:
        return packaged_nih_cases()
    from lngraph.io.nih import read_nih_case

    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "NIH CT Lymph Nodes annotations not found; the 'nih' layout "
                         "reads ABD_LYMPH_* folders there (leave the folder out to use the "
                         "packaged NIH layouts, or use the 'prior' layout)")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name.upper().startswith(
        "ABD"))
    if not folders:
        raise InputError(root, "holds no abdominal (ABD_*) NIH case; the 'nih' layout needs "
                         "them")
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        scans = [read_nih_case(f) for f in folders]
    for scan in scans:
        t = scan.nodes
        long_ = np.where(np.isfinite(t.long_axis_mm), t.long_axis_mm, t.short_axis_mm * 1.2)
        out.append(NihCase(scan.patient_id, t.pos.copy(), t.short_axis_mm.copy(), long_))
    return out


def packaged_nih_cases() -> list[NihCase]:
    """The 86 abdominal NIH cases shipped with the package (:data:`NIH_LAYOUTS_CSV`), equal
    to :func:`read_nih_cases` of the original annotations."""
    return read_nih_layouts(NIH_LAYOUTS_CSV)


def _number(text: str) -> str:
    """A float written so that it reads back to the same float64 (Python's shortest repr)."""
    return repr(float(text))


def format_nih_layouts(cases: list[NihCase]) -> str:
    """The CSV text of :data:`NIH_LAYOUTS_CSV` for ``cases``: a header, then one row per node
    (case name, its 0-based index in the case, x y z in LPS mm, short and long axis in mm),
    cases and nodes in order; every number is written to read back exactly."""
    lines = [",".join(NIH_LAYOUT_COLUMNS)]
    for case in cases:
        for k, (p, short, long_) in enumerate(zip(case.pos, case.short_mm, case.long_mm,
                                                  strict=True)):
            lines.append(",".join([case.name, str(k), *(_number(v) for v in p),
                                   _number(short), _number(long_)]))
    return "\n".join(lines) + "\n"


def read_nih_layouts(path: str | os.PathLike) -> list[NihCase]:
    """Read a table written by :func:`format_nih_layouts` → one :class:`NihCase` per case.

    Raises:
        InputError: naming the file and line: a wrong header or field count, a number that is
            not one, a position or size out of range, a case split over separate blocks or
            node indices out of order.
    """
    from lngraph.io.cohort import position_problem, size_problem

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found (the packaged NIH layouts are missing from "
                         "this installation)")
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or tuple(lines[0].split(",")) != NIH_LAYOUT_COLUMNS:
        raise InputError(path, f"expected the header {','.join(NIH_LAYOUT_COLUMNS)!r}", line=1)
    rows: dict[str, list[list[float]]] = {}
    last = None
    for n, line in enumerate(lines[1:], start=2):
        fields = line.split(",")
        if len(fields) != len(NIH_LAYOUT_COLUMNS):
            raise InputError(path, f"expected {len(NIH_LAYOUT_COLUMNS)} fields, got "
                             f"{len(fields)}", line=n)
        name, node = fields[0], fields[1]
        if not name:
            raise InputError(path, "empty case name", line=n)
        if name != last and name in rows:
            raise InputError(path, f"case {name} continues after other cases; its rows must "
                             "be consecutive", line=n)
        last = name
        nodes = rows.setdefault(name, [])
        if node != str(len(nodes)):
            raise InputError(path, f"node {node!r} of case {name}: expected {len(nodes)} "
                             "(nodes numbered 0, 1, … in order)", line=n)
        try:
            values = [float(f) for f in fields[2:]]
        except ValueError:
            raise InputError(path, f"not a number among {','.join(fields[2:])!r}",
                             line=n) from None
        problem = position_problem(values[:3]) or size_problem(values[3], values[4])
        if problem or not np.isfinite(values[4]):
            raise InputError(path, problem or "long_mm is not a finite number", line=n)
        nodes.append(values)
    if not rows:
        raise InputError(path, "holds no node")
    out = []
    for name, nodes in rows.items():
        a = np.asarray(nodes, dtype=np.float64)
        out.append(NihCase(name, a[:, :3].copy(), a[:, 3].copy(), a[:, 4].copy()))
    return out


#: Where an NIH layout is centred, relative to the phantom: the left para-aortic region.
NIH_ANCHOR_OFFSET = np.array([0.0, -45.0, 0.0])
#: Half-extent (mm) of the box an NIH layout must fit in, around the anchor.
NIH_HALF_EXTENT = np.array([85.0, 45.0, 0.5 * (NODE_Z_RANGE[1] - NODE_Z_RANGE[0]) - 5.0])


def nih_layout(case: NihCase, anatomy: Anatomy, free: FreeSpace, rng: np.random.Generator
               ) -> list[NodeSpec]:
    """Baseline nodes at the real relative positions and sizes of an NIH case.

    The case's median node goes to the anchor (:data:`NIH_ANCHOR_OFFSET` from the vertebral
    body); an axis on which the case is wider than :data:`NIH_HALF_EXTENT` is shrunk to fit;
    a position inside a solid structure moves to the nearest fat that fits the node.
    """
    anchor = np.array([0.0, anatomy.vertebra_y, 0.0]) + NIH_ANCHOR_OFFSET
    rel = case.pos - np.median(case.pos, axis=0)
    reach = np.maximum(np.abs(rel).max(axis=0), 1e-6)
    rel = rel * np.minimum(1.0, NIH_HALF_EXTENT / reach)
    out = []
    for p, short, long_ in zip(anchor + rel, case.short_mm, case.long_mm, strict=True):
        need = needed_clearance(short)
        centre = free.climb(p, need, max_move=25.0)
        if centre is None:
            centre = free.nearest(p, need)
        if centre is None:
            continue
        centre[2] = np.clip(centre[2], *NODE_Z_RANGE)
        out.append(sample_identity(rng, centre, short, long_, "nih"))
    return out
