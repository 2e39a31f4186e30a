"""The Optuna search space over :class:`~lngraph.models.MatcherConfig`.

A trial samples the hyper-parameters below, named by their dotted config keys (also the names
of the Optuna parameters); every other field keeps the value of the *base* config (a preset or
a ``--config`` YAML). Which parameters are searched depends on the base, so that a trial
samples only what its model uses: the graph matcher (``model.architecture: graph``) searches
its layers, heads, schedule and geometric augmentation, the asymmetric matcher its matching
logits and SEAG loss (SEAG's own parameters: the asymmetric matcher, or the graph matcher with
``model.self_layer: seag``); a geometry-only base searches the geometry encoder instead of the
crops and image encoders (it has neither); the SCB parameters are searched only when the base
uses SCB (:attr:`~lngraph.models.config.ModelConfig.scb_active`), the fusion terms only when
it fuses scores (:attr:`~lngraph.models.config.ModelConfig.fuses_scores`).

============================  ===================================  ===========================
parameter                     range                                searched when
============================  ===================================  ===========================
optim.lr                      1e-4 – 1e-2, log                     always
optim.weight_decay            1e-7 – 1e-3, log                     always
loss.temperature (τ)          0.03 – 0.5, log                      always
model.feature_dim             32, 64, 128                          always
loss.weight_te                0.1 – 4, log                         always
model.layers                  1 – 6                                graph
model.heads                   1, 2, 4, 8                           graph
optim.schedule                constant, cosine                     graph
optim.augment_drop            0 – 0.3                              graph
optim.augment_rotation_deg    0 – 30                               graph
optim.augment_scale           0 – 0.1                              graph
optim.augment_jitter_mm       0 – 3 mm                             graph
model.similarity_temperature  0.03 – 0.5, log                      asymmetric
loss.weight_seag              0.1 – 4, log                         asymmetric
model.length_scale_mm (ℓ)     5 – 80 mm, log                       with SEAG
model.learn_length_scale      False, True                          with SEAG
model.sigma_init (σ₀)         2 – 32, log                          with SEAG
model.geometry_k              2 – 16                               geometry-only
model.geometry_hidden         32, 64, 128                          geometry-only
model.geometry_distance_mm    20 – 120 mm, log                     geometry-only
model.similarity_threshold    0.2 – 0.8                            no SCB and no
                                                                   calibrate_threshold
model.position_local_mm       0, 20, 30, 50 mm                     with the position prior
model.size_prior              False, True                          fused scores (asymmetric,
                                                                   position prior)
model.encoder_similarity      False, True                          fused scores
crops.mode                    fixed, radius                        with images
crops.radius_factor           1.0, 1.5, 2.5, 3.5                   with images, radius crops
width_multiplier              0.5, 1, 2 (× the base encoder        with images
                              widths)
loss.weight_se                0.1 – 4, log                         with images
loss.weight_scb               0.1 – 4, log                         with images and SCB
model.scb_hidden              16, 32, 64                           with images and SCB
model.scb_temperature         0.03 – 0.5, log                      with images and SCB
model.scb_threshold           0.3 – 0.7                            with images and SCB, no
                                                                   calibrate_threshold
model.scb_reassign            False, True                          with images and SCB
============================  ===================================  ===========================

``crops.radius_factor`` is a choice of four values rather than a range because every distinct
crop setting gets its own crop-cache entry per scan: a continuous range would recompute (and
store) the crops of every scan in every trial.

``width_multiplier`` is the one searched value that is not a config field: it scales every
stage width of both encoders (rounded, at least 1), keeping the base's depth. The sampled
config records the resulting widths, so a best config needs no knowledge of the search space.

Every ``model.heads`` choice divides every ``model.feature_dim`` choice, as the graph matcher
requires.
"""

from __future__ import annotations

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from lngraph.models.config import MatcherConfig


def _log(low: float, high: float) -> FloatDistribution:
    return FloatDistribution(low, high, log=True)


#: Searched for every base config.
COMMON: dict[str, BaseDistribution] = {
    "optim.lr": _log(1e-4, 1e-2),
    "optim.weight_decay": _log(1e-7, 1e-3),
    "loss.temperature": _log(0.03, 0.5),
    "model.feature_dim": CategoricalDistribution((32, 64, 128)),
    "loss.weight_te": _log(0.1, 4.0),
}

#: Searched for the graph matcher (``model.architecture: graph``).
GRAPH: dict[str, BaseDistribution] = {
    "model.layers": IntDistribution(1, 6),
    "model.heads": CategoricalDistribution((1, 2, 4, 8)),
    "optim.schedule": CategoricalDistribution(("constant", "cosine")),
    "optim.augment_drop": FloatDistribution(0.0, 0.3),
    "optim.augment_rotation_deg": FloatDistribution(0.0, 30.0),
    "optim.augment_scale": FloatDistribution(0.0, 0.1),
    "optim.augment_jitter_mm": FloatDistribution(0.0, 3.0),
}

#: Searched for the asymmetric matcher (``model.architecture: asymmetric``).
ASYMMETRIC: dict[str, BaseDistribution] = {
    "model.similarity_temperature": _log(0.03, 0.5),
    "loss.weight_seag": _log(0.1, 4.0),
}

#: Searched when the model has SEAG (:func:`uses_seag`).
SEAG: dict[str, BaseDistribution] = {
    "model.length_scale_mm": _log(5.0, 80.0),
    "model.learn_length_scale": CategoricalDistribution((False, True)),
    "model.sigma_init": _log(2.0, 32.0),
}

#: Searched for a geometry-only base.
GEOMETRY: dict[str, BaseDistribution] = {
    "model.geometry_k": IntDistribution(2, 16),
    "model.geometry_hidden": CategoricalDistribution((32, 64, 128)),
    "model.geometry_distance_mm": _log(20.0, 120.0),
}

#: Searched when the model has image encoders (``crops.radius_factor`` only for radius crops).
APPEARANCE: dict[str, BaseDistribution] = {
    "crops.mode": CategoricalDistribution(("fixed", "radius")),
    "crops.radius_factor": CategoricalDistribution((1.0, 1.5, 2.5, 3.5)),
    "width_multiplier": CategoricalDistribution((0.5, 1.0, 2.0)),
    "loss.weight_se": _log(0.1, 4.0),
}

#: Searched when the model has image encoders and SCB.
SCB: dict[str, BaseDistribution] = {
    "loss.weight_scb": _log(0.1, 4.0),
    "model.scb_hidden": CategoricalDistribution((16, 32, 64)),
    "model.scb_temperature": _log(0.03, 0.5),
    "model.scb_threshold": FloatDistribution(0.3, 0.7),
    "model.scb_reassign": CategoricalDistribution((False, True)),
}

#: Searched with the position prior (the alignment both matchers use).
POSITION: dict[str, BaseDistribution] = {
    "model.position_local_mm": CategoricalDistribution((0.0, 20.0, 30.0, 50.0)),
}

#: Searched when the position prior fuses terms into the matching score (the asymmetric
#: matcher).
FUSION: dict[str, BaseDistribution] = {
    "model.size_prior": CategoricalDistribution((False, True)),
    "model.encoder_similarity": CategoricalDistribution((False, True)),
}

#: Searched when no SCB decides which Hungarian pairs to keep (and no calibration chooses
#: the threshold on validation pairs).
NO_SCB: dict[str, BaseDistribution] = {
    "model.similarity_threshold": FloatDistribution(0.2, 0.8),
}


def uses_scb(config: MatcherConfig) -> bool:
    """Whether the model built from ``config`` has an SCB head (the asymmetric matcher with
    ``use_scb``, never in geometry-only mode)."""
    return config.model.scb_active


def uses_seag(config: MatcherConfig) -> bool:
    """Whether the model built from ``config`` has SEAG: the asymmetric matcher (whose
    parameters were always searched), or the graph matcher with ``self_layer: seag``."""
    m = config.model
    return m.architecture == "asymmetric" or m.self_layer == "seag"


def search_space(base: MatcherConfig) -> dict[str, BaseDistribution]:
    """Every parameter a trial may sample for ``base``, by dotted config key (and
    ``width_multiplier``), with its distribution.

    ``crops.radius_factor`` is listed for an image base but only sampled when the trial picks
    ``crops.mode="radius"``.
    """
    space = dict(COMMON)
    space.update(GRAPH if base.model.architecture == "graph" else ASYMMETRIC)
    if uses_seag(base):
        space.update(SEAG)
    space.update(GEOMETRY if base.model.geometry_only else APPEARANCE)
    calibrated = base.protocol.calibrate_threshold
    if uses_scb(base):
        space.update({k: v for k, v in SCB.items()
                      if not (k == "model.scb_threshold" and calibrated)})
    elif not calibrated:
        space.update(NO_SCB)
    if base.model.position_prior:
        space.update(POSITION)
    if base.model.fuses_scores:
        space.update(FUSION)
    return space


def _suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution):
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high,
                                 log=distribution.log)
    return trial.suggest_float(name, distribution.low, distribution.high, log=distribution.log)


def scale_widths(widths: tuple[int, ...], multiplier: float) -> tuple[int, ...]:
    """Each width times ``multiplier``, rounded, at least 1."""
    return tuple(max(1, round(w * multiplier)) for w in widths)


def sample_config(trial: optuna.Trial, base: MatcherConfig) -> MatcherConfig:
    """Sample a config from ``trial``: the :func:`search_space` of ``base`` on top of ``base``.

    Works with any trial-like object, e.g. ``optuna.trial.FixedTrial(best_params)`` rebuilds
    the config of a finished trial.
    """
    values = {}
    for name, distribution in search_space(base).items():
        if name == "crops.radius_factor" and values["crops.mode"] != "radius":
            continue
        values[name] = _suggest(trial, name, distribution)
    multiplier = values.pop("width_multiplier", None)
    if multiplier is not None:
        values["model.encoder2d_widths"] = scale_widths(base.model.encoder2d_widths, multiplier)
        values["model.encoder3d_widths"] = scale_widths(base.model.encoder3d_widths, multiplier)
    return base.with_values(values)
