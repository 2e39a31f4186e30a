r"""The ablations of Table 1 of Mao et al. (MICCAI 2025) and the geometry-only matcher, as
registered :class:`~lngraph.baselines.base.Method` variants of
:class:`~lngraph.train.method.AsymmetricMethod`.

Each variant is the asymmetric matcher with a few config switches set on top of the given
config (default ``lite``). The Table 1 rows add the paper's components one at a time, and all
of them leave out our position prior (:mod:`lngraph.matching.alignment`), which the paper does
not have:

==================  ========  =========  =========  =======  ==============  =================
name                use_seag  weight_te  weight_se  use_scb  position_prior  Table 1 row
==================  ========  =========  =========  =======  ==============  =================
``abl_appearance``  False     0          0          False    False           appearance + Hung.
``abl_seag``        True      0          0          False    False           + SEAG
``abl_te``          True      1          0          False    False           + TE
``abl_se``          True      1          1          False    False           + SE
``abl_scb``         True      1          1          True     False           + SCB (paper)
==================  ========  =========  =========  =======  ==============  =================

``asymmetric`` itself is the ``lite`` preset as shipped: the paper's components plus the
position prior, with SCB on or off as chosen on validation (see ``lngraph.models.config``).

``abl_appearance`` trains the encoders through the similarity loss alone (class-balanced BCE
on the cosine :math:`S` of the encoder features) and matches by Hungarian assignment on
:math:`S`; without SCB a Hungarian pair is kept when its score reaches
``similarity_threshold``.

``asymmetric_geometry`` is the ``lite`` matcher in geometry-only mode (node features from
sizes and neighbour distances, SEAG context, no crops): the learned matcher for cohorts
without images.

This module owns the variants' names and switches (:data:`ABLATIONS`). Each row of
:data:`VARIANTS` (class name, registered name, docstring, overrides, ``needs_images``) becomes
a :class:`ConfigVariant` subclass of this module (``AppearanceHungarian``, ``WithSEAG``,
``WithTE``, ``WithSE``, ``WithSCB``, ``GeometryOnly``), registered when the module is imported;
their leaderboard order is :data:`lngraph.bench.registry.BUILTIN_METHODS`.
"""

from __future__ import annotations

import os
from typing import ClassVar

from lngraph.baselines.base import register
from lngraph.models import MatcherConfig, preset
from lngraph.train.method import AsymmetricMethod

#: Config switches of each Table 1 row.
ABLATIONS: dict[str, dict] = {
    "abl_appearance": {"model.use_seag": False, "loss.weight_te": 0.0, "loss.weight_se": 0.0,
                       "model.use_scb": False, "model.position_prior": False},
    "abl_seag": {"model.use_seag": True, "loss.weight_te": 0.0, "loss.weight_se": 0.0,
                 "model.use_scb": False, "model.position_prior": False},
    "abl_te": {"model.use_seag": True, "loss.weight_te": 1.0, "loss.weight_se": 0.0,
               "model.use_scb": False, "model.position_prior": False},
    "abl_se": {"model.use_seag": True, "loss.weight_te": 1.0, "loss.weight_se": 1.0,
               "model.use_scb": False, "model.position_prior": False},
    "abl_scb": {"model.use_seag": True, "loss.weight_te": 1.0, "loss.weight_se": 1.0,
                "model.use_scb": True, "model.position_prior": False},
}


class ConfigVariant(AsymmetricMethod):
    """:class:`AsymmetricMethod` whose config gets :attr:`overrides` on top of the given one.

    Args:
        config: the base config (default ``lite``); the overrides win over its values.
        out_dir, **kwargs: as for :class:`AsymmetricMethod`.
    """

    overrides: ClassVar[dict] = {}

    def __init__(self, config: MatcherConfig | None = None,
                 out_dir: str | os.PathLike | None = None, **kwargs):
        base = preset("lite") if config is None else config
        super().__init__(base.with_values(self.overrides), out_dir, **kwargs)


#: The variants: (class name, registered name, docstring, config overrides, needs_images).
VARIANTS: tuple[tuple[str, str, str, dict, bool], ...] = (
    ("AppearanceHungarian", "abl_appearance",
     "Table 1, first row: appearance encoders, cosine similarity, Hungarian assignment.",
     ABLATIONS["abl_appearance"], True),
    ("WithSEAG", "abl_seag", "Table 1: appearance + SEAG graph context.",
     ABLATIONS["abl_seag"], True),
    ("WithTE", "abl_te", "Table 1: appearance + SEAG + the temporal-enhancement loss.",
     ABLATIONS["abl_te"], True),
    ("WithSE", "abl_se",
     "Table 1: appearance + SEAG + TE + the specificity-extraction loss (all but SCB).",
     ABLATIONS["abl_se"], True),
    ("WithSCB", "abl_scb", "Table 1: appearance + SEAG + TE + SE + SCB, the paper's full model.",
     ABLATIONS["abl_scb"], True),
    ("GeometryOnly", "asymmetric_geometry",
     "The ``lite`` matcher in geometry-only mode; runs on cohorts without images.",
     {"model.geometry_only": True}, False),
)


def _variant(class_name: str, name: str, doc: str, overrides: dict,
             needs_images: bool) -> type[ConfigVariant]:
    """A registered :class:`ConfigVariant` subclass named ``class_name`` in this module."""
    namespace = {"__module__": __name__, "__qualname__": class_name, "__doc__": doc,
                 "name": name, "overrides": overrides, "needs_images": needs_images}
    return register(type(class_name, (ConfigVariant,), namespace))


(AppearanceHungarian, WithSEAG, WithTE, WithSE, WithSCB,
 GeometryOnly) = (_variant(*row) for row in VARIANTS)
