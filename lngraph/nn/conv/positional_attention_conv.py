"""Multi-head attention between node sets with a learned bias from edge geometry."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.typing import Adj, PairTensor
from torch_geometric.utils import softmax


class PositionalAttentionConv(MessagePassing):
    r"""Multi-head attention with a learned positional bias and a residual MLP update, the
    message passing of SuperGlue (Sarlin et al., CVPR 2020) and LightGlue (Lindenberger et
    al., ICCV 2023) written as one ``MessagePassing`` operator.

    For a target node :math:`i` and its sources :math:`j \in \mathcal{N}(i)` (the other nodes
    of its own scan for an intra-scan layer, every node of the other scan for a cross-graph
    layer), with head :math:`h` of :math:`H`, :math:`d_h = d / H`:

    .. math::
        \alpha^h_{ij} &= \operatorname{softmax}_j\left(
            \frac{(\mathbf{W}_Q \mathbf{x}_i)_h^{\top} (\mathbf{W}_K \mathbf{x}_j)_h}
                 {\sqrt{d_h}} + b_h(\mathbf{e}_{ij})\right),

        \mathbf{m}_i &= \mathbf{W}_O \big\Vert_{h=1}^{H} \sum_j \alpha^h_{ij}
            (\mathbf{W}_V \mathbf{x}_j + \mathbf{v}(\mathbf{e}_{ij}))_h,

        \mathbf{x}'_i &= \mathbf{x}_i + \mathrm{MLP}\left(\left[\mathbf{x}_i \,\Vert\,
            \mathbf{m}_i\right]\right),

    where :math:`b = \mathrm{MLP}(\mathbf{e}_{ij}) \in \mathbb{R}^H` is a learned bias from the
    edge features (for lngraph: the offset between two nodes' aligned centres and its length),
    absent when ``edge_dim`` is 0, and :math:`\mathbf{v} = \mathrm{MLP}(\mathbf{e}_{ij}) \in
    \mathbb{R}^d` a learned value from the same features with ``edge_values`` (else 0). The
    bias only shifts attention between a node's sources, so without ``edge_values`` a node
    with a single source receives that source's value whatever the edge says; with them the
    message carries the edge's geometry (how far the attended nodes are). The MLP of the
    update is
    ``Linear(2d, 2d) → LayerNorm → GELU → Linear(2d, d)``. With a pair of feature matrices
    :math:`(\mathbf{X}_{src}, \mathbf{X}_{dst})` the layer is bipartite: messages flow from
    the first to the second, and only the second is updated.

    The softmax's arguments (:meth:`edge_update`) and the weighted values (:meth:`message`,
    summed into :math:`\mathbf{m}_i`) are computed :attr:`chunk_size` edges at a time, so
    that the per-edge temporaries (:math:`|\mathcal{E}| \times d`) stay a few MB on large
    graphs; the softmax runs once over all edges.

    Args:
        channels (int): Size :math:`d` of each node feature (input and output).
        heads (int, optional): Number of heads :math:`H`, a divisor of ``channels``.
            (default: :obj:`4`)
        edge_dim (int, optional): Size of the edge features; 0 for no positional bias.
            (default: :obj:`0`)
        edge_values (bool, optional): Add the learned value :math:`\mathbf{v}(\mathbf{e}_{ij})`
            to each message (needs ``edge_dim`` > 0). (default: :obj:`False`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, d)` or
          :math:`((|\mathcal{V}_s|, d), (|\mathcal{V}_t|, d))`,
          edge indices :math:`(2, |\mathcal{E}|)` (source, target),
          edge features :math:`(|\mathcal{E}|, D)` *(optional)*
        - **output:** node features :math:`(|\mathcal{V}|, d)` or :math:`(|\mathcal{V}_t|, d)`
    """

    #: Edges per :meth:`edge_update` / :meth:`propagate` call.
    chunk_size: int = 8192

    def __init__(self, channels: int, heads: int = 4, edge_dim: int = 0,
                 edge_values: bool = False, **kwargs):
        kwargs.setdefault("aggr", "add")
        super().__init__(node_dim=0, **kwargs)
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be a multiple of heads ({heads})")
        self.channels = channels
        self.heads = heads
        self.edge_dim = edge_dim
        self.query = nn.Linear(channels, channels)
        self.key = nn.Linear(channels, channels)
        self.value = nn.Linear(channels, channels)
        self.merge = nn.Linear(channels, channels)
        self.bias = (nn.Sequential(nn.Linear(edge_dim, channels), nn.GELU(),
                                   nn.Linear(channels, heads)) if edge_dim else None)
        if edge_values and not edge_dim:
            raise ValueError("edge_values needs edge features (edge_dim > 0)")
        self.edge_values = edge_values
        self.edge_value = (nn.Sequential(nn.Linear(edge_dim, channels), nn.GELU(),
                                         nn.Linear(channels, channels)) if edge_values else None)
        self.update_mlp = nn.Sequential(nn.Linear(2 * channels, 2 * channels),
                                        nn.LayerNorm(2 * channels), nn.GELU(),
                                        nn.Linear(2 * channels, channels))
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def forward(self, x: Tensor | PairTensor, edge_index: Adj,
                edge_attr: Tensor | None = None) -> Tensor:
        x_src, x_dst = (x, x) if isinstance(x, Tensor) else x
        if (edge_attr is None) != (self.bias is None):
            raise ValueError(f"edge_attr must be given exactly when edge_dim > 0 (edge_dim="
                             f"{self.edge_dim})")
        h, c = self.heads, self.channels // self.heads
        query = self.query(x_dst).view(-1, h, c)
        key = self.key(x_src).view(-1, h, c)
        value = self.value(x_src).view(-1, h, c)
        size = (x_src.size(0), x_dst.size(0))
        chunks = [slice(start, start + self.chunk_size)
                  for start in range(0, edge_index.size(1), self.chunk_size)] or [slice(0, 0)]
        logits = torch.cat([self.edge_updater(
            edge_index[:, part], query=query, key=key,
            edge_attr=None if edge_attr is None else edge_attr[part], size=size)
            for part in chunks])
        alpha = softmax(logits, edge_index[1], num_nodes=size[1])
        message = None
        for part in chunks:
            out = self.propagate(edge_index[:, part], value=value, alpha=alpha[part], size=size,
                                 edge_attr=None if self.edge_value is None else edge_attr[part])
            message = out if message is None else message + out
        message = self.merge(message.reshape(-1, self.channels))
        return x_dst + self.update_mlp(torch.cat([x_dst, message], dim=-1))

    def edge_update(self, query_i: Tensor, key_j: Tensor, edge_attr: Tensor | None) -> Tensor:
        logits = (query_i * key_j).sum(-1) / math.sqrt(query_i.size(-1))
        return logits if self.bias is None else logits + self.bias(edge_attr)

    def message(self, value_j: Tensor, alpha: Tensor, edge_attr: Tensor | None) -> Tensor:
        if self.edge_value is not None:
            value_j = value_j + self.edge_value(edge_attr).view(value_j.shape)
        return alpha.unsqueeze(-1) * value_j

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.channels}, heads={self.heads}, "
                f"edge_dim={self.edge_dim}" + (", edge_values=True" if self.edge_values else "")
                + ")")
