r"""The graph matcher: node tokens, intra-scan and cross-graph layers, an assignment head with
learned matchability — lngraph's default model, read top to bottom.

Input: a (batch of) pair ``HeteroData`` graph(s) as built by
:func:`~lngraph.models.inference.matcher_graphs` — node types ``"src"`` (earlier scan) and
``"dst"`` (later scan) with ``pos [N, 3]`` (LPS mm) and ``radius [N]``; unless the config is
geometry-only ``cube`` and ``views`` crops; with ``model.position_prior`` the alignment shifts
``src.shift [N, 3]``; fully connected intra-scan edges; ground truth in
``("src", "cross", "dst").edge_label_index``. The forward pass is pure torch.

1. **Tokens** — :math:`\mathbf{x}^0_i = \mathrm{Lin}(\mathbf{a}_i) + \mathrm{MLP}(\log r_i)`:
   the appearance :math:`\mathbf{a}_i` is the SE encoders' 3D feature concatenated with the
   mean of its nine view features (geometry-only: the
   :class:`~lngraph.nn.encoders.GeometryEncoder` feature from sizes and neighbour distances),
   :math:`r_i` the node's radius.
2. **Positions** — each earlier node sits at its aligned centre :math:`\mathbf{p}_i =
   \mathbf{c}_i + \mathbf{u}_i` (:math:`\mathbf{u}_i` the robust alignment shift,
   :func:`~lngraph.matching.alignment.alignment_shifts`), each later node at
   :math:`\mathbf{p}_j = \mathbf{c}_j`. An edge's features are :math:`\mathbf{e}_{ij} =
   [\boldsymbol{\delta}, \lVert\boldsymbol{\delta}\rVert] / g` with :math:`\boldsymbol\delta`
   the offset from target to source (:math:`g` = ``position_gate_mm``); inside a scan the
   offset of the raw centres. Positions enter only as offsets, so the model is invariant to a
   translation of either scan (the shift absorbs it).
3. **Layers** — ``layers`` times: an intra-scan layer on each scan (same weights for both:
   :class:`~lngraph.nn.conv.PositionalAttentionConv` over the scan's edges, or
   :class:`~lngraph.nn.conv.SEAGConv` with its learnable Q as a residual block), then a
   cross-graph :class:`~lngraph.nn.conv.PositionalAttentionConv` over every (src, dst) node
   pair of the same pair graph, both directions at once with shared weights (SuperGlue,
   LightGlue). With ``use_cross=False`` the scans meet only in the head.
4. **Assignment** — :class:`~lngraph.nn.assignment_head.AssignmentHead`: dual-softmax ×
   matchability, plus a learned pairwise term on the aligned offsets; with
   ``deep_supervision`` one head after every layer in training (the last decides, and is the
   only one computed in evaluation mode).
5. **Loss** — ``weight_assignment`` × the NLL of the ground-truth partial assignment
   (:func:`~lngraph.nn.assignment_head.assignment_nll`, averaged over the heads) plus
   ``weight_se`` × :math:`\mathcal{L}_{se}` and ``weight_te`` × :math:`\mathcal{L}_{te}` on
   the encoder features (:mod:`lngraph.nn.losses`).
6. **Inference** — the batched Hungarian assignment
   (:func:`~lngraph.matching.batched.batched_assignment`) on :math:`P_{ij}`; an assigned pair
   is kept when :math:`P_{ij} \ge` ``similarity_threshold`` (fixed, or chosen once on
   validation patients and stored in the checkpoint). Nothing is fused by hand or refitted.
   The kept pair's reported score is the calibrated confidence
   :math:`\sigma(\operatorname{logit}(P_{ij})/T + b)` (``score_temperature``,
   ``score_bias``, fitted on validation patients;
   :func:`~lngraph.models.asymmetric_matcher.confident_matches`): a monotone map applied
   after the decision, which it never changes. (Scaling the dual-softmax logits
   :math:`s_{ij}` by a temperature instead would change the softmaxes' ratios, and with them
   the Hungarian assignment and which pairs pass the threshold.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import HeteroData
from torch_geometric.utils import to_dense_batch

from lngraph.matching.batched import BatchedMatches, batched_assignment
from lngraph.models.asymmetric_matcher import (
    CROSS,
    ScanFeatures,
    add_encoders,
    all_pair_candidates,
    confident_matches,
    encode_scan,
    match_targets,
)
from lngraph.models.config import MatcherConfig
from lngraph.nn.assignment_head import Assignment, AssignmentHead, assignment_nll
from lngraph.nn.conv import PositionalAttentionConv, SEAGConv
from lngraph.nn.losses import se_loss, te_loss

#: Size of an edge's features: the offset (3) and its length.
EDGE_DIM = 4


def edge_features(offset: Tensor, scale: float) -> Tensor:
    r"""``[..., 4]`` :math:`[\boldsymbol\delta, \lVert\boldsymbol\delta\rVert] / g`."""
    offset = offset / scale
    return torch.cat([offset, offset.norm(dim=-1, keepdim=True)], dim=-1)


class SEAGBlock(nn.Module):
    r"""SEAG as a residual intra-scan layer: :math:`\mathbf{x} + \mathrm{Lin}(
    \mathrm{SEAG}(\mathbf{u}) - \mathbf{u})`, :math:`\mathbf{u}` the features L2-normalised
    and scaled by :math:`\sqrt{d}` (the unit-RMS input SEAG assumes)."""

    def __init__(self, channels: int, length_scale: float, learn_length_scale: bool,
                 sigma: float, learn_q: bool):
        super().__init__()
        self.seag = SEAGConv(channels, length_scale, learn_length_scale, sigma, learn_q=learn_q)
        self.out = nn.Linear(channels, channels)

    def forward(self, x: Tensor, pos: Tensor, edge_index: Tensor) -> Tensor:
        u = F.normalize(x, dim=-1) * math.sqrt(x.shape[-1])
        return x + self.out(self.seag(u, pos, edge_index) - u)


@dataclass
class GraphMatcherOutput:
    """What :meth:`GraphMatcher.forward` returns for a batch of ``B`` pairs.

    Args:
        src, dst: encoder outputs of each scan's nodes.
        assignments: one :class:`~lngraph.nn.assignment_head.Assignment` per head in training
            mode, the last (deciding) head's alone in evaluation mode.
        score: ``[B, n1_max, n2_max]`` the last head's :math:`P_{ij}` (0 where padded).
        src_mask, dst_mask: ``[B, n1_max]`` / ``[B, n2_max]`` True where the node exists.
    """

    src: ScanFeatures
    dst: ScanFeatures
    assignments: list[Assignment]
    score: Tensor
    src_mask: Tensor
    dst_mask: Tensor

    @property
    def pair_mask(self) -> Tensor:
        """``[B, n1_max, n2_max]`` True where both nodes exist."""
        return self.src_mask[:, :, None] & self.dst_mask[:, None, :]


class GraphMatcher(nn.Module):
    """Tokens → (intra-scan, cross-graph) layers → assignment head (module docstring); every
    setting comes from ``config.model``."""

    use_scb = False

    def __init__(self, config: MatcherConfig):
        super().__init__()
        self.config = config
        c = config.model
        d = c.feature_dim
        add_encoders(self, config)
        self.appearance = nn.Linear(d if c.geometry_only else 2 * d, d)
        self.size = nn.Sequential(nn.Linear(1, d), nn.GELU(), nn.Linear(d, d))
        edge_dim = EDGE_DIM if c.position_prior else 0
        self.self_layers = nn.ModuleList([self._self_layer() for _ in range(c.layers)])
        self.cross_layers = nn.ModuleList(
            [PositionalAttentionConv(d, c.heads, edge_dim) for _ in range(c.layers)]
            if c.use_cross else [])
        self.heads = nn.ModuleList([AssignmentHead(d, edge_dim) for _ in range(
            c.layers if c.deep_supervision else 1)])

    def _self_layer(self) -> nn.Module | None:
        c = self.config.model
        if c.self_layer == "attention":
            return PositionalAttentionConv(c.feature_dim, c.heads, EDGE_DIM)
        if c.self_layer == "seag":
            return SEAGBlock(c.feature_dim, c.length_scale_mm, c.learn_length_scale,
                             c.sigma_init, c.seag_learn_q)
        return nn.Identity()

    # 1. Tokens ------------------------------------------------------------------------------
    def tokens(self, data: HeteroData, node_type: str) -> tuple[ScanFeatures, Tensor]:
        """A scan's encoder outputs and its tokens ``[N, d]``."""
        store = data[node_type]
        feats = encode_scan(self, store)
        a = feats.feature if feats.views is None else torch.cat(
            [feats.feature, feats.views.mean(1)], dim=-1)
        size = store.radius.clamp_min(1e-3).log()[:, None]
        return feats, self.appearance(a) + self.size(size)

    # 2. Positions -----------------------------------------------------------------------------
    def positions(self, data: HeteroData) -> tuple[Tensor, Tensor]:
        """Aligned centres of the earlier nodes and centres of the later ones (module
        docstring, step 2).

        Raises:
            ValueError: the config uses positions and the graph has no alignment shifts.
        """
        src, dst = data["src"].pos, data["dst"].pos
        if not self.config.model.position_prior:
            return src, dst
        shift = getattr(data["src"], "shift", None)
        if shift is None:
            raise ValueError("the pair graph has no alignment shifts (src.shift); build it "
                             "with lngraph.models.matcher_graphs")
        return src + shift, dst

    # 3. Layers --------------------------------------------------------------------------------
    def intra(self, layer: nn.Module, x: Tensor, data: HeteroData, node_type: str) -> Tensor:
        """One intra-scan layer on one scan."""
        if isinstance(layer, nn.Identity):
            return x
        pos = data[node_type].pos
        edge_index = data[node_type, "intra", node_type].edge_index
        if isinstance(layer, SEAGBlock):
            return layer(x, pos, edge_index)
        offset = pos[edge_index[0]] - pos[edge_index[1]]
        return layer(x, edge_index, edge_features(offset, self.config.model.position_gate_mm))

    def cross(self, layer: PositionalAttentionConv, x0: Tensor, x1: Tensor, p0: Tensor,
              p1: Tensor, pairs: Tensor) -> tuple[Tensor, Tensor]:
        """One cross-graph layer, both directions from the same inputs; ``pairs`` ``[2, P]``
        (src, dst) node indices of the same pair graph."""
        g = self.config.model.position_gate_mm
        attr01 = attr10 = None
        if layer.edge_dim:
            offset = p1[pairs[1]] - p0[pairs[0]]          # from an earlier to a later node
            attr10, attr01 = edge_features(offset, g), edge_features(-offset, g)
        new0 = layer((x1, x0), pairs.flip(0), attr10)     # earlier nodes attend to later ones
        new1 = layer((x0, x1), pairs, attr01)
        return new0, new1

    # 4. Assignment ------------------------------------------------------------------------------
    def head(self, head: AssignmentHead, x0: Tensor, x1: Tensor, p0: Tensor, p1: Tensor,
             batch0: Tensor, batch1: Tensor, num_graphs: int) -> Assignment:
        d0, mask0 = to_dense_batch(x0, batch0, batch_size=num_graphs)
        d1, mask1 = to_dense_batch(x1, batch1, batch_size=num_graphs)
        attr = None
        if head.edge_dim:
            q0, _ = to_dense_batch(p0, batch0, batch_size=num_graphs)
            q1, _ = to_dense_batch(p1, batch1, batch_size=num_graphs)
            attr = edge_features(q1[:, None, :, :] - q0[:, :, None, :],
                                 self.config.model.position_gate_mm)
        return head(d0, d1, mask0, mask1, attr)

    # The forward pass: 1–4 ------------------------------------------------------------------------
    def forward(self, data: HeteroData) -> GraphMatcherOutput:
        return self.propagate(data, self.tokens(data, "src"), self.tokens(data, "dst"))

    def propagate(self, data: HeteroData, src_tokens: tuple[ScanFeatures, Tensor],
                  dst_tokens: tuple[ScanFeatures, Tensor]) -> GraphMatcherOutput:
        """Steps 2–4 on the two scans' :meth:`tokens`: positions, layers, heads."""
        num_graphs = getattr(data, "num_graphs", 1)
        (src, x0), (dst, x1) = src_tokens, dst_tokens
        p0, p1 = self.positions(data)
        pairs = all_pair_candidates(src.batch, dst.batch)
        heads = list(self.heads)
        first_head = len(self.self_layers) - len(heads)
        assignments = []
        for index, self_layer in enumerate(self.self_layers):
            x0 = self.intra(self_layer, x0, data, "src")
            x1 = self.intra(self_layer, x1, data, "dst")
            if self.cross_layers:
                x0, x1 = self.cross(self.cross_layers[index], x0, x1, p0, p1, pairs)
            last = index == len(self.self_layers) - 1
            if index >= first_head and (self.training or last):   # eval: the deciding head
                assignments.append(self.head(heads[index - first_head], x0, x1, p0, p1,
                                             src.batch, dst.batch, num_graphs))
        last = assignments[-1]
        src_mask = to_dense_batch(src.batch, src.batch, batch_size=num_graphs)[1]
        dst_mask = to_dense_batch(dst.batch, dst.batch, batch_size=num_graphs)[1]
        return GraphMatcherOutput(src, dst, assignments, last.probability, src_mask, dst_mask)

    # 5. Loss --------------------------------------------------------------------------------------
    def match_targets(self, data: HeteroData, out: GraphMatcherOutput) -> Tensor:
        """``[B, n1_max, n2_max]`` 1 where the ground truth matches the two nodes, else 0."""
        return match_targets(data, out.src.batch, out.dst.batch, out.score)

    def loss(self, data: HeteroData, out: GraphMatcherOutput) -> dict[str, Tensor]:
        """The losses and their weighted ``total`` (keys se, te, assignment, total)."""
        c = self.config.loss
        target = self.match_targets(data, out)
        l_assign = torch.stack([assignment_nll(a, target, out.src_mask, out.dst_mask)
                                for a in out.assignments]).mean()
        zero = l_assign * 0.0
        if self.config.model.geometry_only or c.weight_se == 0:
            l_se = zero
        else:
            l_se = 0.5 * (se_loss(out.src.feature, out.src.views, out.src.batch, c.temperature)
                          + se_loss(out.dst.feature, out.dst.views, out.dst.batch,
                                    c.temperature))
        l_te = (te_loss(out.src.feature, out.dst.feature, data[CROSS].edge_label_index,
                        out.src.batch, out.dst.batch, c.temperature)
                if c.weight_te else zero)
        losses = {"se": l_se, "te": l_te, "assignment": l_assign}
        losses["total"] = (c.weight_assignment * l_assign + c.weight_se * l_se
                           + c.weight_te * l_te)
        return losses

    # 6. Inference ----------------------------------------------------------------------------
    @torch.no_grad()
    def match(self, data: HeteroData, threshold: float | None = None, *,
              calibrated: bool = True) -> BatchedMatches:
        """Matches of every pair in ``data`` (module docstring, step 6), computed in evaluation
        mode (the training mode is restored afterwards); ``threshold`` replaces
        ``similarity_threshold`` on :math:`P_{ij}`, 0 keeps every assigned pair. Each kept
        pair's score is its calibrated confidence, or with ``calibrated=False`` its
        :math:`P_{ij}`."""
        was_training = self.training
        self.eval()
        try:
            return self.assign(self(data), threshold, calibrated=calibrated)
        finally:
            self.train(was_training)

    @torch.no_grad()
    def assign(self, out: GraphMatcherOutput, threshold: float | None = None, *,
               calibrated: bool = True) -> BatchedMatches:
        """The inference rule on a forward pass's output (:meth:`match`)."""
        default = self.config.model.similarity_threshold
        matches = batched_assignment(out.score, src_mask=out.src_mask, dst_mask=out.dst_mask,
                                     threshold=default if threshold is None else threshold)
        return confident_matches(matches, self.config) if calibrated else matches
