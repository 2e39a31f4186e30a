r"""The ``lgm`` baseline: Learnable Graph Matching (He et al., CVPR 2021) adapted to lymph nodes.

He, Huang, Wang & Zhang, "Learnable Graph Matching: Incorporating Graph Partitioning with Deep
Feature Learning for Multiple Object Tracking" (CVPR 2021) match two graphs by a Lawler QAP
whose affinities are learned, relaxed to a convex QP and differentiated through. Our
re-implementation for follow-up scans:

1. **Node features** (per scan, rigid-invariant): log radius, log half short axis, elongation,
   log distances to the :data:`K_NEIGHBOURS` nearest nodes, log counts of nodes within 25 and
   50 mm, log distance to the scan's node centroid; and, when the cohort has images, intensity
   statistics of a radius-scaled crop (:func:`~lngraph.data.crops.crop_cubes`): inner and
   whole-cube mean and standard deviation and a four-shell radial profile. Standardised with
   training statistics.
2. **Identity-initialised node encoder**: a linear layer starting as the identity.
3. **Cross-graph GCN** (one layer): each node aggregates the other scan's nodes weighted by
   :math:`\mathrm{softmax}(\cos(h_i, h_a)/\tau)` and adds a (zero-initialised) linear map of
   the difference, :math:`h_i \leftarrow h_i + W (h_i - \sum_a w_{ia} h_a)`.
4. **Affinities**: node affinity :math:`u_{ia}` is a linear function of the cosine of the
   encoded features, of :math:`\exp(-d_{ia}/\ell_p)` with :math:`d_{ia}` the distance after a
   rigid CPD alignment of the two node sets (the counterpart of the motion cue of the MOT
   original) and of the log-radius change. Edge affinity (intra-scan distances) for
   :math:`i \ne j, a \ne b`:
   :math:`K_{ia,jb} = \exp(-(d_{ij} - d_{ab})^2 / 2\sigma^2)\,\exp(-(d_{ij} + d_{ab}) / 2\ell_e)`.
5. **Relaxed QP**: :math:`\min \tfrac12 x^\top (I - s\tilde K) x - u^\top x` over the doubly
   sub-stochastic polytope (:func:`~lngraph.matching.qp.convexify`,
   :func:`~lngraph.matching.qp.solve_assignment_qp`), :math:`s = \mathrm{sigmoid}(\cdot)`
   learned; differentiable by unrolling.
6. **Loss**: class-balanced BCE between the soft assignment and the ground truth.
7. **Inference**: Hungarian on the soft assignment; pairs below a threshold chosen on the
   validation patients (pooled F1) are left unmatched (disappeared/new).

This module owns the features, the :class:`LGMNet` model and the :class:`LGM` method.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from lngraph.baselines.base import Method, register
from lngraph.baselines.pointset import cpd_rigid
from lngraph.data.crops import RADIUS_EXPANSION, crop_cubes
from lngraph.io.cohort import Cohort, Scan, ScanPair
from lngraph.io.image import read_image
from lngraph.io.matches import PairPrediction
from lngraph.matching.batched import BatchedMatches, apply_threshold, batched_assignment
from lngraph.matching.qp import convexify, solve_assignment_qp
from lngraph.metrics.matching import pair_counts, summarize

#: Nearest-neighbour distances in the geometric node descriptor.
K_NEIGHBOURS = 4
#: Distance (mm) standing in for a missing neighbour.
FAR_MM = 200.0
#: Count radii (mm) of the geometric node descriptor.
COUNT_RADII_MM = (25.0, 50.0)
#: Crop size (voxels per axis) of the appearance statistics.
CROP_SIZE = 16
#: Smallest field of view (mm) of those crops, whose field of view is otherwise
#: ``2 × RADIUS_EXPANSION × radius`` (the paper's 50 % expanded radii).
CROP_MIN_FOV_MM = 16.8
#: Thresholds tried on the validation patients.
THRESHOLDS = tuple(np.round(np.arange(0.05, 0.96, 0.05), 2))


def geometry_features(scan: Scan) -> np.ndarray:
    """``[N, 6 + K_NEIGHBOURS]`` rigid-invariant descriptors of a scan's nodes (see module)."""
    nodes = scan.nodes
    n = len(nodes)
    radius = nodes.radius_mm
    short = nodes.short_axis_mm
    elongation = np.where(np.isfinite(nodes.long_axis_mm), 2 * radius / short, 1.0)
    dist = np.linalg.norm(nodes.pos[:, None] - nodes.pos[None], axis=-1)
    np.fill_diagonal(dist, np.inf)
    nearest = np.sort(dist, axis=1)[:, :K_NEIGHBOURS]
    nearest = np.pad(nearest, ((0, 0), (0, K_NEIGHBOURS - nearest.shape[1])),
                     constant_values=FAR_MM)
    nearest = np.minimum(nearest, FAR_MM)
    counts = [np.log1p((dist <= r).sum(1)) for r in COUNT_RADII_MM]
    centroid = np.linalg.norm(nodes.pos - nodes.pos.mean(0), axis=1) if n else np.zeros(0)
    return np.column_stack([np.log(radius), np.log(short / 2), np.log(elongation),
                            np.log1p(nearest / 10.0), *counts,
                            np.log1p(centroid / 10.0)]).reshape(n, 6 + K_NEIGHBOURS)


def appearance_features(scan: Scan) -> np.ndarray:
    """``[N, 8]`` intensity statistics of radius-scaled crops (``[0, 1]`` after windowing):
    inner-half mean and std, whole-cube mean and std, mean of four concentric shells."""
    if scan.image is None:
        raise ValueError(f"scan {scan.scan_id!r} of patient {scan.patient_id!r} has no image; "
                         "appearance features need one")
    nodes = scan.nodes
    if len(nodes) == 0:
        return np.zeros((0, 8))
    cubes = crop_cubes(read_image(scan.image), nodes.pos, nodes.radius_mm, mode="radius",
                       size=CROP_SIZE, radius_factor=RADIUS_EXPANSION,
                       min_fov_mm=CROP_MIN_FOV_MM, node_ids=nodes.node_id, source=scan.image)
    cubes = cubes.reshape(len(nodes), -1).astype(np.float64)
    grid = np.indices((CROP_SIZE,) * 3).reshape(3, -1) - (CROP_SIZE - 1) / 2
    radial = np.linalg.norm(grid, axis=0) / (CROP_SIZE / 2)
    shells = np.minimum((radial * 4).astype(int), 3)
    inner = cubes[:, radial <= 0.5]
    profile = [cubes[:, shells == k].mean(1) for k in range(4)]
    return np.column_stack([inner.mean(1), inner.std(1), cubes.mean(1), cubes.std(1),
                            *profile])


def _distances(pos: np.ndarray) -> np.ndarray:
    return np.linalg.norm(pos[:, None] - pos[None], axis=-1)


def _log_radius(scan: Scan) -> np.ndarray:
    return np.log(scan.nodes.radius_mm)


def _pair_inputs(pair: ScanPair, features: dict[str, np.ndarray]) -> dict[str, Tensor]:
    """Tensors the model needs for one pair (float64)."""
    mapped = cpd_rigid(pair.dst.nodes.pos, pair.src.nodes.pos)(pair.src.nodes.pos)
    cross = np.linalg.norm(mapped[:, None] - pair.dst.nodes.pos[None], axis=-1)
    arrays = {
        "x_src": features[pair.src.scan_id], "x_dst": features[pair.dst.scan_id],
        "d_src": _distances(pair.src.nodes.pos), "d_dst": _distances(pair.dst.nodes.pos),
        "cross": cross,
        "dlogr": np.abs(_log_radius(pair.src)[:, None] - _log_radius(pair.dst)[None]),
    }
    return {k: torch.as_tensor(np.asarray(v, dtype=np.float64)) for k, v in arrays.items()}


class LGMNet(nn.Module):
    r"""Encoder, cross-graph GCN and affinities of Learnable Graph Matching (module doc).

    Args:
        dim: node feature size.
        tau: temperature of the cross-graph attention.
        qp_iterations: ADMM iterations of the QP solver.

    Shapes:
        ``forward(x_src [n1, dim], x_dst [n2, dim], d_src [n1, n1], d_dst [n2, n2],
        cross [n1, n2], dlogr [n1, n2])`` → soft assignment ``[n1, n2]``.
    """

    def __init__(self, dim: int, tau: float = 0.1, qp_iterations: int = 150):
        super().__init__()
        self.dim = dim
        self.tau = tau
        self.qp_iterations = qp_iterations
        self.encoder = nn.Linear(dim, dim)
        self.cross = nn.Linear(dim, dim, bias=False)
        self.node_affinity = nn.Linear(3, 1)
        self.log_pos_scale = nn.Parameter(torch.zeros(()))
        self.log_sigma = nn.Parameter(torch.zeros(()))
        self.log_edge_scale = nn.Parameter(torch.zeros(()))
        self.strength = nn.Parameter(torch.zeros(()))
        self.reset_parameters()

    def reset_parameters(self):
        with torch.no_grad():
            self.encoder.weight.copy_(torch.eye(self.dim))
            self.encoder.bias.zero_()
            self.cross.weight.zero_()
            self.node_affinity.weight.copy_(torch.tensor([[1.0, 1.0, -0.5]]))
            self.node_affinity.bias.fill_(-0.5)
            self.log_pos_scale.fill_(math.log(10.0))
            self.log_sigma.fill_(math.log(8.0))
            self.log_edge_scale.fill_(math.log(40.0))
            self.strength.zero_()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, tau={self.tau})"

    def encode(self, x_src: Tensor, x_dst: Tensor) -> tuple[Tensor, Tensor]:
        """Identity-initialised encoder, then one cross-graph GCN layer."""
        h_src, h_dst = self.encoder(x_src), self.encoder(x_dst)
        sim = nn.functional.normalize(h_src, dim=-1) @ nn.functional.normalize(h_dst, dim=-1).T
        to_src = torch.softmax(sim / self.tau, dim=1) @ h_dst
        to_dst = torch.softmax(sim.T / self.tau, dim=1) @ h_src
        return h_src + self.cross(h_src - to_src), h_dst + self.cross(h_dst - to_dst)

    def affinities(self, x_src, x_dst, d_src, d_dst, cross, dlogr) -> tuple[Tensor, Tensor]:
        """Node affinity ``u [n1, n2]`` and Lawler edge affinity ``K [n1*n2, n1*n2]``."""
        h_src, h_dst = self.encode(x_src, x_dst)
        cos = nn.functional.normalize(h_src, dim=-1) @ nn.functional.normalize(h_dst, dim=-1).T
        near = torch.exp(-cross / self.log_pos_scale.exp())
        u = self.node_affinity(torch.stack([cos, near, dlogr], dim=-1)).squeeze(-1)
        n1, n2 = cross.shape
        diff = d_src[:, None, :, None] - d_dst[None, :, None, :]
        total = d_src[:, None, :, None] + d_dst[None, :, None, :]
        k = torch.exp(-diff ** 2 / (2 * self.log_sigma.exp() ** 2)
                      - total / (2 * self.log_edge_scale.exp()))
        off_src = 1 - torch.eye(n1, dtype=k.dtype)
        off_dst = 1 - torch.eye(n2, dtype=k.dtype)
        k = k * off_src[:, None, :, None] * off_dst[None, :, None, :]
        return u, k.reshape(n1 * n2, n1 * n2)

    def forward(self, x_src, x_dst, d_src, d_dst, cross, dlogr) -> Tensor:
        n1, n2 = cross.shape
        if n1 == 0 or n2 == 0:
            return cross.new_zeros((n1, n2))
        u, k = self.affinities(x_src, x_dst, d_src, d_dst, cross, dlogr)
        quad = convexify(k, torch.sigmoid(self.strength))
        return solve_assignment_qp(quad, u, max_iter=self.qp_iterations)


def balanced_bce(soft: Tensor, target: Tensor) -> Tensor:
    """Binary cross-entropy with positives and negatives weighted to one half each."""
    soft = soft.clamp(1e-6, 1 - 1e-6)
    pos, neg = target > 0.5, target <= 0.5
    loss = soft.new_zeros(())
    if pos.any():
        loss = loss - 0.5 * torch.log(soft[pos]).mean()
    if neg.any():
        loss = loss - 0.5 * torch.log1p(-soft[neg]).mean()
    return loss


def _target(pair: ScanPair) -> Tensor:
    y = torch.zeros(len(pair.src.nodes), len(pair.dst.nodes), dtype=torch.float64)
    gt = pair.gt_matches()
    y[gt[:, 0], gt[:, 1]] = 1.0
    return y


@register
class LGM(Method):
    """Learnable Graph Matching (He et al., CVPR 2021) for scan pairs (see the module doc).

    Args:
        epochs: passes over the training pairs.
        lr: Adam learning rate.
        appearance: use crop intensity statistics (``None``: when the cohort has images).
        qp_iterations: ADMM iterations of the QP (training and inference).
        seed: seed of initialisation and pair order.

    Attributes:
        threshold: soft-assignment value below which a Hungarian pair is left unmatched (chosen
            on validation).
        history: mean training loss per epoch.
    """

    name = "lgm"
    learned = True
    seeded = True
    epochs_option = "epochs"

    def __init__(self, epochs: int = 20, lr: float = 0.02, appearance: bool | None = None,
                 qp_iterations: int = 150, seed: int = 0):
        self.epochs = epochs
        self.lr = lr
        self.appearance = appearance
        self.qp_iterations = qp_iterations
        self.seed = seed
        self.threshold = 0.5
        self.history: list[float] = []
        self.net: LGMNet | None = None
        self._mean: np.ndarray | None = None
        self._std: np.ndarray | None = None
        self._use_images = False

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(epochs={self.epochs}, lr={self.lr}, "
                f"appearance={self.appearance}, qp_iterations={self.qp_iterations}, "
                f"seed={self.seed})")

    def _raw_features(self, scan: Scan) -> np.ndarray:
        geometry = geometry_features(scan)
        if not self._use_images:
            return geometry
        return np.concatenate([geometry, appearance_features(scan)], axis=1)

    def _features(self, scans) -> dict[str, np.ndarray]:
        return {s.scan_id: (self._raw_features(s) - self._mean) / self._std for s in scans}

    def _soft(self, pair: ScanPair, features: dict[str, np.ndarray]) -> Tensor:
        with torch.no_grad():
            return self.net(**_pair_inputs(pair, features))

    def fit(self, train: Cohort, val: Cohort | None = None) -> LGM:
        self._use_images = train.has_images if self.appearance is None else self.appearance
        if self._use_images and not train.has_images:
            raise ValueError("appearance=True needs a cohort whose scans all have images")
        pairs = [p for p in train.pairs() if p.has_ground_truth
                 and len(p.src.nodes) and len(p.dst.nodes)]
        if not pairs:
            raise ValueError("lgm needs training pairs with ground truth (track_id) and nodes")
        raw = np.concatenate([self._raw_features(s) for s in train.scans.values()
                              if len(s.nodes)])
        self._mean, self._std = raw.mean(0), raw.std(0) + 1e-6
        features = self._features(train.scans.values())
        inputs = [_pair_inputs(p, features) for p in pairs]
        targets = [_target(p) for p in pairs]

        torch.manual_seed(self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        self.net = LGMNet(raw.shape[1], qp_iterations=self.qp_iterations).double()
        optimiser = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        self.history = []
        for _ in range(self.epochs):
            losses = []
            for k in torch.randperm(len(pairs), generator=generator).tolist():
                loss = balanced_bce(self.net(**inputs[k]), targets[k])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                losses.append(float(loss.detach()))
            self.history.append(float(np.mean(losses)))
        self.net.eval()
        self.threshold = self._select_threshold(val if val is not None else train)
        return self

    def _select_threshold(self, cohort: Cohort) -> float:
        """The threshold of :data:`THRESHOLDS` with the best pooled F1 on ``cohort`` (the
        middle one where several tie, away from the edges of the flat optimum)."""
        pairs = [p for p in cohort.pairs() if p.has_ground_truth]
        if not pairs:
            return self.threshold
        features = self._features(cohort.scans.values())
        assigned = [batched_assignment(self._soft(p, features), threshold=None) for p in pairs]

        def f1(threshold: float) -> float:
            counts = [pair_counts(p, self._prediction(apply_threshold(a, threshold)))
                      for p, a in zip(pairs, assigned, strict=True)]
            value = summarize(counts)["f1"]
            return -1.0 if math.isnan(value) else value

        values = np.array([f1(t) for t in THRESHOLDS])
        best = np.flatnonzero(values >= values.max() - 1e-12)
        return float(THRESHOLDS[best[len(best) // 2]])

    @staticmethod
    def _prediction(assigned: BatchedMatches) -> PairPrediction:
        matches, scores, n_src, n_dst = assigned.pairs()[0]
        return PairPrediction(n_src, n_dst, matches, scores)

    def predict(self, pair: ScanPair) -> PairPrediction:
        if self.net is None:
            raise RuntimeError("LGM.predict() needs fit() first")
        if len(pair.src.nodes) == 0 or len(pair.dst.nodes) == 0:
            return PairPrediction(len(pair.src.nodes), len(pair.dst.nodes))
        features = self._features([pair.src, pair.dst])
        return self._prediction(batched_assignment(self._soft(pair, features),
                                                   threshold=self.threshold))
