r"""An ensemble of graph matchers trained together, deciding on their mean assignment
probability.

``model.ensemble`` :math:`= K > 1` builds :class:`GraphMatcherEnsemble`: :math:`K`
:class:`~lngraph.models.graph_matcher.GraphMatcher` members of one config, each with its own
initial weights. They are trained jointly — the same batches, one optimizer, the total loss the
sum of the members' totals, so each member gets exactly the gradient of its own loss, as if
trained alone on these batches — and the epoch is chosen on the ensemble's validation score.
The ensemble's score is the members' mean assignment probability

.. math::
    \bar P_{ij} = \frac{1}{K} \sum_{k=1}^{K} P^{(k)}_{ij},

on which the inference rule of the graph matcher runs unchanged: the batched Hungarian
assignment, a pair kept when :math:`\bar P_{ij} \ge` ``similarity_threshold`` (chosen on
validation patients like any threshold), the reported score its calibrated confidence.
Members that disagree about a pair leave it near the threshold instead of on one training
run's side of it. It costs :math:`K` times the training and inference time of one matcher.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from lngraph.models.config import MatcherConfig
from lngraph.models.graph_matcher import GraphMatcher, GraphMatcherOutput


@dataclass
class EnsembleOutput(GraphMatcherOutput):
    """:class:`~lngraph.models.graph_matcher.GraphMatcherOutput` of the ensemble: ``score`` is
    the members' mean :math:`\\bar P`; ``src``, ``dst`` and ``assignments`` are the first
    member's; ``members`` holds every member's own output."""

    members: list[GraphMatcherOutput] = field(default_factory=list)


class GraphMatcherEnsemble(nn.Module):
    """``config.model.ensemble`` graph matchers of one config whose mean assignment probability
    decides (module docstring). ``config`` is the ensemble's (its decision threshold and
    confidence map apply to :math:`\\bar P`); each member gets it with ``ensemble`` 1."""

    use_scb = False

    def __init__(self, config: MatcherConfig):
        super().__init__()
        size = config.model.ensemble
        if size < 2 or config.model.architecture != "graph":
            raise ValueError("GraphMatcherEnsemble needs model.architecture 'graph' and "
                             f"model.ensemble >= 2, got {config.model.architecture!r} and "
                             f"{size}")
        self.config = config
        member = config.with_values({"model.ensemble": 1})
        self.members = nn.ModuleList([GraphMatcher(member) for _ in range(size)])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.members)} x GraphMatcher)"

    def forward(self, data: HeteroData) -> EnsembleOutput:
        outs = [member(data) for member in self.members]
        first = outs[0]
        score = torch.stack([out.score for out in outs]).mean(0)
        return EnsembleOutput(first.src, first.dst, first.assignments, score, first.src_mask,
                              first.dst_mask, members=outs)

    def loss(self, data: HeteroData, out: EnsembleOutput) -> dict[str, Tensor]:
        """``total``: the sum of the members' totals (what training minimises; each member's
        gradient is its own loss's); se, te, assignment: the members' means, comparable with
        one matcher's."""
        losses = [member.loss(data, o) for member, o in zip(self.members, out.members,
                                                            strict=True)]
        terms = {key: torch.stack([m[key] for m in losses]) for key in losses[0]}
        return {key: t.sum() if key == "total" else t.mean() for key, t in terms.items()}

    # the graph matcher's inference rule, on the mean probability: ``self(data)`` and
    # ``self.config`` are all it reads
    match = GraphMatcher.match
    assign = GraphMatcher.assign
