r"""The asymmetric matcher of Mao et al. (MICCAI 2025) on PyTorch Geometric, read top to bottom.

Input: a (batch of) pair ``HeteroData`` graph(s) as built by :mod:`lngraph.data.graph` — node
types ``"src"`` (earlier scan) and ``"dst"`` (later scan) with ``pos [N, 3]`` (LPS mm),
``radius [N]``, unless the config is geometry-only ``cube [N, 1, S, S, S]`` and
``views [N, 9, S, S]``, with the position prior ``src.shift [N, 3]`` (the alignment shifts,
computed once when the graph is built: :func:`~lngraph.models.inference.matcher_graphs`);
fully connected intra-scan edges; ground-truth matches in
``("src", "cross", "dst").edge_label_index``; PyG ``batch`` vectors when batched. The forward
pass is pure torch.

1. **SE** — node features: a 3D ResNet on each cube and a shared 2D ResNet on its nine views
   (geometry-only: an MLP on sizes and neighbour distances), batch-normalised at the output.
2. **SEAG** — each scan's features, L2-normalised and scaled by :math:`\sqrt{d}` (unit RMS
   per channel, the scale that scaled dot-product attention assumes), pass
   :class:`~lngraph.nn.conv.SEAGConv` (same weights for both scans); similarity :math:`S` =
   cosine between the two scans' outputs, per pair, as a padded ``[B, n1, n2]`` tensor
   (``to_dense_batch``; as fast as a per-pair loop for a few pairs, 3× faster for 16).
   With ``use_seag=False`` the normalised encoder features are compared directly.
3. **Position prior** (our extension; ``position_prior``) — each earlier node's alignment
   shift :math:`u_i` (the robust translation between the two scans' node centres, refined
   per node with ``position_local_mm``: :func:`~lngraph.matching.alignment.alignment_shifts`,
   stored in the graph) gives aligned distances
   :math:`d_{ij} = \lVert c_i + u_i - c_j \rVert` (mm). The matching score fuses them with
   the similarity: :math:`P_{ij} = \sigma(w^\top x_{ij} + c)` over the terms
   :math:`x_{ij}` = ``seag`` :math:`(S_{ij} - 0.5)/\tau` (:math:`\tau` =
   ``similarity_temperature``), ``encoder``
   :math:`E_{ij}/\tau` (``encoder_similarity``: cosine of the encoder embeddings before
   SEAG, :func:`encoder_embedding`), ``distance`` :math:`d_{ij}/g` and ``size``
   :math:`\lvert\log r_i - \log r_j\rvert` (``size_prior``), with learned weights
   :math:`w` (initialised to :data:`FUSION_INIT`) and bias :math:`c`; with
   ``calibrate_fusion`` they are refitted on validation pairs after training
   (:mod:`lngraph.train.calibrate`). Without the prior :math:`P = S`. The prior makes the
   model invariant to translations of either scan but not to rotations (SEAG itself stays
   rigid-invariant).
4. **SCB** — :class:`~lngraph.nn.scb_head.SCBHead` logits for candidate pairs: every same-pair
   ``(src, dst)`` combination in training, the Hungarian pairs at inference.
5. **Loss** — :math:`w_{se}\mathcal{L}_{se} + w_{te}\mathcal{L}_{te} + w_{seag}
   \mathcal{L}_{seag} + w_{scb}\mathcal{L}_{scb}` (:mod:`lngraph.nn.losses`);
   :math:`\mathcal{L}_{seag}` is the class-balanced BCE of :math:`P` (without the prior
   :math:`\sigma((S - 0.5) / \tau)`: the ReLU makes :math:`S \in [0, 1]`; a cosine alone is too
   flat a probability),
   :math:`\mathcal{L}_{scb}` that of every SCB probability of every same-pair candidate.
6. **Inference** (:meth:`AsymmetricMatcher.match`) — the batched assignment
   (:func:`~lngraph.matching.batched.batched_assignment`) on the matching score :math:`P`:
   Hungarian, then SCB's Eq. 3 score of each assigned pair decides against
   ``scb_threshold`` (the paper's correction); without SCB (switched off, or geometry-only
   mode) :math:`P \ge` ``similarity_threshold`` decides instead. A kept pair's reported score
   is its decision score :math:`p` through the calibrated monotone map
   :math:`\sigma(\operatorname{logit}(p)/T + b)` (:func:`confident_matches`), applied after
   the decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import HeteroData
from torch_geometric.data.storage import NodeStorage
from torch_geometric.utils import to_dense_batch

from lngraph.matching.batched import BatchedMatches, batched_assignment
from lngraph.models.config import MatcherConfig
from lngraph.nn.conv import SEAGConv
from lngraph.nn.encoders import GeometryEncoder, ResNetEncoder
from lngraph.nn.losses import class_balanced_bce, se_loss, te_loss
from lngraph.nn.scb_head import NodeTokens, SCBHead, scb_score

CROSS = ("src", "cross", "dst")

#: Initial weights of the fusion terms (module docstring, step 3) and of its bias: a pair
#: 15 mm apart with neutral appearance starts at P = 0.5.
FUSION_INIT = {"seag": 1.0, "encoder": 1.0, "distance": -4.0, "size": -1.0}
FUSION_BIAS_INIT = 4.0


def fusion_terms(config: MatcherConfig) -> list[str]:
    """The terms fused into the matching score under ``config`` (with the position prior)."""
    return (["seag"] + (["encoder"] if config.model.encoder_similarity else []) + ["distance"]
            + (["size"] if config.model.size_prior else []))


def encoder_embedding(feats: ScanFeatures) -> Tensor:
    """``[N, d]`` a node's encoder embedding before graph context: its 3D feature plus its
    mean view feature, each L2-normalised (the geometric feature in geometry-only mode)."""
    z = F.normalize(feats.feature, dim=-1)
    if feats.views is not None:
        z = z + F.normalize(feats.views.mean(1), dim=-1)
    return z


@dataclass
class ScanFeatures:
    """Per-node outputs of the encoders for one node type of a batch.

    Args:
        feature: ``[N, d]`` 3D (or geometric) feature — the input of SEAG and of L_te.
        batch: ``[N]`` pair index of each node.
        views: ``[N, 9, d]`` view features (None in geometry-only mode).
        tokens: SCB token sets, slot weights and gate scores (:class:`NodeTokens`), or None
            without SCB.
    """

    feature: Tensor
    batch: Tensor
    views: Tensor | None = None
    tokens: NodeTokens | None = None


@dataclass
class MatcherOutput:
    """What :meth:`AsymmetricMatcher.forward` returns for a batch of ``B`` pairs.

    Args:
        src, dst: encoder outputs of each scan's nodes.
        similarity: ``[B, n1_max, n2_max]`` cosine similarity S, padded.
        match_logits: ``[B, n1_max, n2_max]`` logits of the matching score P (padded).
        score: ``[B, n1_max, n2_max]`` the score the assignment maximises: P with the position
            prior, else S (module docstring, step 6).
        src_mask, dst_mask: ``[B, n1_max]`` / ``[B, n2_max]`` True where the node exists.
        candidates: ``[2, P]`` (src, dst) global node indices scored by SCB.
        scb_logits: ``[P, 9]`` SCB logits (``P = 0`` without SCB).
    """

    src: ScanFeatures
    dst: ScanFeatures
    similarity: Tensor
    match_logits: Tensor
    score: Tensor
    src_mask: Tensor
    dst_mask: Tensor
    candidates: Tensor
    scb_logits: Tensor

    @property
    def pair_mask(self) -> Tensor:
        """``[B, n1_max, n2_max]`` True where both nodes exist."""
        return self.src_mask[:, :, None] & self.dst_mask[:, None, :]


def _batch_vector(store: NodeStorage) -> Tensor:
    batch = getattr(store, "batch", None)
    return batch if batch is not None else torch.zeros(store.num_nodes, dtype=torch.long,
                                                       device=store.pos.device)


def _local_index(batch: Tensor, num_graphs: int) -> Tensor:
    """Index of each node within its own graph."""
    counts = torch.bincount(batch, minlength=num_graphs)
    start = torch.cumsum(counts, 0) - counts
    return torch.arange(len(batch), device=batch.device) - start[batch]


def pair_distances(data: HeteroData, src_batch: Tensor, dst_batch: Tensor,
                   num_graphs: int) -> Tensor:
    r"""``[B, n1_max, n2_max]`` aligned centre distances :math:`\lVert c_i + u_i - c_j\rVert`
    (mm) of each pair, from the graph's ``src.shift``; zero where padded.

    Raises:
        ValueError: the graph has no alignment shifts.
    """
    shift = getattr(data["src"], "shift", None)
    if shift is None:
        raise ValueError("the pair graph has no alignment shifts (src.shift); build it with "
                         "lngraph.models.matcher_graphs, or lngraph.data.pair_graphs with "
                         "alignment settings")
    src, src_mask = to_dense_batch(data["src"].pos + shift, src_batch, batch_size=num_graphs)
    dst, dst_mask = to_dense_batch(data["dst"].pos, dst_batch, batch_size=num_graphs)
    distance = (src[:, :, None, :] - dst[:, None, :, :]).norm(dim=-1)
    return distance * (src_mask[:, :, None] & dst_mask[:, None, :])


def add_encoders(model: nn.Module, config: MatcherConfig) -> None:
    """Give ``model`` the SE encoders of ``config``: ``geometry_encoder`` (geometry-only) or
    ``encoder3d`` and ``encoder2d`` (the names :func:`encode_scan` and checkpoints use)."""
    c = config.model
    if c.geometry_only:
        model.geometry_encoder = GeometryEncoder(c.feature_dim, c.geometry_k, c.geometry_hidden,
                                                 c.geometry_distance_mm)
        return
    for dims in (3, 2):
        setattr(model, f"encoder{dims}d", ResNetEncoder(
            dims, getattr(c, f"encoder{dims}d_layers"), getattr(c, f"encoder{dims}d_widths"),
            getattr(c, f"encoder{dims}d_block"), c.feature_dim,
            stem_stride=getattr(c, f"encoder{dims}d_stem_stride"), token_grid=c.token_grid))


def match_targets(data: HeteroData, src_batch: Tensor, dst_batch: Tensor,
                  like: Tensor) -> Tensor:
    """``[B, n1_max, n2_max]`` (the shape of ``like``) 1 where the ground truth matches the
    two nodes, else 0."""
    matches = data[CROSS].edge_label_index
    target = torch.zeros_like(like)
    if matches.numel():
        num_graphs = like.shape[0]
        graph = src_batch[matches[0]]
        target[graph, _local_index(src_batch, num_graphs)[matches[0]],
               _local_index(dst_batch, num_graphs)[matches[1]]] = 1.0
    return target


def encode_scan(model: nn.Module, store: NodeStorage, scb: SCBHead | None = None
                ) -> ScanFeatures:
    """SE: a scan's node features from ``model.geometry_encoder`` (geometry-only config) or
    ``model.encoder3d`` on the cubes and ``model.encoder2d`` on the views; with ``scb`` also
    its node tokens.

    Raises:
        ValueError: the config wants crops and the graph has none.
    """
    batch = _batch_vector(store)
    if model.config.model.geometry_only:
        return ScanFeatures(model.geometry_encoder(store.pos, store.radius, batch), batch)
    if getattr(store, "cube", None) is None or getattr(store, "views", None) is None:
        raise ValueError("the graph has no crops (cube, views); use a geometry-only config "
                         "for cohorts without images")
    n, v, size = store.views.shape[:3]
    feature, tokens_3d = model.encoder3d(store.cube)
    views, view_tokens = model.encoder2d(store.views.reshape(n * v, 1, size, size))
    views = views.view(n, v, views.shape[-1])
    out = ScanFeatures(feature, batch, views)
    if scb is not None:
        view_tokens = view_tokens.view(n, v, *view_tokens.shape[1:])
        out.tokens = scb.node_tokens(feature, tokens_3d, views, view_tokens)
    return out


#: Decision scores are clipped to [SCORE_EPS, 1 - SCORE_EPS] before the logit of the
#: confidence map (as :data:`lngraph.metrics.calibration.EPS`).
SCORE_EPS = 1e-7


def confident_matches(matches: BatchedMatches, config: MatcherConfig) -> BatchedMatches:
    r"""``matches`` with each kept pair's decision score :math:`p` replaced by the reported
    confidence :math:`\sigma(\operatorname{logit}(p) / T + b)` (``model.score_temperature``,
    ``model.score_bias``; :mod:`lngraph.metrics.calibration`). The map is strictly
    increasing and applied after the decision, so the matches themselves are those of
    ``matches``; with :math:`T = 1, b = 0` ``matches`` is returned as it is."""
    t, b = config.model.score_temperature, config.model.score_bias
    if t == 1.0 and b == 0.0:
        return matches
    p = matches.scores0.double().clamp(SCORE_EPS, 1 - SCORE_EPS)
    confidence = torch.sigmoid((p.log() - (-p).log1p()) / t + b)
    scores = torch.where(matches.matches0 >= 0, confidence, torch.zeros_like(confidence))
    return BatchedMatches(matches.matches0, matches.matches1, scores.to(matches.scores0.dtype),
                          matches.src_mask, matches.dst_mask)


def all_pair_candidates(src_batch: Tensor, dst_batch: Tensor) -> Tensor:
    """``[2, P]`` every (src, dst) node combination of the same pair, by global index."""
    return (src_batch[:, None] == dst_batch[None, :]).nonzero().T


class AsymmetricMatcher(nn.Module):
    """SE + SEAG + SCB matcher (module docstring); every setting comes from ``config``."""

    def __init__(self, config: MatcherConfig):
        super().__init__()
        self.config = config
        c = config.model
        self.use_scb = c.use_scb and not c.geometry_only
        add_encoders(self, config)
        self.seag = SEAGConv(c.feature_dim, c.length_scale_mm, c.learn_length_scale,
                             c.sigma_init, learn_q=c.seag_learn_q) if c.use_seag else None
        if self.use_scb:
            self.scb = SCBHead(c.feature_dim, self.encoder3d.token_channels,
                               self.encoder2d.token_channels, c.scb_hidden, c.scb_temperature)
        if c.position_prior:
            self.fusion_terms = fusion_terms(config)
            self.fusion_weight = nn.Parameter(torch.tensor([FUSION_INIT[t]
                                                            for t in self.fusion_terms]))
            self.fusion_bias = nn.Parameter(torch.tensor(FUSION_BIAS_INIT))

    # 1. SE: node features --------------------------------------------------------------------
    def encode(self, store: NodeStorage) -> ScanFeatures:
        return encode_scan(self, store, self.scb if self.use_scb else None)

    # 2. SEAG: graph context and similarity ---------------------------------------------------
    def context(self, data: HeteroData, node_type: str, feats: ScanFeatures) -> Tensor:
        store = data[node_type]
        edge_index = data[node_type, "intra", node_type].edge_index
        x = F.normalize(feats.feature, dim=-1) * math.sqrt(feats.feature.shape[-1])
        return x if self.seag is None else self.seag(x, store.pos, edge_index)

    @staticmethod
    def similarity(h_src: Tensor, h_dst: Tensor, src_batch: Tensor, dst_batch: Tensor,
                   num_graphs: int) -> tuple[Tensor, Tensor, Tensor]:
        """Padded cosine similarity ``[B, n1_max, n2_max]`` and the node masks ``[B, n1_max]``,
        ``[B, n2_max]`` saying which rows and columns exist."""
        src, src_mask = to_dense_batch(F.normalize(h_src, dim=-1), src_batch,
                                       batch_size=num_graphs)
        dst, dst_mask = to_dense_batch(F.normalize(h_dst, dim=-1), dst_batch,
                                       batch_size=num_graphs)
        return src @ dst.transpose(1, 2), src_mask, dst_mask

    # 3. Position prior --------------------------------------------------------------------
    def fusion_features(self, data: HeteroData, similarity: Tensor, src: ScanFeatures,
                        dst: ScanFeatures) -> Tensor:
        """``[B, n1_max, n2_max, k]`` the terms of the fused matching score, in the order of
        ``self.fusion_terms`` (module docstring); zero where padded."""
        c = self.config.model
        num_graphs = similarity.shape[0]
        terms = {"seag": (similarity - 0.5) / c.similarity_temperature}
        if "encoder" in self.fusion_terms:
            terms["encoder"] = self.similarity(encoder_embedding(src), encoder_embedding(dst),
                                               src.batch, dst.batch,
                                               num_graphs)[0] / c.similarity_temperature
        terms["distance"] = pair_distances(data, src.batch, dst.batch,
                                           num_graphs) / c.position_gate_mm
        if "size" in self.fusion_terms:
            src_r, _ = to_dense_batch(data["src"].radius.clamp_min(1e-3).log(), src.batch,
                                      batch_size=num_graphs)
            dst_r, _ = to_dense_batch(data["dst"].radius.clamp_min(1e-3).log(), dst.batch,
                                      batch_size=num_graphs)
            terms["size"] = (src_r[:, :, None] - dst_r[:, None, :]).abs()
        return torch.stack([terms[t] for t in self.fusion_terms], dim=-1)

    def match_logits(self, data: HeteroData, similarity: Tensor, src: ScanFeatures,
                     dst: ScanFeatures) -> Tensor:
        """Logits of the matching score P, ``[B, n1_max, n2_max]`` (module docstring)."""
        if not self.config.model.position_prior:
            return (similarity - 0.5) / self.config.model.similarity_temperature
        features = self.fusion_features(data, similarity, src, dst)
        return features @ self.fusion_weight + self.fusion_bias

    # 4. The forward pass: 1–3, then SCB on the candidate pairs -----------------------------
    def forward(self, data: HeteroData, candidates: Tensor | None = None) -> MatcherOutput:
        """Encode, add graph context, compare; SCB scores ``candidates`` (``[2, P]`` global
        (src, dst) indices; default every same-pair combination)."""
        num_graphs = getattr(data, "num_graphs", 1)
        src, dst = self.encode(data["src"]), self.encode(data["dst"])
        h_src = self.context(data, "src", src)
        h_dst = self.context(data, "dst", dst)
        similarity, src_mask, dst_mask = self.similarity(h_src, h_dst, src.batch, dst.batch,
                                                         num_graphs)
        logits = self.match_logits(data, similarity, src, dst)
        score = torch.sigmoid(logits) if self.config.model.position_prior else similarity
        if not self.use_scb:
            candidates = src.batch.new_zeros((2, 0))
        elif candidates is None:
            candidates = all_pair_candidates(src.batch, dst.batch)
        scb_logits = (self.scb(src.tokens, dst.tokens, candidates) if self.use_scb
                      else similarity.new_zeros((0, 9)))
        return MatcherOutput(src, dst, similarity, logits, score, src_mask, dst_mask,
                             candidates, scb_logits)

    # 5. Loss ---------------------------------------------------------------------------------
    @staticmethod
    def match_targets(data: HeteroData, out: MatcherOutput) -> Tensor:
        """``[B, n1_max, n2_max]`` 1 where the ground truth matches the two nodes, else 0."""
        return match_targets(data, out.src.batch, out.dst.batch, out.similarity)

    def loss(self, data: HeteroData, out: MatcherOutput) -> dict[str, Tensor]:
        """The four losses and their weighted ``total`` (keys se, te, seag, scb, total)."""
        c = self.config.loss
        matches = data[CROSS].edge_label_index
        if self.config.model.geometry_only:
            l_se = out.src.feature.sum() * 0.0
        else:
            l_se = 0.5 * (se_loss(out.src.feature, out.src.views, out.src.batch, c.temperature)
                          + se_loss(out.dst.feature, out.dst.views, out.dst.batch,
                                    c.temperature))
        l_te = te_loss(out.src.feature, out.dst.feature, matches, out.src.batch,
                       out.dst.batch, c.temperature)
        l_seag = class_balanced_bce(out.match_logits, self.match_targets(data, out),
                                    out.pair_mask, logits=True)
        if self.use_scb:
            n_dst = max(len(out.dst.batch), 1)
            is_match = torch.isin(out.candidates[0] * n_dst + out.candidates[1],
                                  matches[0] * n_dst + matches[1])
            l_scb = class_balanced_bce(out.scb_logits, is_match[:, None].expand_as(
                out.scb_logits), logits=True)
        else:
            l_scb = out.similarity.sum() * 0.0
        losses = {"se": l_se, "te": l_te, "seag": l_seag, "scb": l_scb}
        losses["total"] = (c.weight_se * l_se + c.weight_te * l_te + c.weight_seag * l_seag
                           + c.weight_scb * l_scb)
        return losses

    # 6. Inference ----------------------------------------------------------------------------
    @torch.no_grad()
    def match(self, data: HeteroData, threshold: float | None = None, *,
              calibrated: bool = True) -> BatchedMatches:
        """Matches of every pair in ``data`` by the inference rule (module docstring, step 6),
        computed in evaluation mode (the feature normalisation uses its running statistics;
        the training mode is restored afterwards). ``threshold`` replaces the config's
        decision threshold (``scb_threshold`` with SCB, else ``similarity_threshold``) on
        the decision score; 0 keeps every assigned pair. Each kept pair's score is its
        calibrated confidence (:func:`confident_matches`), or with ``calibrated=False`` its
        decision score."""
        was_training = self.training
        self.eval()
        try:
            out = self(data, candidates=data["src"].pos.new_zeros((2, 0), dtype=torch.long))
            return self.assign(out, threshold, calibrated=calibrated)
        finally:
            self.train(was_training)

    @torch.no_grad()
    def assign(self, out: MatcherOutput, threshold: float | None = None, *,
               calibrated: bool = True) -> BatchedMatches:
        """The inference rule on a forward pass's output (:meth:`match`)."""
        m = self.config.model
        decision = self.scb_decision(out) if self.use_scb else None
        default = m.scb_threshold if self.use_scb else m.similarity_threshold
        matches = batched_assignment(out.score, src_mask=out.src_mask, dst_mask=out.dst_mask,
                                     threshold=default if threshold is None else threshold,
                                     decision=decision,
                                     reassign=self.use_scb and m.scb_reassign)
        return confident_matches(matches, self.config) if calibrated else matches

    def scb_decision(self, out: MatcherOutput) -> Tensor:
        """``[B, n1_max, n2_max]`` SCB's Eq. 3 score of the pairs the assignment on the
        matching score picks (every pair with ``scb_reassign``), NaN elsewhere."""
        if self.config.model.scb_reassign:
            graph, row, col = out.pair_mask.nonzero(as_tuple=True)
        else:
            first = batched_assignment(out.score, src_mask=out.src_mask,
                                       dst_mask=out.dst_mask, threshold=None)
            graph, row = (first.matches0 >= 0).nonzero(as_tuple=True)
            col = first.matches0[graph, row]
        src_start = out.src_mask.sum(1).cumsum(0) - out.src_mask.sum(1)
        dst_start = out.dst_mask.sum(1).cumsum(0) - out.dst_mask.sum(1)
        pairs = torch.stack([src_start[graph] + row, dst_start[graph] + col])
        logits = self.scb(out.src.tokens, out.dst.tokens, pairs)
        decision = torch.full_like(out.score, math.nan)
        decision[graph, row, col] = scb_score(torch.sigmoid(logits)).to(decision.dtype)
        return decision
