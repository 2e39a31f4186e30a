"""Statistics that compare a cohort with the real data (docs/design.md, *Reference data*).

Layout statistics of single scans (nodes per scan, nearest-neighbour distances, axis lengths)
and the follow-up statistic that sets the difficulty of geometric matching: the residual
displacement after robust translation — each matched node's later centre predicted by its
earlier centre plus the median displacement of the *other* matched nodes of the pair.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from lngraph.io.cohort import NodeTable, ScanPair


def nearest_neighbour_distances(tables: Iterable[NodeTable]) -> np.ndarray:
    """Distance (mm) from every node to the nearest other node of its scan (scans with ≥ 2)."""
    out = []
    for t in tables:
        if len(t) >= 2:
            d = np.linalg.norm(t.pos[:, None] - t.pos[None], axis=-1)
            np.fill_diagonal(d, np.inf)
            out.append(d.min(axis=1))
    return np.concatenate(out) if out else np.zeros(0)


def residual_displacements(src: Sequence[np.ndarray], dst: Sequence[np.ndarray]) -> np.ndarray:
    """Residual (mm) after robust translation, per matched pair, over scan pairs with ≥ 2
    matches. ``src[p]``, ``dst[p]``: ``[M_p, 3]`` centres of the matched nodes of scan pair
    ``p`` in the earlier and the later scan, row k matched to row k."""
    out = []
    for a, b in zip(src, dst, strict=True):
        a, b = np.asarray(a, np.float64).reshape(-1, 3), np.asarray(b, np.float64).reshape(-1, 3)
        if len(a) < 2:
            continue
        disp = b - a
        for k in range(len(a)):
            shift = np.median(np.delete(disp, k, axis=0), axis=0)
            out.append(np.linalg.norm(a[k] + shift - b[k]))
    return np.asarray(out, dtype=np.float64)


def pair_residuals(pairs: Iterable[ScanPair]) -> np.ndarray:
    """:func:`residual_displacements` of the ground-truth matches of scan pairs."""
    src, dst = [], []
    for pair in pairs:
        m = pair.gt_matches()
        src.append(pair.src.nodes.pos[m[:, 0]])
        dst.append(pair.dst.nodes.pos[m[:, 1]])
    return residual_displacements(src, dst)


def unmatched_share(pairs: Iterable[ScanPair]) -> float:
    """Pooled ``(|D| + |N|) / (n_src + n_dst)`` over scan pairs."""
    unmatched = total = 0
    for pair in pairs:
        unmatched += len(pair.gt_disappeared()) + len(pair.gt_new())
        total += len(pair.src.nodes) + len(pair.dst.nodes)
    return unmatched / total if total else float("nan")


def quantiles(values, qs=(10, 25, 50, 75, 90)) -> dict[str, float]:
    """``{"mean", "p10", …, "max", "n"}`` of ``values`` (NaN when empty)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return {"n": 0, "mean": float("nan"), **{f"p{q}": float("nan") for q in qs},
                "max": float("nan")}
    return {"n": len(v), "mean": float(v.mean()),
            **{f"p{q}": float(np.percentile(v, q)) for q in qs}, "max": float(v.max())}
