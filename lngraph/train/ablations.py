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

This module owns the variants' names and switches (:data:`ABLATIONS`); importing it registers
them.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import ClassVar

from lngraph.baselines.base import register
from lngraph.models import MatcherConfig, preset
from lngraph.train.method import AsymmetricMethod

#: Config switches of each Table 1 row.
ABLATIONS: dict[str, dict] = {
    "abl_appearance": {"use_seag": False, "weight_te": 0.0, "weight_se": 0.0, "use_scb": False,
                       "position_prior": False},
    "abl_seag": {"use_seag": True, "weight_te": 0.0, "weight_se": 0.0, "use_scb": False,
                 "position_prior": False},
    "abl_te": {"use_seag": True, "weight_te": 1.0, "weight_se": 0.0, "use_scb": False,
               "position_prior": False},
    "abl_se": {"use_seag": True, "weight_te": 1.0, "weight_se": 1.0, "use_scb": False,
               "position_prior": False},
    "abl_scb": {"use_seag": True, "weight_te": 1.0, "weight_se": 1.0, "use_scb": True,
                "position_prior": False},
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
        super().__init__(replace(base, **self.overrides), out_dir, **kwargs)


@register
class AppearanceHungarian(ConfigVariant):
    """Table 1, first row: appearance encoders, cosine similarity, Hungarian assignment."""

    name = "abl_appearance"
    overrides = ABLATIONS["abl_appearance"]


@register
class WithSEAG(ConfigVariant):
    """Table 1: appearance + SEAG graph context."""

    name = "abl_seag"
    overrides = ABLATIONS["abl_seag"]


@register
class WithTE(ConfigVariant):
    """Table 1: appearance + SEAG + the temporal-enhancement loss."""

    name = "abl_te"
    overrides = ABLATIONS["abl_te"]


@register
class WithSE(ConfigVariant):
    """Table 1: appearance + SEAG + TE + the specificity-extraction loss (all but SCB)."""

    name = "abl_se"
    overrides = ABLATIONS["abl_se"]


@register
class WithSCB(ConfigVariant):
    """Table 1: appearance + SEAG + TE + SE + SCB, the paper's full model."""

    name = "abl_scb"
    overrides = ABLATIONS["abl_scb"]


@register
class GeometryOnly(ConfigVariant):
    """The ``lite`` matcher in geometry-only mode; runs on cohorts without images."""

    name = "asymmetric_geometry"
    needs_images = False
    overrides = {"geometry_only": True}
