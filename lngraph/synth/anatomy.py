"""The phantom abdomen of one synthetic patient, in its canonical frame (LPS mm).

:func:`sample_anatomy` draws a patient: an abdomen-shaped body (skin, subcutaneous fat, a
muscle wall, a thick posterior muscle block), the lumbar spine (vertebral bodies with cortical
bone, discs, canal, spinous processes), psoas muscles, liver, spleen, kidneys, pancreas, the
aorta and IVC, renal, iliac and branching mesenteric vessels, ureters and gonadal veins.
:func:`render_anatomy` rasterises it on any :class:`~lngraph.synth.raster.VolumeGrid`, as HU
with tissue texture (:data:`TISSUE_HU`) and/or as a tissue label volume (:data:`LABELS`).
Bowel loops (:mod:`lngraph.synth.bowel`) and lymph nodes (:mod:`lngraph.synth.nodes`) change
between scans and are painted on top per scan.

The frame: x towards the patient's left, y towards the back, z towards the head; the body axis
is near ``x = 0``, the vertebral bodies lie at ``y ≈ 40`` and the aortic bifurcation near
``z ≈ -50``. :class:`Station` objects name where lymph nodes sit (along the aorta, IVC, iliac
and mesenteric vessels), for the layouts of :mod:`lngraph.synth.nodes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lngraph.synth.raster import (
    Ellipsoid,
    TubeSet,
    VolumeGrid,
    blend,
    ellipsoid_occupancy,
    occupancy,
    radial_sdf,
    smooth_noise,
    tube_occupancy,
)

#: Tissue label codes of :func:`render_anatomy`'s label volume.
LABELS = {"air": 0, "body": 1, "muscle": 2, "cavity_fat": 3, "organ": 4, "vessel": 5,
          "bone": 6, "bowel": 7, "node": 8}

#: Tissue → (mean HU, texture amplitude HU) of a portal-venous phase abdominal CT.
TISSUE_HU = {
    "air": (-1000.0, 0.0),
    "skin": (40.0, 5.0),
    "subcutaneous_fat": (-105.0, 8.0),
    "muscle": (50.0, 6.0),
    "visceral_fat": (-95.0, 10.0),
    "liver": (105.0, 7.0),
    "spleen": (115.0, 6.0),
    "kidney_cortex": (170.0, 8.0),
    "kidney_medulla": (120.0, 8.0),
    "renal_sinus_fat": (-60.0, 10.0),
    "pancreas": (95.0, 12.0),
    "artery": (180.0, 6.0),
    "vein": (140.0, 6.0),
    "portal_vein": (160.0, 6.0),
    "ureter": (25.0, 5.0),
    "cortical_bone": (750.0, 60.0),
    "cancellous_bone": (230.0, 40.0),
    "disc": (90.0, 8.0),
    "csf": (15.0, 4.0),
}

#: Nodes are kept inside this canonical z range so that every scan of a patient sees them.
NODE_Z_RANGE = (-95.0, 95.0)


@dataclass(frozen=True)
class Body:
    """Body outline: an ellipse of half-width ``a`` and half-depth ``b`` (mm) with a flat back,
    tapering slowly with z; subcutaneous fat (anterior, lateral, posterior thickness) and a
    muscle wall inside it; the abdominal cavity inside the wall, limited at the back by
    ``y_back_cavity`` (deeper in the paravertebral gutters that hold the kidneys)."""

    a: float
    b: float
    taper: float
    fat: tuple[float, float, float]
    muscle: float
    y_back_cavity: float

    def _scale(self, z):
        return 1.0 + self.taper * np.asarray(z) / 100.0

    @staticmethod
    def _ellipse_sd(x, y, a, b, yc=0.0):
        yy = y - yc
        rho = np.sqrt((x / a) ** 2 + (yy / b) ** 2)
        return radial_sdf(np.sqrt(x * x + yy * yy), rho, np.minimum(a, b))

    def sd_outer(self, x, y, z):
        """Signed distance (mm) to the skin surface."""
        s = self._scale(z)
        return np.maximum(self._ellipse_sd(x, y, self.a * s, self.b * s), y - 0.9 * self.b * s)

    def _inner(self, z, extra):
        s = self._scale(z)
        fa, fl, fp = self.fat
        a = self.a * s - fl - extra
        b = self.b * s - (fa + fp) / 2 - extra
        return a, b, (fa - fp) / 2

    def sd_wall(self, x, y, z):
        """Signed distance to the outer surface of the muscle wall."""
        a, b, yc = self._inner(z, 0.0)
        return np.maximum(self._ellipse_sd(x, y, a, b, yc), y - 0.9 * self.b * self._scale(z)
                          + self.fat[2])

    def sd_cavity(self, x, y, z):
        """Signed distance to the abdominal cavity (inside the wall, in front of the back)."""
        a, b, yc = self._inner(z, self.muscle)
        gutter = 12.0 * np.exp(-(((np.abs(x) - 68.0) / 30.0) ** 2))
        return np.maximum(self._ellipse_sd(x, y, a, b, yc), y - self.y_back_cavity - gutter)


@dataclass(frozen=True)
class Structure:
    """One painted structure: a shape with a tissue (:data:`TISSUE_HU`) and a label; ``clip``
    restricts it to the abdominal cavity."""

    name: str
    shape: Ellipsoid | TubeSet
    tissue: str
    label: str
    clip: bool = False


@dataclass(frozen=True)
class Station:
    """A lymph-node station: nodes sit beside ``path`` ``[P, 3]`` (vessel centreline with
    radius ``radius`` ``[P]``), on the ``side`` (unit vector; ``None`` = any direction
    perpendicular to the path), or on the path itself when ``beside`` is False (e.g. the
    aortocaval space, given by its midline)."""

    name: str
    path: np.ndarray
    radius: np.ndarray
    weight: float
    side: np.ndarray | None = None
    beside: bool = True


@dataclass(frozen=True)
class Anatomy:
    """A sampled phantom: the body, the structures in paint order, and the node stations."""

    body: Body
    structures: tuple[Structure, ...]
    stations: tuple[Station, ...]
    vertebra_y: float
    mesenteric: TubeSet = field(repr=False)

    @property
    def centre(self) -> np.ndarray:
        """Centre of the node-bearing region (rotation centre of patient repositioning)."""
        return np.array([0.0, self.vertebra_y - 40.0, 0.0])


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / max(float(np.linalg.norm(v)), 1e-12)


def axis_rotation(axis, angle_rad) -> np.ndarray:
    """Rotation matrix about ``axis`` by ``angle_rad`` (Rodrigues)."""
    k = _unit(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle_rad) * kx + (1 - np.cos(angle_rad)) * kx @ kx


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3D rotation matrix."""
    q = rng.standard_normal(4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def _smooth_path(waypoints, step: float = 4.0) -> np.ndarray:
    """Resample a polyline through ``waypoints`` at about ``step`` mm."""
    w = np.asarray(waypoints, dtype=np.float64)
    seg = np.linalg.norm(np.diff(w, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.linspace(0.0, s[-1], max(2, int(np.ceil(s[-1] / step)) + 1))
    return np.stack([np.interp(t, s, w[:, d]) for d in range(3)], axis=1)


def _walk(rng, start, direction, length, steer, step: float = 4.0, wiggle: float = 0.22
          ) -> np.ndarray:
    """A smooth random walk (a vessel course) of ``length`` mm, pushed by ``steer(p)``."""
    p, d = np.asarray(start, dtype=np.float64), _unit(direction)
    out = [p]
    for _ in range(max(1, int(length / step))):
        d = _unit(d + wiggle * rng.standard_normal(3) + steer(p))
        p = p + step * d
        out.append(p)
    return np.asarray(out)


def _branch_tree(rng, start, direction, radius, steer, depth: int, out: list) -> None:
    """Append ``(points, radii)`` of a random branching vessel tree to ``out``."""
    length = rng.uniform(35.0, 70.0) * np.sqrt(radius / 2.0)
    pts = _walk(rng, start, direction, length, steer)
    radii = np.linspace(radius, 0.85 * radius, len(pts))
    out.append((pts, radii))
    child_r = radius * rng.uniform(0.6, 0.8)
    if depth >= 3 or 0.85 * child_r < 1.5:
        return
    for _ in range(int(rng.integers(1, 4))):
        i = int(rng.integers(len(pts) // 4, len(pts)))
        tangent = _unit(pts[min(i + 1, len(pts) - 1)] - pts[max(i - 1, 0)])
        axis = _unit(np.cross(tangent, rng.standard_normal(3)))
        child_dir = axis_rotation(axis, np.deg2rad(rng.uniform(35, 75))) @ tangent
        _branch_tree(rng, pts[i], child_dir, child_r, steer, depth + 1, out)


def _mesenteric_steer(body: Body, y_limit: float, z_range: tuple[float, float]):
    """Steering that keeps a mesenteric vessel inside the anterior abdominal cavity."""
    def steer(p):
        push = np.zeros(3)
        if p[1] > y_limit:
            push[1] -= 0.6
        if body.sd_cavity(p[0], p[1], p[2]) > -18.0:
            push[:2] -= 0.6 * _unit([p[0], p[1] + 10.0])
        if p[2] > z_range[1]:
            push[2] -= 0.6
        if p[2] < z_range[0]:
            push[2] += 0.6
        return push
    return steer


def _tube(name, points, radii, tissue, label, clip=False) -> Structure:
    return Structure(name, TubeSet.polyline(points, radii), tissue, label, clip)


def _vessel(name, waypoints, r0, r1, tissue) -> tuple[Structure, np.ndarray, np.ndarray]:
    pts = _smooth_path(waypoints)
    radii = np.linspace(r0, r1, len(pts))
    return _tube(name, pts, radii, tissue, "vessel"), pts, radii


def _jit(rng, scale: float, n: int = 3) -> np.ndarray:
    return rng.normal(0.0, scale, n)


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    """Draw one patient's phantom abdomen (see the module docstring)."""
    body = Body(a=rng.uniform(117, 135), b=rng.uniform(92, 104), taper=rng.uniform(-0.03, 0.03),
                fat=(rng.uniform(12, 30), rng.uniform(15, 32), rng.uniform(8, 18)),
                muscle=rng.uniform(8, 12), y_back_cavity=rng.uniform(60, 66))
    yv = rng.uniform(38, 44)
    s: list[Structure] = []

    # Spine: vertebral bodies (cortical shell, cancellous core), discs, canal, processes.
    z_axis = np.array([-220.0, 220.0])
    vb = np.stack([np.zeros(2), np.full(2, yv), z_axis], axis=1)
    s.append(_tube("vertebral_cortex", vb, 19.0, "cortical_bone", "bone"))
    s.append(_tube("vertebral_core", vb, 16.5, "cancellous_bone", "bone"))
    period, phase = rng.uniform(34, 38), rng.uniform(0, 36)
    for zc in np.arange(-220 + phase, 220, period):
        s.append(_tube("disc", [[0, yv, zc - 3.5], [0, yv, zc + 3.5]], 19.5, "disc", "bone"))
    s.append(_tube("posterior_arch", vb + [0, 30, 0], 12.5, "cortical_bone", "bone"))
    s.append(_tube("spinal_canal", vb + [0, 30, 0], 8.5, "csf", "bone"))
    for dy in (44.0, 50.0, 56.0, 62.0):
        s.append(_tube("spinous_process", vb + [0, dy, 0], 4.5, "cortical_bone", "bone"))
    for zc in np.arange(-220 + phase + period / 2, 220, period):
        for sign in (-1, 1):
            s.append(_tube("transverse_process", [[sign * 12, yv + 28, zc],
                                                  [sign * 34, yv + 26, zc]], 5.0,
                           "cortical_bone", "bone"))
    # Psoas muscles: thicken caudally.
    for sign in (-1, 1):
        pts = _smooth_path([[sign * 30, yv + 2, 110], [sign * 38, yv - 2, 0],
                            [sign * 50, yv - 8, -150], [sign * 56, yv - 15, -220]])
        radii = np.interp(pts[:, 2], [-220, 110], [26, 7])
        s.append(_tube("psoas", pts, radii, "muscle", "muscle", clip=True))

    # Solid organs.
    liver = Ellipsoid(np.array([-55, -5, 110]) + _jit(rng, 6), np.array([88, 78, 95])
                      * rng.uniform(0.9, 1.05), axis_rotation([0, 1, 0], rng.uniform(-0.15, 0.15)))
    s.append(Structure("liver", liver, "liver", "organ", clip=True))
    spleen = Ellipsoid(np.array([78, 40, 115]) + _jit(rng, 5), np.array([24, 45, 55])
                       * rng.uniform(0.85, 1.15), axis_rotation([0, 0, 1], rng.uniform(-0.5, -0.2)))
    s.append(Structure("spleen", spleen, "spleen", "organ", clip=True))
    z_kidney = rng.uniform(25, 45)
    for sign, dz in ((-1, -12.0), (1, 0.0)):
        c = np.array([sign * 68, yv + 8, z_kidney + dz]) + _jit(rng, 3)
        rot = axis_rotation([0, 0, 1], sign * 0.5) @ axis_rotation([0, 1, 0], sign * 0.15)
        s.append(Structure("kidney", Ellipsoid(c, np.array([24, 20, 54]), rot),
                           "kidney_cortex", "organ", clip=True))
        s.append(Structure("kidney", Ellipsoid(c, np.array([15, 12, 42]), rot),
                           "kidney_medulla", "organ", clip=True))
        s.append(Structure("renal_sinus", Ellipsoid(c + rot @ [-14, 0, 0], np.array(
            [10, 8, 20]), rot), "renal_sinus_fat", "organ", clip=True))
    s.append(_tube("pancreas", _smooth_path(
        [[-35, -8, 62], [0, -14, 68], [40, 2, 78], [66, 24, 88]] + _jit(rng, 3, 3)),
        rng.uniform(9, 12), "pancreas", "organ", clip=True))

    # Great vessels.
    z_bif = rng.uniform(-60, -40)
    xa = rng.uniform(8, 16)
    aorta_s, aorta, aorta_r = _vessel("aorta", [[xa - 4, yv - 28, 220], [xa, yv - 30, 60],
                                                [xa + 2, yv - 30, z_bif]], 11.5, 9.0, "artery")
    ivc_s, ivc, ivc_r = _vessel("ivc", [[-20, yv - 20, 220], [-19, yv - 28, 60],
                                        [-10, yv - 28, z_bif - 12]], 11.0, 10.0, "vein")
    s += [aorta_s, ivc_s]
    iliac_paths = []
    for sign in (-1, 1):
        common = [[xa + 2, yv - 30, z_bif], [sign * 38, yv - 22, z_bif - 55]]
        ext_s, ext, ext_r = _vessel("iliac_artery", common + [[sign * 62, yv - 30, -150],
                                                              [sign * 78, yv - 45, -230]],
                                    6.5, 5.0, "artery")
        int_s, _, _ = _vessel("iliac_artery", [common[1], [sign * 48, yv + 5, -160],
                                               [sign * 55, yv + 20, -230]], 4.5, 3.5, "artery")
        vein_s, vein, vein_r = _vessel("iliac_vein", [[-10, yv - 28, z_bif - 12],
                                                      [sign * 34, yv - 14, z_bif - 62],
                                                      [sign * 60, yv - 20, -150],
                                                      [sign * 74, yv - 35, -230]],
                                       7.5, 6.5, "vein")
        s += [ext_s, int_s, vein_s]
        iliac_paths.append((ext, ext_r, sign))
        # Ureter and gonadal vein: thin tubes along the psoas — node-like in cross-section.
        s.append(_tube("ureter", _smooth_path([[sign * 52, yv + 2, z_kidney - 15],
                                               [sign * 40, yv - 12, -40],
                                               [sign * 45, yv - 18, -230]] + _jit(rng, 2, 3)),
                       2.5, "ureter", "vessel"))
        s.append(_tube("gonadal_vein", _smooth_path([[sign * 60, yv - 5, z_kidney - 10],
                                                     [sign * 50, yv - 22, -60],
                                                     [sign * 58, yv - 32, -230]]
                                                    + _jit(rng, 3, 3)),
                       rng.uniform(2.0, 3.0), "vein", "vessel"))
        kidney_hilum = [sign * 50, yv, z_kidney - (12 if sign < 0 else 0)]
        s.append(_tube("renal_artery", _smooth_path([[xa, yv - 30, z_kidney + 5],
                                                     kidney_hilum]), 3.0, "artery", "vessel"))
        ivc_at_kidney = [-19, yv - 28, z_kidney]
        crossing = [[xa, yv - 46, z_kidney + 2]] if sign > 0 else []
        s.append(_tube("renal_vein", _smooth_path([ivc_at_kidney, *crossing, kidney_hilum]),
                       4.5, "vein", "vessel"))

    # Portal system and mesenteric trees (superior mesenteric artery and vein).
    z_sma = rng.uniform(60, 75)
    portal_s, portal, portal_r = _vessel("portal_vein", [[-8, yv - 50, z_sma - 10],
                                                        [-30, yv - 45, z_sma + 15],
                                                        [-50, yv - 40, z_sma + 40]], 7.0, 6.0,
                                         "portal_vein")
    s.append(portal_s)
    s.append(_tube("coeliac", _smooth_path([[xa, yv - 40, z_sma + 15], [xa - 2, yv - 52,
                                                                        z_sma + 16],
                                            [-40, yv - 50, z_sma + 30]]), 3.0, "artery",
                   "vessel"))
    s.append(_tube("splenic_vessel", _smooth_path([[xa - 2, yv - 52, z_sma + 16],
                                                   [40, yv - 40, z_sma + 22],
                                                   [70, yv - 10, z_sma + 40]]), 3.5,
                   "vein", "vessel"))
    steer = _mesenteric_steer(body, yv - 38, (NODE_Z_RANGE[0] - 10, z_sma + 10))
    branches: list = []
    sma_trunk = _walk(rng, [xa, yv - 42, z_sma], [0, -0.5, -0.85], rng.uniform(110, 150),
                      steer, wiggle=0.12)
    branches.append((sma_trunk, np.linspace(4.0, 2.5, len(sma_trunk))))
    smv_trunk = _walk(rng, [-8, yv - 50, z_sma - 10], [-0.15, -0.5, -0.85],
                      rng.uniform(110, 150), steer, wiggle=0.12)
    branches.append((smv_trunk, np.linspace(5.0, 3.0, len(smv_trunk))))
    for trunk, side, r0 in ((sma_trunk, 1, 2.6), (smv_trunk, -1, 3.0)):
        n_side = int(rng.integers(4, 7))
        for i in np.sort(rng.choice(np.arange(3, len(trunk) - 1), n_side, replace=False)):
            direction = _unit([side * rng.uniform(0.5, 1.0), rng.uniform(-0.9, -0.2),
                               rng.uniform(-0.6, 0.3)])
            _branch_tree(rng, trunk[i], direction, r0 * rng.uniform(0.7, 1.0), steer, 1,
                         branches)
    for pts, radii in branches:
        tissue = "artery" if rng.random() < 0.5 else "vein"
        s.append(_tube("mesenteric_vessel", pts, radii, tissue, "vessel", clip=True))
    mesenteric = TubeSet.concat(TubeSet.polyline(p, r) for p, r in branches)

    stations = _stations(aorta, aorta_r, ivc, ivc_r, iliac_paths, portal, portal_r, branches)
    return Anatomy(body=body, structures=tuple(s), stations=stations, vertebra_y=yv,
                   mesenteric=mesenteric)


def _clip_z(path, radius, z_range=NODE_Z_RANGE):
    keep = (path[:, 2] >= z_range[0]) & (path[:, 2] <= z_range[1])
    return path[keep], radius[keep]


def _at_z(path: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Points of a path running monotonically in z, interpolated at heights ``z``."""
    order = np.argsort(path[:, 2])
    p = path[order]
    return np.stack([np.interp(z, p[:, 2], p[:, d]) for d in (0, 1)] + [z], axis=1)


def _stations(aorta, aorta_r, ivc, ivc_r, iliac_paths, portal, portal_r, branches
              ) -> tuple[Station, ...]:
    """Nodal stations (names follow the abdominal lymph-node station atlases)."""
    out = []
    a, ar = _clip_z(aorta, aorta_r)
    out.append(Station("left_paraaortic", a, ar, 0.26, side=_unit([1, 0.15, 0])))
    out.append(Station("preaortic", a, ar, 0.06, side=_unit([0, -1, 0])))
    v, vr = _clip_z(ivc, ivc_r)
    out.append(Station("right_paracaval", v, vr, 0.08, side=_unit([-1, 0.1, 0])))
    z = np.linspace(max(a[:, 2].min(), v[:, 2].min()), min(a[:, 2].max(), v[:, 2].max()), 30)
    mid = (_at_z(a, z) + _at_z(v, z)) / 2
    out.append(Station("aortocaval", mid, np.zeros(len(z)), 0.12, beside=False))
    for path, radius, sign in iliac_paths:
        p, r = _clip_z(path, radius)
        if len(p) >= 2:
            out.append(Station("left_iliac" if sign > 0 else "right_iliac", p, r, 0.08))
    p, r = _clip_z(portal, portal_r)
    if len(p) >= 2:
        out.append(Station("portocaval", p, r, 0.06))
    mes = [(p, r) for p, r in (_clip_z(pp, rr) for pp, rr in branches) if len(p) >= 2]
    total = sum(len(p) for p, _ in mes)
    for p, r in mes:
        out.append(Station("mesenteric", p, r, 0.26 * len(p) / total))
    return tuple(out)


def render_anatomy(anatomy: Anatomy, grid: VolumeGrid, *, rng: np.random.Generator | None,
                   edge_mm: float | None = None, labels: bool = True
                   ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Rasterise the phantom (without bowel and nodes).

    Args:
        anatomy: the phantom.
        grid: the voxel grid.
        rng: draws the tissue texture; ``None`` renders labels only (no HU volume).
        edge_mm: width of the partial-volume ramp (default: the smallest spacing).
        labels: also return the label volume (:data:`LABELS`).

    Returns:
        ``(hu, label)``: float32 HU and uint8 labels, array order; either may be ``None``.
    """
    edge = float(min(grid.spacing)) if edge_mm is None else edge_mm
    shape = grid.array_shape
    hu = np.full(shape, TISSUE_HU["air"][0], np.float32) if rng is not None else None
    lab = np.zeros(shape, np.uint8) if labels else None
    texture = smooth_noise(shape, (0.8, 1.2, 1.2), rng) if rng is not None else None
    x, y, z = grid.coords(grid.full)
    b = anatomy.body
    sd_out = b.sd_outer(x, y, z)
    sd_wall = b.sd_wall(x, y, z)
    sd_cav = b.sd_cavity(x, y, z)
    cavity = occupancy(sd_cav, edge)
    layers = ((sd_out, "skin", "body"), (sd_out + 2.5, "subcutaneous_fat", "body"),
              (sd_wall, "muscle", "muscle"), (sd_cav, "visceral_fat", "cavity_fat"))
    for sd, tissue, label in layers:
        occ = occupancy(sd, edge)
        _paint(hu, lab, texture, grid.full, occ, tissue, label)
    for st in anatomy.structures:
        if isinstance(st.shape, TubeSet):
            got = tube_occupancy(st.shape, grid, edge)
        else:
            got = ellipsoid_occupancy(st.shape, grid, edge)
        if got is None:
            continue
        box, occ = got
        if st.clip:
            occ = occ * cavity[box]
        _paint(hu, lab, texture, box, occ, st.tissue, st.label)
    return hu, lab


def _paint(hu, lab, texture, box, occ, tissue, label) -> None:
    if hu is not None:
        mean, amp = TISSUE_HU[tissue]
        blend(hu, box, occ, mean + amp * texture[box] if amp else mean)
    if lab is not None:
        view = lab[box]
        view[occ > 0.5] = LABELS[label]
