"""The SEAG layer pair (spatial-enhanced attention graph) as one ``MessagePassing`` operator."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.typing import Adj
from torch_geometric.utils import add_self_loops, remove_self_loops, softmax


class SEAGConv(MessagePassing):
    r"""The SEAG layer pair from `"Asymmetric Matching in Abdominal Lymph Nodes of Follow-up CT
    Scans" <https://papers.miccai.org/miccai-2025/>`_ (Mao et al., MICCAI 2025), with the length
    scale the paper omits.

    On the graph of one scan (all sums run over :math:`j \in \mathcal{N}(i) \cup \{ i \}`;
    self loops are added), with node features :math:`\mathbf{h}_i` and centres
    :math:`\mathbf{c}_i` in mm. Layer 1 aggregates with a distance prior and attends over the
    aggregates (:math:`\mathbf{W} = \mathbf{I}` unless :obj:`learn_q=True`, see below):

    .. math::
        w_{ij} &= \exp\left(-\|\mathbf{c}_i - \mathbf{c}_j\| / \ell\right), \qquad
        \mathbf{q}_i = \sum_j w_{ij} \mathbf{h}_j,

        \alpha_{ij} &= \operatorname{softmax}_j\left(\mathbf{q}_i^{\top} \mathbf{W}
        \mathbf{q}_j / \sqrt{d}\right), \qquad
        \mathbf{h}^1_i = \mathbf{h}_i + \sum_j \alpha_{ij} \mathbf{q}_j .

    The paper writes the attention as :math:`\alpha_i = \operatorname{softmax}(\mathbf{q}_i
    \mathbf{Q}^{\top} / \sqrt{d})` and the update as :math:`\mathbf{h}_i + \alpha_i
    \mathbf{q}_i`; we read :math:`\mathbf{Q}` as the stacked :math:`\mathbf{q}_j` of the
    graph, so :math:`\alpha_i \in \Delta^{n-1}` is a distribution over the nodes and the update
    is :math:`\alpha_i \mathbf{Q} = \sum_j \alpha_{ij} \mathbf{q}_j`. This is the only reading
    under which the shapes agree, and it is the one the paper's layer 2
    (:math:`\sum_j \alpha^1_{ij} \mathbf{q}^1_j`) writes out. The paper also calls
    :math:`\mathbf{Q}` "a learnable parameter matrix"; a free :math:`n \times d` parameter cannot
    be, as :math:`n` changes from scan to scan, so with :obj:`learn_q=True` we read it as a
    bilinear attention over the neighbours: in the logits, :math:`\mathbf{Q}` stacks the
    :math:`\mathbf{q}_j` mapped by a learnable :math:`\mathbf{W} \in \mathbb{R}^{d \times d}`,

    .. math::
        \mathbf{q}_i \mathbf{Q}^{\top} = \left(\mathbf{q}_i^{\top} \mathbf{W} \mathbf{q}_j
        \right)_j, \qquad \mathbf{Q} = \left[\mathbf{q}_j^{\top} \mathbf{W}^{\top}\right]_j,

    while the values stay the :math:`\mathbf{q}_j`. The shapes are the paper's
    (:math:`\alpha_i` is still a distribution over the nodes, the update still
    :math:`\sum_j \alpha_{ij} \mathbf{q}_j`), and :math:`\mathbf{W}` is initialised to
    :math:`\mathbf{I}`, which reproduces the parameter-free layer (:obj:`learn_q=False`)
    exactly. Layer 2 has its own
    :math:`\mathbf{W}^1`, re-weights the edges by feature distance (a learnable bandwidth
    :math:`\sigma`) and repeats the attention:

    .. math::
        w^1_{ij} &= \exp\left(-\|\mathbf{h}^1_i - \mathbf{h}^1_j\|^2 / \sigma^2\right), \qquad
        \mathbf{q}^1_i = \sum_j w^1_{ij} \mathbf{h}^1_j,

        \alpha^1_{ij} &= \operatorname{softmax}_j\left(\mathbf{q}^{1\top}_i \mathbf{W}^1
        \mathbf{q}^1_j / \sqrt{d}\right), \qquad
        \mathbf{h}^2_i = \mathrm{ReLU}\Big(\mathbf{h}^1_i + \sum_j \alpha^1_{ij}
        \mathbf{q}^1_j\Big).

    Only intra-scan distances enter, so the output is unchanged by any rotation or translation
    of the scan's coordinates, and it is equivariant to node permutations (for any
    :math:`\mathbf{W}`, :math:`\mathbf{W}^1`: they act on features and are shared by all nodes).

    Args:
        channels (int): Size :math:`d` of each node feature (input and output).
        length_scale (float, optional): Initial length scale :math:`\ell` of the distance prior,
            in mm. Without one, :math:`\exp(-\|\mathbf{c}_i - \mathbf{c}_j\|)` underflows to 0
            for nodes a few cm apart. (default: :obj:`20.0`)
        learn_length_scale (bool, optional): If :obj:`True`, :math:`\ell` is learned.
            (default: :obj:`False`)
        sigma (float, optional): Initial bandwidth :math:`\sigma` of the feature kernel, always
            learned. (default: :obj:`1.0`)
        learn_q (bool, optional): If :obj:`True`, each layer learns its attention matrix
            (:math:`\mathbf{W}`, :math:`\mathbf{W}^1`: parameters :obj:`q_weight1`,
            :obj:`q_weight2`), initialised to the identity. (default: :obj:`False`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, d)`,
          positions :math:`(|\mathcal{V}|, 3)` in mm,
          edge indices :math:`(2, |\mathcal{E}|)`
        - **output:** node features :math:`(|\mathcal{V}|, d)`
    """

    def __init__(self, channels: int, length_scale: float = 20.0,
                 learn_length_scale: bool = False, sigma: float = 1.0,
                 learn_q: bool = False, **kwargs):
        kwargs.setdefault("aggr", "add")
        super().__init__(node_dim=0, **kwargs)
        if length_scale <= 0 or sigma <= 0:
            raise ValueError(f"length_scale ({length_scale}) and sigma ({sigma}) must be > 0")
        self.channels = channels
        self.length_scale = float(length_scale)
        self.learn_length_scale = learn_length_scale
        self.sigma = float(sigma)
        self.learn_q = learn_q
        if learn_length_scale:
            self.log_length_scale = Parameter(torch.empty(()))
        else:
            self.register_buffer("log_length_scale", torch.empty(()))
        self.log_sigma = Parameter(torch.empty(()))
        if learn_q:
            self.q_weight1 = Parameter(torch.empty(channels, channels))
            self.q_weight2 = Parameter(torch.empty(channels, channels))
        else:
            self.q_weight1 = self.q_weight2 = None
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        with torch.no_grad():
            self.log_length_scale.fill_(math.log(self.length_scale))
            self.log_sigma.fill_(math.log(self.sigma))
            if self.learn_q:
                self.q_weight1.copy_(torch.eye(self.channels))
                self.q_weight2.copy_(torch.eye(self.channels))

    def forward(self, x: Tensor, pos: Tensor, edge_index: Adj) -> Tensor:
        edge_index, _ = remove_self_loops(edge_index)
        edge_index, _ = add_self_loops(edge_index, num_nodes=x.size(0))

        # Layer 1: distance prior, attention over the aggregates, residual.
        weight = self.edge_updater(edge_index, z=pos, scale=self.log_length_scale.exp(),
                                   power=1.0)
        q = self.propagate(edge_index, x=x, weight=weight)
        h1 = x + self._attend(q, edge_index, self.q_weight1)

        # Layer 2: edges re-weighted by feature distance, attention again, ReLU.
        weight = self.edge_updater(edge_index, z=h1, scale=(2 * self.log_sigma).exp(),
                                   power=2.0)
        q1 = self.propagate(edge_index, x=h1, weight=weight)
        return torch.relu(h1 + self._attend(q1, edge_index, self.q_weight2))

    def _attend(self, q: Tensor, edge_index: Tensor, q_weight: Tensor | None) -> Tensor:
        r""":math:`\sum_j \operatorname{softmax}_j(\mathbf{q}_i^\top \mathbf{W} \mathbf{q}_j /
        \sqrt{d}) \mathbf{q}_j`, with :math:`\mathbf{W} = \mathbf{I}` when ``q_weight`` is
        :obj:`None`."""
        src, dst = edge_index
        key = q if q_weight is None else q @ q_weight  # rows q_i^T W, indexed by the target i
        logits = (key[dst] * q[src]).sum(-1) / math.sqrt(self.channels)
        alpha = softmax(logits, dst, num_nodes=q.size(0))
        return self.propagate(edge_index, x=q, weight=alpha)

    def edge_update(self, z_i: Tensor, z_j: Tensor, scale: Tensor, power: float) -> Tensor:
        # A radial kernel exp(-||z_i - z_j||^power / scale), for positions (power 1, scale ℓ)
        # and for features (power 2, scale σ², smooth at z_i = z_j).
        return torch.exp(-(z_i - z_j).pow(2).sum(-1).pow(power / 2) / scale)

    def message(self, x_j: Tensor, weight: Tensor) -> Tensor:
        return weight.unsqueeze(-1) * x_j

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.channels}, "
                f"length_scale={self.length_scale}, "
                f"learn_length_scale={self.learn_length_scale}, "
                f"learn_q={self.learn_q})")
