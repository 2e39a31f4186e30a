from dataclasses import fields
from pathlib import Path

import pytest
import torch

from lngraph.data.crops import CropParams
from lngraph.io.errors import InputError
from lngraph.models.config import (
    LEGACY_KEYS,
    PRESETS,
    SECTIONS,
    LossConfig,
    MatcherConfig,
    ModelConfig,
    OptimConfig,
    ProtocolConfig,
    preset,
)

PROJECT_DATA = Path(__file__).resolve().parents[2] / "data"


def test_presets():
    lite, paper = preset("lite"), preset("paper")
    assert lite == MatcherConfig() and lite.name == "lite"
    assert lite.crops == CropParams() and lite.crops.mode == "radius"
    assert (lite.crops.size, lite.crops.radius_factor, lite.crops.min_fov_mm,
            lite.crops.window, lite.crops.spacing_mm) == (24, 2.5, 16.0, (-160.0, 240.0),
                                                          (0.7, 0.7, 2.0))
    assert (lite.model.feature_dim, lite.model.use_scb, lite.model.sigma_init) == (64, False, 8.0)
    assert (lite.optim.lr, lite.optim.max_epochs, lite.optim.patience) == (1e-3, 30, 10)
    # the graph matcher trains with node drop, small rotations, jitter and a cosine schedule
    assert (lite.optim.augment_drop, lite.optim.augment_rotation_deg, lite.optim.augment_scale,
            lite.optim.augment_jitter_mm, lite.optim.schedule) == (0.1, 10.0, 0.0, 1.0,
                                                                   "cosine")
    assert lite.model.architecture == "graph"
    assert (lite.model.layers, lite.model.heads, lite.model.self_layer, lite.model.use_cross,
            lite.model.deep_supervision) == (3, 4, "attention", True, True)
    assert not lite.model.scb_active and not lite.model.fuses_scores
    assert paper.name == "paper"
    assert paper.crops == CropParams(mode="fixed")
    m = paper.model
    assert (m.encoder2d_block, m.encoder2d_layers) == ("basic", (3, 4, 6, 3))
    assert m.encoder3d_block == "bottleneck" and sum(m.encoder3d_layers) >= 16
    assert (m.feature_dim, m.sigma_init, m.use_scb, m.scb_hidden) == (128, 11.3, True, 128)
    o = paper.optim
    assert (o.lr, o.weight_decay, o.batch_size, o.max_epochs, o.patience) == (1e-4, 0.0, 4,
                                                                              100, 20)
    assert (o.augment_drop, o.augment_rotation_deg, o.augment_scale, o.augment_jitter_mm,
            o.schedule) == (0.0, 0.0, 0.0, 0.0, "constant")
    # the paper's model as the paper describes it: asymmetric, SEAG with its learnable Q, SCB
    # on, no position prior, fixed thresholds, nothing calibrated
    assert (m.architecture, m.seag_learn_q, m.position_prior) == ("asymmetric", True, False)
    assert (m.scb_threshold, m.similarity_threshold) == (0.5, 0.5)
    assert m.scb_active and not m.fuses_scores
    assert paper.loss == LossConfig()
    assert paper.protocol == ProtocolConfig(calibrate_fusion=False, calibrate_threshold=False)
    assert sum(lite.model.encoder3d_layers) < sum(paper.model.encoder3d_layers)
    assert max(lite.model.encoder2d_widths) < max(paper.model.encoder2d_widths)
    full = preset("full")
    assert full.name == "full" and full.model.architecture == "graph"
    assert (full.model.feature_dim, full.model.layers) == (128, 4)
    assert sum(lite.model.encoder2d_layers) < sum(full.model.encoder2d_layers)
    assert max(lite.model.encoder3d_widths) < max(full.model.encoder3d_widths)
    with pytest.raises(ValueError,
                       match="unknown preset 'huge'; choose one of lite, full, paper"):
        preset("huge")


def test_scb_active_and_fuses_scores_follow_the_architecture():
    asym = preset("lite").with_values({"model.architecture": "asymmetric"})
    assert asym.model.fuses_scores and not asym.model.scb_active
    assert not asym.with_values({"model.position_prior": False}).model.fuses_scores
    assert asym.with_values({"model.use_scb": True}).model.scb_active
    assert not asym.with_values({"model.use_scb": True,
                                 "model.geometry_only": True}).model.scb_active
    graph = preset("lite").with_values({"model.use_scb": True})
    assert not graph.model.scb_active and not graph.model.fuses_scores


def test_one_temperature_per_use():
    lite = preset("lite")
    assert (lite.loss.temperature, lite.model.similarity_temperature,
            lite.model.scb_temperature) == (0.1, 0.1, 0.1)
    changed = lite.with_values({"model.scb_temperature": 0.5})
    assert changed.loss.temperature == 0.1 and changed.model.similarity_temperature == 0.1


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_dict_and_yaml_round_trips(tmp_path, name):
    cfg = preset(name).with_values({"protocol.seed": 7, "model.learn_length_scale": True,
                                    "crops.window": (-100.0, 200.0)})
    cfg.to_yaml(tmp_path / "c.yaml")
    assert MatcherConfig.from_yaml(tmp_path / "c.yaml") == cfg
    assert MatcherConfig.from_dict(cfg.to_dict()) == cfg
    text = (tmp_path / "c.yaml").read_text()
    assert "\nmodel:\n  architecture:" in text and "window: [-100.0, 200.0]" in text


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_files_load_equal_to_the_presets(name):
    assert MatcherConfig.from_yaml(PROJECT_DATA / "presets" / f"{name}.yaml") == preset(name)


def test_to_dict_is_nested_plain_and_checkpoint_safe(tmp_path):
    values = preset("paper").to_dict()
    assert list(values) == ["name", *SECTIONS]
    for section, kind in SECTIONS.items():
        assert list(values[section]) == [f.name for f in fields(kind)]
    assert values["model"]["encoder2d_layers"] == [3, 4, 6, 3]
    assert values["crops"] == {"mode": "fixed", "size": 24, "window": [-160.0, 240.0],
                               "spacing_mm": [0.7, 0.7, 2.0], "min_fov_mm": 16.0,
                               "radius_factor": 2.5}
    torch.save({"config": values}, tmp_path / "c.pt")
    assert torch.load(tmp_path / "c.pt", weights_only=True)["config"] == values


def test_flat_and_with_values_round_trip():
    cfg = preset("paper")
    flat = cfg.flat()
    assert flat["name"] == "paper" and flat["model.feature_dim"] == 128
    assert flat["crops.mode"] == "fixed" and flat["optim.fusion_lr"] == 1e-3
    assert len(flat) == 1 + sum(len(fields(kind)) for kind in SECTIONS.values())
    assert cfg.with_values(flat) == cfg
    assert preset("lite").with_values(flat) == cfg
    changed = cfg.with_values({"model.use_seag": False, "loss.weight_te": 0.0, "name": "x"})
    assert (changed.model.use_seag, changed.loss.weight_te, changed.name) == (False, 0.0, "x")
    assert changed.with_values({"model.use_seag": True, "loss.weight_te": 1.0,
                                "name": "paper"}) == cfg
    assert cfg.with_values({}) == cfg


def test_updated_takes_sections_mappings_and_dotted_keys():
    lite = preset("lite")
    a = lite.updated(model={"feature_dim": 32}, optim=OptimConfig(lr=0.5), name="a")
    assert (a.model.feature_dim, a.model.use_seag, a.optim.lr, a.name) == (32, True, 0.5, "a")
    assert a.optim == OptimConfig(lr=0.5)
    assert lite.updated(**{"model.feature_dim": 32}) == lite.with_values(
        {"model.feature_dim": 32})
    with pytest.raises(ValueError, match="model must be a ModelConfig or a mapping"):
        lite.updated(model=3)


def test_partial_yaml_takes_lite_values_and_numeric_strings(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  max_epochs: 3\n  lr: 1e-4\nmodel:\n  encoder3d_widths: [4, 8]\n"
                    "  encoder3d_layers: [1, 2]\ncrops: {mode: fixed}\nloss:\n")
    cfg = MatcherConfig.from_yaml(path)
    assert cfg == preset("lite").with_values({
        "optim.max_epochs": 3, "optim.lr": 1e-4, "model.encoder3d_widths": (4, 8),
        "model.encoder3d_layers": (1, 2), "crops.mode": "fixed"})
    assert isinstance(cfg.optim.lr, float) and cfg.model.encoder3d_widths == (4, 8)
    path.write_text("")
    assert MatcherConfig.from_yaml(path) == preset("lite")


def test_unknown_keys_name_section_key_and_valid_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim: {max_epochs: 3, learning_rate: 0.1}\n")
    with pytest.raises(InputError) as info:
        MatcherConfig.from_yaml(path)
    message = str(info.value)
    assert message.startswith(f"{path}: unknown key optim.learning_rate; valid keys of optim: "
                              "lr, weight_decay, fusion_lr, ")
    with pytest.raises(ValueError, match=r"unknown key model\.foo; valid keys of model: "
                                         r"architecture, .*geometry_distance_mm"):
        MatcherConfig.from_dict({"model": {"foo": 1}})
    with pytest.raises(ValueError, match=r"unknown section training; valid sections: name, "
                                         r"crops, model, loss, optim, protocol$"):
        MatcherConfig.from_dict({"training": {}})
    with pytest.raises(ValueError, match=r"unknown section max_epochs; .*\(max_epochs is now "
                                         r"optim\.max_epochs\)"):
        MatcherConfig.from_dict({"max_epochs": 3})
    with pytest.raises(ValueError, match=r"unknown key model\.foo; valid keys of model: .*; "
                                         r"unknown key bar\.x; keys are name or section\.key"):
        preset("lite").with_values({"model.foo": 1, "bar.x": 2})
    with pytest.raises(ValueError, match=r"unknown key feature_dim; keys are name or "):
        preset("lite").with_values({"feature_dim": 32})


def test_bad_values_are_listed_with_their_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("crops: {mode: cubic}\nmodel: {use_scb: 1}\n")
    with pytest.raises(InputError, match=r"c\.yaml: crops\.mode must be one of \('fixed', "
                                         r"'radius'\), got 'cubic'; model\.use_scb must be "
                                         r"bool, got 1$"):
        MatcherConfig.from_yaml(path)
    path.write_text("crops: {mode: cubic, size: 0}\nloss: {temperature: 0}\n"
                    "protocol: {val_fraction: 1.0}\n")
    with pytest.raises(InputError) as info:
        MatcherConfig.from_yaml(path)
    problems = str(info.value).split(": ", 1)[1].split("; ")
    assert problems[0].startswith("crops.mode must be one of ('fixed', 'radius')")
    assert problems[1] == "crops.size must be positive, got 0"
    assert problems[2] == "loss.temperature must be > 0, got 0.0"
    assert problems[3] == "protocol.val_fraction must be in [0, 1), got 1.0"
    path.write_text("model: [1, 2]\n")
    with pytest.raises(InputError, match="model must be a mapping of its keys to values"):
        MatcherConfig.from_yaml(path)
    path.write_text("- 1\n- 2\n")
    with pytest.raises(InputError, match="must be a mapping"):
        MatcherConfig.from_yaml(path)
    path.write_text("optim: {lr: [1}\n")
    with pytest.raises(InputError, match="cannot read the config"):
        MatcherConfig.from_yaml(path)
    with pytest.raises(InputError, match="cannot read the config"):
        MatcherConfig.from_yaml(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="encoder2d_layers .* equal length"):
        ModelConfig(encoder2d_layers=(1, 1), encoder2d_widths=(8,))
    with pytest.raises(ValueError, match=r"^similarity_temperature must be > 0"):
        ModelConfig(similarity_temperature=0.0)
    with pytest.raises(ValueError, match=r"model\.scb_threshold must be in \[0, 1\], got 1\.5"):
        preset("lite").with_values({"model.scb_threshold": 1.5})
    with pytest.raises(ValueError, match=r"optim\.batch_size must be >= 1, got 0"):
        MatcherConfig(optim={"batch_size": 0})
    with pytest.raises(ValueError, match="name must be str"):
        MatcherConfig(name=3)
    with pytest.raises(ValueError, match=r"model\.architecture must be one of \('graph', "
                                         r"'asymmetric'\), got 'siamese'"):
        preset("lite").with_values({"model.architecture": "siamese"})
    with pytest.raises(ValueError, match=r"model\.self_layer must be one of"):
        preset("lite").with_values({"model.self_layer": "gcn"})
    with pytest.raises(ValueError, match=r"model\.feature_dim \(30\) must be a multiple of "
                                         r"heads \(4\)"):
        preset("lite").with_values({"model.feature_dim": 30})
    assert preset("lite").with_values({"model.feature_dim": 30,
                                       "model.architecture": "asymmetric"}).model.feature_dim == 30
    with pytest.raises(ValueError, match=r"optim\.schedule must be one of"):
        preset("lite").with_values({"optim.schedule": "step"})
    with pytest.raises(ValueError, match=r"optim\.augment_drop must be < 1"):
        preset("lite").with_values({"optim.augment_drop": 1.0})


def test_legacy_flat_dict_moves_to_sections():
    flat = {"name": "old", "crop_mode": "fixed", "crop_size": 16, "hu_window": [-100, 200],
            "crop_spacing_mm": [1, 1, 2], "crop_radius_factor": 1.5, "crop_min_fov_mm": 16.8,
            "feature_dim": 32, "temperature": 0.2, "position_prior_lr": 0.01,
            "max_epochs": 3, "calibrate_fusion": False, "weight_te": 0.5}
    cfg = MatcherConfig.from_legacy_dict(flat)
    assert cfg.name == "old"
    assert cfg.crops == CropParams(mode="fixed", size=16, window=(-100.0, 200.0),
                                   spacing_mm=(1.0, 1.0, 2.0), radius_factor=1.5,
                                   min_fov_mm=16.8)
    assert (cfg.loss.temperature, cfg.model.similarity_temperature,
            cfg.model.scb_temperature) == (0.2, 0.2, 0.2)
    assert (cfg.model.feature_dim, cfg.optim.fusion_lr, cfg.optim.max_epochs,
            cfg.protocol.calibrate_fusion, cfg.loss.weight_te) == (32, 0.01, 3, False, 0.5)
    assert len(LEGACY_KEYS) == 53
    with pytest.raises(ValueError, match="unknown key.* of the flat config: scb_temperature"):
        MatcherConfig.from_legacy_dict({"scb_temperature": 0.1})
