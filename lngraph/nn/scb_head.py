r"""The SCB cross-graph head (Mao et al., MICCAI 2025): gated view selection, cross-attention
fusion of a node pair's 3×3 token-set combinations, and the thresholded mean of Eq. 3."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def scb_score(prob: Tensor, threshold: float = 0.5) -> Tensor:
    r"""Eq. 3: the mean over the nine combinations of the probabilities that pass the threshold,

    .. math::
        s = \frac{1}{9} \sum_{c=1}^{9} p_c \, \mathbb{1}[p_c \ge 0.5].

    Shapes:
        - **input:** :math:`(*, 9)`
        - **output:** :math:`(*)`
    """
    return (prob * (prob >= threshold)).mean(-1)


class NodeTokens(NamedTuple):
    """What :meth:`SCBHead.node_tokens` computes once per node.

    Args:
        sets: three ``[N, L_a, 3h]`` tensors (query, key, value stacked) for the 3D token grid
            and the token grids of the two selected views.
        summary: ``[N, 3, h]`` unit embeddings of the 3D feature and the two views' features.
        weight: ``[N, 3]`` slot weights: 1 for the 3D slot, the gate weights of the views.
        gate: ``[N, V]`` gate scores of all views.
    """

    sets: list[Tensor]
    summary: Tensor
    weight: Tensor
    gate: Tensor


class SCBHead(nn.Module):
    r"""The SCB head from `"Asymmetric Matching in Abdominal Lymph Nodes of Follow-up CT Scans"
    <https://papers.miccai.org/miccai-2025/>`_ (Mao et al., MICCAI 2025).

    **Gate.** Each of the :math:`V = 9` views of node :math:`i` is scored from its feature,
    :math:`g_{ik} = \mathbf{w}_g^\top \mathbf{v}_{ik} + b_g`. The two best views are kept with
    weights :math:`\gamma_{ik} = V \operatorname{softmax}_k(g_{ik})` (1 for a uniform gate);
    the 3D slot has weight 1. The top-2 choice has no gradient, the weights do.

    **Slots.** Node :math:`i` has three slots :math:`a \in \{\text{3D}, \text{view}_1,
    \text{view}_2\}`, each with a token set :math:`T_i^a` (the encoder's token grid,
    layer-normalised and projected to width :math:`h`; queries :math:`Q`, keys :math:`K` and
    values :math:`V` are computed once per node) and a summary :math:`\mathbf{u}_i^a` (the
    slot's SE feature, embedded to width :math:`h`, unit length).

    **Cross attention.** For a candidate pair :math:`(i, j)` and a combination :math:`(a, b)`,
    each token of one set attends over the other set, and the fused feature joins the mean
    channel-wise agreement of a token's (unit) value with the (unit) value it attends to, in
    both directions, to the agreement of the two summaries, scaled by the slot weights:

    .. math::
        \mathbf{O}_{i \to j} &= \operatorname{softmax}\big(Q(T_i^a) K(T_j^b)^\top /
        \sqrt{h}\big) \, V(T_j^b), \qquad
        \mathbf{c}_{i \to j} = \operatorname{mean}_t\, \widehat{V(T_i^a)}_t \odot
        \widehat{(\mathbf{O}_{i \to j})}_t,

        \mathbf{f}_{ij}^{ab} &= \gamma_{ia} \gamma_{jb} \big[\tfrac{1}{2} (\mathbf{c}_{i \to j}
        + \mathbf{c}_{j \to i}) \,\big\|\, \mathbf{u}_i^a \odot \mathbf{u}_j^b \big]
        \in \mathbb{R}^{2h}, \qquad
        p_{ij}^{ab} = \sigma\big((\mathbf{w}_{ab}^\top \mathbf{f}_{ij}^{ab} + b_{ab}) / \tau
        \big)

    with :math:`\widehat{\cdot}` the unit vector. At initialisation keys equal queries (so
    tokens attend to similar tokens), :math:`\mathbf{w}_{ab} = \mathbf{1}` and :math:`b_{ab}
    = -1`: an untrained head scores the sum of the two cosine agreements against 1, at
    temperature :math:`\tau`, and training re-weights channels. The summary term lets the SE
    features (trained by :math:`\mathcal{L}_{se}`, :math:`\mathcal{L}_{te}`) inform SCB from
    the first epoch. The head returns the logits. Candidate pairs are processed in chunks, so
    scoring all :math:`n_1 n_2` pairs of a scan pair or only the Hungarian pairs costs time
    linear in the number of pairs.

    Args:
        feature_channels (int): Size :math:`F` of the 3D and view feature vectors.
        channels_3d (int): Channels of the 3D encoder's tokens.
        channels_2d (int): Channels of the 2D encoder's tokens.
        hidden_channels (int, optional): Attention width :math:`h`. (default: :obj:`32`)
        temperature (float, optional): :math:`\tau`. (default: :obj:`0.1`)
        num_views (int, optional): Views per node :math:`V`. (default: :obj:`9`)
        chunk_size (int, optional): Candidate pairs per chunk. (default: :obj:`4096`)

    Shapes:
        - **node_tokens input:** feature_3d :math:`(N, F)`, tokens_3d :math:`(N, L_3, C_3)`,
          view_features :math:`(N, V, F)`, view_tokens :math:`(N, V, L_2, C_2)`
        - **node_tokens output:** :class:`NodeTokens`
        - **forward input:** src and dst :class:`NodeTokens`, pairs :math:`(2, P)` (src index,
          dst index)
        - **forward output:** logits :math:`(P, 9)`, combinations in the order
          (3D, 3D), (3D, view₁), …, (view₂, view₂)
    """

    top_k = 2

    def __init__(self, feature_channels: int, channels_3d: int, channels_2d: int,
                 hidden_channels: int = 32, temperature: float = 0.1, num_views: int = 9,
                 chunk_size: int = 4096):
        super().__init__()
        self.hidden_channels = hidden_channels
        self.temperature = temperature
        self.num_views = num_views
        self.chunk_size = chunk_size
        self.gate = nn.Linear(feature_channels, 1)
        self.embed_3d = nn.Sequential(nn.LayerNorm(channels_3d),
                                      nn.Linear(channels_3d, hidden_channels))
        self.embed_2d = nn.Sequential(nn.LayerNorm(channels_2d),
                                      nn.Linear(channels_2d, hidden_channels))
        self.embed_feature = nn.Sequential(nn.LayerNorm(feature_channels),
                                           nn.Linear(feature_channels, hidden_channels))
        self.qkv = nn.Linear(hidden_channels, 3 * hidden_channels)
        self.classifier_weight = nn.Parameter(torch.empty(9, 2 * hidden_channels))
        self.classifier_bias = nn.Parameter(torch.empty(9))
        self.reset_parameters()

    def reset_parameters(self):
        for module in (self.gate, self.qkv, self.embed_3d, self.embed_2d, self.embed_feature):
            for layer in module.modules():
                if isinstance(layer, nn.Linear | nn.LayerNorm):
                    layer.reset_parameters()
        with torch.no_grad():
            h = self.hidden_channels
            self.qkv.weight[h:2 * h] = self.qkv.weight[:h]
            self.qkv.bias[h:2 * h] = self.qkv.bias[:h]
        nn.init.ones_(self.classifier_weight)
        nn.init.constant_(self.classifier_bias, -1.0)

    def select_views(self, view_features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Gate scores ``[N, V]``, indices ``[N, 2]`` of the top-2 views and their weights
        ``[N, 2]`` (:math:`V` × softmaxed score)."""
        scores = self.gate(view_features).squeeze(-1)
        index = scores.topk(self.top_k, dim=-1).indices
        weight = self.num_views * torch.softmax(scores, dim=-1).gather(1, index)
        return scores, index, weight

    def node_tokens(self, feature_3d: Tensor, tokens_3d: Tensor, view_features: Tensor,
                    view_tokens: Tensor) -> NodeTokens:
        """The three token sets of each node and their slot weights."""
        scores, index, weight = self.select_views(view_features)
        rows = torch.arange(len(index), device=index.device)[:, None]
        chosen = self.embed_2d(view_tokens[rows, index])
        sets = [self.embed_3d(tokens_3d), chosen[:, 0], chosen[:, 1]]
        summary = self.embed_feature(torch.cat([feature_3d[:, None], view_features[rows, index]],
                                               dim=1))
        slot_weight = torch.cat([weight.new_ones((len(weight), 1)), weight], dim=1)
        return NodeTokens([self.qkv(t) for t in sets], F.normalize(summary, dim=-1),
                          slot_weight, scores)

    def forward(self, src: NodeTokens, dst: NodeTokens, pairs: Tensor) -> Tensor:
        chunks = [self._fuse(src, dst, pairs[:, start:start + self.chunk_size])
                  for start in range(0, pairs.size(1), self.chunk_size)]
        if not chunks:
            return self.classifier_bias.new_zeros((0, 9))
        return torch.cat(chunks)

    def _fuse(self, src: NodeTokens, dst: NodeTokens, pairs: Tensor) -> Tensor:
        src_sets = [t[pairs[0]].chunk(3, dim=-1) for t in src.sets]
        dst_sets = [t[pairs[1]].chunk(3, dim=-1) for t in dst.sets]
        src_weight, dst_weight = src.weight[pairs[0]], dst.weight[pairs[1]]
        src_summary, dst_summary = src.summary[pairs[0]], dst.summary[pairs[1]]
        fused = torch.stack(
            [torch.cat([0.5 * (self._attend(a_set, b_set) + self._attend(b_set, a_set)),
                        src_summary[:, a] * dst_summary[:, b]], dim=-1)
             * (src_weight[:, a] * dst_weight[:, b])[:, None]
             for a, a_set in enumerate(src_sets) for b, b_set in enumerate(dst_sets)], dim=1)
        logits = (fused * self.classifier_weight).sum(-1) + self.classifier_bias
        return logits / self.temperature

    def _attend(self, query_set: tuple[Tensor, ...], key_set: tuple[Tensor, ...]) -> Tensor:
        q, _, own_value = query_set
        _, k, v = key_set
        attn = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(self.hidden_channels), dim=-1)
        agree = F.normalize(own_value, dim=-1) * F.normalize(attn @ v, dim=-1)
        return agree.mean(1)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(hidden_channels={self.hidden_channels}, "
                f"num_views={self.num_views}, temperature={self.temperature})")
