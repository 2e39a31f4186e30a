"""Scan pairs as PyTorch Geometric ``HeteroData`` graphs (DESIGN §3.4).

One graph per scan pair, with node types ``"src"`` (earlier scan) and ``"dst"`` (later scan):

* ``pos [N, 3]`` float32 — centres, world LPS mm; ``radius [N]`` float32 — mm (DESIGN §2);
* ``unmatched [N]`` bool — ground truth "has no partner in the other scan" (False where the
  ``track_id`` is unknown);
* optionally ``cube [N, 1, S, S, S]`` and ``views [N, 9, S, S]`` float32, when crops are given.

Edge types ``("src", "intra", "src")`` and ``("dst", "intra", "dst")`` are fully connected
without self loops; ``("src", "cross", "dst")`` holds the ground-truth matches as
``edge_label_index [2, M]``. The graph also carries ``src_scan``, ``dst_scan`` and
``patient_id`` (strings). PyG's ``DataLoader`` batches these graphs with every index shifted
right, because PyG increments any edge attribute whose name contains ``index`` by the node
counts of its source and destination types.

Knows no model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from torch_geometric.data import HeteroData

from lngraph.io.cohort import Scan, ScanPair

#: ``(cubes [N, S, S, S] or [N, 1, S, S, S], views [N, 9, S, S])`` of one scan.
Crops = tuple[np.ndarray, np.ndarray]

NODE_TYPES = ("src", "dst")
INTRA = {"src": ("src", "intra", "src"), "dst": ("dst", "intra", "dst")}
CROSS = ("src", "cross", "dst")


def complete_edge_index(num_nodes: int) -> torch.Tensor:
    """``[2, N (N - 1)]`` edges of the complete directed graph on ``N`` nodes, no self loops."""
    rows, cols = torch.meshgrid(torch.arange(num_nodes), torch.arange(num_nodes), indexing="ij")
    keep = rows != cols
    return torch.stack([rows[keep], cols[keep]])


def _crop_tensors(crops: Crops, num_nodes: int, scan_id: str) -> tuple[torch.Tensor, torch.Tensor]:
    cubes, views = (np.asarray(a, dtype=np.float32) for a in crops)
    if cubes.ndim == 4:
        cubes = cubes[:, None]
    if cubes.ndim != 5 or cubes.shape[1] != 1 or len(cubes) != num_nodes:
        raise ValueError(f"cubes of scan {scan_id} have shape {cubes.shape}; expected "
                         f"[{num_nodes}, S, S, S] or [{num_nodes}, 1, S, S, S]")
    if views.ndim != 4 or views.shape[1] != 9 or len(views) != num_nodes:
        raise ValueError(f"views of scan {scan_id} have shape {views.shape}; expected "
                         f"[{num_nodes}, 9, S, S]")
    return torch.from_numpy(cubes), torch.from_numpy(views)


def _unmatched_mask(num_nodes: int, index: np.ndarray) -> torch.Tensor:
    mask = torch.zeros(num_nodes, dtype=torch.bool)
    mask[torch.as_tensor(index, dtype=torch.long)] = True
    return mask


def pair_to_heterodata(pair: ScanPair, src_crops: Crops | None = None,
                       dst_crops: Crops | None = None) -> HeteroData:
    """Build the ``HeteroData`` graph of one scan pair (see the module docstring).

    Args:
        pair: the scan pair; its ``track_id``s give ``unmatched`` and ``edge_label_index``.
        src_crops, dst_crops: optional ``(cubes, views)`` of each scan's nodes, in node order.

    Raises:
        ValueError: if crops do not fit the scan's nodes.
    """
    data = HeteroData()
    gt_unmatched = {"src": pair.gt_disappeared(), "dst": pair.gt_new()}
    for node_type, scan, crops in (("src", pair.src, src_crops), ("dst", pair.dst, dst_crops)):
        n = len(scan.nodes)
        store = data[node_type]
        store.num_nodes = n
        store.pos = torch.as_tensor(scan.nodes.pos, dtype=torch.float32).reshape(n, 3)
        store.radius = torch.as_tensor(scan.nodes.radius_mm, dtype=torch.float32).reshape(n)
        store.unmatched = _unmatched_mask(n, gt_unmatched[node_type])
        if crops is not None:
            store.cube, store.views = _crop_tensors(crops, n, scan.scan_id)
        data[INTRA[node_type]].edge_index = complete_edge_index(n)
    data[CROSS].edge_label_index = torch.as_tensor(pair.gt_matches(), dtype=torch.long).T
    data.src_scan = pair.src.scan_id
    data.dst_scan = pair.dst.scan_id
    data.patient_id = pair.patient_id
    return data


class PairDataset(Dataset):
    """Scan pairs as ``HeteroData`` graphs, built on access, for ``torch_geometric.loader``.

    Args:
        pairs: the scan pairs.
        crops: optional ``crops(scan) -> (cubes, views)`` giving each scan's crops (e.g. a cache
            lookup); without it the graphs hold geometry only.
    """

    def __init__(self, pairs: Sequence[ScanPair],
                 crops: Callable[[Scan], Crops] | None = None):
        self.pairs = list(pairs)
        self.crops = crops

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> HeteroData:
        pair = self.pairs[index]
        if self.crops is None:
            return pair_to_heterodata(pair)
        return pair_to_heterodata(pair, self.crops(pair.src), self.crops(pair.dst))
