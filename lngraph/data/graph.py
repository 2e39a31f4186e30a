"""Scan pairs as PyTorch Geometric ``HeteroData`` graphs (docs/design.md, *Pair graphs*).

One graph per scan pair, with node types ``"src"`` (earlier scan) and ``"dst"`` (later scan):

* ``pos [N, 3]`` float32 — centres, world LPS mm; ``radius [N]`` float32 — mm
  (docs/design.md, *Cohort folder*);
* optionally ``cube [N, 1, S, S, S]`` and ``views [N, 9, S, S]`` float32, when crops are given;
* optionally, on ``src`` only, ``shift [N, 3]`` float32 — each earlier node's alignment shift
  towards the later scan (:mod:`lngraph.data.geometry`), when alignment settings are given.

Edge types ``("src", "intra", "src")`` and ``("dst", "intra", "dst")`` are fully connected
without self loops; ``("src", "cross", "dst")`` holds the ground-truth matches as
``edge_label_index [2, M]``. The graph also carries ``src_scan``, ``dst_scan`` and
``patient_id`` (strings). PyG's ``DataLoader`` batches these graphs with every index shifted
right, because PyG increments any edge attribute whose name contains ``index`` by the node
counts of its source and destination types.

Knows no model: :func:`pair_graphs` takes the crop and alignment settings explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from lngraph.data.cache import scan_crops
from lngraph.data.crops import CropParams
from lngraph.data.geometry import AlignmentParams, pair_shifts
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


def pair_to_heterodata(pair: ScanPair, src_crops: Crops | None = None,
                       dst_crops: Crops | None = None,
                       shifts: np.ndarray | None = None) -> HeteroData:
    """Build the ``HeteroData`` graph of one scan pair (see the module docstring).

    Args:
        pair: the scan pair; its ``track_id``s give ``edge_label_index``.
        src_crops, dst_crops: optional ``(cubes, views)`` of each scan's nodes, in node order.
        shifts: optional ``[n_src, 3]`` alignment shifts of the earlier nodes.

    Raises:
        ValueError: if crops or shifts do not fit the scan's nodes.
    """
    data = HeteroData()
    for node_type, scan, crops in (("src", pair.src, src_crops), ("dst", pair.dst, dst_crops)):
        n = len(scan.nodes)
        store = data[node_type]
        store.num_nodes = n
        store.pos = torch.as_tensor(scan.nodes.pos, dtype=torch.float32).reshape(n, 3)
        store.radius = torch.as_tensor(scan.nodes.radius_mm, dtype=torch.float32).reshape(n)
        if crops is not None:
            store.cube, store.views = _crop_tensors(crops, n, scan.scan_id)
        data[INTRA[node_type]].edge_index = complete_edge_index(n)
    if shifts is not None:
        shifts = np.asarray(shifts, dtype=np.float32)
        if shifts.shape != (len(pair.src.nodes), 3):
            raise ValueError(f"shifts of scan {pair.src.scan_id} have shape {shifts.shape}; "
                             f"expected [{len(pair.src.nodes)}, 3]")
        data["src"].shift = torch.from_numpy(shifts)
    data[CROSS].edge_label_index = torch.as_tensor(pair.gt_matches(), dtype=torch.long).T
    data.src_scan = pair.src.scan_id
    data.dst_scan = pair.dst.scan_id
    data.patient_id = pair.patient_id
    return data


def pair_graphs(pairs: Sequence[ScanPair], *, crops: CropParams | None = None,
                alignment: AlignmentParams | None = None,
                cache_dir: str | os.PathLike | None = None, progress: bool = False
                ) -> list[HeteroData]:
    """One ``HeteroData`` per pair, in order.

    Args:
        pairs: the scan pairs.
        crops: crop settings; ``None`` builds geometry-only graphs (no image is read).
        alignment: alignment settings; ``None`` leaves out ``src.shift``.
        cache_dir: cache folder of crops and shifts (:mod:`lngraph.data.cache`,
            :mod:`lngraph.data.geometry`); ``None`` computes them without caching.
        progress: show a progress bar.

    A scan shared by several pairs is cropped once, and a scan's crops are keyed by the scan
    object, so two different scans that share a ``scan_id`` never share crops.

    Raises:
        InputError: a scan needs crops but has no image, or its image is unreadable.
    """
    cache: dict[int, tuple[Scan, tuple]] = {}

    def of(scan: Scan) -> tuple:
        if id(scan) not in cache:
            entry = scan_crops(scan, crops, cache_dir=cache_dir)
            cache[id(scan)] = (scan, (entry.cubes, entry.views))
        return cache[id(scan)][1]

    graphs = []
    for pair in tqdm(pairs, desc="pair graphs", unit="pair", disable=not progress):
        shifts = None if alignment is None else pair_shifts(pair.src.nodes.pos,
                                                            pair.dst.nodes.pos, alignment,
                                                            cache_dir)
        if crops is None:
            graphs.append(pair_to_heterodata(pair, shifts=shifts))
        else:
            graphs.append(pair_to_heterodata(pair, of(pair.src), of(pair.dst), shifts))
    return graphs
