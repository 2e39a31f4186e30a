"""Every hyper-parameter of the asymmetric matcher in one dataclass, with the ``lite`` and
``paper`` presets and a YAML round trip.

``lite`` is the CPU default (narrow, shallow encoders; SCB off, since its correction lowered
validation F1 on the synthetic cohort, see ``docs/method.md``); ``paper`` follows the paper's setup
(ResNet-34 2D encoder, a ResNet-50-style 3D encoder, 128-d features, Adam 1e-4, batch 4, 100
epochs, early stop after 20) and wants a GPU. A YAML file may hold any subset of the fields;
missing ones take the ``lite`` values, unknown ones are an error. The config is stored inside
every checkpoint (:meth:`MatcherConfig.to_dict`) and is what Optuna samples.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import yaml

from lngraph.io.atomic import write_text_atomic
from lngraph.io.errors import InputError

BLOCK_TYPES = ("basic", "bottleneck")
CROP_MODES = ("fixed", "radius")


@dataclass(frozen=True)
class MatcherConfig:
    """Hyper-parameters of :class:`~lngraph.models.asymmetric_matcher.AsymmetricMatcher` and
    its training. Defaults are the ``lite`` preset.

    Crops (read by the data pipeline):
        crop_mode: ``"fixed"`` (voxel spacing ``crop_spacing_mm``) or ``"radius"`` (field of
            view ``2 * crop_radius_factor * radius``, at least ``crop_min_fov_mm``).
        crop_size: voxels per side of the cube and the views.
        crop_spacing_mm: ``(x, y, z)`` spacing of a ``fixed`` crop.
        crop_radius_factor, crop_min_fov_mm: the ``radius`` mode's field of view.
        hu_window: HU range mapped to [0, 1].

    Encoders (:class:`~lngraph.nn.encoders.ResNetEncoder`):
        encoder2d_block, encoder2d_layers, encoder2d_widths, encoder2d_stem_stride: the 2D
            ResNet on the nine views; ``encoder3d_*`` the same for the cube.
        feature_dim: size of every node feature (SE outputs, SEAG).
        token_grid: side of each encoder's token grid for SCB.

    Graph (:class:`~lngraph.nn.conv.SEAGConv`):
        use_seag: pass the features through SEAG; ``False`` compares the encoder features
            directly (the ablation without graph context).
        length_scale_mm, learn_length_scale: the distance prior's ℓ.
        sigma_init: initial bandwidth σ of the feature kernel (always learned); about
            √feature_dim, the distance scale of SEAG's unit-RMS input features.

    SCB (:class:`~lngraph.nn.scb_head.SCBHead`) and inference:
        use_scb: build and train the SCB head and apply its correction at inference
            (ignored in geometry-only mode, which has no crops).
        scb_hidden: attention width; scb_threshold: drop a Hungarian pair whose Eq. 3 score
            is below it; scb_reassign: run the assignment on (S + s) / 2 instead of S.
        similarity_threshold: without SCB, drop a Hungarian pair whose matching score is
            below it.
        calibrate_threshold: after training, choose the decision threshold (the one of the
            two above in use) on the validation pairs (:mod:`lngraph.train.calibrate`).

    Position prior (our extension, :mod:`lngraph.matching.alignment`):
        position_prior: fuse S with the distance ``d`` between node centres after the robust
            translation alignment of the two scans (and the terms below) into the matching
            score ``sigmoid(w · x + c)`` with learned weights ``w`` and bias ``c``
            (:mod:`lngraph.models.asymmetric_matcher`, step 3); ``False`` scores with S alone.
        position_gate_mm: ``g``, the alignment's inlier scale and the distance unit.
        position_local_mm: when positive, ``d`` is measured after the per-node
            :func:`~lngraph.matching.alignment.local_shifts` of this neighbourhood scale
            instead of the one translation.
        size_prior: add ``- e |log r_i - log r_j|`` (radii, learned ``e``) to the logit.
        encoder_similarity: add ``a_e E / temperature`` to the logit, ``E`` the cosine of the
            nodes' encoder embeddings before SEAG (3D plus mean view feature).
        calibrate_fusion: after training, refit the fused logit's weights and bias on the
            validation pairs (class-balanced logistic regression, :mod:`lngraph.train.calibrate`).
        position_prior_lr: Adam learning rate of ``w`` and ``c`` (no weight decay on them).

    Geometry-only mode (:class:`~lngraph.nn.encoders.GeometryEncoder`):
        geometry_only: node features from sizes and neighbour distances, no crops.
        geometry_k, geometry_hidden, geometry_distance_mm: that encoder's settings.

    Losses: temperature (τ of both InfoNCE losses), weight_se, weight_te, weight_seag,
    weight_scb.

    Augmentation (training batches only): augment_intensity, the standard deviation of a
    random gain and offset of each node's crops; augment_noise, that of added Gaussian noise;
    augment_flip, the same random flips and x–y transposition of every crop of a batch, both
    scans alike (a node keeps its partner's look, the look of nodes changes).

    Training: lr, weight_decay (Adam), batch_size (pairs), max_epochs, patience (early-stop
    epochs without validation improvement), folds (patient-level K), val_fraction (share of
    training patients held out for validation), seed.
    """

    name: str = "lite"
    crop_mode: str = "radius"
    crop_size: int = 24
    crop_spacing_mm: tuple[float, float, float] = (0.7, 0.7, 2.0)
    crop_radius_factor: float = 2.5
    crop_min_fov_mm: float = 16.0
    hu_window: tuple[float, float] = (-160.0, 240.0)
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
    scb_threshold: float = 0.5
    scb_reassign: bool = False
    similarity_threshold: float = 0.5
    calibrate_threshold: bool = True
    position_prior: bool = True
    position_gate_mm: float = 15.0
    position_local_mm: float = 30.0
    size_prior: bool = True
    encoder_similarity: bool = True
    calibrate_fusion: bool = True
    position_prior_lr: float = 1e-3
    geometry_only: bool = False
    geometry_k: int = 8
    geometry_hidden: int = 64
    geometry_distance_mm: float = 50.0
    temperature: float = 0.1
    weight_se: float = 1.0
    weight_te: float = 1.0
    weight_seag: float = 1.0
    weight_scb: float = 1.0
    augment_intensity: float = 0.1
    augment_noise: float = 0.02
    augment_flip: bool = True
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 4
    max_epochs: int = 30
    patience: int = 5
    folds: int = 5
    val_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self):
        problems = []
        for f in fields(self):
            try:
                object.__setattr__(self, f.name, _coerce(f.type, getattr(self, f.name)))
            except (TypeError, ValueError):
                problems.append(f"{f.name} must be {f.type}, got {getattr(self, f.name)!r}")
        if problems:
            raise ValueError("; ".join(problems))
        if self.crop_mode not in CROP_MODES:
            problems.append(f"crop_mode must be one of {CROP_MODES}, got {self.crop_mode!r}")
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
        if len(self.crop_spacing_mm) != 3 or len(self.hu_window) != 2:
            problems.append("crop_spacing_mm needs 3 values and hu_window 2")
        for key in ("length_scale_mm", "sigma_init", "temperature", "lr", "crop_min_fov_mm",
                    "geometry_distance_mm", "position_gate_mm", "crop_radius_factor",
                    "position_prior_lr"):
            if not getattr(self, key) > 0:
                problems.append(f"{key} must be > 0, got {getattr(self, key)}")
        for key in ("crop_size", "feature_dim", "token_grid", "scb_hidden", "geometry_k",
                    "batch_size", "max_epochs", "folds"):
            if not getattr(self, key) >= 1:
                problems.append(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("augment_intensity", "augment_noise", "position_local_mm"):
            if not getattr(self, key) >= 0:
                problems.append(f"{key} must be >= 0, got {getattr(self, key)}")
        if not 0 <= self.val_fraction < 1:
            problems.append(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if problems:
            raise ValueError("; ".join(problems))

    def to_dict(self) -> dict:
        """Plain Python values (tuples as lists): YAML- and ``weights_only``-checkpoint-safe."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> MatcherConfig:
        """Build from a (partial) dict; missing keys take the ``lite`` values.

        Raises:
            ValueError: on unknown keys (named, with the valid ones) or invalid values.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config key(s) {', '.join(unknown)}; valid keys: "
                             f"{', '.join(sorted(known))}")
        return cls(**values)

    def to_yaml(self, path: str | Path) -> None:
        """Write the full config as YAML (atomically)."""
        write_text_atomic(path, yaml.safe_dump(self.to_dict(), sort_keys=False,
                                               default_flow_style=None))

    @classmethod
    def from_yaml(cls, path: str | Path) -> MatcherConfig:
        """Read a YAML mapping of config keys.

        Raises:
            InputError: naming the file, for unreadable YAML, a non-mapping, unknown keys or
                invalid values.
        """
        try:
            values = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise InputError(path, f"cannot read the config: {exc}") from exc
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise InputError(path, f"a config must be a mapping of keys to values, got "
                                   f"{type(values).__name__}")
        try:
            return cls.from_dict(values)
        except (TypeError, ValueError) as exc:
            raise InputError(path, str(exc)) from exc


def _coerce(kind: str, value):
    """``value`` as the annotated type ``kind``; ints pass as floats, numeric strings (YAML reads
    ``1e-4`` as a string) as numbers; a bool is never a number."""
    if kind.startswith("tuple["):
        item = kind[6:].split(",")[0].strip().rstrip("]")
        if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
            raise TypeError(value)
        return tuple(_coerce(item, v) for v in value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise TypeError(value)
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise TypeError(value)
        return value
    if isinstance(value, bool):
        raise TypeError(value)
    if kind == "int":
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return int(value)
    return float(value)


def _paper() -> MatcherConfig:
    return replace(
        MatcherConfig(), name="paper", crop_mode="fixed",
        encoder2d_block="basic", encoder2d_layers=(3, 4, 6, 3),
        encoder2d_widths=(64, 128, 256, 512), encoder2d_stem_stride=1, token_grid=3,
        encoder3d_block="bottleneck", encoder3d_layers=(3, 4, 6, 3),
        encoder3d_widths=(64, 128, 256, 512), encoder3d_stem_stride=2,
        feature_dim=128, sigma_init=11.3, use_scb=True, scb_hidden=128, lr=1e-4,
        weight_decay=0.0, batch_size=4,
        max_epochs=100, patience=20)


#: Preset name → builder.
PRESETS = {"lite": MatcherConfig, "paper": _paper}


def preset(name: str) -> MatcherConfig:
    """The named preset (``"lite"`` or ``"paper"``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()
