"""Per-pair geometry computed once, when a pair graph is built: the alignment shifts.

The matcher's distance term compares each earlier node, moved by its alignment shift
(:func:`~lngraph.matching.alignment.alignment_shifts`: the robust translation between the two
scans, refined per node), with every later node. The shifts depend only on the node centres
and two settings, never on learned weights, so they are computed here, stored in the pair
graph as ``src.shift [N, 3]`` and, with a cache folder, kept on disk like the crops:
``<cache>/alignment/<key>.npy``, the key a SHA-256 of a format version, both scans' centres
(float64 bytes, row order) and the settings. Entries are written atomically; an unreadable one
is recomputed.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lngraph.io.atomic import atomic_path
from lngraph.matching.alignment import DEFAULT_GATE_MM, alignment_shifts

#: Bumped whenever the alignment computation changes, so old entries are recomputed.
ALIGNMENT_VERSION = 1


@dataclass(frozen=True)
class AlignmentParams:
    """Settings of the alignment shifts.

    Args:
        gate_mm: inlier scale of the robust translation and gate of its tentative matches.
        local_scale_mm: neighbourhood scale of the per-node refinement; 0 gives every node
            the one translation.
        rigid: start from the robust rigid motion (rotation and translation,
            :func:`~lngraph.matching.alignment.robust_rigid`) instead of the translation.
        rotation_search: with ``rigid``, search starting rotations where the rigid refinement
            accepts no round (``robust_rigid(search=True)``); always ``False`` without
            ``rigid``, where there is nothing to search.
    """

    gate_mm: float = DEFAULT_GATE_MM
    local_scale_mm: float = 0.0
    rigid: bool = False
    rotation_search: bool = False

    def __post_init__(self):
        if not self.gate_mm > 0:
            raise ValueError(f"gate_mm must be > 0, got {self.gate_mm}")
        if not self.local_scale_mm >= 0:
            raise ValueError(f"local_scale_mm must be >= 0, got {self.local_scale_mm}")
        if not self.rigid:
            object.__setattr__(self, "rotation_search", False)


def alignment_key(src: np.ndarray, dst: np.ndarray, params: AlignmentParams) -> str:
    """The cache key of one pair's shifts (module docstring)."""
    rigid = ";rigid" if params.rigid else ""   # (keys of translation-only shifts unchanged)
    if params.rotation_search:
        rigid += ";search"
    digest = hashlib.sha256(f"v{ALIGNMENT_VERSION};{params.gate_mm!r};"
                            f"{params.local_scale_mm!r}{rigid};{len(src)};{len(dst)};".encode())
    digest.update(np.ascontiguousarray(src, dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(dst, dtype=np.float64).tobytes())
    return digest.hexdigest()


def pair_shifts(src: np.ndarray, dst: np.ndarray, params: AlignmentParams,
                cache_dir: str | os.PathLike | None = None) -> np.ndarray:
    """``[N, 3]`` float64 alignment shift of each earlier node (module docstring), read from
    or written to ``cache_dir`` when given."""
    src = np.asarray(src, dtype=np.float64).reshape(-1, 3)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 3)
    if cache_dir is None:
        return alignment_shifts(src, dst, params.gate_mm, params.local_scale_mm,
                                rigid=params.rigid, search=params.rotation_search)
    path = Path(cache_dir) / "alignment" / f"{alignment_key(src, dst, params)}.npy"
    if path.is_file():
        try:
            shifts = np.load(path, allow_pickle=False)
            if shifts.shape == src.shape and np.isfinite(shifts).all():
                return shifts
        except (OSError, ValueError):
            pass    # a corrupt entry is recomputed
    shifts = alignment_shifts(src, dst, params.gate_mm, params.local_scale_mm,
                              rigid=params.rigid, search=params.rotation_search)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, shifts, allow_pickle=False)
    return shifts
