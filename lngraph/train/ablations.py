r"""The controls and ablations of lngraph's matchers, as registered
:class:`~lngraph.baselines.base.Method` variants of :class:`~lngraph.train.method.MatcherMethod`.

Each variant is a preset (``lite`` unless named) with a few config switches set on top.

**Table 1 of Mao et al. (MICCAI 2025)** — the paper's asymmetric matcher
(``model.architecture: asymmetric``) on the ``lite`` encoders, its components added one at a
time as the paper describes them: SEAG with its learnable Q, no position prior, a fixed decision
threshold of 0.5 (nothing calibrated on validation), no geometric augmentation, a constant
learning rate:

==================  ========  =========  =========  =======  ==================
name                use_seag  weight_te  weight_se  use_scb  Table 1 row
==================  ========  =========  =========  =======  ==================
``abl_appearance``  False     0          0          False    appearance + Hung.
``abl_seag``        True      0          0          False    + SEAG
``abl_te``          True      1          0          False    + TE
``abl_se``          True      1          1          False    + SE
``abl_scb``         True      1          1          True     + SCB (paper)
==================  ========  =========  =========  =======  ==================

``abl_appearance`` trains the encoders through the similarity loss alone and matches by
Hungarian assignment on the cosine :math:`S`, keeping a pair when :math:`S \ge 0.5`.
``paper`` is the ``paper`` preset itself: the same model at the paper's encoder sizes (a GPU
configuration).

**The graph matcher's ablations** — ``matcher`` (the ``lite`` preset) with one component
removed or replaced:

====================================  ============================================================
name                                  change
====================================  ============================================================
``matcher_geometry``                  no appearance: geometry-only tokens (sizes and neighbour
                                      distances), no crops; the learned matcher for cohorts
                                      without images
``matcher_geometry_frame``            ``matcher_geometry`` with the frame prior (raw centre
                                      distances, ``model.frame_prior_mm`` = 100), for scans that
                                      share a frame; each training scan is translated by N(0, 10
                                      mm) per axis (``optim.augment_translation_mm``)
``matcher_geometry_frame_ensemble``  ``matcher_geometry_frame`` as an ensemble of three matchers
                                      trained together, deciding on their mean assignment
                                      probability (``model.ensemble`` = 3)
``matcher_no_cross``                  no cross-graph layers: the scans meet only in the assignment
                                      head
``matcher_no_position``               no positions: no aligned offsets in attention or head
``matcher_no_self``                   no intra-scan layers
``matcher_seag``                      the intra-scan layer is SEAG (learnable Q) instead of
                                      attention
====================================  ============================================================

This module owns the variants' names and switches (:data:`ABLATIONS`). Each row of
:data:`VARIANTS` (class name, registered name, docstring, base preset, overrides,
``needs_images``) becomes a :class:`ConfigVariant` subclass of this module, registered when
the module is imported; their leaderboard order is
:data:`lngraph.bench.registry.BUILTIN_METHODS`.
"""

from __future__ import annotations

import os
from typing import ClassVar

from lngraph.baselines.base import register
from lngraph.models import MatcherConfig, preset
from lngraph.train.method import MatcherMethod

#: What Table 1's rows share: the paper's model as the paper describes it.
_PAPER = {"model.architecture": "asymmetric", "model.seag_learn_q": True,
          "model.position_prior": False, "model.similarity_threshold": 0.5,
          "model.scb_threshold": 0.5, "protocol.calibrate_threshold": False,
          "protocol.calibrate_fusion": False, "optim.augment_drop": 0.0,
          "optim.augment_rotation_deg": 0.0, "optim.augment_jitter_mm": 0.0,
          "optim.schedule": "constant", "optim.patience": 5}

#: Config switches of each Table 1 row.
ABLATIONS: dict[str, dict] = {
    "abl_appearance": {**_PAPER, "model.use_seag": False, "loss.weight_te": 0.0,
                       "loss.weight_se": 0.0, "model.use_scb": False},
    "abl_seag": {**_PAPER, "model.use_seag": True, "loss.weight_te": 0.0,
                 "loss.weight_se": 0.0, "model.use_scb": False},
    "abl_te": {**_PAPER, "model.use_seag": True, "loss.weight_te": 1.0, "loss.weight_se": 0.0,
               "model.use_scb": False},
    "abl_se": {**_PAPER, "model.use_seag": True, "loss.weight_te": 1.0, "loss.weight_se": 1.0,
               "model.use_scb": False},
    "abl_scb": {**_PAPER, "model.use_seag": True, "loss.weight_te": 1.0, "loss.weight_se": 1.0,
                "model.use_scb": True},
}

#: Config switches of each ablation of the graph matcher.
MATCHER_ABLATIONS: dict[str, dict] = {
    "matcher_no_cross": {"model.use_cross": False},
    "matcher_no_position": {"model.position_prior": False},
    "matcher_no_self": {"model.self_layer": "none"},
    "matcher_seag": {"model.self_layer": "seag"},
}


class ConfigVariant(MatcherMethod):
    """:class:`MatcherMethod` whose config gets :attr:`overrides` on top of the given one.

    Args:
        config: the base config (default the preset :attr:`base`); the overrides win over its
            values.
        out_dir, **kwargs: as for :class:`MatcherMethod`.
    """

    base: ClassVar[str] = "lite"
    overrides: ClassVar[dict] = {}

    def __init__(self, config: MatcherConfig | None = None,
                 out_dir: str | os.PathLike | None = None, **kwargs):
        base = preset(self.base) if config is None else config
        super().__init__(base.with_values(self.overrides), out_dir, **kwargs)


#: ``matcher_geometry_frame``'s overrides (its ensemble adds ``model.ensemble``): geometry-only
#: tokens, the frame prior, and the translation augmentation and node drop chosen on the DLS
#: folds' validation patients.
FRAME_OVERRIDES = {"model.geometry_only": True, "model.frame_prior_mm": 100.0,
                   "optim.augment_translation_mm": 10.0, "optim.augment_drop": 0.3}

#: The variants: (class name, registered name, docstring, base preset, config overrides,
#: needs_images).
VARIANTS: tuple[tuple[str, str, str, str, dict, bool], ...] = (
    ("AppearanceHungarian", "abl_appearance",
     "Table 1, first row: appearance encoders, cosine similarity, Hungarian assignment.",
     "lite", ABLATIONS["abl_appearance"], True),
    ("WithSEAG", "abl_seag", "Table 1: appearance + SEAG graph context.", "lite",
     ABLATIONS["abl_seag"], True),
    ("WithTE", "abl_te", "Table 1: appearance + SEAG + the temporal-enhancement loss.", "lite",
     ABLATIONS["abl_te"], True),
    ("WithSE", "abl_se",
     "Table 1: appearance + SEAG + TE + the specificity-extraction loss (all but SCB).",
     "lite", ABLATIONS["abl_se"], True),
    ("WithSCB", "abl_scb", "Table 1: appearance + SEAG + TE + SE + SCB, the paper's full "
     "model (on the lite encoders).", "lite", ABLATIONS["abl_scb"], True),
    ("PaperMatcher", "paper", "The paper's asymmetric matcher at the paper's sizes (the "
     "``paper`` preset; a GPU configuration).", "paper", {}, True),
    ("GeometryOnly", "matcher_geometry",
     "The graph matcher without appearance (geometry-only tokens); runs on cohorts without "
     "images.", "lite", {"model.geometry_only": True}, False),
    ("GeometryFrame", "matcher_geometry_frame",
     "The geometry-only graph matcher with the frame prior (raw centre distances; for scans "
     "whose coordinates agree up to a few centimetres).", "lite", FRAME_OVERRIDES, False),
    ("GeometryFrameEnsemble", "matcher_geometry_frame_ensemble",
     "``matcher_geometry_frame`` as an ensemble of three graph matchers trained together, "
     "deciding on their mean assignment probability (``model.ensemble``).", "lite",
     {**FRAME_OVERRIDES, "model.ensemble": 3}, False),
    ("WithDustbin", "matcher_dustbin",
     "The graph matcher whose matchability also reads the pair scores "
     "(``model.score_matchability``: a node without a good candidate is unmatchable).",
     "lite", {"model.score_matchability": True}, True),
    ("GeometryDustbin", "matcher_geometry_dustbin",
     "``matcher_geometry`` whose matchability also reads the pair scores.", "lite",
     {"model.geometry_only": True, "model.score_matchability": True}, False),
    ("WithoutCross", "matcher_no_cross", "The graph matcher without cross-graph layers.",
     "lite", MATCHER_ABLATIONS["matcher_no_cross"], True),
    ("WithoutPosition", "matcher_no_position",
     "The graph matcher without aligned positions.", "lite",
     MATCHER_ABLATIONS["matcher_no_position"], True),
    ("WithoutSelf", "matcher_no_self", "The graph matcher without intra-scan layers.", "lite",
     MATCHER_ABLATIONS["matcher_no_self"], True),
    ("WithSEAGLayers", "matcher_seag",
     "The graph matcher with SEAG (learnable Q) as its intra-scan layer.", "lite",
     MATCHER_ABLATIONS["matcher_seag"], True),
)


def _variant(class_name: str, name: str, doc: str, base: str, overrides: dict,
             needs_images: bool) -> type[ConfigVariant]:
    """A registered :class:`ConfigVariant` subclass named ``class_name`` in this module."""
    namespace = {"__module__": __name__, "__qualname__": class_name, "__doc__": doc,
                 "name": name, "base": base, "overrides": overrides,
                 "needs_images": needs_images}
    return register(type(class_name, (ConfigVariant,), namespace))


(AppearanceHungarian, WithSEAG, WithTE, WithSE, WithSCB, PaperMatcher, GeometryOnly,
 GeometryFrame, GeometryFrameEnsemble, WithDustbin, GeometryDustbin, WithoutCross,
 WithoutPosition, WithoutSelf, WithSEAGLayers) = (
    _variant(*row) for row in VARIANTS)
