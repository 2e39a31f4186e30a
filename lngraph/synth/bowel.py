"""Bowel loops of the phantom: planned once per patient, filled differently in every scan.

:func:`plan_bowel` lays out the colon (along its anatomical course: caecum, ascending,
transverse, descending, sigmoid) and small-bowel loops (self-avoiding random walks through the
anterior abdomen) as tubes that keep clear of organs, vessels and every lymph node the patient
will ever have. :class:`BowelField` stores, per grid, the voxels near each loop with their
distance to its centreline, and :meth:`BowelField.paint` fills them for one scan: each loop's
calibre (collapsed or distended), gas with an air–fluid level (gas rises anteriorly in a supine
patient), fluid, positive oral contrast, or mottled stool in the colon. Collapsed small-bowel
loops are soft-tissue tubes — in cross-section, like vessels, they resemble lymph nodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lngraph.synth.anatomy import Anatomy
from lngraph.synth.nodes import FreeSpace
from lngraph.synth.raster import VolumeGrid, occupancy

GAS_HU, WALL_HU, FLUID_HU, STOOL_HU = -950.0, 75.0, 12.0, 10.0
WALL_MM = 2.5
#: Largest calibre change of a loop between scans (radius factor); planning leaves room for it.
MAX_DISTENSION = 1.1


@dataclass(frozen=True)
class BowelLoop:
    """One loop: centreline ``points`` ``[P, 3]`` (canonical mm), ``radius`` ``[P]``, and
    ``kind`` ``"small"`` or ``"colon"``."""

    points: np.ndarray
    radius: np.ndarray
    kind: str


def _unit(v):
    return v / max(float(np.linalg.norm(v)), 1e-12)


class _Space:
    """Clearance for bowel: the free fat, minus every node, minus the loops laid so far."""

    def __init__(self, free: FreeSpace, nodes: np.ndarray, node_radius: np.ndarray):
        self.free = free
        self.nodes, self.node_radius = nodes.reshape(-1, 3), node_radius.reshape(-1)
        self.points = np.zeros((0, 3))
        self.radius = np.zeros(0)

    def clearance(self, p: np.ndarray, own: np.ndarray | None = None,
                  own_radius: np.ndarray | None = None) -> float:
        """Clearance (mm) at ``p``; ``own`` points of the loop being laid count as well."""
        c = float(self.free.at(p))
        for pts, rad, gap in ((self.nodes, self.node_radius, 2.0),
                              (self.points, self.radius, 1.5), (own, own_radius, 1.5)):
            if pts is not None and len(pts):
                c = min(c, float((np.linalg.norm(pts - p, axis=1) - rad - gap).min()))
        return c

    def add(self, points, radius) -> None:
        self.points = np.concatenate([self.points, points])
        self.radius = np.concatenate([self.radius, radius])


def _grow(space: _Space, rng, kind: str, start, direction, n_steps: int, radius: float,
          r_min: float, allowed, target=None, step: float = 5.0) -> BowelLoop | None:
    """Self-avoiding random walk of a tube; ``target(i)`` optionally attracts step ``i``."""
    pts, radii = [], []
    p, d = np.asarray(start, dtype=np.float64), _unit(np.asarray(direction, dtype=np.float64))
    recent = int(np.ceil(2.5 * radius / step)) + 1
    for i in range(n_steps):
        pull = 0.0 if target is None else 0.8 * _unit(target(i) - p)
        for attempt in range(12):
            cand = _unit(d + (0.35 + 0.15 * attempt) * rng.standard_normal(3) + pull)
            q = p + step * cand
            if not allowed(q):
                continue
            old = max(len(pts) - recent, 0)
            c = space.clearance(q, np.asarray(pts[:old]).reshape(-1, 3), np.asarray(radii[:old]))
            r = min(radius, (c - 1.0) / MAX_DISTENSION)
            if r >= r_min:
                p, d = q, cand
                pts.append(p)
                radii.append(r)
                break
        else:
            break
    if len(pts) < 4:
        return None
    return BowelLoop(np.asarray(pts), np.asarray(radii), kind)


def _colon_route(anatomy: Anatomy, rng) -> np.ndarray:
    yv = anatomy.vertebra_y
    w = np.array([[-80, yv - 60, -100], [-92, yv - 45, -30], [-85, yv - 55, 12],
                  [-40, yv - 105, 22], [40, yv - 105, 30], [88, yv - 55, 45],
                  [96, yv - 30, -10], [88, yv - 40, -80], [40, yv - 80, -115],
                  [0, yv - 60, -135]], dtype=np.float64)
    return w + rng.normal(0, 5, w.shape)


def plan_bowel(anatomy: Anatomy, free: FreeSpace, nodes: np.ndarray, node_radius: np.ndarray,
               rng: np.random.Generator) -> list[BowelLoop]:
    """Lay out the colon and small-bowel loops around ``nodes`` (``[N, 3]`` canonical centres
    with their largest radius over all scans)."""
    space = _Space(free, nodes, node_radius)
    yv = anatomy.vertebra_y
    loops: list[BowelLoop] = []
    route = _colon_route(anatomy, rng)
    seg = np.linalg.norm(np.diff(route, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])

    def along(i, step=5.0):
        s = min(i * step + 15.0, cum[-1])
        return np.array([np.interp(s, cum, route[:, d]) for d in range(3)])

    colon = _grow(space, rng, "colon", route[0], route[1] - route[0], int(cum[-1] / 5.0),
                  rng.uniform(16, 22), 6.0, lambda q: True, target=along)
    if colon is not None:
        loops.append(colon)
        space.add(colon.points, colon.radius)

    def anterior(q):
        return q[1] < yv - 32 and -135 < q[2] < 35

    total, budget = 0.0, rng.uniform(4000, 5500)
    for _ in range(60):
        if total >= budget:
            break
        cand = np.column_stack([rng.uniform(-90, 90, 40), rng.uniform(yv - 130, yv - 32, 40),
                                rng.uniform(-130, 30, 40)])
        clear = np.array([space.clearance(c) for c in cand])
        best = int(np.argmax(clear))
        if clear[best] < 7.0:
            break
        radius = rng.uniform(8, 14)
        loop = _grow(space, rng, "small", cand[best], rng.standard_normal(3),
                     int(rng.integers(30, 80)), radius, 4.5, anterior)
        if loop is None:
            continue
        loops.append(loop)
        space.add(loop.points, loop.radius)
        total += 5.0 * len(loop.points)
    return loops


@dataclass(frozen=True)
class BowelState:
    """Contents of every loop in one scan: radius factor, gas fraction, content HU, whether
    collapsed, and the stool pattern's phase."""

    radius_factor: np.ndarray
    gas: np.ndarray
    content_hu: np.ndarray
    collapsed: np.ndarray
    stool_phase: np.ndarray


def sample_bowel_state(loops: list[BowelLoop], rng: np.random.Generator, oral_contrast: bool
                       ) -> BowelState:
    n = len(loops)
    colon = np.array([lp.kind == "colon" for lp in loops], dtype=bool)
    collapsed = ~colon & (rng.random(n) < 0.25)
    gas = np.where(colon, rng.uniform(0.2, 0.7, n),
                   np.where(rng.random(n) < 0.4, rng.uniform(0.1, 0.5, n), 0.0))
    content = np.where(oral_contrast, rng.uniform(180, 300, n), rng.normal(FLUID_HU, 8, n))
    factor = np.where(collapsed, rng.uniform(0.45, 0.6, n), rng.uniform(0.85, MAX_DISTENSION, n))
    return BowelState(factor, np.where(collapsed, 0.0, gas), np.where(colon, STOOL_HU, content),
                      collapsed, rng.uniform(0, 2 * np.pi, 8))


@dataclass(frozen=True)
class BowelField:
    """Voxels of a grid near the loops: flat indices, distance to the centreline, the planned
    radius there, height above the centreline (y offset), loop index, world position."""

    index: np.ndarray
    dist: np.ndarray
    radius: np.ndarray
    dy: np.ndarray
    loop: np.ndarray
    pos: np.ndarray

    @classmethod
    def of(cls, loops: list[BowelLoop], grid: VolumeGrid, edge_mm: float) -> BowelField:
        parts = []
        for li, lp in enumerate(loops):
            got = _loop_field(lp, grid, edge_mm)
            if got is not None:
                parts.append(got + (np.full(len(got[0]), li, np.int32),))
        if not parts:
            e = np.zeros(0, np.float32)
            return cls(np.zeros(0, np.int64), e, e, e, np.zeros(0, np.int32), np.zeros((0, 3)))
        index, dist, radius, dy, loop = (np.concatenate(v) for v in zip(*parts, strict=True))
        kji = np.stack(np.unravel_index(index, grid.array_shape), axis=1)
        pos = np.asarray(grid.origin) + kji[:, ::-1] * np.asarray(grid.spacing)
        return cls(index, dist, radius, dy, loop, pos)

    def paint(self, volume: np.ndarray, state: BowelState, stool_k: np.ndarray,
              edge_mm: float) -> None:
        """Blend the loops, filled as in ``state``, into ``volume`` (in place)."""
        if len(self.index) == 0:
            return
        flat = volume.reshape(-1)
        li = self.loop
        r = self.radius * state.radius_factor[li]
        occ = occupancy(self.dist - r, edge_mm)
        inner = occupancy(self.dist - (r - WALL_MM), edge_mm)
        level = -r + 2.0 * r * state.gas[li]
        gas = occupancy(self.dy - level, edge_mm) * (state.gas[li] > 0)
        pattern = np.cos(self.pos @ stool_k.T + state.stool_phase).sum(axis=1) / np.sqrt(4.0)
        content = state.content_hu[li] + np.where(state.content_hu[li] == STOOL_HU,
                                                  60.0 * pattern, 0.0)
        bubbles = (state.content_hu[li] == STOOL_HU) & (pattern > 1.3)
        content = np.where(bubbles, GAS_HU, content)
        content = content + gas * (GAS_HU - content)
        lumen = np.where(state.collapsed[li], 0.0, inner)
        value = WALL_HU + lumen * (content - WALL_HU)
        old = flat[self.index]
        flat[self.index] = old + occ * (value - old)


def _loop_field(loop: BowelLoop, grid: VolumeGrid, edge_mm: float):
    """Nearest-segment distance data of the voxels within reach of one loop."""
    p, r = loop.points, loop.radius
    reach = r.max() * MAX_DISTENSION + edge_mm
    box = grid.box(p.min(0) - reach, p.max(0) + reach)
    if box is None or len(p) < 2:
        return None
    shape = tuple(s.stop - s.start for s in box)
    best = np.full(shape, np.inf, np.float32)
    dist = np.zeros(shape, np.float32)
    rad = np.zeros(shape, np.float32)
    dy = np.zeros(shape, np.float32)
    for a, b, ra, rb in zip(p[:-1], p[1:], r[:-1], r[1:], strict=True):
        m = max(ra, rb) * MAX_DISTENSION + edge_mm
        sub = grid.box(np.minimum(a, b) - m, np.maximum(a, b) + m)
        if sub is None:
            continue
        x, y, z = grid.coords(sub)
        d = b - a
        px, py, pz = x - a[0], y - a[1], z - a[2]
        t = np.clip((px * d[0] + py * d[1] + pz * d[2]) / max(float(d @ d), 1e-12), 0, 1)
        ex, ey, ez = px - t * d[0], py - t * d[1], pz - t * d[2]
        dd = np.sqrt(ex * ex + ey * ey + ez * ez)
        rr = ra + t * (rb - ra)
        sd = dd - rr
        rel = tuple(slice(s.start - o.start, s.stop - o.start) for s, o in zip(sub, box,
                                                                             strict=True))
        better = sd < best[rel]
        for arr, val in ((best, sd), (dist, dd), (rad, rr), (dy, np.broadcast_to(ey, sd.shape))):
            view = arr[rel]
            view[better] = np.broadcast_to(val, sd.shape)[better]
    keep = best < (MAX_DISTENSION - 1.0) * rad + edge_mm
    local = np.argwhere(keep)
    offset = np.array([s.start for s in box])
    index = np.ravel_multi_index((local + offset).T, grid.array_shape)
    return index, dist[keep], rad[keep], dy[keep]
