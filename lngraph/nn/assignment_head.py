r"""The assignment head of the graph matcher: dual-softmax with learned matchability.

As in LightGlue (Lindenberger et al., ICCV 2023), for the nodes :math:`i` of the earlier scan
and :math:`j` of the later one, with final features :math:`\mathbf{x}_i, \mathbf{y}_j`:

.. math::
    s_{ij} &= \frac{(\mathbf{W}\mathbf{x}_i)^{\top} (\mathbf{W}\mathbf{y}_j)}{\sqrt{d}}
        + g(\mathbf{e}_{ij}), \qquad z_i = \mathbf{w}^{\top}\mathbf{x}_i + c, \quad
        z'_j = \mathbf{w}^{\top}\mathbf{y}_j + c,

    \log P_{ij} &= \log\operatorname{softmax}_j(s_{ij}) + \log\operatorname{softmax}_i(s_{ij})
        + \log\sigma(z_i) + \log\sigma(z'_j),

    \log P_{i\varnothing} &= \log\sigma(-z_i), \qquad \log P_{\varnothing j} = \log\sigma(-z'_j),

with :math:`g` an MLP on the pair's edge features (the offset of the two aligned centres;
absent without positions). With ``score_matchability`` the matchability logits also read the
pair scores,

.. math::
    z_i = \mathbf{w}^{\top}\mathbf{x}_i + c + \beta \log\sum_j e^{s_{ij}}, \qquad
    z'_j = \mathbf{w}^{\top}\mathbf{y}_j + c + \beta \log\sum_i e^{s_{ij}}

(learned :math:`\beta`, 1 at start), so that a node whose every pair score is low — no
candidate near it — is unmatchable whatever its features say, as with SuperGlue's dustbin
(Sarlin et al., CVPR 2020): the softmaxes alone give the best of bad candidates a high
:math:`P_{ij}`. :math:`P_{ij}` is the probability that :math:`i` and :math:`j` are
the same node, :math:`\sigma(z_i)` that :math:`i` has a partner at all (its *matchability*).
The loss (:func:`assignment_nll`) is the negative log-likelihood of the ground-truth partial
assignment, unmatched nodes included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Logit of padded entries before the softmaxes: finite, so that a scan without nodes gives
#: no NaN, and far below any real logit.
_PADDED = -1e4
#: Floor of the log-sum-exp that ``score_matchability`` adds: a node without any candidate
#: (the other scan is empty) gets this, not the padding's -1e4.
_NO_CANDIDATE = -30.0


@dataclass
class Assignment:
    """One head's output for a padded batch of ``B`` pairs.

    Args:
        log_assignment: ``[B, n1, n2]`` :math:`\\log P_{ij}` (``-inf`` where padded).
        log_unmatched0, log_unmatched1: ``[B, n1]`` / ``[B, n2]`` :math:`\\log P_{i\\varnothing}`,
            :math:`\\log P_{\\varnothing j}`.
        matchability0, matchability1: ``[B, n1]`` / ``[B, n2]`` logits :math:`z_i, z'_j`.
    """

    log_assignment: Tensor
    log_unmatched0: Tensor
    log_unmatched1: Tensor
    matchability0: Tensor
    matchability1: Tensor

    @property
    def probability(self) -> Tensor:
        """``[B, n1, n2]`` :math:`P_{ij}` (0 where padded)."""
        return self.log_assignment.exp()


class AssignmentHead(nn.Module):
    r"""Dual-softmax × matchability (module docstring).

    Args:
        channels (int): Size :math:`d` of the node features.
        edge_dim (int, optional): Size of the pairwise edge features; 0 for none.
            (default: :obj:`0`)
        score_matchability (bool, optional): Add :math:`\beta \log\sum e^{s}` to the
            matchability logits (module docstring). (default: :obj:`False`)

    Shapes:
        - **input:** x :math:`(B, n_1, d)`, y :math:`(B, n_2, d)`, masks :math:`(B, n_1)`,
          :math:`(B, n_2)`, edge features :math:`(B, n_1, n_2, D)` *(optional)*
        - **output:** :class:`Assignment`
    """

    def __init__(self, channels: int, edge_dim: int = 0, score_matchability: bool = False):
        super().__init__()
        self.channels = channels
        self.edge_dim = edge_dim
        self.score_matchability = score_matchability
        self.beta = nn.Parameter(torch.ones(())) if score_matchability else None
        self.project = nn.Linear(channels, channels)
        self.matchability = nn.Linear(channels, 1)
        self.pairwise = (nn.Sequential(nn.Linear(edge_dim, channels), nn.GELU(),
                                       nn.Linear(channels, 1)) if edge_dim else None)

    def reset_parameters(self):
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        if self.beta is not None:
            nn.init.ones_(self.beta)

    def forward(self, x: Tensor, y: Tensor, mask0: Tensor, mask1: Tensor,
                edge_attr: Tensor | None = None) -> Assignment:
        if (edge_attr is None) != (self.pairwise is None):
            raise ValueError(f"edge_attr must be given exactly when edge_dim > 0 (edge_dim="
                             f"{self.edge_dim})")
        scale = math.sqrt(self.channels)
        sim = self.project(x) @ self.project(y).transpose(1, 2) / scale
        if self.pairwise is not None:
            sim = sim + self.pairwise(edge_attr).squeeze(-1)
        valid = mask0[:, :, None] & mask1[:, None, :]
        sim = sim.masked_fill(~valid, _PADDED)
        z0 = self.matchability(x).squeeze(-1)
        z1 = self.matchability(y).squeeze(-1)
        if self.beta is not None:   # (clamped: a scan without nodes leaves only padding)
            z0 = z0 + self.beta * sim.logsumexp(dim=2).clamp(min=_NO_CANDIDATE)
            z1 = z1 + self.beta * sim.logsumexp(dim=1).clamp(min=_NO_CANDIDATE)
        log_p = (F.log_softmax(sim, dim=2) + F.log_softmax(sim, dim=1)
                 + F.logsigmoid(z0)[:, :, None] + F.logsigmoid(z1)[:, None, :])
        return Assignment(log_p.masked_fill(~valid, -math.inf), F.logsigmoid(-z0),
                          F.logsigmoid(-z1), z0, z1)

    def __repr__(self) -> str:
        extra = ", score_matchability=True" if self.score_matchability else ""
        return f"{self.__class__.__name__}({self.channels}, edge_dim={self.edge_dim}{extra})"


def assignment_nll(out: Assignment, target: Tensor, mask0: Tensor, mask1: Tensor) -> Tensor:
    r"""Negative log-likelihood of the ground-truth partial assignment :math:`\mathcal{M}`:

    .. math::
        \mathcal{L} = \frac{1}{2}\,\frac{1}{|\mathcal{M}|}\sum_{(i,j) \in \mathcal{M}}
            -\log P_{ij} \;+\; \frac{1}{2}\,\frac{1}{|\mathcal{U}|}\Big(
            \sum_{i \in \mathcal{U}_0} -\log P_{i\varnothing}
            + \sum_{j \in \mathcal{U}_1} -\log P_{\varnothing j}\Big)

    with :math:`\mathcal{U} = \mathcal{U}_0 \cup \mathcal{U}_1` the existing nodes without a
    partner in either scan; a term whose set is empty is 0.

    Args:
        out: the head's output.
        target: ``[B, n1, n2]`` 1 where the ground truth matches the two nodes, else 0.
        mask0, mask1: ``[B, n1]`` / ``[B, n2]`` True where the node exists.
    """
    target = target.bool() & mask0[:, :, None] & mask1[:, None, :]
    matched = out.log_assignment[target]
    unmatched0 = mask0 & ~target.any(2)
    unmatched1 = mask1 & ~target.any(1)
    unmatched = torch.cat([out.log_unmatched0[unmatched0], out.log_unmatched1[unmatched1]])
    zero = out.matchability0.sum() * 0.0
    positive = -matched.mean() if matched.numel() else zero
    negative = -unmatched.mean() if unmatched.numel() else zero
    return 0.5 * positive + 0.5 * negative
