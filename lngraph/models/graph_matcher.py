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
   \mathbf{c}_i + \mathbf{u}_i` (:math:`\mathbf{u}_i` the robust alignment shift, rigid
   with ``position_rigid``, :func:`~lngraph.matching.alignment.alignment_shifts`), each
   later node at
   :math:`\mathbf{p}_j = \mathbf{c}_j`. An edge's features are :math:`\mathbf{e}_{ij} =
   [\boldsymbol{\delta}, \lVert\boldsymbol{\delta}\rVert] / g` with :math:`\boldsymbol\delta`
   the offset from target to source (:math:`g` = ``position_gate_mm``); inside a scan the
   offset of the raw centres. Positions enter only as offsets, so the model is invariant to a
   translation of either scan (the shift absorbs it). With ``frame_prior_mm`` :math:`= f > 0`
   the features of an (earlier, later) pair also hold :math:`\lVert \mathbf{c}_i -
   \mathbf{c}_j\rVert / f`, the distance of the raw centres, for scans whose coordinates agree
   up to a few centimetres; the model is then invariant only to translating both scans
   together.
3. **Layers** — ``layers`` times: an intra-scan layer on each scan (same weights for both:
   :class:`~lngraph.nn.conv.PositionalAttentionConv` over the scan's edges, or
   :class:`~lngraph.nn.conv.SEAGConv` with its learnable Q as a residual block), then a
   cross-graph :class:`~lngraph.nn.conv.PositionalAttentionConv` in which each node attends
   to the ``cross_k`` nodes of the other scan of its pair graph nearest to its aligned
   position (each direction on its own: every node has :math:`\min(k, n_{other})` sources;
   all node pairs when a scan has at most ``cross_k`` nodes), both directions at once with
   shared weights (SuperGlue, LightGlue); with ``cross_edge_values`` each message also
   carries a learned value of its edge's features, so that a node learns how far its
   candidates are (the attention bias cannot tell a lone candidate's distance). Each layer is
   one operator call on the union of both scans' nodes. With ``use_cross=False`` the scans
   meet only in the head.
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


def nearest(dist: Tensor | None, valid: Tensor, k: int, dim: int) -> Tensor:
    """``valid`` ``[B, n1, n2]`` restricted, along ``dim``, to the ``k`` entries of smallest
    ``dist`` (same shape): for ``dim=2`` each row keeps its ``k`` nearest columns. With at
    most ``k`` entries along ``dim`` it is ``valid`` itself (and ``dist`` may be ``None``)."""
    if k >= valid.shape[dim]:
        return valid
    chosen = dist.masked_fill(~valid, math.inf).topk(k, dim=dim, largest=False).indices
    return torch.zeros_like(valid).scatter_(dim, chosen, True) & valid


def dense(x: Tensor, mask: Tensor) -> Tensor:
    """``[B, n, d]`` the rows of ``x`` ``[N, d]`` placed where ``mask`` ``[B, n]`` is True
    (zeros elsewhere), as :func:`~torch_geometric.utils.to_dense_batch` with the mask given."""
    out = x.new_zeros((*mask.shape, x.size(-1)))
    out[mask] = x
    return out


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
        if not c.geometry_only:                 # the token grids are SCB's input only
            self.encoder3d.grid_tokens = self.encoder2d.grid_tokens = False
        self.appearance = nn.Linear(d if c.geometry_only else 2 * d, d)
        self.size = nn.Sequential(nn.Linear(1, d), nn.GELU(), nn.Linear(d, d))
        edge_dim = (EDGE_DIM if c.position_prior else 0) + int(c.frame_prior_mm > 0)
        self.self_layers = nn.ModuleList([self._self_layer() for _ in range(c.layers)])
        self.cross_layers = nn.ModuleList(
            [PositionalAttentionConv(d, c.heads, edge_dim,
                                     edge_values=c.cross_edge_values and edge_dim > 0)
             for _ in range(c.layers)]
            if c.use_cross else [])
        self.heads = nn.ModuleList([AssignmentHead(d, edge_dim, c.score_matchability)
                                    for _ in range(c.layers if c.deep_supervision else 1)])

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
    def intra(self, layer: nn.Module, x: Tensor, edge_index: Tensor, pos: Tensor,
              edge_attr: Tensor | None) -> Tensor:
        """One intra-scan layer on both scans at once: ``x``, ``pos`` (raw centres) on the
        union node set, ``edge_index`` both scans' edges (block-diagonal), ``edge_attr`` their
        :func:`edge_features` (attention layers)."""
        if isinstance(layer, nn.Identity):
            return x
        if isinstance(layer, SEAGBlock):
            return layer(x, pos, edge_index)
        return layer(x, edge_index, edge_attr)

    def cross_edges(self, q0: Tensor, q1: Tensor, mask0: Tensor, mask1: Tensor) -> Tensor:
        """``[2, E]`` (source, target) edges of the cross-graph layers on the union node set
        (the earlier scan's ``N0`` nodes, then the later scan's), from the padded aligned
        positions ``q0 [B, n1, 3]``, ``q1 [B, n2, 3]`` and their node masks: each earlier
        node receives from the ``cross_k`` later nodes of its pair graph nearest to it, each
        later node from the ``cross_k`` nearest earlier nodes (:func:`nearest`; every node of
        the other scan when it has at most ``cross_k``). Each target's sources are in
        ascending order."""
        k = self.config.model.cross_k
        valid = mask0[:, :, None] & mask1[:, None, :]
        dist = None
        if k < max(valid.shape[1:]):
            dist = torch.cdist(q0, q1, compute_mode="donot_use_mm_for_euclid_dist")
        near0 = nearest(dist, valid, k, dim=2)     # earlier i ← later j
        near1 = nearest(dist, valid, k, dim=1)     # later j ← earlier i
        n0, n1 = int(mask0.sum()), int(mask1.sum())
        index0 = torch.zeros_like(mask0, dtype=torch.long)     # union index of each node
        index0[mask0] = torch.arange(n0, device=mask0.device)
        index1 = torch.zeros_like(mask1, dtype=torch.long)
        index1[mask1] = torch.arange(n0, n0 + n1, device=mask1.device)
        b, i, j = near0.nonzero(as_tuple=True)
        to_earlier = torch.stack([index1[b, j], index0[b, i]])
        if near1 is not near0:
            b, i, j = near1.nonzero(as_tuple=True)
        return torch.cat([to_earlier, torch.stack([index0[b, i], index1[b, j]])], dim=1)

    def pair_features(self, aligned_offset: Tensor, raw_offset: Tensor | None) -> Tensor:
        r"""``[..., D]`` features of (earlier, later) node pairs for the cross-graph layers and
        the head, from their offsets after and before the alignment: :func:`edge_features` of
        the aligned offset (``position_prior``), then with ``frame_prior_mm`` = :math:`f > 0`
        the raw centre distance :math:`\lVert c_i - c_j\rVert / f` (module docstring, step 2;
        ``raw_offset`` is only read then)."""
        c = self.config.model
        parts = []
        if c.position_prior:
            parts.append(edge_features(aligned_offset, c.position_gate_mm))
        if c.frame_prior_mm > 0:
            parts.append(raw_offset.norm(dim=-1, keepdim=True) / c.frame_prior_mm)
        return torch.cat(parts, dim=-1)

    # 4. Assignment ------------------------------------------------------------------------------
    @staticmethod
    def head(head: AssignmentHead, x0: Tensor, x1: Tensor, mask0: Tensor, mask1: Tensor,
             edge_attr: Tensor | None) -> Assignment:
        """One assignment head on both scans' node features, padded by the node masks."""
        return head(dense(x0, mask0), dense(x1, mask1), mask0, mask1, edge_attr)

    # The forward pass: 1–4 ------------------------------------------------------------------------
    def forward(self, data: HeteroData) -> GraphMatcherOutput:
        return self.propagate(data, self.tokens(data, "src"), self.tokens(data, "dst"))

    def propagate(self, data: HeteroData, src_tokens: tuple[ScanFeatures, Tensor],
                  dst_tokens: tuple[ScanFeatures, Tensor]) -> GraphMatcherOutput:
        """Steps 2–4 on the two scans' :meth:`tokens`: positions, layers, heads. The layers run
        on the union of both scans' nodes (earlier first), one operator call per layer: the
        intra-scan layer on both scans' edges, the cross-graph layer on the edges of both
        directions (:meth:`cross_edges`); edge features are computed once."""
        num_graphs = getattr(data, "num_graphs", 1)
        g = self.config.model.position_gate_mm
        (src, x0), (dst, x1) = src_tokens, dst_tokens
        n0 = x0.size(0)
        p0, p1 = self.positions(data)
        q0, mask0 = to_dense_batch(p0, src.batch, batch_size=num_graphs)
        q1, mask1 = to_dense_batch(p1, dst.batch, batch_size=num_graphs)
        x = torch.cat([x0, x1])
        intra_index = torch.cat([data["src", "intra", "src"].edge_index,
                                 data["dst", "intra", "dst"].edge_index + n0], dim=1)
        pos = torch.cat([data["src"].pos, data["dst"].pos])
        intra_attr = cross_index = cross_attr = head_attr = None
        framed = self.config.model.frame_prior_mm > 0     # raw offsets needed
        if any(isinstance(m, PositionalAttentionConv) for m in self.self_layers):
            intra_attr = edge_features(pos[intra_index[0]] - pos[intra_index[1]], g)
        if self.cross_layers:
            cross_index = self.cross_edges(q0, q1, mask0, mask1)
            if self.cross_layers[0].edge_dim:
                aligned = torch.cat([p0, p1])
                cross_attr = self.pair_features(
                    aligned[cross_index[0]] - aligned[cross_index[1]],
                    (pos[cross_index[0]] - pos[cross_index[1]]) if framed else None)
        heads = list(self.heads)
        if heads[0].edge_dim:
            raw = None
            if framed:
                raw0, _ = to_dense_batch(data["src"].pos, src.batch, batch_size=num_graphs)
                raw1, _ = to_dense_batch(data["dst"].pos, dst.batch, batch_size=num_graphs)
                raw = raw1[:, None, :, :] - raw0[:, :, None, :]
            head_attr = self.pair_features(q1[:, None, :, :] - q0[:, :, None, :], raw)
        first_head = len(self.self_layers) - len(heads)
        assignments = []
        for index, self_layer in enumerate(self.self_layers):
            x = self.intra(self_layer, x, intra_index, pos, intra_attr)
            if self.cross_layers:
                x = self.cross_layers[index](x, cross_index, cross_attr)
            last = index == len(self.self_layers) - 1
            if index >= first_head and (self.training or last):   # eval: the deciding head
                assignments.append(self.head(heads[index - first_head], x[:n0], x[n0:],
                                             mask0, mask1, head_attr))
        return GraphMatcherOutput(src, dst, assignments, assignments[-1].probability, mask0,
                                  mask1)

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
    @torch.inference_mode()
    def match(self, data: HeteroData, threshold: float | None = None, *,
              calibrated: bool = True) -> BatchedMatches:
        """Matches of every pair in ``data`` (module docstring, step 6), computed in evaluation
        mode under ``torch.inference_mode`` (the training mode is restored afterwards);
        ``threshold`` replaces ``similarity_threshold`` on :math:`P_{ij}`, 0 keeps every
        assigned pair. Each kept pair's score is its calibrated confidence, or with
        ``calibrated=False`` its :math:`P_{ij}`."""
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
