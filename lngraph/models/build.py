"""The matcher a config describes."""

from __future__ import annotations

from lngraph.models.asymmetric_matcher import AsymmetricMatcher
from lngraph.models.config import MatcherConfig
from lngraph.models.graph_matcher import GraphMatcher

#: Either model; both have ``forward``, ``loss``, ``match`` and ``assign``.
Matcher = GraphMatcher | AsymmetricMatcher


def build_matcher(config: MatcherConfig) -> Matcher:
    """A freshly initialised matcher of ``config.model.architecture`` (``"graph"``:
    :class:`GraphMatcher`, ``"asymmetric"``: :class:`AsymmetricMatcher`)."""
    if config.model.architecture == "graph":
        return GraphMatcher(config)
    return AsymmetricMatcher(config)
