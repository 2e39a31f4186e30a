"""Scan pairs of a cohort as batches of pair graphs for training, validation and prediction.

The pair graphs are those inference reads (:func:`~lngraph.models.inference.matcher_graphs`:
crops through the on-disk cache unless the config is geometry-only, alignment shifts with the
position prior). :class:`PairDataModule` is the Lightning data module over a cohort's training
and validation patients; its graphs are built once and kept in memory (a ``lite`` crop set is
about 75 kB per node), so the geometry of a pair is computed once, not at every step.
Training batches (only they) are augmented by :func:`augment_crops` when the config asks for
it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import lightning as L
import torch
from torch_geometric.data import HeteroData
from torch_geometric.loader import DataLoader

from lngraph.data.cache import default_cache_dir, precompute_crops
from lngraph.data.views import nine_views
from lngraph.io.cohort import Cohort, ScanPair
from lngraph.models import MatcherConfig, matcher_graphs

PAIR_MODES = ("consecutive", "all")


def augment_crops(batch: HeteroData, intensity: float, noise: float) -> HeteroData:
    """Random intensity changes of every node's crops (new tensors; the input's are kept).

    Each node's cube and views get one gain ``1 + intensity·N(0, 1)`` and one offset
    ``intensity·N(0, 1)`` (the same for the cube and its views, which are computed from it),
    then Gaussian noise of standard deviation ``noise`` per voxel. Graphs without crops pass
    unchanged.
    """
    for node_type in ("src", "dst"):
        store = batch[node_type]
        if getattr(store, "cube", None) is None:
            continue
        n = store.cube.shape[0]
        gain = 1.0 + intensity * torch.randn(n, device=store.cube.device)
        offset = intensity * torch.randn(n, device=store.cube.device)
        for key in ("cube", "views"):
            x = store[key]
            shape = (n,) + (1,) * (x.dim() - 1)
            store[key] = x * gain.view(shape) + offset.view(shape) + noise * torch.randn_like(x)
    return batch


def flip_crops(batch: HeteroData, generator: torch.Generator | None = None) -> HeteroData:
    """One random symmetry of the cube, applied to every crop of the batch in both scans.

    Each of the cube's axes ``(z, y, x)`` is flipped with probability 1/2 and ``y`` and ``x``
    are swapped with probability 1/2 (16 symmetries); the views are recomputed from the new
    cubes (:func:`~lngraph.data.nine_views`). Since both scans of every pair get the same
    symmetry, matched nodes still look alike while each node's look changes: an
    augmentation of identities, not of their comparison. Graphs without crops pass unchanged.
    """
    flips = torch.rand(4, generator=generator) < 0.5
    dims = [d for d, f in zip((2, 3, 4), flips[:3].tolist(), strict=True) if f]
    for node_type in ("src", "dst"):
        store = batch[node_type]
        if getattr(store, "cube", None) is None:
            continue
        cube = store.cube.flip(dims) if dims else store.cube
        if flips[3]:
            cube = cube.transpose(3, 4)
        store.cube = cube.contiguous()
        store.views = nine_views(store.cube)
    return batch


def config_for_cohort(config: MatcherConfig, cohort: Cohort) -> MatcherConfig:
    """``config``, made geometry-only when some scan of ``cohort`` has no image (annotation
    tables only: the matcher then runs on geometric node features)."""
    if config.model.geometry_only or cohort.has_images:
        return config
    return config.with_values({"model.geometry_only": True})


def uses_images(cohort: Cohort, config: MatcherConfig) -> bool:
    """Whether training on ``cohort`` reads crops: the config is not geometry-only.

    Raises:
        ValueError: the config wants crops but the cohort has scans without images.
    """
    if config.model.geometry_only:
        return False
    if not cohort.has_images:
        raise ValueError("the cohort has scans without images; use a geometry-only config "
                         "(model.geometry_only: true, see config_for_cohort) for "
                         "annotation-only cohorts")
    return True


class PairDataModule(L.LightningDataModule):
    """Training and validation pair graphs of one cohort.

    Args:
        cohort: the cohort (ground truth from ``track_id``).
        config: its ``crops``, ``model.geometry_only``, ``optim.batch_size`` and
            ``optim.augment_*`` are used.
        train_patients, val_patients: patients whose pairs train and validate.
        pair_mode: ``"consecutive"`` timepoints (default) or ``"all"`` earlier/later pairs.
        cache_dir: crop cache folder (default ``<cohort>/.lngraph_cache``; without a cohort
            folder crops are computed in memory).
        workers: processes that fill the crop cache.
        progress: show progress bars while cropping.

    Training pairs with no node in either scan are left out (they carry no signal);
    validation keeps every pair.
    """

    def __init__(self, cohort: Cohort, config: MatcherConfig, *,
                 train_patients: Iterable[str], val_patients: Iterable[str] = (),
                 pair_mode: str = "consecutive", cache_dir: str | os.PathLike | None = None,
                 workers: int = 1, progress: bool = True):
        super().__init__()
        if pair_mode not in PAIR_MODES:
            raise ValueError(f"pair_mode must be one of {PAIR_MODES}, got {pair_mode!r}")
        self.cohort = cohort
        self.config = config
        self.train_patients = list(train_patients)
        self.val_patients = list(val_patients)
        unknown = sorted(set(self.train_patients + self.val_patients) - set(cohort.patients))
        if unknown:
            raise ValueError(f"patient(s) {', '.join(unknown)} are not in the cohort")
        overlap = sorted(set(self.train_patients) & set(self.val_patients))
        if overlap:
            raise ValueError(f"patient(s) {', '.join(overlap)} are both training and validation")
        self.pair_mode = pair_mode
        self.images = uses_images(cohort, config)
        if self.images and cache_dir is None and cohort.root is not None:
            cache_dir = default_cache_dir(cohort)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.workers = workers
        self.progress = progress
        self.train_pairs = [p for p in cohort.pairs(pair_mode, self.train_patients)
                            if len(p.src.nodes) + len(p.dst.nodes) > 0]
        self.val_pairs = cohort.pairs(pair_mode, self.val_patients)
        self.train_graphs: list[HeteroData] | None = None
        self.val_graphs: list[HeteroData] | None = None

    def prepare_data(self) -> None:
        """Fill the crop cache of the scans in use (once, on the main process)."""
        if self.images and self.cache_dir is not None:
            precompute_crops(self.cohort.subset(self.train_patients + self.val_patients),
                             self.config.crops, cache_dir=self.cache_dir,
                             workers=self.workers, progress=self.progress)

    def setup(self, stage: str | None = None) -> None:
        if self.train_graphs is None:
            self.train_graphs = matcher_graphs(self.train_pairs, self.config,
                                            cache_dir=self.cache_dir)
            self.val_graphs = matcher_graphs(self.val_pairs, self.config,
                                             cache_dir=self.cache_dir)

    def pair(self, src_scan: str, dst_scan: str) -> ScanPair:
        """The scan pair of a graph's ``(src_scan, dst_scan)``."""
        return self.cohort.pair(src_scan, dst_scan)

    def on_after_batch_transfer(self, batch: HeteroData, dataloader_idx: int) -> HeteroData:
        c = self.config.optim
        if self.trainer is None or not self.trainer.training:
            return batch
        if c.augment_flip:
            batch = flip_crops(batch)
        if c.augment_intensity > 0 or c.augment_noise > 0:
            batch = augment_crops(batch, c.augment_intensity, c.augment_noise)
        return batch

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_graphs, batch_size=self.config.optim.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_graphs, batch_size=self.config.optim.batch_size, shuffle=False)
