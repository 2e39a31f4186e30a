"""Models built from :mod:`lngraph.nn`: the graph matcher (alone or as an ensemble) and the
asymmetric matcher, their configuration, their checkpoint format and inference (no training
code: importing this package never imports Lightning)."""

from lngraph.models.asymmetric_matcher import AsymmetricMatcher, MatcherOutput
from lngraph.models.build import Matcher, build_matcher
from lngraph.models.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint
from lngraph.models.config import (
    LossConfig,
    MatcherConfig,
    ModelConfig,
    OptimConfig,
    ProtocolConfig,
    preset,
)
from lngraph.models.ensemble import EnsembleOutput, GraphMatcherEnsemble
from lngraph.models.graph_matcher import GraphMatcher, GraphMatcherOutput
from lngraph.models.inference import (
    alignment_params,
    matcher_graphs,
    predict_graphs,
    predict_pairs,
    to_predictions,
)

__all__ = ["FORMAT_VERSION", "AsymmetricMatcher", "EnsembleOutput", "GraphMatcher",
           "GraphMatcherEnsemble", "GraphMatcherOutput",
           "LossConfig", "Matcher", "MatcherConfig", "MatcherOutput", "alignment_params",
           "build_matcher", "ModelConfig", "OptimConfig", "ProtocolConfig", "load_checkpoint",
           "matcher_graphs", "predict_graphs", "predict_pairs", "preset",
           "save_checkpoint", "to_predictions"]
