"""Models built from :mod:`lngraph.nn`: the asymmetric matcher and its configuration."""

from lngraph.models.asymmetric_matcher import AsymmetricMatcher, MatcherOutput
from lngraph.models.config import MatcherConfig, preset

__all__ = ["AsymmetricMatcher", "MatcherConfig", "MatcherOutput", "preset"]
