r"""Rigid translation between two node sets: :func:`robust_translation`. Pure numpy.

The later scan's node centres are assumed to be the earlier ones shifted by one translation
:math:`t` (plus residual motion and nodes that appear or disappear). :math:`t` is found
robustly —

1. *vote*: every candidate shift (the centroid difference and each displacement
   ``dst_j - src_i``) scores :math:`\sum_i \exp(-e_i^2 / 2\sigma^2)`, with :math:`e_i` the
   distance from the shifted ``src_i`` to its nearest later node and :math:`\sigma` = gate / 2;
   the best candidate wins (ties go to the one nearest the centroid difference, then to the
   lexicographically smallest offset from it, so the result depends on no node order);
2. *refine*: Hungarian on the shifted distances, gated; :math:`t` becomes the median
   displacement of the matched pairs; repeated until :math:`t` stops moving.

Used by the ``nearest`` baseline, the lesion trackers' initial alignment and the matcher's
position prior (:class:`~lngraph.models.AsymmetricMatcher`). Translating either point set
translates :math:`t` by the same amount, so aligned distances :math:`\lVert c_i + t - c_j\rVert`
are invariant to translations of either scan (not to rotations). The vote makes
:math:`K \cdot n_1` nearest-neighbour queries (a k-d tree on the later nodes), where :math:`K`
is the number of candidate shifts: all :math:`n_1 n_2` of them up to :data:`MAX_CANDIDATES`,
beyond that a fixed-seed random sample of that many (each node kept by the true shift
contributes a candidate near it, so a sample keeps many), which bounds the vote at
:math:`O(n_1)` queries per candidate for large scans.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from lngraph.matching.assignment import hungarian

#: Default inlier scale and gate (mm): about the median real residual motion plus a node radius
#: (docs/design.md, *Reference data*).
DEFAULT_GATE_MM = 15.0

#: Most candidate shifts the vote scores; larger scans vote on a fixed-seed sample.
MAX_CANDIDATES = 4096


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[N, M]`` Euclidean distances between the rows of ``a [N, 3]`` and ``b [M, 3]``."""
    return np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)


def robust_translation(src: np.ndarray, dst: np.ndarray, gate_mm: float = DEFAULT_GATE_MM,
                       iterations: int = 10) -> np.ndarray:
    """The translation ``t`` (``(3,)``, mm) that best carries ``src`` onto ``dst``.

    Args:
        src, dst: ``[N, 3]`` and ``[M, 3]`` points; either may be empty (then ``t = 0``).
        gate_mm: inlier scale of the vote and gate of the refinement.
        iterations: refinement rounds.
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 3)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 3)
    if len(src) == 0 or len(dst) == 0:
        return np.zeros(3)
    centroid = dst.mean(axis=0) - src.mean(axis=0)
    shifts = (dst[None, :, :] - src[:, None, :]).reshape(-1, 3)
    if len(shifts) > MAX_CANDIDATES:
        keep = np.random.default_rng(0).choice(len(shifts), MAX_CANDIDATES, replace=False)
        shifts = shifts[np.sort(keep)]
    candidates = np.concatenate([centroid[None], shifts])
    sigma = gate_mm / 2.0
    tree = cKDTree(dst)
    votes = np.concatenate([
        np.exp(-tree.query((src[None] + chunk[:, None]).reshape(-1, 3))[0]
               .reshape(len(chunk), len(src)) ** 2 / (2 * sigma ** 2)).sum(axis=1)
        for chunk in np.array_split(candidates, max(1, len(candidates) // 256))])
    best = np.flatnonzero(votes >= votes.max() - 1e-9)
    offsets = candidates[best] - centroid
    distance = np.linalg.norm(offsets, axis=1)
    near = distance <= distance.min() + 1e-9
    # Symmetric layouts tie exactly (vote and distance): take the lexicographically smallest
    # offset from the centroid shift, a rule that depends on neither node order nor position.
    key = np.round(offsets[near], 6)
    t = candidates[best[near][np.lexsort(key.T[::-1])[0]]]
    for _ in range(iterations):
        pairs = hungarian(pairwise_distances(src + t, dst), max_cost=gate_mm)
        if len(pairs) == 0:
            break
        new = np.median(dst[pairs[:, 1]] - src[pairs[:, 0]], axis=0)
        if np.allclose(new, t, atol=1e-6):
            break
        t = new
    return t


def local_shifts(src: np.ndarray, dst: np.ndarray, gate_mm: float = DEFAULT_GATE_MM,
                 scale_mm: float = 30.0, rounds: int = 3, prior_weight: float = 0.5,
                 iterations: int = 10) -> np.ndarray:
    r"""Per-node shifts ``u [N, 3]`` (mm): the robust translation, refined locally.

    Starting from :math:`u_i = t` (:func:`robust_translation`), each round matches the shifted
    nodes (Hungarian on :math:`\lVert c_i + u_i - c'_j\rVert`, gated at ``gate_mm``) and sets

    .. math::
        u_i = \frac{w_0\, t + \sum_{k \in M,\, k \ne i} w_{ik}\, (c'_{m(k)} - c_k)}
                   {w_0 + \sum_{k \in M,\, k \ne i} w_{ik}}, \qquad
        w_{ik} = \exp\!\left(-\frac{\lVert c_i - c_k\rVert^2}{2 s^2}\right),

    a Gaussian-weighted mean of the *other* matched nodes' displacements (``s = scale_mm``,
    :math:`w_0` = ``prior_weight`` pulls isolated nodes back to :math:`t`). A node's own
    tentative match never votes for its shift, so a wrong match does not confirm itself.
    Follow-up anatomy moves smoothly over a few centimetres, so the neighbours' motion
    predicts a node's motion better than one translation for the whole abdomen. Like
    :math:`t`, the result is equivariant to translations of either scan.

    Args:
        src, dst: ``[N, 3]`` and ``[M, 3]`` points; either may be empty (then ``u = 0``).
        gate_mm: inlier scale of the translation and gate of the tentative matches.
        scale_mm: neighbourhood scale ``s``.
        rounds: refinement rounds (0 gives ``u_i = t``).
        prior_weight: weight :math:`w_0` of the global translation.
        iterations: refinement rounds of :func:`robust_translation`.
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 3)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 3)
    t = robust_translation(src, dst, gate_mm, iterations)
    shifts = np.repeat(t[None], len(src), axis=0)
    if len(dst) == 0:
        return shifts
    near = np.exp(-pairwise_distances(src, src) ** 2 / (2 * scale_mm ** 2))
    np.fill_diagonal(near, 0.0)
    for _ in range(rounds):
        pairs = hungarian(pairwise_distances(src + shifts, dst), max_cost=gate_mm)
        if len(pairs) == 0:
            break
        w = near[:, pairs[:, 0]]
        moved = dst[pairs[:, 1]] - src[pairs[:, 0]]
        shifts = (prior_weight * t + w @ moved) / (prior_weight + w.sum(axis=1, keepdims=True))
    return shifts


def alignment_shifts(src: np.ndarray, dst: np.ndarray, gate_mm: float = DEFAULT_GATE_MM,
                     local_scale_mm: float = 0.0, iterations: int = 10) -> np.ndarray:
    """``[N, 3]`` shift (mm) that carries each ``src`` node towards the later scan: the
    :func:`robust_translation` for every node, or the per-node :func:`local_shifts` of scale
    ``local_scale_mm`` when that is positive."""
    src = np.asarray(src, dtype=np.float64).reshape(-1, 3)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 3)
    if local_scale_mm > 0:
        return local_shifts(src, dst, gate_mm, local_scale_mm, iterations=iterations)
    t = robust_translation(src, dst, gate_mm, iterations)
    return np.repeat(t[None], len(src), axis=0)

