"""The matcher a config describes."""

from __future__ import annotations

from lngraph.models.asymmetric_matcher import AsymmetricMatcher
from lngraph.models.config import MatcherConfig
from lngraph.models.ensemble import GraphMatcherEnsemble
from lngraph.models.graph_matcher import GraphMatcher

#: Any model; each has ``forward``, ``loss``, ``match`` and ``assign``.
Matcher = GraphMatcher | GraphMatcherEnsemble | AsymmetricMatcher


def build_matcher(config: MatcherConfig) -> Matcher:
    """A freshly initialised matcher of ``config.model.architecture`` (``"graph"``:
    :class:`GraphMatcher`, or :class:`GraphMatcherEnsemble` with ``model.ensemble`` above 1;
    ``"asymmetric"``: :class:`AsymmetricMatcher`)."""
    if config.model.architecture == "graph" and config.model.ensemble > 1:
        return GraphMatcherEnsemble(config)
    if config.model.architecture == "graph":
        return GraphMatcher(config)
    return AsymmetricMatcher(config)
