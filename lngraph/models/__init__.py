"""Models built from :mod:`lngraph.nn`: the asymmetric matcher and its configuration."""

from lngraph.models.asymmetric_matcher import AsymmetricMatcher, MatcherOutput
from lngraph.models.config import (
    LossConfig,
    MatcherConfig,
    ModelConfig,
    OptimConfig,
    ProtocolConfig,
    preset,
)

__all__ = ["AsymmetricMatcher", "LossConfig", "MatcherConfig", "MatcherOutput", "ModelConfig",
           "OptimConfig", "ProtocolConfig", "preset"]
