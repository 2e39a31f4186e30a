r"""Compact networks of the lesion-tracker baselines ``dlt_lite``, ``sam_lite`` and ``tlt_lite``.

Every tracker reads a *template* cube (around a node of the earlier scan) and a *search* cube
(a larger region of the later scan), both ``[B, 1, D, D, D]`` in numpy order ``(z, y, x)`` on
one isotropic grid, and returns logits ``[B, n, n, n]`` over *candidate* positions of the
template centre in the search cube. The candidates are the same for all three: the
placements of the template that fit inside the search cube on the stride-2 feature grid,
:math:`n = (D_s - D_t)/2 + 1` per axis, candidate ``m`` at search array index
``(D_t - 1)/2 + 2m`` (:func:`candidate_grid`), i.e. up to :math:`\pm (D_s - D_t)/2` voxels
from the search centre. Turning that into world millimetres is the caller's business. Sizes
must be odd with ``(D - 1) / 2`` even (``D ≡ 1 mod 4``), so that the centre of a cube is a
voxel of the feature grid.

This module owns the shared :class:`VoxelEncoder`, the three trackers, their losses
(:func:`heatmap_loss`) and :func:`refine_peak`. It knows no files.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def check_cube_size(size: int, what: str = "size") -> int:
    """Return ``size`` if it is ``≡ 1 (mod 4)`` and at least 9, else raise ``ValueError``."""
    size = int(size)
    if size < 9 or size % 4 != 1:
        raise ValueError(f"{what} must be 9, 13, 17, … (≡ 1 mod 4), got {size}")
    return size


def candidate_grid(template_size: int) -> tuple[float, int]:
    """``(first, stride)``: candidate ``m`` sits at search array index ``first + stride · m``."""
    return (template_size - 1) / 2, VoxelEncoder.stride


def central_candidates(dense: Tensor, template_features: int) -> Tensor:
    """The candidates of a dense map over the search feature grid ``[..., S, S, S]``: the
    template-sized windows that fit inside, ``S - t + 1`` per axis, starting at ``(t - 1)/2``."""
    lo, n = (template_features - 1) // 2, dense.shape[-1] - template_features + 1
    return dense[..., lo:lo + n, lo:lo + n, lo:lo + n]


def heatmap_loss(logits: Tensor, target: Tensor, sigma: float = 1.0) -> Tensor:
    r"""Cross entropy between the softmax of candidate logits and a Gaussian around the target,

    .. math::
        \mathcal{L} = -\sum_m q_m \log \operatorname{softmax}(s)_m, \qquad
        q_m \propto \exp\big(-\lVert m - m^\ast \rVert^2 / 2\sigma^2\big),

    averaged over the batch (a soft label: the target lies between candidates).

    Args:
        logits: ``[N, n, n, n]`` candidate logits.
        target: ``[N, 3]`` continuous candidate coordinates :math:`m^\ast` (array order).
        sigma: width of the target in candidate units.
    """
    n = logits.shape[-1]
    axis = torch.arange(n, dtype=logits.dtype, device=logits.device)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(1, -1, 3)
    d2 = ((grid - target[:, None, :]) ** 2).sum(-1)
    q = torch.softmax(-d2 / (2 * sigma ** 2), dim=1)
    return -(q * torch.log_softmax(logits.flatten(1), dim=1)).sum(1).mean()


def refine_peak(logits: Tensor) -> Tensor:
    r"""Argmax of each heatmap refined by a local soft-argmax.

    The softmax probabilities of the :math:`3^3` candidates around the argmax (fewer at the
    border) are renormalised and their centroid is returned.

    Args:
        logits: ``[N, n, n, n]``.

    Returns:
        ``[N, 3]`` continuous candidate coordinates (array order).
    """
    flat = logits.flatten(1)
    n = logits.shape[-1]
    peak = torch.stack(torch.unravel_index(flat.argmax(1), (n, n, n)), -1)
    prob = torch.softmax(flat, 1).reshape(logits.shape)
    out = torch.empty(len(logits), 3, dtype=logits.dtype)
    for k, (z, y, x) in enumerate(peak.tolist()):
        lo = [max(v - 1, 0) for v in (z, y, x)]
        window = prob[k, lo[0]:z + 2, lo[1]:y + 2, lo[2]:x + 2]
        axes = [torch.arange(lo[a], lo[a] + window.shape[a], dtype=logits.dtype)
                for a in range(3)]
        grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)
        out[k] = (grid * window[..., None]).sum((0, 1, 2)) / window.sum()
    return out


def valid_correlation(f: Tensor, g: Tensor) -> Tensor:
    r"""Per-sample cross-correlation summed over channels, valid placements only,

    .. math::
        c_m = \sum_{k} \sum_{x} f_k(x) \, g_k(x + m), \qquad 0 \le m \le S - t,

    computed with FFTs on the search grid (the template is zero-padded to it, so no
    placement wraps around).

    Shapes:
        - **input:** :math:`(B, C, t, t, t)`, :math:`(B, C, S, S, S)`
        - **output:** :math:`(B, S - t + 1, S - t + 1, S - t + 1)`
    """
    size, n = g.shape[-3:], g.shape[-1] - f.shape[-1] + 1
    spectrum = torch.fft.rfftn(f, s=size, dim=(2, 3, 4)).conj() * torch.fft.rfftn(
        g, s=size, dim=(2, 3, 4))
    return torch.fft.irfftn(spectrum.sum(1), s=size, dim=(1, 2, 3))[:, :n, :n, :n]


def box_sum(x: Tensor, t: int) -> Tensor:
    """Sums of ``x`` over every ``t × t × t`` window of its last three axes (valid windows),
    by cumulative sums."""
    for dim in (-3, -2, -1):
        c = torch.cat([torch.zeros_like(x.narrow(dim, 0, 1)), x.cumsum(dim)], dim)
        x = c.narrow(dim, t, c.shape[dim] - t) - c.narrow(dim, 0, c.shape[dim] - t)
    return x


class VoxelEncoder(nn.Module):
    r"""A shared 3D CNN: three unpadded :math:`3^3` convolutions, the second with stride 2.

    .. math::
        \mathbf{F} = W_3 * \operatorname{ReLU}\big(W_2 *_{2} \operatorname{ReLU}(W_1 * I)\big)

    Without padding (as in SiamFC) every feature sees only image, never a border: the features
    of a template are exactly those of the same voxels inside a larger search cube. Feature
    voxel :math:`m` is centred on input voxel :math:`2m + 4` (:attr:`stride`,
    :attr:`margin`) and sees :math:`9^3` input voxels.

    Args:
        channels (int): Output channels (the first layer has half as many).

    Shapes:
        - **input:** :math:`(B, 1, D, D, D)`, :math:`D \ge 9` odd
        - **output:** :math:`(B, C, n, n, n)` with :math:`n = (D - 7)/2`
    """

    stride = 2
    margin = 4

    def __init__(self, channels: int = 16):
        super().__init__()
        self.channels = channels
        self.conv1 = nn.Conv3d(1, channels // 2, 3)
        self.conv2 = nn.Conv3d(channels // 2, channels, 3, stride=2)
        self.conv3 = nn.Conv3d(channels, channels, 3)
        self.reset_parameters()

    def reset_parameters(self):
        for conv in (self.conv1, self.conv2, self.conv3):
            conv.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        return self.conv3(F.relu(self.conv2(F.relu(self.conv1(x)))))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(channels={self.channels})"


class SiameseTracker(nn.Module):
    r"""The Siamese tracker of `"Deep Lesion Tracker: Monitoring Lesions in 4D Longitudinal
    Imaging Studies" <https://arxiv.org/abs/2012.04872>`_ (Cai et al., CVPR 2021), in miniature.

    One :class:`VoxelEncoder` embeds the template (:math:`\mathbf{f}`) and the search region
    (:math:`\mathbf{g}`); the template features slide over the search features and every
    placement :math:`m` scores a scaled zero-mean normalised cross-correlation

    .. math::
        s_m = \gamma \, \frac{\langle \mathbf{f} - \bar{\mathbf{f}},\
        \mathbf{g}_{[m]} - \bar{\mathbf{g}}_{[m]} \rangle}
        {\lVert \mathbf{f} - \bar{\mathbf{f}} \rVert \,
        \lVert \mathbf{g}_{[m]} - \bar{\mathbf{g}}_{[m]} \rVert}

    where :math:`\mathbf{g}_{[m]}` is the template-sized window of search features at
    :math:`m`, bars are per-channel means over the window (so flat regions score nothing) and
    :math:`\gamma` is learned (a small :attr:`eps` is added to both squared norms). The
    correlation runs through FFTs and the window statistics through cumulative sums (both
    exact, and far cheaper on a CPU than a grouped convolution).
    Placement :math:`m` puts the template centre at search index :math:`(D_t - 1)/2 + 2m`, so
    the tracker reaches :math:`\pm (D_s - D_t)/2` voxels around the search centre.

    Args:
        channels (int): Encoder channels.

    Shapes:
        - **input:** template :math:`(B, 1, D_t, D_t, D_t)`, search :math:`(B, 1, D_s, D_s,
          D_s)`
        - **output:** :math:`(B, n, n, n)` with :math:`n = (D_s - D_t)/2 + 1`
    """

    eps = 1e-6

    def __init__(self, channels: int = 16):
        super().__init__()
        self.encoder = VoxelEncoder(channels)
        self.log_scale = nn.Parameter(torch.empty(()))
        self.reset_parameters()

    def reset_parameters(self):
        self.encoder.reset_parameters()
        nn.init.constant_(self.log_scale, math.log(10.0))

    def forward(self, template: Tensor, search: Tensor) -> Tensor:
        f, g = self.encoder(template), self.encoder(search)
        t = f.shape[-1]
        f = f - f.mean((2, 3, 4), keepdim=True)
        corr = valid_correlation(f, g)
        window = t ** 3
        energy = box_sum((g * g).sum(1), t) - (box_sum(g, t) ** 2).sum(1) / window
        f_energy = (f * f).flatten(1).sum(1)[:, None, None, None]
        norm = ((f_energy + self.eps) * (energy.clamp_min(0) + self.eps)).sqrt()
        return self.log_scale.exp() * corr / norm

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(channels={self.encoder.channels})"


class VoxelEmbeddingTracker(nn.Module):
    r"""The anatomical voxel embedding of `"SAM: Self-supervised Learning of Pixel-wise
    Anatomical Embeddings in Radiological Images" <https://arxiv.org/abs/2012.02383>`_ (Yan et
    al., IEEE TMI 2022), in miniature.

    A :class:`VoxelEncoder` and a :math:`1^3` projection give a unit embedding
    :math:`\mathbf{e}(v)` at every feature voxel. The tracker compares the embedding of the
    template centre with every search voxel,

    .. math::
        s_m = \cos\big(\mathbf{e}_t(c), \mathbf{e}_s(m)\big) / \tau,

    over the candidates (:func:`candidate_grid`), and is trained with a voxel-level InfoNCE
    (:meth:`contrastive_loss`): anchor voxels of the template against all search voxels, the
    voxel at the anchor's known position positive.

    Args:
        channels (int): Encoder channels.
        dim (int): Embedding size.
        tau (float): Temperature.

    Shapes:
        - **input:** template :math:`(B, 1, D_t, D_t, D_t)`, search :math:`(B, 1, D_s, D_s,
          D_s)`
        - **output:** :math:`(B, n, n, n)` with :math:`n = (D_s - D_t)/2 + 1`
    """

    def __init__(self, channels: int = 16, dim: int = 16, tau: float = 0.1):
        super().__init__()
        self.encoder = VoxelEncoder(channels)
        self.head = nn.Conv3d(channels, dim, 1)
        self.dim, self.tau = dim, tau
        self.reset_parameters()

    def reset_parameters(self):
        self.encoder.reset_parameters()
        self.head.reset_parameters()

    def embed(self, x: Tensor) -> Tensor:
        """``[B, dim, n, n, n]`` unit embeddings on the encoder's feature grid."""
        return F.normalize(self.head(F.relu(self.encoder(x))), dim=1)

    def forward(self, template: Tensor, search: Tensor) -> Tensor:
        e_t = self.embed(template)
        t = e_t.shape[-1]
        c = (t - 1) // 2
        dense = torch.einsum("bd,bdzyx->bzyx", e_t[:, :, c, c, c], self.embed(search))
        return central_candidates(dense, t) / self.tau

    def contrastive_loss(self, template: Tensor, search: Tensor, anchors: Tensor,
                         target: Tensor, sigma: float = 1.0) -> Tensor:
        r"""Voxel-level InfoNCE: :func:`heatmap_loss` of every anchor's similarity map over
        all search feature voxels; anchors whose target falls outside them are left out.

        Args:
            template, search: the two crops.
            anchors: ``[A]`` flat indices into the template feature grid (template feature
                voxel :math:`m` lies at template index :math:`2m + 4`).
            target: ``[B, A, 3]`` continuous search array indices of the anchors.
        """
        e_s = self.embed(search)
        n = e_s.shape[-1]
        e_a = self.embed(template).flatten(2)[:, :, anchors]
        logits = torch.einsum("bda,bdzyx->bazyx", e_a, e_s) / self.tau
        coords = (target - self.encoder.margin) / self.encoder.stride
        valid = ((coords >= 0) & (coords <= n - 1)).all(-1)
        return heatmap_loss(logits.flatten(0, 1)[valid.flatten()], coords[valid], sigma)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(channels={self.encoder.channels}, dim={self.dim}, "
                f"tau={self.tau:g})")


class CrossAttentionTracker(nn.Module):
    r"""The cross-attention tracker of `"Transformer Lesion Tracker"
    <https://arxiv.org/abs/2206.06252>`_ (Tang et al., MICCAI 2022), in miniature.

    Template and search features of a shared :class:`VoxelEncoder` become layer-normalised
    tokens :math:`\mathbf{x}` of width :math:`d`; template tokens also carry a learned encoding
    :math:`P(\mathbf{o}_k)` of their offset from the template centre. Each search token attends
    over the template tokens (one multi-head cross-attention layer), and its logit of "the
    template centre is here" adds what it read there to its appearance similarity with the
    template centre token :math:`\mathbf{x}^t_c`:

    .. math::
        \mathbf{a}_m &= \operatorname{MHA}\big(\mathbf{x}^s_m,\
        \{\mathbf{x}^t_k + P(\mathbf{o}_k)\}_k\big), \qquad
        \mathbf{h}_m = \operatorname{LN}(\mathbf{x}^s_m + \mathbf{a}_m),

        s_m &= \cos(\mathbf{x}^s_m, \mathbf{x}^t_c) / \tau + \operatorname{MLP}(\mathbf{h}_m).

    A search token that looks like template token :math:`k` attends to it and reads its offset,
    so the head learns where the centre lies from the context, not only from the centre's own
    look. The logits are kept at the candidates (:func:`candidate_grid`).

    Args:
        channels (int): Encoder channels.
        dim (int): Token width.
        heads (int): Attention heads.
        tau (float): Temperature of the appearance term.

    Shapes:
        - **input:** template :math:`(B, 1, D_t, D_t, D_t)`, search :math:`(B, 1, D_s, D_s,
          D_s)`
        - **output:** :math:`(B, n, n, n)` with :math:`n = (D_s - D_t)/2 + 1`
    """

    def __init__(self, channels: int = 16, dim: int = 32, heads: int = 2, tau: float = 0.1):
        super().__init__()
        self.encoder = VoxelEncoder(channels)
        self.dim, self.heads, self.tau = dim, heads, tau
        self.token = nn.Linear(channels, dim)
        self.token_norm = nn.LayerNorm(dim)
        self.position = nn.Sequential(nn.Linear(3, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 1))
        self.reset_parameters()

    def reset_parameters(self):
        self.encoder.reset_parameters()
        for module in (self.token, self.token_norm, self.position[0], self.position[2],
                       self.norm, self.head[0], self.head[2]):
            module.reset_parameters()
        self.attention._reset_parameters()

    def tokens(self, x: Tensor) -> Tensor:
        """``[B, n³, dim]`` normalised tokens of a cube, in array (z, y, x) order."""
        features = F.relu(self.encoder(x)).flatten(2).transpose(1, 2)
        return self.token_norm(self.token(features))

    def forward(self, template: Tensor, search: Tensor) -> Tensor:
        x_t, x_s = self.tokens(template), self.tokens(search)
        t = round(x_t.shape[1] ** (1 / 3))
        size = round(x_s.shape[1] ** (1 / 3))
        axis = torch.arange(t, dtype=x_t.dtype) - (t - 1) / 2
        offsets = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1)
        keys = x_t + self.position(offsets.reshape(1, -1, 3) / t)
        attended, _ = self.attention(x_s, keys, keys, need_weights=False)
        h = self.norm(x_s + attended)
        centre = F.normalize(x_t[:, (t ** 3 - 1) // 2], dim=-1)
        appearance = torch.einsum("bd,bmd->bm", centre, F.normalize(x_s, dim=-1)) / self.tau
        dense = (appearance + self.head(h)[..., 0]).reshape(-1, size, size, size)
        return central_candidates(dense, t)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(channels={self.encoder.channels}, dim={self.dim}, "
                f"heads={self.heads}, tau={self.tau:g})")
