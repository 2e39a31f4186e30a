"""Geometric augmentation of a training pair graph: each scan is moved, rescaled, jittered and
thinned on its own, and the alignment shifts are recomputed from the new centres.

:func:`augment_pair` returns a new pair graph (the input is kept), drawn from a
``torch.Generator``:

* **drop** — each node of each scan is removed with probability ``drop``; a node whose partner
  is removed becomes new (or disappeared) in the ground truth, so training sees many of them;
* **rotation** — each scan's centres turn about their centroid by an angle drawn uniformly from
  ``[-rotation_deg, rotation_deg]`` about a uniformly random axis (patient repositioning);
* **scale** — each scan's centres are scaled about their centroid by ``exp(N(0, scale))``;
* **jitter** — every centre moves by ``N(0, jitter_mm)`` per axis; radii are kept;
* **translation** — each scan's centres move together by ``N(0, translation_mm)`` per axis
  (one draw per scan): the scanner frames of the two scans disagree. Only a model that reads
  raw centre distances (``model.frame_prior_mm``) sees it; the alignment absorbs it otherwise.

Crops are subset with their nodes and otherwise unchanged. With alignment settings, the
earlier nodes' shifts (``src.shift``) are recomputed after the motion
(:func:`~lngraph.matching.alignment.alignment_shifts`; not cached).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch_geometric.data import HeteroData

from lngraph.data.geometry import AlignmentParams, pair_shifts
from lngraph.data.graph import CROSS, INTRA, complete_edge_index

#: Per-node attributes that follow their node when nodes are dropped.
NODE_KEYS = ("pos", "radius", "cube", "views", "shift")


@dataclass(frozen=True)
class GeometryAugment:
    """Settings of :func:`augment_pair` (module docstring)."""

    drop: float = 0.0
    rotation_deg: float = 0.0
    scale: float = 0.0
    jitter_mm: float = 0.0
    translation_mm: float = 0.0

    def __post_init__(self):
        if not 0 <= self.drop < 1:
            raise ValueError(f"drop must be in [0, 1), got {self.drop}")
        for key in ("rotation_deg", "scale", "jitter_mm", "translation_mm"):
            if not getattr(self, key) >= 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)}")

    @property
    def active(self) -> bool:
        """Whether any augmentation is switched on."""
        return bool(self.drop or self.moves)

    @property
    def moves(self) -> bool:
        """Whether node centres move."""
        return bool(self.rotation_deg or self.scale or self.jitter_mm or self.translation_mm)


def rotation_matrix(axis: torch.Tensor, angle: float) -> torch.Tensor:
    """``[3, 3]`` rotation by ``angle`` (radians) about ``axis`` (Rodrigues' formula)."""
    k = axis / axis.norm()
    cross = torch.tensor([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return (torch.eye(3) + math.sin(angle) * cross
            + (1 - math.cos(angle)) * cross @ cross)


def _move(pos: torch.Tensor, params: GeometryAugment, generator: torch.Generator
          ) -> torch.Tensor:
    """One scan's centres after rotation, scaling, jitter and translation (module
    docstring)."""
    if len(pos) == 0:
        return pos
    out = pos
    if params.rotation_deg or params.scale:
        # (only then about the centroid: subtracting and adding it back is not exact in float)
        centre = pos.mean(0)
        out = pos - centre
        if params.rotation_deg:
            axis = torch.randn(3, generator=generator)
            angle = math.radians(params.rotation_deg) * (2 * torch.rand(1, generator=generator)
                                                         .item() - 1)
            out = out @ rotation_matrix(axis, angle).T
        if params.scale:
            out = out * math.exp(params.scale * torch.randn(1, generator=generator).item())
        out = out + centre
    if params.jitter_mm:
        out = out + params.jitter_mm * torch.randn(out.shape, generator=generator)
    if params.translation_mm:
        out = out + params.translation_mm * torch.randn(3, generator=generator)
    return out


def augment_pair(data: HeteroData, params: GeometryAugment, generator: torch.Generator,
                 alignment: AlignmentParams | None = None) -> HeteroData:
    """A randomly thinned and moved copy of one pair graph (module docstring).

    Args:
        data: one pair graph (not a batch) as built by :mod:`lngraph.data.graph`.
        params: what to draw.
        generator: where the random numbers come from (CPU).
        alignment: recompute ``src.shift`` with these settings (``None``: the graph must have
            no shifts, or they are kept as they are when nothing moved).
    """
    out = data.clone()
    keep = {}
    for node_type in ("src", "dst"):
        store = out[node_type]
        n = store.num_nodes
        mask = (torch.rand(n, generator=generator) >= params.drop if params.drop
                else torch.ones(n, dtype=torch.bool))
        keep[node_type] = mask
        for key in NODE_KEYS:
            if getattr(store, key, None) is not None:
                store[key] = store[key][mask]
        store.num_nodes = int(mask.sum())
        store.pos = _move(store.pos, params, generator)
        out[INTRA[node_type]].edge_index = complete_edge_index(store.num_nodes)
    matches = out[CROSS].edge_label_index
    new_index = {t: torch.cumsum(keep[t].long(), 0) - 1 for t in keep}
    both = keep["src"][matches[0]] & keep["dst"][matches[1]]
    out[CROSS].edge_label_index = torch.stack([new_index["src"][matches[0][both]],
                                               new_index["dst"][matches[1][both]]])
    if alignment is not None:
        shifts = pair_shifts(out["src"].pos.double().numpy(), out["dst"].pos.double().numpy(),
                             alignment)
        out["src"].shift = torch.from_numpy(np.asarray(shifts, dtype=np.float32))
    elif getattr(out["src"], "shift", None) is not None and params.moves:
        raise ValueError("the graph has alignment shifts; give the alignment settings to "
                         "recompute them after moving its nodes")
    return out
