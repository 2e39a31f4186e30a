"""Rasterising analytic shapes into voxel volumes with soft (partial-volume) edges.

A :class:`VolumeGrid` is an axis-aligned grid in world LPS mm; volumes are numpy arrays in
array order ``(k, j, i)``. Shapes are given by approximate signed distance functions (negative
inside, mm); a voxel's occupancy is a linear ramp of the signed distance over ``edge_mm``,
which mimics partial-volume averaging and keeps edges free of staircase artefacts.

Shapes: :class:`Ellipsoid` (organs) and :class:`TubeSet` (vessels, bowel, muscles, bone —
any union of tapered segments). :func:`paint` alpha-blends a shape of given HU into a volume
and, optionally, writes its tissue label where it covers more than half a voxel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class VolumeGrid:
    """Axis-aligned voxel grid: ``origin`` (world of voxel 0), ``spacing`` and ``shape``, all
    in (x, y, z) / (i, j, k) order."""

    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    shape: tuple[int, int, int]

    @property
    def array_shape(self) -> tuple[int, int, int]:
        """``(nk, nj, ni)``: the numpy shape of a volume on this grid."""
        return tuple(int(n) for n in self.shape[::-1])

    def axis(self, a: int, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """World coordinates (mm) of voxel centres ``lo:hi`` along axis ``a`` (0 = x)."""
        hi = self.shape[a] if hi is None else hi
        return self.origin[a] + np.arange(lo, hi, dtype=np.float64) * self.spacing[a]

    def box(self, lo, hi) -> tuple[slice, slice, slice] | None:
        """Array-order slices of the voxels whose centres lie in the world box [lo, hi]."""
        o, s = np.asarray(self.origin), np.asarray(self.spacing)
        a = np.maximum(np.ceil((np.asarray(lo) - o) / s).astype(int), 0)
        b = np.minimum(np.floor((np.asarray(hi) - o) / s).astype(int) + 1, self.shape)
        if np.any(b <= a):
            return None
        return tuple(slice(int(a[d]), int(b[d])) for d in (2, 1, 0))

    def coords(self, box: tuple[slice, slice, slice]) -> tuple[np.ndarray, ...]:
        """Broadcastable world ``(X, Y, Z)`` of the voxels of an array-order ``box``."""
        sk, sj, si = box
        x = self.axis(0, si.start, si.stop)[None, None, :]
        y = self.axis(1, sj.start, sj.stop)[None, :, None]
        z = self.axis(2, sk.start, sk.stop)[:, None, None]
        return x, y, z

    @property
    def full(self) -> tuple[slice, slice, slice]:
        return tuple(slice(0, n) for n in self.array_shape)

    def world_to_array(self, points) -> np.ndarray:
        """World ``[..., 3]`` → continuous array index ``(k, j, i)``."""
        u = (np.asarray(points, dtype=np.float64) - np.asarray(self.origin)) / np.asarray(
            self.spacing)
        return u[..., ::-1]


def occupancy(sd: np.ndarray, edge_mm: float) -> np.ndarray:
    """Soft occupancy in [0, 1] of a signed distance (mm): 1 inside, 0 outside, linear ramp
    of width ``edge_mm`` centred on the surface."""
    return np.clip(0.5 - sd / edge_mm, 0.0, 1.0)


def radial_sdf(r: np.ndarray, n: np.ndarray, r_min: float) -> np.ndarray:
    """Signed distance of a star-shaped body from the distance ``r`` to its centre and the
    normalised radius ``n`` (1 on the surface): ``r - r / n``, and ``-r_min`` at the centre."""
    safe = np.maximum(n, 1e-6)
    return np.where(n > 1e-6, r - r / safe, -r_min)


@dataclass(frozen=True)
class Ellipsoid:
    """An ellipsoid: ``centre`` (3,), ``semi_axes`` (3,) mm, ``rotation`` (3, 3) whose columns
    are the world directions of the axes."""

    centre: np.ndarray
    semi_axes: np.ndarray
    rotation: np.ndarray

    def bounds(self, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        half = np.abs(np.asarray(self.rotation)) @ np.asarray(self.semi_axes) + margin
        return np.asarray(self.centre) - half, np.asarray(self.centre) + half

    def local(self, x, y, z) -> list[np.ndarray]:
        """Coordinates in the ellipsoid's axes frame (mm), broadcast over ``x, y, z``."""
        d = (x - self.centre[0], y - self.centre[1], z - self.centre[2])
        r = self.rotation
        return [r[0, a] * d[0] + r[1, a] * d[1] + r[2, a] * d[2] for a in range(3)]

    def sdf(self, x, y, z) -> np.ndarray:
        """Approximate signed distance (exact along the axes): ``|u| (1 - 1/|u/a|)``."""
        u = self.local(x, y, z)
        n = np.sqrt(sum((ui / ai) ** 2 for ui, ai in zip(u, self.semi_axes, strict=True)))
        return radial_sdf(np.sqrt(sum(ui * ui for ui in u)), n, float(min(self.semi_axes)))


@dataclass(frozen=True)
class TubeSet:
    """A union of tapered segments (capsules): ``a, b`` ``[S, 3]`` end points and ``ra, rb``
    ``[S]`` radii (mm) at those ends."""

    a: np.ndarray
    b: np.ndarray
    ra: np.ndarray
    rb: np.ndarray

    @classmethod
    def polyline(cls, points, radii) -> TubeSet:
        """A tube along consecutive ``points`` ``[P, 3]`` with per-point ``radii`` ``[P]``."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        r = np.broadcast_to(np.asarray(radii, dtype=np.float64), (len(p),))
        return cls(p[:-1], p[1:], r[:-1].copy(), r[1:].copy())

    @classmethod
    def concat(cls, tubes) -> TubeSet:
        tubes = list(tubes)
        return cls(*(np.concatenate([getattr(t, f) for t in tubes]) for f in ("a", "b", "ra",
                                                                              "rb")))

    def __len__(self) -> int:
        return len(self.a)

    def segment_bounds(self, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        r = np.maximum(self.ra, self.rb)[:, None] + margin
        return np.minimum(self.a, self.b) - r, np.maximum(self.a, self.b) + r

    def bounds(self, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.segment_bounds(margin)
        return lo.min(0), hi.max(0)

    def segment_sdf(self, s: int, x, y, z) -> np.ndarray:
        """Signed distance to segment ``s`` (a capsule with linearly varying radius)."""
        a, d = self.a[s], self.b[s] - self.a[s]
        px, py, pz = x - a[0], y - a[1], z - a[2]
        t = np.clip((px * d[0] + py * d[1] + pz * d[2]) / max(float(d @ d), 1e-12), 0.0, 1.0)
        dist = np.sqrt((px - t * d[0]) ** 2 + (py - t * d[1]) ** 2 + (pz - t * d[2]) ** 2)
        return dist - (self.ra[s] + t * (self.rb[s] - self.ra[s]))

    def distance_to_axis(self, points: np.ndarray) -> np.ndarray:
        """``[P]`` signed distance of world points to the tube surface (min over segments)."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        if len(self) == 0:
            return np.full(len(p), np.inf)
        d = self.b - self.a
        rel = p[:, None, :] - self.a[None]
        t = np.clip((rel * d[None]).sum(-1) / np.maximum((d * d).sum(-1), 1e-12)[None], 0, 1)
        dist = np.linalg.norm(rel - t[..., None] * d[None], axis=-1)
        return (dist - (self.ra[None] + t * (self.rb - self.ra)[None])).min(axis=1)


def tube_occupancy(tubes: TubeSet, grid: VolumeGrid, edge_mm: float, offset_mm: float = 0.0
                   ) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    """Union occupancy of a :class:`TubeSet` (radii grown by ``offset_mm``) inside its bounding
    box: ``(box, occ)`` or ``None`` when it misses the grid."""
    margin = edge_mm + offset_mm
    lo, hi = tubes.bounds(margin)
    box = grid.box(lo, hi)
    if box is None:
        return None
    occ = np.zeros(tuple(s.stop - s.start for s in box), dtype=np.float32)
    slo, shi = tubes.segment_bounds(margin)
    for s in range(len(tubes)):
        sub = grid.box(slo[s], shi[s])
        if sub is None:
            continue
        rel = tuple(slice(a.start - b.start, a.stop - b.start) for a, b in zip(sub, box,
                                                                             strict=True))
        o = occupancy(tubes.segment_sdf(s, *grid.coords(sub)) - offset_mm, edge_mm)
        np.maximum(occ[rel], o, out=occ[rel])
    return box, occ


def ellipsoid_occupancy(shape: Ellipsoid, grid: VolumeGrid, edge_mm: float
                        ) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    lo, hi = shape.bounds(edge_mm)
    box = grid.box(lo, hi)
    if box is None:
        return None
    return box, occupancy(shape.sdf(*grid.coords(box)), edge_mm).astype(np.float32)


def blend(volume: np.ndarray, box, occ: np.ndarray, value) -> None:
    """``volume[box] ← volume[box] (1 − occ) + value occ`` in place (``value`` may be an array
    of the box's shape)."""
    view = volume[box]
    view += occ * (value - view)


def smooth_noise(shape: tuple[int, ...], sigma_voxels, rng: np.random.Generator
                 ) -> np.ndarray:
    """Gaussian-filtered white noise, rescaled to zero mean and unit std (float32)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32),
                                    sigma_voxels, mode="wrap")
    field -= field.mean()
    field /= max(float(field.std()), 1e-6)
    return field
