r"""The ``pointset`` baseline: Coherent Point Drift on the node centres, then gated Hungarian.

Coherent Point Drift (Myronenko & Song, "Point Set Registration: Coherent Point Drift",
IEEE TPAMI 2010) treats the earlier scan's centres :math:`Y` as the means of a Gaussian mixture
(plus a uniform outlier component of weight :math:`w`) and fits it to the later scan's centres
:math:`X` by EM over a rigid (:math:`x \approx R y + t`) or affine (:math:`x \approx B y + t`)
transform. The outlier component absorbs the nodes without a partner (new/disappeared). After
registration, the earlier centres mapped into the later scan are assigned to the later centres
by a Hungarian assignment on distance with a gate in mm (pairs farther than the gate stay
unmatched).

This module owns the CPD solvers (:func:`cpd_rigid`, :func:`cpd_affine`), the distance-gated
assignment of mapped points (:func:`match_mapped_points`, shared with the image-registration
baseline) and the :class:`PointSet` method.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from lngraph.baselines.base import Method, register
from lngraph.io.cohort import ScanPair
from lngraph.io.matches import PairPrediction
from lngraph.matching.assignment import hungarian


@dataclass(frozen=True)
class AffineMap:
    """A map ``p -> p @ matrix.T + offset`` of ``[N, 3]`` points (world LPS mm)."""

    matrix: np.ndarray
    offset: np.ndarray

    def __call__(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        return points @ self.matrix.T + self.offset


def _posterior(x: np.ndarray, ty: np.ndarray, sigma2: float, w: float) -> np.ndarray:
    """CPD E-step: ``[M, N]`` posterior of mixture centre ``m`` having generated point ``n``."""
    m, n = len(ty), len(x)
    dim = x.shape[1]
    log_g = -((ty[:, None, :] - x[None, :, :]) ** 2).sum(-1) / (2 * sigma2)
    with np.errstate(divide="ignore"):
        log_uniform = np.log(w / (1 - w) * m / n) + dim / 2 * np.log(2 * np.pi * sigma2)
    log_norm = np.logaddexp(logsumexp(log_g, axis=0, keepdims=True), log_uniform)
    return np.exp(log_g - log_norm)


def _initial_sigma2(x: np.ndarray, y: np.ndarray) -> float:
    return float(((y[:, None, :] - x[None, :, :]) ** 2).sum() / (x.shape[1] * len(x) * len(y)))


def _cpd(x: np.ndarray, y: np.ndarray, m_step, *, w: float, max_iter: int, tol: float
         ) -> AffineMap:
    """EM loop shared by the rigid and the affine CPD.

    As in the paper, both sets are first centred and scaled to unit RMS spread (CPD's outlier
    term is not scale-invariant); the result is mapped back to mm. ``m_step(P, xc, yc, n_p)``
    returns the linear part ``A`` of the map for the posterior ``P`` and the centred points, so
    that ``x - mu_x ≈ A (y - mu_y)``.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1, 3)
    y = np.asarray(y, dtype=np.float64).reshape(-1, 3)
    if len(x) == 0 or len(y) == 0:
        return AffineMap(np.eye(3), np.zeros(3))
    cx, cy = x.mean(0), y.mean(0)
    scale = max(float(np.sqrt(np.concatenate([x - cx, y - cy]).var(0).sum())), 1.0)
    xn, yn = (x - cx) / scale, (y - cy) / scale
    transform = AffineMap(np.eye(3), np.zeros(3))
    sigma2 = max(_initial_sigma2(xn, yn), 1e-6)
    for _ in range(max_iter):
        p = _posterior(xn, transform(yn), sigma2, w)
        n_p = p.sum()
        if n_p < 1e-12:
            break
        mu_x = p.sum(0) @ xn / n_p
        mu_y = p.sum(1) @ yn / n_p
        matrix = m_step(p, xn - mu_x, yn - mu_y, n_p)
        transform = AffineMap(matrix, mu_x - matrix @ mu_y)
        d2 = ((transform(yn)[:, None, :] - xn[None, :, :]) ** 2).sum(-1)
        new_sigma2 = max(float((p * d2).sum() / (3 * n_p)), 1e-10)
        converged = abs(sigma2 - new_sigma2) <= tol * sigma2
        sigma2 = new_sigma2
        if converged:
            break
    matrix = transform.matrix
    return AffineMap(matrix, cx + scale * transform.offset - matrix @ cy)


def cpd_rigid(x: np.ndarray, y: np.ndarray, *, w: float = 0.1, prior: float = 1e-3,
              max_iter: int = 150, tol: float = 1e-7) -> AffineMap:
    r"""Rigid CPD: the rotation and translation taking ``y`` onto ``x``.

    M-step (weighted Procrustes): with :math:`A = \hat X^\top P^\top \hat Y + \lambda N_P I`,
    :math:`A = U S V^\top`, :math:`R = U\,\mathrm{diag}(1, 1, \det UV^\top)\,V^\top`.
    The term :math:`\lambda N_P I` (``prior``, in the unit-spread frame) prefers the identity
    rotation when the points do not determine one (fewer than three, or collinear).

    Args:
        x: ``[N, 3]`` target points (the later scan), mm.
        y: ``[M, 3]`` moving points (the earlier scan), mm.
        w: weight of the uniform outlier component, in ``[0, 1)``.
        prior: strength of the pull towards the identity.

    Returns:
        the map taking ``y`` into the frame of ``x``.
    """
    def m_step(p, xc, yc, n_p):
        a = xc.T @ p.T @ yc + prior * n_p * np.eye(3)
        u, _, vt = np.linalg.svd(a)
        c = np.diag([1.0, 1.0, np.linalg.det(u @ vt)])
        return u @ c @ vt

    return _cpd(x, y, m_step, w=w, max_iter=max_iter, tol=tol)


def cpd_affine(x: np.ndarray, y: np.ndarray, *, w: float = 0.1, prior: float = 1e-3,
               max_iter: int = 150, tol: float = 1e-7) -> AffineMap:
    r"""Affine CPD: the linear map and translation taking ``y`` onto ``x``.

    M-step: :math:`B = (\hat X^\top P^\top \hat Y + \lambda N_P I)
    (\hat Y^\top \mathrm{d}(P\mathbf 1) \hat Y + \lambda N_P I)^{-1}` — a ridge pulling
    :math:`B` towards the identity so that small or flat node sets stay well posed. Arguments
    as :func:`cpd_rigid`.
    """
    def m_step(p, xc, yc, n_p):
        ridge = prior * n_p * np.eye(3)
        a = xc.T @ p.T @ yc + ridge
        b = yc.T @ (p.sum(1)[:, None] * yc) + ridge
        return np.linalg.solve(b.T, a.T).T

    return _cpd(x, y, m_step, w=w, max_iter=max_iter, tol=tol)


def match_mapped_points(mapped_src: np.ndarray, dst: np.ndarray, gate_mm: float
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Gated Hungarian on the distance between mapped earlier centres and later centres.

    Pairs farther apart than ``gate_mm`` are never assigned (they are excluded before the
    assignment, so they cannot displace a feasible pair).

    Returns:
        ``(matches [M, 2], scores [M])`` with score ``exp(-d / gate_mm)``.
    """
    mapped_src = np.asarray(mapped_src, dtype=np.float64).reshape(-1, 3)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 3)
    dist = np.linalg.norm(mapped_src[:, None, :] - dst[None, :, :], axis=-1)
    cost = np.where(dist <= gate_mm, dist, np.inf)
    matches = hungarian(cost, max_cost=gate_mm)
    scores = np.exp(-dist[matches[:, 0], matches[:, 1]] / gate_mm)
    return matches, scores


@register
class PointSet(Method):
    """Point-set registration (CPD) of the earlier centres onto the later ones, gated Hungarian.

    Args:
        transform: ``"rigid"`` (default) or ``"affine"``.
        gate_mm: largest distance after registration at which two nodes may match.
        outlier_weight: CPD's uniform-component weight ``w`` (share of unmatched points).
    """

    name = "pointset"
    seeded = False  # deterministic, nothing trained

    def __init__(self, transform: str = "rigid", gate_mm: float = 15.0,
                 outlier_weight: float = 0.1):
        if transform not in ("rigid", "affine"):
            raise ValueError(f"transform must be 'rigid' or 'affine', got {transform!r}")
        if gate_mm <= 0:
            raise ValueError(f"gate_mm must be positive, got {gate_mm}")
        if not 0 <= outlier_weight < 1:
            raise ValueError(f"outlier_weight must be in [0, 1), got {outlier_weight}")
        self.transform = transform
        self.gate_mm = gate_mm
        self.outlier_weight = outlier_weight

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(transform={self.transform!r}, gate_mm={self.gate_mm}, "
                f"outlier_weight={self.outlier_weight})")

    def register_pair(self, pair: ScanPair) -> AffineMap:
        """The map taking earlier-scan centres into the later scan."""
        solver = cpd_rigid if self.transform == "rigid" else cpd_affine
        return solver(pair.dst.nodes.pos, pair.src.nodes.pos, w=self.outlier_weight)

    def predict(self, pair: ScanPair) -> PairPrediction:
        mapped = self.register_pair(pair)(pair.src.nodes.pos)
        matches, scores = match_mapped_points(mapped, pair.dst.nodes.pos, self.gate_mm)
        return PairPrediction(len(pair.src.nodes), len(pair.dst.nodes), matches, scores,
                              points=mapped)
