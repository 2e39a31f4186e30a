"""Scan pairs of a cohort as batches of pair graphs for training, validation and prediction.

The pair graphs are those inference reads (:func:`~lngraph.models.inference.matcher_graphs`:
crops through the on-disk cache unless the config is geometry-only, alignment shifts with the
position prior). :class:`PairDataModule` is the Lightning data module over a cohort's training
and validation patients; its graphs are built once and kept in memory (a ``lite`` crop set is
about 75 kB per node), so the geometry of a pair is computed once, not at every step.
Training batches (only they) are augmented by :func:`flip_crops` and :func:`augment_crops` when
the config asks for it, and each training pair graph, before batching, by the geometric
augmentation of :mod:`lngraph.data.augment` (node drop, per-scan rotation, scale, jitter;
:class:`AugmentedPairs`).

**Randomness.** Nothing here draws from the global random generators: the training order is
shuffled by a generator seeded with the run's seed, and each training batch is augmented with
a generator seeded from ``(seed, process rank, epoch, batch index)``
(:func:`augment_generator`), and each pair's geometry from ``(seed, pair index, how often the
pair was drawn before)``, so the batches and their augmentation depend on the seed alone —
not on what else consumed random numbers (model initialisation, callbacks) nor on the order of
earlier calls.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch_geometric.data import HeteroData
from torch_geometric.loader import DataLoader

from lngraph.data.augment import GeometryAugment, augment_pair
from lngraph.data.cache import default_cache_dir, precompute_crops
from lngraph.data.views import nine_views
from lngraph.io.cohort import Cohort, ScanPair
from lngraph.models import MatcherConfig, alignment_params, matcher_graphs

PAIR_MODES = ("consecutive", "all")


def augment_generator(seed: int, epoch: int, batch: int, rank: int = 0,
                      device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on ``device`` seeded from ``(seed, rank, epoch, batch)`` (numpy
    ``SeedSequence``): the random numbers of one training batch's augmentation. On another
    device type the same seed gives other numbers (CUDA has its own generator)."""
    state = np.random.SeedSequence([int(seed) % 2**32, int(rank), int(epoch), int(batch)])
    value = int(state.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
    try:
        generator = torch.Generator(device=device)
    except RuntimeError:     # a device type without its own generator
        generator = torch.Generator()
    return generator.manual_seed(value)


def _randn(shape, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Standard normal numbers on ``device``, drawn from ``generator`` (the global generator of
    ``device`` when ``None``)."""
    if generator is None:
        return torch.randn(shape, device=device)
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


def augment_crops(batch: HeteroData, intensity: float, noise: float,
                  generator: torch.Generator | None = None) -> HeteroData:
    """Random intensity changes of every node's crops (new tensors; the input's are kept).

    Each node's cube and views get one gain ``1 + intensity·N(0, 1)`` and one offset
    ``intensity·N(0, 1)`` (the same for the cube and its views, which are computed from it),
    then Gaussian noise of standard deviation ``noise`` per voxel. Graphs without crops pass
    unchanged. ``generator``: where the numbers come from (best on the crops' device; default:
    the global generator of that device).
    """
    for node_type in ("src", "dst"):
        store = batch[node_type]
        if getattr(store, "cube", None) is None:
            continue
        n = store.cube.shape[0]
        device = store.cube.device
        gain = 1.0 + intensity * _randn(n, generator, device)
        offset = intensity * _randn(n, generator, device)
        for key in ("cube", "views"):
            x = store[key]
            shape = (n,) + (1,) * (x.dim() - 1)
            store[key] = (x * gain.view(shape) + offset.view(shape)
                          + noise * _randn(x.shape, generator, device).to(x.dtype))
    return batch


def flip_crops(batch: HeteroData, generator: torch.Generator | None = None) -> HeteroData:
    """One random symmetry of the cube, applied to every crop of the batch in both scans.

    Each of the cube's axes ``(z, y, x)`` is flipped with probability 1/2 and ``y`` and ``x``
    are swapped with probability 1/2 (16 symmetries); the views are recomputed from the new
    cubes (:func:`~lngraph.data.nine_views`). Since both scans of every pair get the same
    symmetry, matched nodes still look alike while each node's look changes: an
    augmentation of identities, not of their comparison. Graphs without crops pass unchanged.
    ``generator``: where the four coin flips come from (any device; default: the global CPU
    generator).
    """
    device = generator.device if generator is not None else "cpu"
    flips = (torch.rand(4, generator=generator, device=device) < 0.5).cpu()
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


def geometry_augment(config: MatcherConfig) -> GeometryAugment:
    """The geometric augmentation ``config.optim`` asks for."""
    c = config.optim
    return GeometryAugment(drop=c.augment_drop, rotation_deg=c.augment_rotation_deg,
                           scale=c.augment_scale, jitter_mm=c.augment_jitter_mm,
                           translation_mm=c.augment_translation_mm)


class AugmentedPairs(torch.utils.data.Dataset):
    """Training pair graphs, each drawn through :func:`~lngraph.data.augment.augment_pair`.

    The ``k``-th draw of pair ``i`` uses a generator seeded from ``(seed, i, k)``: the
    augmentation depends on the seed and on how often each pair was drawn, not on the order.
    """

    def __init__(self, graphs: list[HeteroData], params: GeometryAugment, seed: int,
                 config: MatcherConfig):
        self.graphs = graphs
        self.params = params
        self.seed = seed
        self.alignment = alignment_params(config)
        self.draws = [0] * len(graphs)

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, index: int) -> HeteroData:
        state = np.random.SeedSequence([self.seed % 2**32, 7, index, self.draws[index]])
        self.draws[index] += 1
        generator = torch.Generator().manual_seed(int(state.generate_state(1)[0]))
        return augment_pair(self.graphs[index], self.params, generator, self.alignment)


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


def _names(patients: list[str]) -> str:
    return ", ".join(patients[:5]) + (f" and {len(patients) - 5} more" if len(patients) > 5
                                      else "")


def patient_problem(cohort: Cohort, train_patients: Iterable[str],
                    val_patients: Iterable[str] = ()) -> str | None:
    """Why ``train_patients`` and ``val_patients`` are no split of ``cohort`` (a patient not in
    it, or in both), or ``None``."""
    train, val = list(train_patients), list(val_patients)
    unknown = sorted(set(train + val) - set(cohort.patients))
    if unknown:
        return f"patient(s) {', '.join(unknown)} are not in the cohort"
    overlap = sorted(set(train) & set(val))
    if overlap:
        return f"patient(s) {', '.join(overlap)} are both training and validation"
    return None


def pairs_problem(cohort: Cohort, patients: Iterable[str], pair_mode: str = "consecutive",
                  role: str = "training") -> str | None:
    """Why ``patients`` (all in ``cohort``) give nothing to train or validate on (``role``),
    or ``None``: both need a scan pair with a node in either scan (pairs without nodes carry
    no signal and score the same whatever the model does)."""
    patients = list(patients)
    if not patients:
        return f"no {role} patients"
    pairs = cohort.pairs(pair_mode, patients)
    if not pairs:
        return (f"no {role} pair: the {len(patients)} {role} patient(s) ({_names(patients)}) "
                "have one scan each")
    if not any(len(p.src.nodes) + len(p.dst.nodes) for p in pairs):
        return (f"no {role} pair with nodes among the {role} patients: the scans of the "
                f"{len(patients)} {role} patient(s) ({_names(patients)}) have no annotated "
                "node")
    return None


def training_pair_problem(cohort: Cohort, patients: Iterable[str],
                          pair_mode: str = "consecutive") -> str | None:
    """:func:`pairs_problem` of the training patients."""
    return pairs_problem(cohort, patients, pair_mode, "training")


def validation_problem(cohort: Cohort, patients: Iterable[str],
                       pair_mode: str = "consecutive") -> str | None:
    """:func:`pairs_problem` of the validation patients."""
    return pairs_problem(cohort, patients, pair_mode, "validation")


class PairDataModule(L.LightningDataModule):
    """Training and validation pair graphs of one cohort.

    Args:
        cohort: the cohort (ground truth from ``track_id``).
        config: its ``crops``, ``model.geometry_only``, ``optim.batch_size`` and
            ``optim.augment_*`` are used.
        train_patients, val_patients: patients whose pairs train and validate.
        pair_mode: ``"consecutive"`` timepoints (default) or ``"all"`` earlier/later pairs.
        cache_dir: crop cache folder (default: the user's,
            :func:`~lngraph.data.cache.default_cache_dir`; without a cohort
            folder crops are computed in memory).
        workers: processes that fill the crop cache.
        progress: show progress bars while cropping.
        seed: seed of the training order and of the augmentation (module docstring; default
            ``config.protocol.seed``).

    Training pairs with no node in either scan are left out (they carry no signal);
    validation keeps every pair.
    """

    def __init__(self, cohort: Cohort, config: MatcherConfig, *,
                 train_patients: Iterable[str], val_patients: Iterable[str] = (),
                 pair_mode: str = "consecutive", cache_dir: str | os.PathLike | None = None,
                 workers: int = 1, progress: bool = True, seed: int | None = None):
        super().__init__()
        if pair_mode not in PAIR_MODES:
            raise ValueError(f"pair_mode must be one of {PAIR_MODES}, got {pair_mode!r}")
        self.cohort = cohort
        self.config = config
        self.train_patients = list(train_patients)
        self.val_patients = list(val_patients)
        problem = patient_problem(cohort, self.train_patients, self.val_patients)
        if problem:
            raise ValueError(problem)
        self.pair_mode = pair_mode
        self.images = uses_images(cohort, config)
        if self.images and cache_dir is None and cohort.root is not None:
            cache_dir = default_cache_dir(cohort)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.workers = workers
        self.progress = progress
        self.seed = config.protocol.seed if seed is None else int(seed)
        self._augmented = (-1, 0)     # (epoch, training batches augmented in it)
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
        if not (c.augment_flip or c.augment_intensity > 0 or c.augment_noise > 0):
            return batch
        epoch = self.trainer.current_epoch
        index = self._augmented[1] if self._augmented[0] == epoch else 0
        self._augmented = (epoch, index + 1)
        cubes = [cube for cube in (getattr(batch[t], "cube", None) for t in ("src", "dst"))
                 if cube is not None]
        if not cubes:       # no crops (geometry-only): nothing to augment
            return batch
        generator = augment_generator(self.seed, epoch, index, self.trainer.global_rank,
                                      cubes[0].device)
        if c.augment_flip:
            batch = flip_crops(batch, generator)
        if c.augment_intensity > 0 or c.augment_noise > 0:
            batch = augment_crops(batch, c.augment_intensity, c.augment_noise, generator)
        return batch

    def train_dataloader(self) -> DataLoader:
        # its own generator: the order depends on the seed and the epoch only
        params = geometry_augment(self.config)
        graphs = (AugmentedPairs(self.train_graphs, params, self.seed, self.config)
                  if params.active else self.train_graphs)
        return DataLoader(graphs, batch_size=self.config.optim.batch_size,
                          shuffle=True, generator=torch.Generator().manual_seed(self.seed))

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_graphs, batch_size=self.config.optim.batch_size, shuffle=False)
