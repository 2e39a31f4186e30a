"""Every hyper-parameter of the matchers, in sections, with the ``lite``, ``full`` and
``paper`` presets and a YAML round trip.

A :class:`MatcherConfig` is a ``name`` and five frozen sections, one field per
hyper-parameter and one use per field:

* ``crops`` — :class:`~lngraph.data.crops.CropParams`, read by the data pipeline;
* ``model`` — :class:`ModelConfig`, the network and its inference rule;
* ``loss`` — :class:`LossConfig`, the training losses;
* ``optim`` — :class:`OptimConfig`, optimiser, batches, epochs and augmentation;
* ``protocol`` — :class:`ProtocolConfig`, patient splits, seed and post-training calibration.

``lite`` is the CPU default: the graph matcher (:mod:`lngraph.models.graph_matcher`) on
narrow, shallow encoders; ``full`` the same with wider and deeper encoders, 128-d features and
four layers; ``paper`` is the paper's asymmetric matcher as the paper describes it, kept as a
reference (fixed-spacing crops, ResNet-34 2D encoder, a ResNet-50-style 3D encoder, 128-d
features, SEAG with its learnable Q, SCB on, no position prior, fixed threshold 0.5, Adam 1e-4,
batch 4, 100 epochs, early stop after 20); it wants a GPU. A YAML file is a mapping of
sections to mappings of fields and may hold any subset of them; missing ones take the ``lite``
values, unknown ones are an error naming the valid ones::

    name: my-run
    crops: {mode: fixed}
    model: {feature_dim: 32, layers: 2}
    optim: {max_epochs: 10}

Programs address a field by its dotted key (``"model.feature_dim"``): :meth:`MatcherConfig.flat`
lists them, :meth:`MatcherConfig.with_values` and :meth:`MatcherConfig.updated` change them.
The config is stored inside every checkpoint (:meth:`MatcherConfig.to_dict`) and is what
Optuna samples. :data:`LEGACY_KEYS` maps the flat field names of lngraph's earlier single-level
config (checkpoint format 2) to their dotted keys (:meth:`MatcherConfig.from_legacy_dict`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import ClassVar

import yaml

from lngraph.data.crops import MODES as CROP_MODES
from lngraph.data.crops import CropParams
from lngraph.io.atomic import write_text_atomic
from lngraph.io.errors import InputError
from lngraph.io.fields import FieldsError, coerce_fields

BLOCK_TYPES = ("basic", "bottleneck")
ARCHITECTURES = ("graph", "asymmetric")
SELF_LAYERS = ("attention", "seag", "none")
SCHEDULES = ("constant", "cosine")

__all__ = [
    "ARCHITECTURES", "BLOCK_TYPES", "CROP_MODES", "LEGACY_KEYS", "PRESETS", "SCHEDULES",
    "SECTIONS", "SELF_LAYERS", "CropParams",
    "LossConfig", "MatcherConfig", "ModelConfig", "OptimConfig", "ProtocolConfig", "preset",
]


class _Section:
    """Shared validation of a config section: coerce every field to its annotated type, then
    check the ranges named by the class attributes; all problems are reported together."""

    _POSITIVE: ClassVar[tuple[str, ...]] = ()
    _AT_LEAST_ONE: ClassVar[tuple[str, ...]] = ()
    _NON_NEGATIVE: ClassVar[tuple[str, ...]] = ()
    _UNIT: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self):
        problems = coerce_fields(self)
        if problems:
            raise FieldsError(problems)
        for key in self._POSITIVE:
            if not getattr(self, key) > 0:
                problems.append(f"{key} must be > 0, got {getattr(self, key)}")
        for key in self._AT_LEAST_ONE:
            if not getattr(self, key) >= 1:
                problems.append(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in self._NON_NEGATIVE:
            if not getattr(self, key) >= 0:
                problems.append(f"{key} must be >= 0, got {getattr(self, key)}")
        for key in self._UNIT:
            if not 0 <= getattr(self, key) <= 1:
                problems.append(f"{key} must be in [0, 1], got {getattr(self, key)}")
        problems.extend(self._problems())
        if problems:
            raise FieldsError(problems)

    def _problems(self) -> list[str]:
        return []


@dataclass(frozen=True)
class ModelConfig(_Section):
    """The network and its inference rule. Defaults are the ``lite`` values.

    architecture: ``"graph"`` — :class:`~lngraph.models.graph_matcher.GraphMatcher`, node
        tokens passed through intra-scan and cross-graph layers into an assignment head with
        learned matchability (the default); ``"asymmetric"`` —
        :class:`~lngraph.models.asymmetric_matcher.AsymmetricMatcher`, the paper's SE + SEAG
        + SCB pipeline (the ``paper`` preset and the Table 1 ablations).

    Encoders (:class:`~lngraph.nn.encoders.ResNetEncoder`):
        encoder2d_block, encoder2d_layers, encoder2d_widths, encoder2d_stem_stride: the 2D
            ResNet on the nine views (block type, blocks per stage, stage widths, stride of
            the stem); ``encoder3d_*`` the same for the cube.
        feature_dim: size of every node feature (encoder outputs, SEAG).
        token_grid: side of each encoder's token grid for SCB.

    Graph matcher (``architecture: graph``):
        layers: number of (intra-scan, cross-graph) layer pairs.
        heads: attention heads of the attention layers.
        self_layer: the intra-scan layer, ``"attention"``
            (:class:`~lngraph.nn.conv.PositionalAttentionConv` on the scan's own edges),
            ``"seag"`` (:class:`~lngraph.nn.conv.SEAGConv` with its learnable Q) or
            ``"none"``.
        use_cross: the cross-graph attention layers (``False``: the ablation where the two
            scans meet only in the assignment head).
        cross_k: in the cross-graph layers each node attends to the ``cross_k`` nodes of
            the other scan nearest to it after the alignment (all of them when the other scan
            has at most ``cross_k`` nodes); the assignment head stays dense. Checkpoints
            written before it existed load with every node pair as a cross edge.
        deep_supervision: an assignment head after every layer, each in the loss (``False``:
            after the last only).
        cross_edge_values: the cross-graph layers add a learned value of each edge's features
            (aligned offset, and raw distance with ``frame_prior_mm``) to its message, so that
            a node learns how far its candidates are, not only which one is nearest (the
            attention bias alone cannot say it: a node with one candidate receives its value
            whatever the offset); checkpoints written before it existed load with ``False``.
        score_matchability: the assignment heads add β · log Σ_j exp(s_ij) (learned β) to
            each node's matchability logit (the log-sum-exp of its pair scores), so that a
            node whose every candidate scores low is unmatchable, as with a dustbin
            (:class:`~lngraph.nn.assignment_head.AssignmentHead`); checkpoints written before
            it existed load with ``False``.
        ensemble: when above 1, that many graph matchers of this config, each with its own
            initial weights, trained together on the same batches; their mean assignment
            probability decides (:class:`~lngraph.models.ensemble.GraphMatcherEnsemble`), at
            that many times the cost. 1: one matcher.

    Graph (:class:`~lngraph.nn.conv.SEAGConv`):
        use_seag: (``asymmetric``) pass the features through SEAG; ``False`` compares the
            encoder features directly (the ablation without graph context).
        seag_learn_q: SEAG's learnable bilinear matrix Q (the paper's reading; ``False``: Q
            is the stacked aggregates, no parameter).
        length_scale_mm, learn_length_scale: the distance prior's ℓ (and whether it is
            learned).
        sigma_init: initial bandwidth σ of the feature kernel (always learned); about
            √feature_dim, the distance scale of SEAG's unit-RMS input features.

    SCB (:class:`~lngraph.nn.scb_head.SCBHead`):
        use_scb: build and train the SCB head and apply its correction at inference
            (ignored in geometry-only mode, which has no crops).
        scb_hidden: attention width.
        scb_temperature: τ of the SCB head's logits.
        scb_threshold: drop a Hungarian pair whose Eq. 3 score is below it.
        scb_reassign: run the assignment on (S + s) / 2 instead of S.

    Matching score:
        similarity_threshold: without SCB, drop a Hungarian pair whose matching score is
            below it (``graph``: the pair's assignment probability).
        similarity_temperature: τ of the matching-score logits: the SEAG term
            ``(S - 0.5) / τ`` and the encoder term ``E / τ``.

    Reported confidence (:mod:`lngraph.metrics.calibration`; fitted with
    ``protocol.calibrate_confidence``):
        score_temperature, score_bias: ``T`` and ``b`` of the monotone map
            ``σ(logit(p) / T + b)`` from a kept pair's decision score ``p`` to the confidence
            the model reports (``matches.csv``'s ``score``). The decision itself is made on
            ``p`` (the thresholds above are on ``p``), so they never change which nodes are
            matched; ``T = 1, b = 0`` (the default, and what checkpoints without them get)
            reports ``p`` itself.

    Position prior (our extension, :mod:`lngraph.matching.alignment`):
        position_prior: (``graph``) give the layers and the head each node's position after
            the robust alignment (offsets between aligned centres as attention biases and a
            pairwise term of the head); ``False`` is the ablation without positions.
            (``asymmetric``) fuse S with the distance ``d`` between node centres after the robust
            translation alignment of the two scans (and the terms below) into the matching
            score ``sigmoid(w · x + c)`` with learned weights ``w`` and bias ``c``
            (:mod:`lngraph.models.asymmetric_matcher`, step 3); ``False`` scores with S alone.
        position_gate_mm: ``g``, the alignment's inlier scale and the distance unit.
        position_local_mm: when positive, ``d`` is measured after the per-node
            :func:`~lngraph.matching.alignment.local_shifts` of this neighbourhood scale
            instead of the one translation.
        position_rigid: start the alignment from the robust rigid motion of the two scans'
            nodes (rotation and translation, :func:`~lngraph.matching.alignment.robust_rigid`;
            at least three matched pairs, at most 20°) instead of the translation, so that a
            patient turned between scans is turned back; checkpoints written before it existed
            load with ``False``.
        position_search: with ``position_rigid``, where the rigid refinement accepts no fit
            (a turn of 10–15° can move most nodes beyond the gate), search it again from 52
            starting rotations of 8° and 16° and keep the best-voting motion
            (``robust_rigid(search=True)``); checkpoints written before it existed load with
            ``False``.
        frame_prior_mm: (``graph``) when positive, the cross-graph layers and the head also
            get the distance of the two nodes' raw centres (before alignment) in units of
            this many mm: evidence where the scans' coordinates agree up to a few centimetres
            (one scanner frame), above all for scans with one or two nodes, which the
            alignment lays onto each other; the model is then invariant only to translating
            both scans together. 0 (the default): off, invariant to translating either scan.
        size_prior: add ``- e |log r_i - log r_j|`` (radii, learned ``e``) to the logit.
        encoder_similarity: add ``a_e E / similarity_temperature`` to the logit, ``E`` the
            cosine of the nodes' encoder embeddings before SEAG (3D plus mean view feature).

    Geometry-only mode (:class:`~lngraph.nn.encoders.GeometryEncoder`):
        geometry_only: node features from sizes and neighbour distances, no crops.
        geometry_k, geometry_hidden, geometry_distance_mm: that encoder's neighbours, width
            and distance scale.
    """

    architecture: str = "graph"
    layers: int = 3
    heads: int = 4
    self_layer: str = "attention"
    use_cross: bool = True
    cross_k: int = 32
    deep_supervision: bool = True
    cross_edge_values: bool = True
    score_matchability: bool = False
    ensemble: int = 1
    seag_learn_q: bool = True
    encoder2d_block: str = "basic"
    encoder2d_layers: tuple[int, ...] = (1, 1, 1)
    encoder2d_widths: tuple[int, ...] = (8, 16, 32)
    encoder2d_stem_stride: int = 2
    encoder3d_block: str = "basic"
    encoder3d_layers: tuple[int, ...] = (1, 1, 1)
    encoder3d_widths: tuple[int, ...] = (8, 16, 32)
    encoder3d_stem_stride: int = 2
    feature_dim: int = 64
    token_grid: int = 2
    use_seag: bool = True
    length_scale_mm: float = 20.0
    learn_length_scale: bool = False
    sigma_init: float = 8.0
    use_scb: bool = False
    scb_hidden: int = 32
    scb_temperature: float = 0.1
    scb_threshold: float = 0.5
    scb_reassign: bool = False
    similarity_threshold: float = 0.5
    similarity_temperature: float = 0.1
    score_temperature: float = 1.0
    score_bias: float = 0.0
    position_prior: bool = True
    position_gate_mm: float = 15.0
    position_local_mm: float = 30.0
    position_rigid: bool = True
    position_search: bool = True
    frame_prior_mm: float = 0.0
    size_prior: bool = True
    encoder_similarity: bool = True
    geometry_only: bool = False
    geometry_k: int = 8
    geometry_hidden: int = 64
    geometry_distance_mm: float = 50.0

    _POSITIVE = ("length_scale_mm", "sigma_init", "scb_temperature", "similarity_temperature",
                 "score_temperature", "position_gate_mm", "geometry_distance_mm")
    _AT_LEAST_ONE = ("encoder2d_stem_stride", "encoder3d_stem_stride", "feature_dim",
                     "token_grid", "scb_hidden", "geometry_k", "geometry_hidden", "layers",
                     "heads", "cross_k", "ensemble")
    _NON_NEGATIVE = ("position_local_mm", "frame_prior_mm")
    _UNIT = ("scb_threshold", "similarity_threshold")

    @property
    def scb_active(self) -> bool:
        """Whether the SCB head is built and decides: ``use_scb`` in the ``asymmetric``
        architecture with crops."""
        return self.architecture == "asymmetric" and self.use_scb and not self.geometry_only

    @property
    def fuses_scores(self) -> bool:
        """Whether the matching score is the fused logistic of the ``asymmetric`` architecture
        with the position prior (whose weights ``protocol.calibrate_fusion`` refits)."""
        return self.architecture == "asymmetric" and self.position_prior

    def _problems(self) -> list[str]:
        problems = []
        for key in ("score_temperature", "score_bias"):
            if not math.isfinite(getattr(self, key)):
                problems.append(f"{key} must be finite, got {getattr(self, key)}")
        if self.architecture not in ARCHITECTURES:
            problems.append(f"architecture must be one of {ARCHITECTURES}, got "
                            f"{self.architecture!r}")
        if self.architecture != "graph" and self.ensemble != 1:
            problems.append(f"ensemble must be 1 for the {self.architecture!r} architecture "
                            f"(an ensemble is of graph matchers), got {self.ensemble}")
        if self.self_layer not in SELF_LAYERS:
            problems.append(f"self_layer must be one of {SELF_LAYERS}, got {self.self_layer!r}")
        if self.architecture == "graph" and self.feature_dim % self.heads:
            problems.append(f"feature_dim ({self.feature_dim}) must be a multiple of heads "
                            f"({self.heads})")
        for dims in ("2d", "3d"):
            block = getattr(self, f"encoder{dims}_block")
            layers = getattr(self, f"encoder{dims}_layers")
            widths = getattr(self, f"encoder{dims}_widths")
            if block not in BLOCK_TYPES:
                problems.append(f"encoder{dims}_block must be one of {BLOCK_TYPES}, got "
                                f"{block!r}")
            if not layers or len(layers) != len(widths):
                problems.append(f"encoder{dims}_layers {layers} and encoder{dims}_widths "
                                f"{widths} must be non-empty and of equal length")
            elif min(layers) < 1 or min(widths) < 1:
                problems.append(f"encoder{dims}_layers {layers} and encoder{dims}_widths "
                                f"{widths} must be >= 1")
        return problems


@dataclass(frozen=True)
class LossConfig(_Section):
    """The training losses (:mod:`lngraph.nn.losses`), summed with the weights below.

    temperature: τ of the two InfoNCE losses (SE and TE) only.
    weight_se: weight of the spatial-embedding loss (2D views against the 3D cube).
    weight_te: weight of the temporal-embedding loss (matched nodes across the two scans).
    weight_seag: weight of the SEAG matching loss.
    weight_scb: weight of the SCB head's loss (with ``model.use_scb``).
    weight_assignment: weight of the graph matcher's assignment loss (the negative
        log-likelihood of the ground-truth partial assignment, unmatched nodes included).
    """

    temperature: float = 0.1
    weight_se: float = 1.0
    weight_te: float = 1.0
    weight_seag: float = 1.0
    weight_scb: float = 1.0
    weight_assignment: float = 1.0

    _POSITIVE = ("temperature",)
    _NON_NEGATIVE = ("weight_se", "weight_te", "weight_seag", "weight_scb", "weight_assignment")


@dataclass(frozen=True)
class OptimConfig(_Section):
    """Optimiser, batches, epochs and augmentation of training.

    lr, weight_decay: Adam's learning rate and weight decay of the network.
    fusion_lr: Adam learning rate of the matching score's fusion weights ``w`` and bias ``c``
        (``model.position_prior``; no weight decay on them).
    batch_size: pairs per batch.
    max_epochs: epochs at most.
    patience: early-stop epochs without validation improvement.
    augment_intensity: standard deviation of a random gain and offset of each node's crops
        (training batches only).
    augment_noise: standard deviation of added Gaussian noise per voxel.
    augment_flip: the same random flips and x–y transposition of every crop of a batch, both
        scans alike (a node keeps its partner's look, the look of nodes changes).
    augment_drop: probability that a training pair loses each node (each scan on its own),
        so that new and disappeared nodes are common (:mod:`lngraph.data.augment`).
    augment_rotation_deg: largest angle of a random rotation of each scan of a training pair
        about its node centroid (a random axis per scan).
    augment_scale: standard deviation of a random log scale of each scan's coordinates.
    augment_jitter_mm: standard deviation of random noise on each node centre (mm).
    augment_translation_mm: standard deviation of a random translation of each scan, per
        axis (mm); it changes only what ``model.frame_prior_mm`` reads.
    schedule: learning-rate schedule, ``"constant"`` or ``"cosine"`` (cosine decay to zero
        over ``max_epochs``).
    """

    lr: float = 1e-3
    weight_decay: float = 1e-4
    fusion_lr: float = 1e-3
    batch_size: int = 4
    max_epochs: int = 30
    patience: int = 10
    augment_intensity: float = 0.1
    augment_noise: float = 0.02
    augment_flip: bool = True
    augment_drop: float = 0.1
    augment_rotation_deg: float = 10.0
    augment_scale: float = 0.0
    augment_jitter_mm: float = 1.0
    augment_translation_mm: float = 0.0
    schedule: str = "cosine"

    _POSITIVE = ("lr", "fusion_lr")
    _AT_LEAST_ONE = ("batch_size", "max_epochs")
    _NON_NEGATIVE = ("weight_decay", "patience", "augment_intensity", "augment_noise",
                     "augment_rotation_deg", "augment_scale", "augment_jitter_mm",
                     "augment_translation_mm")
    _UNIT = ("augment_drop",)

    def _problems(self) -> list[str]:
        if self.schedule not in SCHEDULES:
            return [f"schedule must be one of {SCHEDULES}, got {self.schedule!r}"]
        if self.augment_drop >= 1:
            return [f"augment_drop must be < 1, got {self.augment_drop}"]
        return []


@dataclass(frozen=True)
class ProtocolConfig(_Section):
    """Patient splits, seed and what is calibrated on validation pairs after training.

    folds: patient-level cross-validation folds (K).
    val_fraction: share of the training patients held out for validation.
    seed: seed of the splits and of training.
    calibrate_fusion: after training, refit the fused matching score's weights and bias on
        the validation pairs (class-balanced logistic regression, :mod:`lngraph.train.calibrate`;
        with ``model.position_prior``).
    calibrate_threshold: after training, choose the decision threshold in use
        (``model.scb_threshold`` with SCB, else ``model.similarity_threshold``) on the
        validation pairs.
    calibrate_confidence: after training (and after the threshold), fit the reported
        confidence's ``model.score_temperature`` and ``model.score_bias`` on the validation
        pairs' assigned pairs (:func:`~lngraph.train.calibrate.fit_confidence`); decisions do
        not change.
    """

    folds: int = 5
    val_fraction: float = 0.2
    seed: int = 0
    calibrate_fusion: bool = True
    calibrate_threshold: bool = True
    calibrate_confidence: bool = True

    _AT_LEAST_ONE = ("folds",)

    def _problems(self) -> list[str]:
        if not 0 <= self.val_fraction < 1:
            return [f"val_fraction must be in [0, 1), got {self.val_fraction}"]
        return []


#: Section name → its class, in the order of :class:`MatcherConfig`'s fields.
SECTIONS: dict[str, type] = {"crops": CropParams, "model": ModelConfig, "loss": LossConfig,
                             "optim": OptimConfig, "protocol": ProtocolConfig}

#: Field name of the flat config of checkpoint format 2 → its dotted key(s) now. ``temperature``
#: was the τ of the InfoNCE losses, the matching-score logits and the SCB head alike.
LEGACY_KEYS: dict[str, tuple[str, ...]] = {
    "crop_mode": ("crops.mode",), "crop_size": ("crops.size",),
    "crop_spacing_mm": ("crops.spacing_mm",), "crop_radius_factor": ("crops.radius_factor",),
    "crop_min_fov_mm": ("crops.min_fov_mm",), "hu_window": ("crops.window",),
    **{name: (f"model.{name}",) for name in (
        "encoder2d_block", "encoder2d_layers", "encoder2d_widths", "encoder2d_stem_stride",
        "encoder3d_block", "encoder3d_layers", "encoder3d_widths", "encoder3d_stem_stride",
        "feature_dim", "token_grid", "use_seag", "length_scale_mm", "learn_length_scale",
        "sigma_init", "use_scb", "scb_hidden", "scb_threshold", "scb_reassign",
        "similarity_threshold", "position_prior", "position_gate_mm", "position_local_mm",
        "size_prior", "encoder_similarity", "geometry_only", "geometry_k", "geometry_hidden",
        "geometry_distance_mm")},
    "temperature": ("loss.temperature", "model.similarity_temperature",
                    "model.scb_temperature"),
    **{name: (f"loss.{name}",) for name in ("weight_se", "weight_te", "weight_seag",
                                              "weight_scb")},
    **{name: (f"optim.{name}",) for name in (
        "lr", "weight_decay", "batch_size", "max_epochs", "patience", "augment_intensity",
        "augment_noise", "augment_flip")},
    "position_prior_lr": ("optim.fusion_lr",),
    **{name: (f"protocol.{name}",) for name in (
        "folds", "val_fraction", "seed", "calibrate_fusion", "calibrate_threshold")},
}


def legacy_nested(values: Mapping) -> dict:
    """The flat dict of checkpoint format 2 as the nested (partial) dict of
    :meth:`MatcherConfig.from_dict`, not yet validated.

    Raises:
        ValueError: on keys that config never had.
    """
    unknown = sorted(str(k) for k in values if k != "name" and k not in LEGACY_KEYS)
    if unknown:
        raise FieldsError([f"unknown key(s) of the flat config: {', '.join(unknown)}"])
    nested: dict = {"name": values.get("name", "lite")}
    for key, value in values.items():
        for dotted in LEGACY_KEYS.get(key, ()):
            section, _, name = dotted.partition(".")
            nested.setdefault(section, {})[name] = value
    return nested


class _Dumper(yaml.SafeDumper):
    """Sections as blocks, lists on one line."""


_Dumper.add_representer(list, lambda dumper, data: dumper.represent_sequence(
    "tag:yaml.org,2002:seq", data, flow_style=True))


def _keys(section: str) -> list[str]:
    return [f.name for f in fields(SECTIONS[section])]


def _plain(value):
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _build_section(section: str, values, problems: list[str]):
    """The section ``section`` from a (partial) mapping; problems are appended, prefixed with
    ``section.``; ``None`` when there are any."""
    kind = SECTIONS[section]
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        problems.append(f"{section} must be a mapping of its keys to values, got "
                        f"{type(values).__name__}")
        return None
    valid = _keys(section)
    unknown = [str(k) for k in values if k not in valid]
    if unknown:
        problems.append(f"unknown key{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(f'{section}.{k}' for k in unknown)}; valid keys of "
                        f"{section}: {', '.join(valid)}")
        return None
    try:
        return kind(**values)
    except FieldsError as exc:
        problems.extend(f"{section}.{p}" for p in exc.problems)
    except (TypeError, ValueError) as exc:
        problems.append(f"{section}: {exc}")
    return None


@dataclass(frozen=True)
class MatcherConfig:
    """Hyper-parameters of :class:`~lngraph.models.asymmetric_matcher.AsymmetricMatcher` and
    its training, in sections (see the module doc and each section's class). Defaults are
    the ``lite`` preset.

    Args:
        name: a label (the preset's name, or the run's).
        crops: :class:`~lngraph.data.crops.CropParams`.
        model: :class:`ModelConfig`.
        loss: :class:`LossConfig`.
        optim: :class:`OptimConfig`.
        protocol: :class:`ProtocolConfig`.

    A section may also be given as a (partial) mapping of its fields, which is validated like
    :meth:`from_dict`.

    Raises:
        ValueError: a :class:`~lngraph.io.fields.FieldsError` listing every problem, each
            naming its dotted key.
    """

    name: str = "lite"
    crops: CropParams = field(default_factory=CropParams)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)

    def __post_init__(self):
        problems = []
        if not isinstance(self.name, str):
            problems.append(f"name must be str, got {self.name!r}")
        for section, kind in SECTIONS.items():
            value = getattr(self, section)
            if not isinstance(value, kind):
                object.__setattr__(self, section, _build_section(section, value, problems))
        if problems:
            raise FieldsError(problems)

    def to_dict(self) -> dict:
        """Nested plain Python values (``{"name": …, "crops": {…}, "model": {…}, …}``, tuples
        as lists): YAML- and ``weights_only``-checkpoint-safe."""
        return {"name": self.name,
                **{s: _plain(asdict(getattr(self, s))) for s in SECTIONS}}

    @classmethod
    def from_dict(cls, values: Mapping) -> MatcherConfig:
        """Build from a nested (partial) dict; missing sections and keys take the ``lite``
        values.

        Raises:
            ValueError: on unknown sections or keys (named, with the valid ones) or invalid
                values (every problem, by dotted key).
        """
        if not isinstance(values, Mapping):
            raise FieldsError([f"a config must be a mapping of sections, got "
                               f"{type(values).__name__}"])
        valid = ["name", *SECTIONS]
        unknown = [str(k) for k in values if k not in valid]
        if unknown:
            hints = [f"{k} is now {' and '.join(LEGACY_KEYS[k])}" for k in unknown
                     if k in LEGACY_KEYS]
            raise FieldsError([f"unknown section{'s' if len(unknown) > 1 else ''} "
                               f"{', '.join(unknown)}; valid sections: {', '.join(valid)}"
                               + (f" ({'; '.join(hints)})" if hints else "")])
        return cls(name=values.get("name", "lite"),
                   **{s: values.get(s, {}) for s in SECTIONS})

    @classmethod
    def from_legacy_dict(cls, values: Mapping) -> MatcherConfig:
        """Build from the flat dict of lngraph's single-level config (checkpoint format 2):
        each field moves to its section (:data:`LEGACY_KEYS`; ``temperature`` sets
        ``loss.temperature``, ``model.similarity_temperature`` and ``model.scb_temperature``,
        which it stood for).

        Raises:
            ValueError: on keys that config never had, or invalid values.
        """
        return cls.from_dict(legacy_nested(values))

    def flat(self) -> dict:
        """Every value by dotted key, ``{"name": "lite", "crops.mode": "radius", …,
        "model.feature_dim": 64, …}`` (tuples stay tuples): ``with_values(flat())`` gives the
        same config."""
        values = {"name": self.name}
        for section in SECTIONS:
            obj = getattr(self, section)
            values.update({f"{section}.{k}": getattr(obj, k) for k in _keys(section)})
        return values

    def with_values(self, values: Mapping) -> MatcherConfig:
        """A new config with the given dotted keys changed, e.g.
        ``config.with_values({"model.use_seag": False, "loss.weight_te": 0.0})``; ``"name"``
        changes the name.

        Raises:
            ValueError: on unknown keys (named, with the valid ones) or invalid values.
        """
        nested = self.to_dict()
        problems = []
        for key, value in values.items():
            if key == "name":
                nested["name"] = value
                continue
            section, _, name = str(key).partition(".")
            if section not in SECTIONS:
                problems.append(f"unknown key {key}; keys are name or section.key with a "
                                f"section of {', '.join(SECTIONS)}")
            elif name not in _keys(section):
                problems.append(f"unknown key {key}; valid keys of {section}: "
                                f"{', '.join(_keys(section))}")
            else:
                nested[section][name] = value
        if problems:
            raise FieldsError(problems)
        return type(self).from_dict(nested)

    def updated(self, **changes) -> MatcherConfig:
        """:meth:`with_values` as keywords: ``name=…``; a section by name as a section object
        (replacing it) or a mapping (changing only its keys), e.g.
        ``config.updated(model={"feature_dim": 32}, optim={"max_epochs": 3})``; or dotted keys
        (``config.updated(**{"model.feature_dim": 32})``).

        Raises:
            ValueError: on unknown keys or invalid values.
        """
        values = {}
        for key, value in changes.items():
            if key in SECTIONS and isinstance(value, SECTIONS[key]):
                values.update({f"{key}.{k}": getattr(value, k) for k in _keys(key)})
            elif key in SECTIONS and isinstance(value, Mapping):
                values.update({f"{key}.{k}": v for k, v in value.items()})
            elif key in SECTIONS:
                raise FieldsError([f"{key} must be a {SECTIONS[key].__name__} or a mapping, "
                                   f"got {type(value).__name__}"])
            else:
                values[key] = value
        return self.with_values(values)

    def to_yaml(self, path: str | Path) -> None:
        """Write the full config as nested YAML (atomically)."""
        write_text_atomic(path, yaml.dump(self.to_dict(), Dumper=_Dumper, sort_keys=False,
                                          default_flow_style=False, allow_unicode=True))

    @classmethod
    def from_yaml(cls, path: str | Path) -> MatcherConfig:
        """Read a YAML mapping of sections (each a mapping of keys; see the module doc).

        Raises:
            InputError: naming the file, for unreadable YAML, a non-mapping, unknown sections
                or keys, or invalid values.
        """
        try:
            values = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise InputError(path, f"cannot read the config: {exc}") from exc
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise InputError(path, f"a config must be a mapping of sections to keys and "
                                   f"values, got {type(values).__name__}")
        try:
            return cls.from_dict(values)
        except (TypeError, ValueError) as exc:
            raise InputError(path, str(exc)) from exc


def _paper() -> MatcherConfig:
    return MatcherConfig(
        name="paper",
        crops=CropParams(mode="fixed"),
        model=ModelConfig(
            architecture="asymmetric",
            encoder2d_block="basic", encoder2d_layers=(3, 4, 6, 3),
            encoder2d_widths=(64, 128, 256, 512), encoder2d_stem_stride=1, token_grid=3,
            encoder3d_block="bottleneck", encoder3d_layers=(3, 4, 6, 3),
            encoder3d_widths=(64, 128, 256, 512), encoder3d_stem_stride=2,
            feature_dim=128, sigma_init=11.3, seag_learn_q=True, use_scb=True, scb_hidden=128,
            scb_threshold=0.5, similarity_threshold=0.5, position_prior=False),
        optim=OptimConfig(lr=1e-4, weight_decay=0.0, batch_size=4, max_epochs=100,
                          patience=20, augment_drop=0.0, augment_rotation_deg=0.0,
                          augment_scale=0.0, augment_jitter_mm=0.0, schedule="constant"),
        protocol=ProtocolConfig(calibrate_fusion=False, calibrate_threshold=False))


def _full() -> MatcherConfig:
    return MatcherConfig(
        name="full",
        model=ModelConfig(
            encoder2d_layers=(2, 2, 2), encoder2d_widths=(16, 32, 64),
            encoder3d_layers=(2, 2, 2), encoder3d_widths=(16, 32, 64),
            feature_dim=128, layers=4, heads=4),
        optim=OptimConfig(max_epochs=60, patience=10))


#: Preset name → builder.
PRESETS = {"lite": MatcherConfig, "full": _full, "paper": _paper}


def preset(name: str) -> MatcherConfig:
    """The named preset (``"lite"``, ``"full"`` or ``"paper"``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()
