r"""Rigid alignment of two node sets: :func:`robust_translation`, :func:`robust_rigid` (with
its rotation search, :func:`search_rigid`) and per-node :func:`local_shifts`. Pure numpy/SciPy.

:func:`robust_translation` assumes the later scan's node centres are the earlier ones shifted
by one translation :math:`t` (plus residual motion and nodes that appear or disappear).
:math:`t` is found robustly —

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
are invariant to translations of either scan (not to rotations). The vote makes at most
:math:`K \cdot n_1` nearest-neighbour queries (a k-d tree on the later nodes), where :math:`K`
is the number of candidate shifts: all :math:`n_1 n_2` of them up to :data:`MAX_CANDIDATES`,
beyond that a fixed-seed random sample of that many (each node kept by the true shift
contributes a candidate near it, so a sample keeps many), which bounds the vote at
:math:`O(n_1)` queries per candidate for large scans; candidates that can no longer win are
dropped part-way (:func:`_votes`), which leaves the result unchanged.
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


def _votes(src: np.ndarray, dst: np.ndarray, candidates: np.ndarray, sigma: float,
           block: int = 16, leaders: int = 8) -> np.ndarray:
    r"""The vote :math:`\sum_i \exp(-e_i^2 / 2\sigma^2)` of each candidate shift, or
    :math:`-\infty` for a candidate that cannot win.

    The nodes vote in blocks of ``block``. After the first block the ``leaders`` candidates
    with the best partial votes are voted in full; the best of those, and later the best
    partial vote, is a lower bound of the winning vote. After each block a candidate whose
    partial vote plus one per node still to come (each term is at most 1) stays below that
    bound is dropped. Wrong shifts fall behind within a few blocks, so large scans make a
    fraction of the :math:`K \cdot n_1` nearest-neighbour queries; the surviving votes are the
    full sums, the same as without dropping.
    """
    tree = cKDTree(dst)

    def vote(shifts: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        distance = tree.query((nodes[None] + shifts[:, None]).reshape(-1, 3))[0]
        return np.exp(-distance.reshape(len(shifts), len(nodes)) ** 2
                      / (2 * sigma ** 2)).sum(axis=1)

    votes = np.zeros(len(candidates))
    alive = np.arange(len(candidates))
    bound = -np.inf
    for start in range(0, len(src), block):
        votes[alive] += vote(candidates[alive], src[start:start + block])
        still = len(src) - min(start + block, len(src))
        if start == 0 and still:
            top = alive[np.argsort(-votes[alive], kind="stable")[:leaders]]
            bound = vote(candidates[top], src).max()
        bound = max(bound, votes[alive].max())
        alive = alive[votes[alive] + still >= bound - 1e-9]
    out = np.full(len(candidates), -np.inf)
    out[alive] = votes[alive]
    return out


def robust_translation(src: np.ndarray, dst: np.ndarray, gate_mm: float = DEFAULT_GATE_MM,
                       iterations: int = 10, max_candidates: int = MAX_CANDIDATES
                       ) -> np.ndarray:
    """The translation ``t`` (``(3,)``, mm) that best carries ``src`` onto ``dst``.

    Args:
        src, dst: ``[N, 3]`` and ``[M, 3]`` points; either may be empty (then ``t = 0``).
        gate_mm: inlier scale of the vote and gate of the refinement.
        iterations: refinement rounds (0: the vote's winner).
        max_candidates: most candidate shifts voted on (a fixed-seed sample beyond).
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 3)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 3)
    if len(src) == 0 or len(dst) == 0:
        return np.zeros(3)
    centroid = dst.mean(axis=0) - src.mean(axis=0)
    shifts = (dst[None, :, :] - src[:, None, :]).reshape(-1, 3)
    if len(shifts) > max_candidates:
        keep = np.random.default_rng(0).choice(len(shifts), max_candidates, replace=False)
        shifts = shifts[np.sort(keep)]
    candidates = np.concatenate([centroid[None], shifts])
    votes = _votes(src, dst, candidates, gate_mm / 2.0)
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


def _fibonacci_axes(n: int) -> np.ndarray:
    """``[n, 3]`` unit axes spread evenly over a hemisphere (a Fibonacci lattice)."""
    i = np.arange(n) + 0.5
    polar = np.arccos(1.0 - i / n)
    azimuth = np.pi * (1.0 + 5.0 ** 0.5) * i
    return np.stack([np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar),
                     np.cos(polar)], axis=1)


def axis_angle(axis: np.ndarray, angle_deg: float) -> np.ndarray:
    """The ``3×3`` rotation by ``angle_deg`` about the unit ``axis`` (Rodrigues; the layering
    keeps ``lngraph.matching`` free of ``lngraph.synth.motion.axis_angle_matrix``)."""
    k = np.asarray(axis, dtype=np.float64)
    cross = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    a = np.radians(angle_deg)
    return np.eye(3) + np.sin(a) * cross + (1.0 - np.cos(a)) * cross @ cross


#: Axes and angles (degrees) of the starting rotations of :func:`robust_rigid`'s search.
SEARCH_AXES, SEARCH_ANGLES_DEG = 13, (8.0, 16.0)
#: The search's starts that are refined (the best by their first vote), and the most candidate
#: shifts each start's translation votes on.
SEARCH_REFINED, SEARCH_CANDIDATES = 4, 512
#: The search's starting rotations: each axis, each angle, both senses.
SEARCH_ROTATIONS = np.stack([axis_angle(axis, sign * angle)
                             for axis in _fibonacci_axes(SEARCH_AXES)
                             for angle in SEARCH_ANGLES_DEG for sign in (1.0, -1.0)])


def rigid_vote(src: np.ndarray, dst: np.ndarray, rotation: np.ndarray, t: np.ndarray,
               gate_mm: float = DEFAULT_GATE_MM) -> float:
    r"""The vote of the rigid motion :math:`x \mapsto Rx + t`:
    :math:`\sum_i \exp(-e_i^2 / 2\sigma^2)`, :math:`e_i` the distance from the moved ``src_i``
    to its nearest ``dst`` node, :math:`\sigma` = gate / 2 (the translation vote's measure)."""
    if len(src) == 0 or len(dst) == 0:
        return 0.0
    nearest = cKDTree(dst).query(src @ rotation.T + t)[0]
    return float(np.exp(-nearest ** 2 / (2 * (gate_mm / 2.0) ** 2)).sum())


def _refine_rigid(src, dst, rotation, t, gate_mm, max_angle_deg, min_pairs, wide_rounds,
                  iterations) -> tuple[np.ndarray, np.ndarray, bool]:
    """:func:`robust_rigid`'s rounds from the motion ``(rotation, t)``; also whether any round's
    fit was accepted."""
    accepted = False
    for round_ in range(iterations):
        gate = gate_mm * (2.0 if round_ < wide_rounds else 1.0)
        pairs = hungarian(pairwise_distances(src @ rotation.T + t, dst), max_cost=gate)
        if len(pairs) < min_pairs:
            break
        a, b = src[pairs[:, 0]], dst[pairs[:, 1]]
        ca, cb = a.mean(axis=0), b.mean(axis=0)
        u, _, vt = np.linalg.svd((a - ca).T @ (b - cb))
        flip = np.diag([1.0, 1.0, np.sign(np.linalg.det(vt.T @ u.T))])
        new_rotation = vt.T @ flip @ u.T
        cosine = np.clip((np.trace(new_rotation) - 1) / 2, -1.0, 1.0)
        if np.degrees(np.arccos(cosine)) > max_angle_deg:
            break
        new_t = cb - new_rotation @ ca
        done = np.allclose(new_rotation, rotation, atol=1e-9) and np.allclose(new_t, t,
                                                                               atol=1e-6)
        rotation, t, accepted = new_rotation, new_t, True
        if done and round_ >= wide_rounds:
            break
    return rotation, t, accepted


def robust_rigid(src: np.ndarray, dst: np.ndarray, gate_mm: float = DEFAULT_GATE_MM,
                 max_angle_deg: float = 20.0, min_pairs: int = 3, wide_rounds: int = 3,
                 iterations: int = 10, search: bool = False) -> tuple[np.ndarray, np.ndarray]:
    r"""The rigid motion :math:`x \mapsto Rx + t` (``R [3, 3]``, ``t (3,)``) that best carries
    ``src`` onto ``dst``: the :func:`robust_translation` first, then rounds of Hungarian
    matching of the moved nodes and the least-squares rotation and translation of the matched
    pairs (Kabsch), until the motion stops changing. The first ``wide_rounds`` rounds gate the
    matches at twice ``gate_mm`` (a turn of 10° moves a node 100 mm from the centre by 17 mm,
    beyond the translation's gate), the later ones at ``gate_mm``.

    A rotation needs spread-out pairs: with fewer than ``min_pairs`` matched pairs, or when the
    fitted rotation turns by more than ``max_angle_deg`` (patient repositioning between scans
    is a few degrees; a large angle is a fit to wrong pairs), the last accepted motion stays —
    at worst ``R = I`` and the translation. Translating either point set changes ``t`` so that
    the moved ``src`` follows (``R`` is unchanged); rotating ``src`` is absorbed by ``R``.

    With ``search``, a refinement that accepts no round at all (the translation was found for
    the wrong nodes, as happens when a turn of 10–15° moves most nodes beyond the gate) is
    tried again from other starts: each of :data:`SEARCH_ROTATIONS` about the ``src``
    centroid, with the voted translation of the turned nodes (at most
    :data:`SEARCH_CANDIDATES` candidate shifts, no refinement), scored by its
    :func:`rigid_vote`; the :data:`SEARCH_REFINED` best starts go through the rounds, and the
    motion with the highest vote wins (the first on ties, the plain result before any start).
    Pairs whose refinement accepts a round are not searched, so their motion is the same with
    or without ``search``.
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 3)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 3)
    rotation, t = np.eye(3), robust_translation(src, dst, gate_mm, iterations)
    if min(len(src), len(dst)) < min_pairs:
        return rotation, t
    settings = (gate_mm, max_angle_deg, min_pairs, wide_rounds, iterations)
    rotation, t, accepted = _refine_rigid(src, dst, rotation, t, *settings)
    if accepted or not search:
        return rotation, t
    return search_rigid(src, dst, gate_mm, max_angle_deg, min_pairs, wide_rounds, iterations,
                        start=(rotation, t))


def search_rigid(src: np.ndarray, dst: np.ndarray, gate_mm: float = DEFAULT_GATE_MM,
                 max_angle_deg: float = 20.0, min_pairs: int = 3, wide_rounds: int = 3,
                 iterations: int = 10, start: tuple[np.ndarray, np.ndarray] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`robust_rigid`'s rotation search: the best-voting motion among ``start`` (when
    given) and the refined search starts (:func:`robust_rigid`, *search*). The settings are
    :func:`robust_rigid`'s; ``src`` and ``dst`` need at least ``min_pairs`` nodes each to give
    more than ``start``."""
    src = np.asarray(src, dtype=np.float64).reshape(-1, 3)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 3)
    settings = (gate_mm, max_angle_deg, min_pairs, wide_rounds, iterations)
    best, best_vote = (np.eye(3), np.zeros(3)), -np.inf
    if start is not None:
        best, best_vote = start, rigid_vote(src, dst, *start, gate_mm)
    if min(len(src), len(dst)) < min_pairs:
        return best
    center = src.mean(axis=0)
    starts = []
    for rotation in SEARCH_ROTATIONS:
        turned = (src - center) @ rotation.T + center
        shift = robust_translation(turned, dst, gate_mm, iterations=0,
                                   max_candidates=SEARCH_CANDIDATES) + center - rotation @ center
        starts.append((rotation, shift, rigid_vote(src, dst, rotation, shift, gate_mm)))
    order = np.argsort([-vote for *_, vote in starts], kind="stable")[:SEARCH_REFINED]
    for k in order:
        found_rotation, found_t, _ = _refine_rigid(src, dst, *starts[k][:2], *settings)
        vote = rigid_vote(src, dst, found_rotation, found_t, gate_mm)
        if vote > best_vote + 1e-9:
            best, best_vote = (found_rotation, found_t), vote
    return best


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
                     local_scale_mm: float = 0.0, iterations: int = 10,
                     rigid: bool = False, search: bool = False) -> np.ndarray:
    """``[N, 3]`` shift (mm) that carries each ``src`` node towards the later scan: the
    :func:`robust_translation` for every node, or the per-node :func:`local_shifts` of scale
    ``local_scale_mm`` when that is positive. With ``rigid``, ``src`` is first moved by the
    :func:`robust_rigid` motion (rotation included; ``search``: its rotation search) and the
    shift is the sum of both moves."""
    src = np.asarray(src, dtype=np.float64).reshape(-1, 3)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 3)
    if rigid:
        rotation, t = robust_rigid(src, dst, gate_mm, iterations=iterations, search=search)
        moved = src @ rotation.T + t
        return moved - src + alignment_shifts(moved, dst, gate_mm, local_scale_mm, iterations)
    if local_scale_mm > 0:
        return local_shifts(src, dst, gate_mm, local_scale_mm, iterations=iterations)
    t = robust_translation(src, dst, gate_mm, iterations)
    return np.repeat(t[None], len(src), axis=0)

