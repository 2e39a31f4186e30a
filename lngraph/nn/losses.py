r"""The four training losses of the asymmetric matcher (Mao et al., MICCAI 2025, Eqs. 1–2).

* :func:`se_loss` — :math:`\mathcal{L}_{se}`: a node's 3D feature against its own nine views
  (positives) and the views of the other nodes of its scan (negatives).
* :func:`te_loss` — :math:`\mathcal{L}_{te}`: a node's 3D feature against its partner in the
  other scan (positive) and the other nodes of that scan (negatives).
* :func:`class_balanced_bce` — :math:`\mathcal{L}_{seag}` on the similarity matrix and
  :math:`\mathcal{L}_{scb}` on every SCB probability; positives are rare (one per row at most),
  so both classes get equal total weight.

All similarities are cosines divided by a temperature :math:`\tau`. A node's group (its scan
graph in a batch of pairs) is given by a PyG ``batch`` vector; negatives never cross groups.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def se_loss(feat3d: Tensor, feat_views: Tensor, batch: Tensor | None = None,
            tau: float = 0.1) -> Tensor:
    r"""Specificity extraction loss :math:`\mathcal{L}_{se}` (Eq. 1), multi-positive InfoNCE:

    .. math::
        \mathcal{L}_{se} = -\frac{1}{N} \sum_i \log
        \frac{\sum_{k} e^{\cos(\mathbf{f}_i, \mathbf{v}_{ik}) / \tau}}
             {\sum_{j \in g(i)} \sum_{k} e^{\cos(\mathbf{f}_i, \mathbf{v}_{jk}) / \tau}}

    with :math:`\mathbf{f}_i` the 3D feature, :math:`\mathbf{v}_{jk}` the :math:`k`-th view
    feature of node :math:`j` and :math:`g(i)` the nodes of :math:`i`'s group (itself
    included). A node alone in its group contributes 0.

    Shapes:
        - **input:** feat3d :math:`(N, d)`, feat_views :math:`(N, V, d)`, batch :math:`(N)`
        - **output:** scalar
    """
    n, v, _ = feat_views.shape
    if n == 0:
        return feat3d.sum() * 0.0 + feat_views.sum() * 0.0
    if batch is None:
        batch = torch.zeros(n, dtype=torch.long, device=feat3d.device)
    f = F.normalize(feat3d, dim=-1)
    views = F.normalize(feat_views, dim=-1)
    logits = torch.einsum("id,jkd->ijk", f, views) / tau
    same = (batch[:, None] == batch[None, :])[:, :, None].expand(-1, -1, v)
    everything = torch.logsumexp(logits.masked_fill(~same, float("-inf")).flatten(1), dim=1)
    positives = torch.logsumexp(logits.diagonal(dim1=0, dim2=1).T, dim=1)
    return (everything - positives).mean()


def te_loss(src_feat: Tensor, dst_feat: Tensor, matches: Tensor,
            src_batch: Tensor | None = None, dst_batch: Tensor | None = None,
            tau: float = 0.1) -> Tensor:
    r"""Temporal enhancement loss :math:`\mathcal{L}_{te}` (Eq. 2), symmetric InfoNCE over the
    ground-truth matches :math:`\mathcal{M}` of each pair:

    .. math::
        \mathcal{L}_{te} = \frac{1}{2|\mathcal{M}|} \sum_{(a, b) \in \mathcal{M}} \Big(
        -\log \frac{e^{s_{ab}}}{\sum_{b' \in g(b)} e^{s_{ab'}}}
        -\log \frac{e^{s_{ab}}}{\sum_{a' \in g(a)} e^{s_{a'b}}} \Big), \qquad
        s_{ab} = \cos(\mathbf{f}_a, \mathbf{f}_b) / \tau

    where :math:`g(b)` are the later-scan nodes of the pair and :math:`g(a)` the earlier-scan
    ones. Zero (with a gradient path) when there are no matches.

    Shapes:
        - **input:** src_feat :math:`(N_1, d)`, dst_feat :math:`(N_2, d)`, matches
          :math:`(2, M)` (indices into src and dst), batch vectors :math:`(N_1)`, :math:`(N_2)`
        - **output:** scalar
    """
    if matches.numel() == 0:
        return src_feat.sum() * 0.0 + dst_feat.sum() * 0.0
    if src_batch is None:
        src_batch = torch.zeros(len(src_feat), dtype=torch.long, device=src_feat.device)
    if dst_batch is None:
        dst_batch = torch.zeros(len(dst_feat), dtype=torch.long, device=dst_feat.device)
    a, b = matches
    sim = F.normalize(src_feat, dim=-1) @ F.normalize(dst_feat, dim=-1).T / tau
    sim = sim.masked_fill(src_batch[:, None] != dst_batch[None, :], float("-inf"))
    forward = torch.logsumexp(sim[a], dim=1) - sim[a, b]
    backward = torch.logsumexp(sim[:, b], dim=0) - sim[a, b]
    return 0.5 * (forward + backward).mean()


def class_balanced_bce(input: Tensor, target: Tensor, mask: Tensor | None = None,
                       logits: bool = False, eps: float = 1e-6) -> Tensor:
    r"""Binary cross-entropy with both classes weighted equally (:math:`\mathcal{L}_{seag}`,
    :math:`\mathcal{L}_{scb}`):

    .. math::
        \mathcal{L} = \tfrac{1}{2} \Big( \frac{1}{|P|} \sum_{e \in P} -\log p_e
        + \frac{1}{|N|} \sum_{e \in N} -\log (1 - p_e) \Big)

    over the positive entries :math:`P` and negative entries :math:`N` (within ``mask``). When
    one class is absent the other one's mean is returned; with no entries, 0.

    Args:
        input: probabilities in :math:`[0, 1]` (clamped to :math:`[\epsilon, 1 - \epsilon]`), or
            logits when ``logits`` is True.
        target: 0/1 labels, same shape.
        mask: which entries count (default: all).
    """
    target = target.to(input.dtype)
    if logits:
        loss = F.binary_cross_entropy_with_logits(input, target, reduction="none")
    else:
        p = input.clamp(eps, 1.0 - eps)
        loss = -(target * torch.log(p) + (1.0 - target) * torch.log(1.0 - p))
    valid = torch.ones_like(target, dtype=torch.bool) if mask is None else mask.bool()
    terms = []
    for cls in (target > 0.5, target <= 0.5):
        sel = cls & valid
        if sel.any():
            terms.append(loss[sel].mean())
    if not terms:
        return input.sum() * 0.0
    return torch.stack(terms).mean()
