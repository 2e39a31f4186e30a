r"""Lesion-tracker baselines ``dlt_lite``, ``sam_lite`` and ``tlt_lite`` (docs/design.md,
*Baselines*).

Compact CPU versions of the trackers of the paper's Table 3, each a network of
:mod:`lngraph.nn.trackers`: a Siamese cross-correlation tracker (Deep Lesion Tracker), a
self-supervised voxel embedding with argmax similarity (SAM) and a cross-attention tracker
(Transformer Lesion Tracker). A tracker predicts, for every node of the earlier scan, a point
in the later scan (``PairPrediction.points``, judged by CPM/MED); a gated Hungarian turns the
points into matches (judged by precision/recall).

**Grid.** All crops are LPS-aligned cubes of ``spacing_mm`` isotropic voxels, numpy order
``(z, y, x)`` (:func:`~lngraph.data.crops.crop_cubes`; HU window ``[-160, 240]`` → ``[0, 1]``).
The voxel at array index ``a`` of a cube of size ``D`` centred on world point ``c`` lies at

.. math::
    p = c + s\,\big(a - (D - 1)/2\big)_{\text{reversed}}

(array order ``(z, y, x)`` reversed to world ``(x, y, z)``), see :func:`candidates_to_world`.

**Inference, per pair.**

1. *Coarse alignment*: the translation ``t`` that best carries the earlier node centres onto
   the later ones (:func:`~lngraph.matching.alignment.robust_translation`, node geometry only,
   no identities).
2. For each earlier node ``p``: template = ``template_size³`` cube around ``p`` in the earlier
   image; search = ``search_size³`` cube in the later image centred on ``p + t`` (moved inside
   the image when it falls outside).
3. The network scores candidate positions of the template centre in the search cube — the
   same for all three trackers: the template placements inside the search cube, on a grid of
   two voxels, up to ``reach_mm`` (24 mm by default) from ``p + t`` along each axis; the
   argmax refined by a local soft-argmax (:func:`~lngraph.nn.trackers.refine_peak`) is turned
   into world millimetres (:func:`candidates_to_world`): the predicted point.
4. *Gated assignment*: Hungarian on the distance between predicted points and later node
   centres; pairs farther apart than ``gate_mm`` (default 15 mm, the gate of ``nearest``) stay
   unmatched (:func:`~lngraph.baselines.pointset.match_mapped_points`); score
   ``exp(-d / gate_mm)``.

**Self-supervision** (the trackers never see ``track_id``). Training pairs are cut from single
scans of the training patients (at most ``max_scans`` of them). A centre ``p`` is drawn — a
node centre of the scan (position only) with probability ``node_share``, else a random
soft-tissue voxel (-100 to 300 HU). The template is the plain cube around ``p``. The search
cube is centred on ``p`` too, but shows the scan moved by a known random affine motion: its
voxel at world ``x`` samples the scan at

.. math::
    T(x) = p + A\,(x - p - \delta),

with :math:`A` a rotation (up to ``rotation_deg`` about each axis) times an anisotropic
scaling (``1 ± scale_jitter``; lymph nodes grow and shrink) and :math:`\delta` a shift drawn
per axis from :math:`\mathcal{N}(0, \sigma^2)`, clipped to the trackers' reach
:math:`\pm s (D_s - D_t)/2`. The template centre therefore appears at :math:`p + \delta` in
the search cube, and any template voxel :math:`p + u` at :math:`p + \delta + A^{-1} u`. The
search cube also gets a random contrast, brightness and noise (``intensity_jitter``). Losses:
a soft-label cross entropy on the candidate heatmap for ``dlt_lite`` and ``tlt_lite``; a
voxel-level InfoNCE over template anchor voxels for ``sam_lite``. No validation data are used
(nothing is selected); the ``val`` argument of :meth:`LesionTracker.fit` is ignored.

This module owns the sampling (:func:`warped_cube`, :class:`PatchSampler`), the inference
geometry and the three registered methods.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
import SimpleITK as sitk
import torch
from scipy.spatial.transform import Rotation
from torch import Tensor, nn

from lngraph.baselines.base import Method, register
from lngraph.baselines.pointset import match_mapped_points
from lngraph.data.crops import ABDOMEN_WINDOW, AIR_HU, crop_cubes, window_to_unit
from lngraph.io.cohort import Cohort, Scan, ScanPair
from lngraph.io.coords import ImageGeometry
from lngraph.io.image import read_image
from lngraph.io.matches import PairPrediction
from lngraph.matching.alignment import DEFAULT_GATE_MM, robust_translation
from lngraph.nn.trackers import (
    CrossAttentionTracker,
    SiameseTracker,
    VoxelEmbeddingTracker,
    VoxelEncoder,
    candidate_grid,
    check_cube_size,
    heatmap_loss,
    refine_peak,
)

#: HU range of the random soft-tissue training centres.
SOFT_TISSUE_HU = (-100.0, 300.0)


@dataclass(frozen=True)
class TrackerParams:
    """Settings shared by the three trackers (see the module docstring).

    Args:
        spacing_mm: isotropic voxel size of every crop.
        template_size, search_size: voxels per side of the template and search cubes
            (``≡ 1 mod 4``); the defaults give 34 mm and 82 mm fields of view.
        channels: encoder channels.
        steps, batch_size, lr: Adam steps, crops per step and learning rate of training.
        shift_sigma_mm: standard deviation of the training shift per axis.
        rotation_deg: largest training rotation about each axis.
        scale_jitter: largest relative training scaling per axis.
        intensity_jitter: largest relative contrast change of the search cube (brightness up
            to half of it, noise std up to a quarter, in window units).
        node_share: share of training centres drawn at node centres.
        soft_tissue_points: candidate random soft-tissue centres kept per scan.
        max_scans: training scans held in memory (a seeded random subset of a larger cohort;
            a default-grid scan takes about 6 MB).
        gate_mm: gate of the assignment of predicted points to later nodes.
        seed: seed of initialisation and sampling (``fit`` is a function of it).
    """

    spacing_mm: float = 2.0
    template_size: int = 17
    search_size: int = 41
    channels: int = 16
    steps: int = 100
    batch_size: int = 6
    lr: float = 3e-3
    shift_sigma_mm: float = 9.0
    rotation_deg: float = 8.0
    scale_jitter: float = 0.12
    intensity_jitter: float = 0.15
    node_share: float = 0.5
    soft_tissue_points: int = 256
    max_scans: int = 40
    gate_mm: float = DEFAULT_GATE_MM
    seed: int = 0

    def __post_init__(self):
        check_cube_size(self.template_size, "template_size")
        check_cube_size(self.search_size, "search_size")
        if self.search_size <= self.template_size:
            raise ValueError(f"search_size ({self.search_size}) must exceed template_size "
                             f"({self.template_size})")
        for name in ("spacing_mm", "gate_mm", "lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.steps < 0 or self.batch_size < 1 or self.max_scans < 1:
            raise ValueError(f"need steps >= 0, batch_size >= 1 and max_scans >= 1, got "
                             f"{self.steps}, {self.batch_size}, {self.max_scans}")
        if not 0.0 <= self.node_share <= 1.0:
            raise ValueError(f"node_share must lie in [0, 1], got {self.node_share}")

    @property
    def reach_mm(self) -> float:
        """Largest shift per axis a tracker can find: ``s (D_s - D_t) / 2``."""
        return self.spacing_mm * (self.search_size - self.template_size) / 2


def warped_cube(image: sitk.Image, centre_mm, size: int, spacing_mm: float,
                matrix=None, shift_mm=None, window=ABDOMEN_WINDOW) -> np.ndarray:
    """A windowed cube on the LPS-aligned grid around ``centre_mm``, of the image moved.

    The voxel at world ``x`` samples ``image`` at ``T(x) = c + A (x - c - δ)`` (``c`` the
    centre, ``A`` = ``matrix``, ``δ`` = ``shift_mm``, world ``(x, y, z)``); with the defaults
    (``A = I``, ``δ = 0``) it equals :func:`~lngraph.data.crops.crop_cubes` in fixed mode.

    Returns:
        ``float32 [size, size, size]`` in ``[0, 1]``, numpy order ``(z, y, x)``.
    """
    centre = np.asarray(centre_mm, dtype=np.float64).reshape(3)
    shift = np.zeros(3) if shift_mm is None else np.asarray(shift_mm, np.float64).reshape(3)
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(np.eye(3).ravel().tolist() if matrix is None
                        else np.asarray(matrix, np.float64).ravel().tolist())
    transform.SetCenter((centre + shift).tolist())
    transform.SetTranslation((-shift).tolist())
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([size] * 3)
    resampler.SetOutputSpacing([spacing_mm] * 3)
    resampler.SetOutputOrigin((centre - spacing_mm * (size - 1) / 2.0).tolist())
    resampler.SetTransform(transform)
    resampler.SetInterpolator(sitk.sitkLinear)
    resampler.SetDefaultPixelValue(AIR_HU)
    resampler.SetOutputPixelType(sitk.sitkFloat32)
    resampler.SetNumberOfThreads(1)
    cube = sitk.GetArrayFromImage(resampler.Execute(image))
    return window_to_unit(cube, window)


def soft_tissue_points(image: sitk.Image, n: int, rng: np.random.Generator,
                       hu=SOFT_TISSUE_HU) -> np.ndarray:
    """Up to ``n`` world points ``[k, 3]`` of random voxels whose value lies in ``hu``."""
    array = sitk.GetArrayViewFromImage(image)
    shape = np.asarray(array.shape)
    index = (rng.random((8 * n, 3)) * shape).astype(np.int64)  # (k, j, i)
    values = array[index[:, 0], index[:, 1], index[:, 2]]
    keep = index[(values >= hu[0]) & (values <= hu[1])][:n]
    return ImageGeometry.from_image(image).array_to_world(keep.astype(np.float64))


def random_affine(rng: np.random.Generator, rotation_deg: float, scale_jitter: float
                  ) -> np.ndarray:
    """``3 × 3`` world matrix: a rotation (Euler angles up to ``rotation_deg``) times a
    per-axis scaling in ``1 ± scale_jitter``."""
    rotation = Rotation.from_euler("xyz", rng.uniform(-rotation_deg, rotation_deg, 3),
                                   degrees=True).as_matrix()
    return rotation @ np.diag(rng.uniform(1 - scale_jitter, 1 + scale_jitter, 3))


def candidates_to_world(coords, centres_mm, first: float, stride: int, search_size: int,
                        spacing_mm: float) -> np.ndarray:
    """World points ``[N, 3]`` (x, y, z) of continuous candidate coordinates.

    Args:
        coords: ``[N, 3]`` candidate coordinates, array order ``(z, y, x)``.
        centres_mm: ``[N, 3]`` world centres of the search cubes.
        first, stride: candidate ``m`` sits at search array index ``first + stride · m``.
        search_size, spacing_mm: the search cube.
    """
    index = first + stride * np.asarray(coords, dtype=np.float64)
    offset_zyx = spacing_mm * (index - (search_size - 1) / 2)
    return np.asarray(centres_mm, dtype=np.float64) + offset_zyx[:, ::-1]


def inside_image(geometry: ImageGeometry, points_mm) -> np.ndarray:
    """``points_mm`` moved to the nearest voxel centre's box of the image (clamped index)."""
    index = geometry.world_to_index(np.asarray(points_mm, dtype=np.float64).reshape(-1, 3))
    return geometry.index_to_world(np.clip(index, 0, np.asarray(geometry.size) - 1))


class TrainingBatch(NamedTuple):
    """Self-supervised crops with their known motion.

    Args:
        template: ``[B, 1, D_t, D_t, D_t]``.
        search: ``[B, 1, D_s, D_s, D_s]``.
        shift: ``[B, 3]`` shift δ (mm), array order ``(z, y, x)``.
        inverse: ``[B, 3, 3]`` :math:`A^{-1}` acting on array-order vectors.
    """

    template: Tensor
    search: Tensor
    shift: Tensor
    inverse: Tensor

    def search_index(self, offsets_mm: Tensor, search_size: int, spacing_mm: float) -> Tensor:
        """Search array index ``[B, K, 3]`` of template points at ``offsets_mm`` ``[K, 3]``
        (array order, from the template centre): ``(D_s - 1)/2 + (δ + A⁻¹ u) / s``."""
        moved = self.shift[:, None, :] + torch.einsum("bij,kj->bki", self.inverse, offsets_mm)
        return (search_size - 1) / 2 + moved / spacing_mm


class PatchSampler:
    """Draws self-supervised :class:`TrainingBatch` es from the images of some scans.

    Args:
        scans: scans with images (their node centres are training centres; ``track_id`` is
            never read); at most ``params.max_scans`` of them, drawn at random, are used.
        params: the tracker settings.
        rng: the random source (the sampler is a function of its state).
    """

    def __init__(self, scans: list[Scan], params: TrackerParams, rng: np.random.Generator):
        self.params, self.rng = params, rng
        if len(scans) > params.max_scans:
            keep = np.sort(rng.choice(len(scans), params.max_scans, replace=False))
            scans = [scans[k] for k in keep]
        self.images = [read_image(scan.image) for scan in scans]
        self.nodes = [scan.nodes.pos for scan in scans]
        self.tissue = [soft_tissue_points(image, params.soft_tissue_points, rng)
                       for image in self.images]

    def _centre(self, k: int) -> np.ndarray:
        """A node centre (share ``node_share``) or a soft-tissue point of scan ``k``."""
        nodes, tissue = self.nodes[k], self.tissue[k]
        if len(nodes) == 0 and len(tissue) == 0:
            geometry = ImageGeometry.from_image(self.images[k])
            return geometry.index_to_world((np.asarray(geometry.size) - 1) / 2)
        use_node = len(tissue) == 0 or (len(nodes) > 0
                                        and self.rng.random() < self.params.node_share)
        pool = nodes if use_node else tissue
        return pool[self.rng.integers(len(pool))]

    def _jitter(self, cube: np.ndarray) -> np.ndarray:
        j = self.params.intensity_jitter
        contrast = 1 + self.rng.uniform(-j, j)
        brightness = self.rng.uniform(-j, j) / 2
        noise = self.rng.normal(0, self.rng.uniform(0, j / 4), cube.shape)
        return (contrast * cube + brightness + noise).astype(np.float32)

    def batch(self) -> TrainingBatch:
        p = self.params
        templates, searches, shifts, inverses = [], [], [], []
        for _ in range(p.batch_size):
            k = int(self.rng.integers(len(self.images)))
            centre = self._centre(k)
            matrix = random_affine(self.rng, p.rotation_deg, p.scale_jitter)
            shift = np.clip(self.rng.normal(0, p.shift_sigma_mm, 3), -p.reach_mm, p.reach_mm)
            templates.append(warped_cube(self.images[k], centre, p.template_size, p.spacing_mm))
            searches.append(self._jitter(warped_cube(self.images[k], centre, p.search_size,
                                                     p.spacing_mm, matrix, shift)))
            shifts.append(shift[::-1])
            inverses.append(np.linalg.inv(matrix)[::-1, ::-1])
        return TrainingBatch(torch.from_numpy(np.stack(templates)[:, None]),
                             torch.from_numpy(np.stack(searches)[:, None]),
                             torch.tensor(np.stack(shifts), dtype=torch.float32),
                             torch.tensor(np.stack(inverses), dtype=torch.float32))


def _image_of(scan: Scan, method: str):
    if scan.image is None:
        raise ValueError(f"{method} needs images, but scan {scan.scan_id!r} has none")
    return read_image(scan.image)


class LesionTracker(Method):
    """Shared fit/predict of the three trackers (see the module docstring).

    Args:
        params: a :class:`TrackerParams`; keyword overrides (``seed`` among them) are applied
            on top of it. Training length is ``steps``, not epochs: ``max_epochs`` of
            :meth:`~lngraph.baselines.base.Method.build` leaves it alone.

    Attributes:
        train_seconds: wall time of the last :meth:`fit`.
        last_seconds: wall time of the last :meth:`predict` (images read included).
    """

    needs_images = True
    learned = True
    seeded = True

    def __init__(self, params: TrackerParams | None = None, **overrides):
        base = asdict(params) if params is not None else {}
        self.params = TrackerParams(**{**base, **overrides})
        self.net: nn.Module | None = None
        self.train_seconds = float("nan")
        self.last_seconds = float("nan")

    def settings(self) -> list[str]:
        """``name=value`` of the parameters that differ from the defaults (for ``repr``)."""
        defaults = asdict(TrackerParams())
        return [f"{k}={v!r}" for k, v in asdict(self.params).items() if v != defaults[k]]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(self.settings())})"

    def build_net(self) -> nn.Module:
        """A freshly initialised network."""
        raise NotImplementedError

    def loss(self, net: nn.Module, batch: TrainingBatch) -> Tensor:
        """Soft-label cross entropy of the heatmap at the template centre's known position."""
        p = self.params
        first, stride = candidate_grid(p.template_size)
        index = batch.search_index(torch.zeros(1, 3), p.search_size, p.spacing_mm)[:, 0]
        return heatmap_loss(net(batch.template, batch.search), (index - first) / stride)

    def fit(self, train: Cohort, val: Cohort | None = None) -> LesionTracker:
        start = time.perf_counter()
        scans = [s for s in train.scans.values() if s.image is not None]
        if not scans:
            raise ValueError(f"{self.name} needs images, but the training cohort has none")
        p = self.params
        sampler = PatchSampler(scans, p, np.random.default_rng(p.seed))
        with torch.random.fork_rng():
            torch.manual_seed(p.seed)
            net = self.build_net()
            optimiser = torch.optim.Adam(net.parameters(), lr=p.lr)
            net.train()
            for _ in range(p.steps):
                loss = self.loss(net, sampler.batch())
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        self.net = net.eval()
        self.train_seconds = time.perf_counter() - start
        return self

    def predict_points(self, pair: ScanPair) -> np.ndarray:
        """``[n_src, 3]`` predicted world position of each earlier node in the later scan."""
        if self.net is None:
            raise RuntimeError(f"{type(self).__name__} must be fitted before predict()")
        p = self.params
        src, dst = pair.src.nodes, pair.dst.nodes
        if len(src) == 0:
            return np.zeros((0, 3))
        src_image, dst_image = _image_of(pair.src, self.name), _image_of(pair.dst, self.name)
        shift = robust_translation(src.pos, dst.pos, p.gate_mm)
        centres = inside_image(ImageGeometry.from_image(dst_image), src.pos + shift)
        spacing = (p.spacing_mm,) * 3
        template = crop_cubes(src_image, src.pos, mode="fixed", size=p.template_size,
                              spacing_mm=spacing, node_ids=src.node_id, source=pair.src.image)
        search = crop_cubes(dst_image, centres, mode="fixed", size=p.search_size,
                            spacing_mm=spacing, source=pair.dst.image)
        with torch.no_grad():
            logits = self.net(torch.from_numpy(template[:, None]),
                              torch.from_numpy(search[:, None]))
        first, stride = candidate_grid(p.template_size)
        return candidates_to_world(refine_peak(logits).numpy(), centres, first, stride,
                                   p.search_size, p.spacing_mm)

    def predict(self, pair: ScanPair) -> PairPrediction:
        start = time.perf_counter()
        points = self.predict_points(pair)
        matches, scores = match_mapped_points(points, pair.dst.nodes.pos, self.params.gate_mm)
        self.last_seconds = time.perf_counter() - start
        return PairPrediction(len(pair.src.nodes), len(pair.dst.nodes), matches, scores, points)


@register
class DLTLite(LesionTracker):
    """``dlt_lite``: Siamese normalised cross-correlation (:class:`SiameseTracker`)."""

    name = "dlt_lite"

    def build_net(self) -> nn.Module:
        return SiameseTracker(self.params.channels)


@register
class SAMLite(LesionTracker):
    """``sam_lite``: self-supervised voxel embedding, argmax cosine similarity
    (:class:`VoxelEmbeddingTracker`), trained on ``anchors`` template voxels per crop.

    Args:
        anchors: template feature voxels per crop in the InfoNCE (the centre always among
            them).
    """

    name = "sam_lite"

    def __init__(self, params: TrackerParams | None = None, anchors: int = 32, **overrides):
        super().__init__(params, **overrides)
        self.anchors = int(anchors)

    def settings(self) -> list[str]:
        return [*super().settings(), f"anchors={self.anchors}"]

    def build_net(self) -> nn.Module:
        return VoxelEmbeddingTracker(self.params.channels)

    def loss(self, net: nn.Module, batch: TrainingBatch) -> Tensor:
        p = self.params
        t = (p.template_size - 7) // 2
        centre = (t ** 3 - 1) // 2
        others = torch.randperm(t ** 3 - 1)[:self.anchors - 1]
        anchors = torch.cat([torch.tensor([centre]), others + (others >= centre).long()])
        grid = torch.stack(torch.unravel_index(anchors, (t, t, t)), -1).float()
        index = VoxelEncoder.margin + VoxelEncoder.stride * grid
        offsets = p.spacing_mm * (index - (p.template_size - 1) / 2)
        target = batch.search_index(offsets, p.search_size, p.spacing_mm)
        return net.contrastive_loss(batch.template, batch.search, anchors, target)


@register
class TLTLite(LesionTracker):
    """``tlt_lite``: template and search tokens with cross-attention
    (:class:`CrossAttentionTracker`)."""

    name = "tlt_lite"

    def build_net(self) -> nn.Module:
        return CrossAttentionTracker(self.params.channels)
