r"""Node encoders: 2D/3D ResNets on crops (SE of Mao et al., MICCAI 2025) and a geometric encoder.

:class:`ResNetEncoder` is one ResNet (He et al., CVPR 2016) for 2D views or 3D cubes with
configurable block type, depth and width. It is written here rather than taken from MONAI: it
is ~150 lines, adds no dependency, and lets us return the pooled feature *and* a small token
grid (for the SCB cross attention) from one pass. Inside the network normalisation is ``GroupNorm``:
batches hold a variable number of nodes (0 or 1 included), and a per-sample norm behaves the
same in training and evaluation; only the output features are batch-normalised
(:class:`FeatureNorm`).

:class:`GeometryEncoder` replaces the crops when a cohort has no images: an MLP on rigid-
invariant descriptors of each node (its size and the distances and sizes of its nearest
neighbours in the same scan).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch_geometric.utils import to_dense_batch

#: Standard ResNet depths: name → (block type, blocks per stage).
RESNET_DEPTHS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}


def _conv(dims: int, cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Module:
    conv = nn.Conv2d if dims == 2 else nn.Conv3d
    return conv(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(channels, 8), channels)


class BasicBlock(nn.Module):
    """Two 3×3(×3) convolutions with a residual connection."""

    expansion = 1

    def __init__(self, dims: int, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.body = nn.Sequential(
            _conv(dims, cin, width, 3, stride), _norm(width), nn.ReLU(inplace=True),
            _conv(dims, width, cout, 3), _norm(cout))
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout
                         else nn.Sequential(_conv(dims, cin, cout, 1, stride), _norm(cout)))

    def forward(self, x: Tensor) -> Tensor:
        out = self.body(x)
        out += self.shortcut(x)
        return out.relu_()


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3(×3) convolution, 1×1 expand (×4), with a residual connection."""

    expansion = 4

    def __init__(self, dims: int, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.body = nn.Sequential(
            _conv(dims, cin, width, 1), _norm(width), nn.ReLU(inplace=True),
            _conv(dims, width, width, 3, stride), _norm(width), nn.ReLU(inplace=True),
            _conv(dims, width, cout, 1), _norm(cout))
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout
                         else nn.Sequential(_conv(dims, cin, cout, 1, stride), _norm(cout)))

    def forward(self, x: Tensor) -> Tensor:
        out = self.body(x)
        out += self.shortcut(x)
        return out.relu_()


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class FeatureNorm(nn.BatchNorm1d):
    """Batch normalisation of feature vectors, safe for batches of 0 or 1 node.

    Every encoder ends with it: without it the features of all nodes start nearly parallel
    (pooled ReLU maps share a large common component), every cosine is close to 1, and the
    contrastive and similarity losses take many epochs to pull them apart. A training batch
    with fewer than two vectors is normalised with the running statistics instead of failing.
    """

    def forward(self, x: Tensor) -> Tensor:
        if self.training and x.shape[0] < 2:
            return nn.functional.batch_norm(x, self.running_mean, self.running_var, self.weight,
                                            self.bias, training=False, eps=self.eps)
        return super().forward(x)


class ResNetEncoder(nn.Module):
    r"""A 2D or 3D ResNet mapping a crop to a feature vector and a token grid.

    Stem: one 3×3(×3) convolution with stride ``stem_stride`` (no max-pool: crops are 24 voxels
    wide). Stage :math:`s` has ``layers[s]`` blocks of width ``widths[s]``; every stage after
    the first halves the resolution. The last feature map is average-pooled to a vector,
    projected to ``out_channels`` and batch-normalised (:class:`FeatureNorm`), and adaptively
    pooled to a ``token_grid``\ :sup:`dims` grid
    of tokens (the input of the SCB cross attention; skipped when :attr:`grid_tokens` is
    False). A batch passes through the convolutions in equal parts of about
    :attr:`chunk_elements` input elements (by default :data:`CHUNK_ELEMENTS` of ``dims``), so
    that the activations stay a few MB (larger ones cost more in memory allocation and cache
    misses than they save in per-call overhead); the output is
    that of one pass: the convolutions and GroupNorm act on each sample alone, and the head
    sees the whole batch. A 3D network keeps its convolution weights, and so its feature maps,
    channels-last (``torch.channels_last_3d``), where oneDNN's CPU convolutions need no
    layout conversions (the same values up to rounding).

    Args:
        dims: 2 (views) or 3 (cubes).
        layers: blocks per stage, e.g. ``(3, 4, 6, 3)`` for ResNet-34.
        widths: base width per stage, e.g. ``(64, 128, 256, 512)``.
        block: ``"basic"`` or ``"bottleneck"`` (output width ×4).
        out_channels: size of the feature vector.
        in_channels: input channels.
        stem_width: channels of the stem convolution (default ``widths[0]``).
        stem_stride: stride of the stem convolution.
        token_grid: side of the token grid.

    Shapes:
        - **input:** :math:`(B, C_{in}, S, S)` or :math:`(B, C_{in}, S, S, S)`
        - **output:** feature :math:`(B, F_{out})` and tokens :math:`(B, L, C_{last})` with
          :math:`L` = ``token_grid ** dims`` and :math:`C_{last}` = :attr:`token_channels`
          (``None`` when :attr:`grid_tokens` is False).
    """

    #: Compute the token grid (models without SCB turn it off).
    grid_tokens: bool = True
    #: Input elements per pass through the convolutions (``None``: ``CHUNK_ELEMENTS[dims]``).
    chunk_elements: int | None = None
    #: Default :attr:`chunk_elements` by ``dims``: the fastest on one CPU thread for the crop
    #: sizes of the presets (``benchmarks/model_speed.py``).
    CHUNK_ELEMENTS = {2: 2 ** 17, 3: 2 ** 19}

    def __init__(self, dims: int, layers: tuple[int, ...], widths: tuple[int, ...],
                 block: str = "basic", out_channels: int = 128, in_channels: int = 1,
                 stem_width: int | None = None, stem_stride: int = 1, token_grid: int = 3):
        super().__init__()
        if dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, got {dims}")
        if len(layers) != len(widths) or not layers:
            raise ValueError(f"layers {layers} and widths {widths} must be non-empty and of "
                             "equal length")
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {sorted(BLOCKS)}, got {block!r}")
        self.dims = dims
        stem_width = stem_width or widths[0]
        self.stem = nn.Sequential(_conv(dims, in_channels, stem_width, 3, stem_stride),
                                  _norm(stem_width), nn.ReLU(inplace=True))
        stages, cin = [], stem_width
        for s, (n, width) in enumerate(zip(layers, widths, strict=True)):
            blocks = []
            for b in range(n):
                blocks.append(BLOCKS[block](dims, cin, width, 2 if s > 0 and b == 0 else 1))
                cin = width * BLOCKS[block].expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.token_channels = cin
        self.tokens = (nn.AdaptiveAvgPool2d if dims == 2 else nn.AdaptiveAvgPool3d)(token_grid)
        self.head = nn.Sequential(nn.Linear(cin, out_channels), FeatureNorm(out_channels))
        if dims == 3:
            self.to(memory_format=torch.channels_last_3d)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        pooled, tokens = [], []
        chunk = self.chunk_elements or self.CHUNK_ELEMENTS[self.dims]
        parts = -(-len(x) * x[0].numel() // chunk) if len(x) else 1
        for part in x.tensor_split(parts):
            fmap = self.stages(self.stem(part))
            pooled.append(fmap.flatten(2).mean(-1))
            if self.grid_tokens:
                tokens.append(self.tokens(fmap).flatten(2).transpose(1, 2))
        feature = self.head(torch.cat(pooled))
        return feature, torch.cat(tokens) if self.grid_tokens else None


def knn_geometry(pos: Tensor, radius: Tensor, batch: Tensor | None, k: int,
                 distance_scale: float = 50.0) -> Tensor:
    r"""Rigid-invariant descriptors of each node from its scan's node layout.

    For node :math:`i` with radius :math:`r_i` and its :math:`k` nearest neighbours
    :math:`m = 1..k` in the same scan (graph of ``batch``), by distance :math:`d_{im}`:

    .. math::
        g_i = \big[\log r_i,\ r_i / 10,\ (e^{-d_{im}/D})_{m},\
        (\log(r_m / r_i))_{m},\ (\mathbb{1}[m \text{ exists}])_{m}\big]
        \in \mathbb{R}^{2 + 3k}

    with :math:`D` = ``distance_scale`` mm; missing neighbours (scans with fewer than
    :math:`k + 1` nodes) give zeros. Only distances and sizes enter, so :math:`g` is unchanged
    by any rotation or translation of the scan.

    Shapes:
        - **input:** pos :math:`(N, 3)` mm, radius :math:`(N)` mm, batch :math:`(N)`
        - **output:** :math:`(N, 2 + 3k)`
    """
    if len(pos) == 0:
        return pos.new_zeros((0, 2 + 3 * k))
    if batch is None:
        batch = pos.new_zeros(len(pos), dtype=torch.long)
    log_r = torch.log(radius.clamp_min(1e-3))
    dense, mask = to_dense_batch(pos, batch)
    dense_log_r, _ = to_dense_batch(log_r, batch)
    n_max = dense.shape[1]
    dist = torch.cdist(dense, dense)
    invalid = ~(mask[:, :, None] & mask[:, None, :]) | torch.eye(n_max, dtype=torch.bool,
                                                                 device=pos.device)
    dist = dist.masked_fill(invalid, math.inf)
    kk = min(k, max(n_max - 1, 0))
    near, idx = dist.topk(kk, dim=-1, largest=False)
    exists = torch.isfinite(near)
    closeness = torch.where(exists, torch.exp(-near / distance_scale), 0.0)
    neighbour_log_r = torch.gather(dense_log_r[:, None, :].expand(-1, n_max, -1), 2, idx)
    size_ratio = torch.where(exists, neighbour_log_r - dense_log_r[:, :, None], 0.0)
    per_node = torch.cat([closeness, size_ratio, exists.float()], dim=-1)[mask]
    per_node = nn.functional.pad(per_node.view(len(pos), 3, kk), (0, k - kk)).flatten(1)
    return torch.cat([log_r[:, None], radius[:, None] / 10.0, per_node], dim=-1)


class GeometryEncoder(nn.Module):
    r"""Node features for geometry-only cohorts: an MLP on :func:`knn_geometry` descriptors.

    .. math::
        h_i = \mathrm{FeatureNorm}(\mathrm{MLP}(g_i))

    Args:
        out_channels: feature size.
        k: neighbours per node in :math:`g_i`.
        hidden_channels: width of the hidden layer.
        distance_scale: :math:`D` in mm.

    Shapes:
        - **input:** pos :math:`(N, 3)`, radius :math:`(N)`, batch :math:`(N)`
        - **output:** :math:`(N, F_{out})`
    """

    def __init__(self, out_channels: int, k: int = 8, hidden_channels: int = 64,
                 distance_scale: float = 50.0):
        super().__init__()
        self.k = k
        self.distance_scale = distance_scale
        self.mlp = nn.Sequential(nn.Linear(2 + 3 * k, hidden_channels), nn.ReLU(),
                                 nn.Linear(hidden_channels, hidden_channels), nn.ReLU(),
                                 nn.Linear(hidden_channels, out_channels),
                                 FeatureNorm(out_channels))

    def forward(self, pos: Tensor, radius: Tensor, batch: Tensor | None = None) -> Tensor:
        return self.mlp(knn_geometry(pos, radius, batch, self.k, self.distance_scale))
