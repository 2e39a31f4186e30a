"""Consistent node tracks over every scan of a patient (multi-scan matching).

A patient has scans :math:`s = 0, …, S-1` in time order with :math:`n_s` nodes each,
:math:`N = \\sum_s n_s` in all. A pairwise method judges scan pairs :math:`a < b` and gives an
affinity matrix :math:`X_{ab} \\in [0, 1]^{n_a \\times n_b}` (1 at a predicted match, or the
match's score; :func:`pairwise_affinity`). A *track assignment* puts every node in exactly one
track, never two nodes of one scan in the same track; a track may skip scans (a node missing
from one scan and back in the next). It implies a matching for every scan pair — two nodes
match when they share a track — and those matchings are *cycle-consistent*: ``A↔B`` and
``B↔C`` imply ``A↔C``. Pairwise predictions need not be (``A1↔B1``, ``B1↔C1`` but ``A1↔C2``).

**sync** (:func:`synchronize`, permutation synchronisation with partial matches). Stack the
pairwise matrices into the symmetric :math:`N \\times N` block matrix :math:`W` with
:math:`W_{aa} = I`, :math:`W_{ab} = X_{ab}`, :math:`W_{ba} = X_{ab}^\\top` (zero blocks for
pairs without a prediction). If the pairwise matchings were consistent,
:math:`W = A A^\\top` with :math:`A \\in \\{0, 1\\}^{N \\times K}` the node-to-track indicator:
:math:`W` is positive semi-definite, of rank :math:`K`, its non-zero eigenvalues are the track
lengths (all :math:`\\ge 1`). Errors of the pairwise method add a perturbation of small rank, so

1. *spectral denoising*: :math:`\\hat W = U_r \\Lambda_r U_r^\\top` keeps the :math:`r`
   eigenpairs with :math:`\\lambda > 3/2`. A track of :math:`m \\ge 2` nodes has eigenvalue
   :math:`m \\ge 2`, a lone node 1, so :math:`r` estimates the number of tracks that link
   anything (lone nodes need no component). The projection spreads the evidence of every
   cycle over all its pairs (``A↔B``, ``B↔C`` raise :math:`\\hat W` of ``A, C``) and damps
   contradictions, which end up in the small or negative eigenvalues;
2. *rounding* by correlation clustering on :math:`\\hat W` under the constraint that a track
   holds at most one node per scan:

   .. math::
       \\max_T \\; J(T) = \\sum_{t \\in T} \\sum_{\\{i, j\\} \\subseteq t} (\\hat W_{ij} - \\tau),

   i.e. a node joins a track when its mean denoised affinity to the track's nodes exceeds
   :math:`\\tau` (``threshold``, default 0.3; chosen on a synthetic tuning cohort, see
   ``docs/tracking.md``). :math:`J` is maximised by block-coordinate
   ascent over scans: with the other scans fixed, putting scan :math:`s`'s nodes into tracks is
   an assignment problem with gains :math:`g_{it} = \\sum_{j \\in t} (\\hat W_{ij} - \\tau)`
   (a node whose best gain is not positive starts a track of its own), solved exactly by the
   Hungarian method. A first pass adds the scans in time order; sweeps over all scans follow
   until :math:`J` stops increasing (it never decreases). The per-scan assignment is what keeps
   two nodes of one scan out of a track.

**chain** (:func:`chain_tracks`): link consecutive scans only (the comparison). Each pair
``(s, s+1)`` is matched one-to-one (Hungarian on positive affinities) and the links are
followed; a node missing from one scan ends its track there, and it starts a new one when it
comes back.

The score of an implied match (:meth:`Tracks.pair_matches`) is :math:`\\hat W_{ij}` clipped
to ``[0, 1]`` for ``sync`` and the product of the link scores along the chain for ``chain``.
Knows no files and no model; pairwise predictions are read through their ``n_src, n_dst,
matches, scores`` (a :class:`~lngraph.io.matches.PairPrediction`, not imported here).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy.optimize import linear_sum_assignment

#: Tracking modes: permutation synchronisation over all pairs, or chaining consecutive pairs.
MODES = ("sync", "chain")
#: How a :class:`~lngraph.io.matches.PairPrediction` becomes an affinity matrix.
WEIGHTS = ("binary", "score")
#: Default :math:`\\tau`: a node joins a track when its mean affinity to it exceeds this.
DEFAULT_THRESHOLD = 0.3
#: Eigenvalues of :math:`W` above this count as linking tracks (a track of m nodes has m).
RANK_EIGENVALUE = 1.5


class PairwiseMatches(Protocol):
    """What tracking reads of a pairwise prediction
    (:class:`~lngraph.io.matches.PairPrediction` has it): node counts, ``[M, 2]`` one-to-one
    ``matches`` and ``[M]`` ``scores``."""

    n_src: int
    n_dst: int
    matches: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True, eq=False)
class Tracks:
    """A track assignment of the nodes of one patient's scans.

    Args:
        sizes: ``[S]`` nodes per scan, in time order.
        labels: ``[N]`` track index of every node, scan after scan (node ``k`` of scan ``s``
            is entry ``offsets[s] + k``); tracks are numbered ``0 … K-1`` in order of their
            first node (earliest scan, then node order).
        affinity: ``[N, N]`` confidence in ``[0, 1]`` that two nodes are one lesion, the score
            of implied matches (see the module docstring).
        objective: :math:`J` of the assignment (``sync``; NaN for ``chain``).
    """

    sizes: tuple[int, ...]
    labels: np.ndarray
    affinity: np.ndarray
    objective: float = float("nan")

    @property
    def offsets(self) -> np.ndarray:
        """``[S + 1]`` where each scan's nodes start in :attr:`labels`."""
        return np.concatenate([[0], np.cumsum(self.sizes, dtype=np.int64)])

    @property
    def n_tracks(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    def scan_labels(self, s: int) -> np.ndarray:
        """``[n_s]`` track index of each node of scan ``s``."""
        o = self.offsets
        return self.labels[o[s]:o[s + 1]]

    def table(self) -> np.ndarray:
        """``[K, S]`` node index of each track in each scan, ``-1`` where it skips the scan."""
        out = np.full((self.n_tracks, len(self.sizes)), -1, dtype=np.int64)
        for s in range(len(self.sizes)):
            out[self.scan_labels(s), s] = np.arange(self.sizes[s])
        return out

    def pair_matches(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """The matching of scans ``a`` and ``b`` the tracks imply (nodes sharing a track):
        ``[M, 2]`` node indices (sorted by the first) and ``[M]`` scores from
        :attr:`affinity`."""
        table = self.table()
        both = (table[:, a] >= 0) & (table[:, b] >= 0)
        matches = np.stack([table[both, a], table[both, b]], axis=1)
        o = self.offsets
        scores = self.affinity[o[a] + matches[:, 0], o[b] + matches[:, 1]]
        order = np.argsort(matches[:, 0], kind="stable")
        return matches[order], scores[order]


def pairwise_affinity(pred: PairwiseMatches, weights: str = "binary") -> np.ndarray:
    """``[n_src, n_dst]`` affinity of a pairwise prediction: 1 at each match (``binary``) or
    the match's score clipped to ``[0, 1]`` (``score``; a NaN score counts as 1); 0 elsewhere.
    """
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    out = np.zeros((pred.n_src, pred.n_dst))
    values = np.ones(len(pred.matches))
    if weights == "score":
        values = np.clip(np.nan_to_num(pred.scores, nan=1.0), 0.0, 1.0)
    out[pred.matches[:, 0], pred.matches[:, 1]] = values
    return out


def _check(sizes: Sequence[int], pairwise: Mapping[tuple[int, int], np.ndarray]
           ) -> tuple[tuple[int, ...], dict[tuple[int, int], np.ndarray]]:
    sizes = tuple(int(n) for n in sizes)
    if any(n < 0 for n in sizes):
        raise ValueError(f"node counts must be non-negative, got {list(sizes)}")
    checked = {}
    for key, matrix in pairwise.items():
        a, b = (int(v) for v in key)
        if not 0 <= a < b < len(sizes):
            raise ValueError(f"pair {key} is not (earlier, later) scans of 0..{len(sizes) - 1}")
        x = np.asarray(matrix, dtype=np.float64)
        if x.shape != (sizes[a], sizes[b]):
            raise ValueError(f"affinity of pair {key} has shape {x.shape}, expected "
                             f"{(sizes[a], sizes[b])}")
        if not np.isfinite(x).all() or (x < 0).any() or (x > 1).any():
            raise ValueError(f"affinity of pair {key} must hold finite values in [0, 1]")
        checked[(a, b)] = x
    return sizes, checked


def block_affinity(sizes: Sequence[int], pairwise: Mapping[tuple[int, int], np.ndarray]
                   ) -> np.ndarray:
    """The symmetric ``[N, N]`` block matrix :math:`W` (module docstring)."""
    sizes, pairwise = _check(sizes, pairwise)
    o = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
    w = np.eye(int(o[-1]))
    for (a, b), x in pairwise.items():
        w[o[a]:o[a + 1], o[b]:o[b + 1]] = x
        w[o[b]:o[b + 1], o[a]:o[a + 1]] = x.T
    return w


def spectral_denoise(w: np.ndarray, rank: int | None = None) -> tuple[np.ndarray, int]:
    """:math:`\\hat W = U_r \\Lambda_r U_r^\\top` from the ``rank`` largest eigenpairs of the
    symmetric ``w`` (``None``: those with :math:`\\lambda >` :data:`RANK_EIGENVALUE`); returns
    :math:`\\hat W` and ``r``."""
    if len(w) == 0:
        return w.copy(), 0
    values, vectors = np.linalg.eigh(w)
    r = int((values > RANK_EIGENVALUE).sum()) if rank is None else int(np.clip(rank, 0, len(w)))
    keep = slice(len(values) - r, len(values))
    u, lam = vectors[:, keep], values[keep]
    return (u * lam) @ u.T, r


def _compact(labels: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Renumber tracks ``0 … K-1`` by first node (scan-major order is node order)."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.reshape(-1)]


def _best_response(score: np.ndarray, labels: np.ndarray, rows: slice, threshold: float,
                   next_label: int) -> tuple[np.ndarray, int]:
    """Optimal tracks for the nodes ``rows`` of one scan, every other labelled node fixed.

    ``labels``: current labels (``-1`` = not yet placed; the scan's own are ignored). Gains
    :math:`g_{it} = \\sum_{j \\in t} (\\hat W_{ij} - \\tau)`; a max-weight one-to-one
    assignment on the positive gains; unassigned nodes get fresh labels from ``next_label``.
    """
    n = rows.stop - rows.start
    others = labels.copy()
    others[rows] = -1
    placed = np.flatnonzero(others >= 0)
    tracks, member = np.unique(others[placed], return_inverse=True)
    out = np.full(n, -1, dtype=np.int64)
    if len(tracks) and n:
        indicator = np.zeros((len(placed), len(tracks)))
        indicator[np.arange(len(placed)), member.reshape(-1)] = 1.0
        gain = (score[rows][:, placed] - threshold) @ indicator
        r, c = linear_sum_assignment(-np.maximum(gain, 0.0))
        keep = gain[r, c] > 0
        out[r[keep]] = tracks[c[keep]]
    fresh = out < 0
    out[fresh] = next_label + np.arange(int(fresh.sum()))
    return out, next_label + int(fresh.sum())


def _objective(score: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """:math:`J = \\sum_t \\sum_{\\{i,j\\} \\subseteq t} (\\hat W_{ij} - \\tau)`."""
    same = labels[:, None] == labels[None, :]
    np.fill_diagonal(same, False)
    return float(((score - threshold) * same).sum() / 2)


def synchronize(sizes: Sequence[int], pairwise: Mapping[tuple[int, int], np.ndarray], *,
                threshold: float = DEFAULT_THRESHOLD, rank: int | None = None,
                max_sweeps: int = 50) -> Tracks:
    """Cycle-consistent tracks from pairwise affinities by spectral synchronisation and
    constrained rounding (module docstring, **sync**).

    Args:
        sizes: ``[S]`` nodes per scan, time order.
        pairwise: ``{(a, b): [n_a, n_b] affinity in [0, 1]}`` for pairs ``a < b`` (any subset
            of the pairs; more pairs, more evidence).
        threshold: :math:`\\tau`.
        rank: eigenpairs kept (``None``: those with :math:`\\lambda >`
            :data:`RANK_EIGENVALUE`; ``N``: no denoising, plain correlation clustering on
            :math:`W`).
        max_sweeps: most refinement sweeps over all scans.

    Raises:
        ValueError: a pair out of range or in the wrong order, a matrix of the wrong shape or
            with values outside ``[0, 1]``.
    """
    sizes, pairwise = _check(sizes, pairwise)
    w = block_affinity(sizes, pairwise)
    score, _ = spectral_denoise(w, rank)
    offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
    blocks = [slice(int(offsets[s]), int(offsets[s + 1])) for s in range(len(sizes))]
    labels = np.full(int(offsets[-1]), -1, dtype=np.int64)
    next_label = 0
    for rows in blocks:                                   # first pass, scans in time order
        labels[rows], next_label = _best_response(score, labels, rows, threshold, next_label)
    best = _objective(score, labels, threshold)
    for _ in range(max_sweeps):                           # block-coordinate ascent
        for rows in blocks:
            labels[rows], next_label = _best_response(score, labels, rows, threshold,
                                                      next_label)
        value = _objective(score, labels, threshold)
        if value <= best + 1e-9:
            break
        best = value
    return Tracks(sizes, _compact(labels, offsets), np.clip(score, 0.0, 1.0), best)


def chain_tracks(sizes: Sequence[int], pairwise: Mapping[tuple[int, int], np.ndarray]
                 ) -> Tracks:
    """Tracks by chaining consecutive scans (module docstring, **chain**): pairs
    ``(s, s + 1)`` of ``pairwise`` are used, others ignored; a missing consecutive pair links
    nothing.

    Raises:
        ValueError: as :func:`synchronize`.
    """
    sizes, pairwise = _check(sizes, pairwise)
    offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
    n = int(offsets[-1])
    labels = np.arange(n, dtype=np.int64)
    link_score = np.full(n, np.nan)            # score of the link to the previous scan
    for s in range(len(sizes) - 1):
        x = pairwise.get((s, s + 1))
        if x is None or x.size == 0:
            continue
        r, c = linear_sum_assignment(-x)
        keep = x[r, c] > 0
        src, dst = offsets[s] + r[keep], offsets[s + 1] + c[keep]
        labels[dst] = labels[src]              # earlier scans are labelled already
        link_score[dst] = x[r[keep], c[keep]]
    labels = _compact(labels, offsets)
    affinity = np.eye(n)
    for t in range(int(labels.max()) + 1 if n else 0):
        members = np.flatnonzero(labels == t)  # one per scan, consecutive scans, time order
        cumulative = np.cumprod(np.concatenate([[1.0], link_score[members[1:]]]))
        affinity[np.ix_(members, members)] = np.minimum.outer(cumulative, cumulative) / \
            np.maximum.outer(cumulative, cumulative)
    return Tracks(sizes, labels, affinity)


def link_predictions(sizes: Sequence[int],
                     predictions: Mapping[tuple[int, int], PairwiseMatches],
                     *, mode: str = "sync", weights: str = "binary",
                     threshold: float = DEFAULT_THRESHOLD, rank: int | None = None) -> Tracks:
    """Tracks of one patient from pairwise predictions
    (:class:`~lngraph.io.matches.PairPrediction`).

    Args:
        sizes: ``[S]`` nodes per scan, time order.
        predictions: ``{(a, b): prediction}`` by scan index, ``a < b``; ``sync`` uses every
            pair given (all pairs are best), ``chain`` the consecutive ones.
        mode: ``"sync"`` or ``"chain"``.
        weights: ``"binary"`` (a match counts 1) or ``"score"`` (its score); see
            :func:`pairwise_affinity`.
        threshold, rank: of :func:`synchronize`.

    Raises:
        ValueError: an unknown mode or weighting, or a prediction sized for other scans.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    pairwise = {key: pairwise_affinity(pred, weights) for key, pred in predictions.items()}
    if mode == "chain":
        return chain_tracks(sizes, pairwise)
    return synchronize(sizes, pairwise, threshold=threshold, rank=rank)
