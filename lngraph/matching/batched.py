r"""The one rule that turns matching scores into matches, for a padded batch of scan pairs.

Every learned method in lngraph decides the same way (the model's inference, the training
module's validation, the threshold calibration and the learned baselines all call
:func:`batched_assignment`); conversion to per-pair predictions happens once, at the edge.

For pair :math:`b` with :math:`n_1` earlier and :math:`n_2` later nodes (the valid block of a
padded ``[B, N1, N2]`` tensor), scores :math:`P \in [0, 1]^{n_1 \times n_2}`, optional pair
decision scores :math:`s` (e.g. SCB, NaN where not computed) and optional matchabilities
:math:`\mu^0 \in [0, 1]^{n_1}`, :math:`\mu^1 \in [0, 1]^{n_2}` (the probability that a node has
a partner at all):

1. **Assign.** Maximum-score one-to-one assignment (rectangular Hungarian) on :math:`P`, or
   on :math:`(P + s) / 2` with ``reassign``. Non-finite entries are never assigned.
2. **Decide.** The decision score of an assigned pair is :math:`d_{ij} = s_{ij}` when
   :math:`s` is given, else :math:`P_{ij}`, times :math:`\mu^0_i \mu^1_j` when
   matchabilities are given. A pair with :math:`d_{ij} <` ``threshold`` is dropped: its
   earlier node becomes *disappeared* and its later node *new*.

The assignment does not depend on the threshold, so ``threshold=None`` (keep every assigned
pair with its decision score) followed by :func:`apply_threshold` gives the result at any
threshold — how calibration scans a grid of thresholds with one assignment.

The output follows LightGlue's ``filter_matches`` and pygmtools' padded batches:
``matches0 [B, N1]`` holds the partner index of each earlier node or -1, ``matches1 [B, N2]``
the same for later nodes, ``scores0 [B, N1]`` the decision score of each kept pair (0 where
unmatched). Pure torch in and out; the Hungarian step runs on the CPU (SciPy), pair by pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor


@dataclass
class BatchedMatches:
    """Matches of a padded batch of ``B`` pairs (module docstring).

    Args:
        matches0: ``[B, N1]`` int64, the later-scan partner of each earlier node, -1 where
            unmatched or padded.
        matches1: ``[B, N2]`` int64, the earlier-scan partner of each later node, -1 likewise.
        scores0: ``[B, N1]`` float64 decision score of each kept pair, 0 where unmatched.
        src_mask, dst_mask: ``[B, N1]`` and ``[B, N2]`` bool, which rows and columns exist.
    """

    matches0: Tensor
    matches1: Tensor
    scores0: Tensor
    src_mask: Tensor
    dst_mask: Tensor

    def pairs(self) -> list[tuple[np.ndarray, np.ndarray, int, int]]:
        """Per pair: ``(matches [M, 2] int64 sorted by src, scores [M], n_src, n_dst)``."""
        m0 = self.matches0.cpu().numpy()
        s0 = self.scores0.double().cpu().numpy()
        n_src = self.src_mask.sum(1).tolist()
        n_dst = self.dst_mask.sum(1).tolist()
        out = []
        for b in range(m0.shape[0]):
            rows = np.flatnonzero(m0[b, :n_src[b]] >= 0)
            out.append((np.stack([rows, m0[b, rows]], axis=1).astype(np.int64).reshape(-1, 2),
                        s0[b, rows], int(n_src[b]), int(n_dst[b])))
        return out


def _masks(scores: Tensor, src_mask: Tensor | None, dst_mask: Tensor | None
           ) -> tuple[Tensor, Tensor]:
    b, n1, n2 = scores.shape
    if src_mask is None:
        src_mask = torch.ones(b, n1, dtype=torch.bool, device=scores.device)
    if dst_mask is None:
        dst_mask = torch.ones(b, n2, dtype=torch.bool, device=scores.device)
    if src_mask.shape != (b, n1) or dst_mask.shape != (b, n2):
        raise ValueError(f"masks of shape {tuple(src_mask.shape)} and {tuple(dst_mask.shape)} "
                         f"do not fit scores of shape {tuple(scores.shape)}")
    for name, mask in (("src_mask", src_mask), ("dst_mask", dst_mask)):
        # A valid row after a padded one would be ambiguous: masks are padded on the right.
        if (mask[:, 1:] & ~mask[:, :-1]).any():
            raise ValueError(f"{name} must be True on a prefix of each row (right padding)")
    return src_mask.bool(), dst_mask.bool()


def _hungarian_max(score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the maximum-score assignment; non-finite entries never assigned."""
    if score.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    finite = np.isfinite(score)
    if not finite.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    big = (np.abs(score[finite]).max() + 1.0) * (sum(score.shape) + 1)
    rows, cols = linear_sum_assignment(np.where(finite, -score, big))
    keep = finite[rows, cols]
    return rows[keep], cols[keep]


def batched_assignment(scores: Tensor, *, src_mask: Tensor | None = None,
                       dst_mask: Tensor | None = None, threshold: float | None = 0.5,
                       decision: Tensor | None = None, matchability0: Tensor | None = None,
                       matchability1: Tensor | None = None,
                       reassign: bool = False) -> BatchedMatches:
    """Assign, then decide (module docstring), for every pair of a padded batch.

    Args:
        scores: ``[B, N1, N2]`` (or ``[N1, N2]`` for one pair) matching scores, padded.
        src_mask, dst_mask: ``[B, N1]`` / ``[B, N2]`` valid rows and columns, True on a
            prefix of each row (default: all valid).
        threshold: drop assigned pairs whose decision score is below it; ``None`` keeps every
            assigned pair.
        decision: ``[B, N1, N2]`` pair decision scores (e.g. SCB); NaN where not computed, but
            every assigned pair needs one.
        matchability0, matchability1: ``[B, N1]`` / ``[B, N2]`` probabilities that a node has
            a partner; they multiply the decision score.
        reassign: assign on ``(scores + decision) / 2`` (needs ``decision`` on every valid
            pair).

    Raises:
        ValueError: on shapes that do not fit, masks that are not right-padded, ``reassign``
            without complete decision scores, or an assigned pair without a decision score.
    """
    if scores.dim() == 2:
        one = batched_assignment(
            scores[None], src_mask=None if src_mask is None else src_mask.reshape(1, -1),
            dst_mask=None if dst_mask is None else dst_mask.reshape(1, -1), threshold=threshold,
            decision=None if decision is None else decision[None],
            matchability0=None if matchability0 is None else matchability0.reshape(1, -1),
            matchability1=None if matchability1 is None else matchability1.reshape(1, -1),
            reassign=reassign)
        return one
    if scores.dim() != 3:
        raise ValueError(f"scores must be [B, N1, N2], got shape {tuple(scores.shape)}")
    src_mask, dst_mask = _masks(scores, src_mask, dst_mask)
    b, n1, n2 = scores.shape
    if decision is not None and decision.shape != scores.shape:
        raise ValueError(f"decision shape {tuple(decision.shape)} differs from scores shape "
                         f"{tuple(scores.shape)}")
    for name, value, shape in (("matchability0", matchability0, (b, n1)),
                               ("matchability1", matchability1, (b, n2))):
        if value is not None and value.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {tuple(value.shape)}")

    s = scores.detach().double().cpu().numpy()
    d = None if decision is None else decision.detach().double().cpu().numpy()
    mu0 = None if matchability0 is None else matchability0.detach().double().cpu().numpy()
    mu1 = None if matchability1 is None else matchability1.detach().double().cpu().numpy()
    n_src, n_dst = src_mask.sum(1).tolist(), dst_mask.sum(1).tolist()
    matches0 = np.full((b, n1), -1, dtype=np.int64)
    matches1 = np.full((b, n2), -1, dtype=np.int64)
    scores0 = np.zeros((b, n1))
    for g in range(b):
        p, q = n_src[g], n_dst[g]
        block = s[g, :p, :q]
        if reassign:
            if d is None or np.isnan(d[g, :p, :q]).any():
                raise ValueError("reassign needs decision scores for every pair")
            block = (block + d[g, :p, :q]) / 2
        rows, cols = _hungarian_max(block)
        kept = (s if d is None else d)[g, rows, cols]
        if np.isnan(kept).any():
            raise ValueError("an assigned pair has no decision score; score the assigned "
                             "pairs first")
        if mu0 is not None:
            kept = kept * mu0[g, rows]
        if mu1 is not None:
            kept = kept * mu1[g, cols]
        keep = np.ones(len(rows), bool) if threshold is None else kept >= threshold
        rows, cols, kept = rows[keep], cols[keep], kept[keep]
        matches0[g, rows], matches1[g, cols], scores0[g, rows] = cols, rows, kept
    device = scores.device
    return BatchedMatches(torch.from_numpy(matches0).to(device),
                          torch.from_numpy(matches1).to(device),
                          torch.from_numpy(scores0).to(device),
                          src_mask, dst_mask)


def apply_threshold(matches: BatchedMatches, threshold: float) -> BatchedMatches:
    """``matches`` (made with ``threshold=None``) keeping the pairs whose decision score is at
    least ``threshold``."""
    keep = (matches.matches0 >= 0) & (matches.scores0 >= threshold)
    matches0 = torch.where(keep, matches.matches0, torch.full_like(matches.matches0, -1))
    matches1 = torch.full_like(matches.matches1, -1)
    b, rows = keep.nonzero(as_tuple=True)
    matches1[b, matches0[b, rows]] = rows
    return BatchedMatches(matches0, matches1, torch.where(keep, matches.scores0, 0.0),
                          matches.src_mask, matches.dst_mask)
