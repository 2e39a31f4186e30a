from dataclasses import fields, replace
from pathlib import Path

import pytest
import torch

from lngraph.io.errors import InputError
from lngraph.models.config import PRESETS, MatcherConfig, preset

PROJECT_DATA = Path(__file__).resolve().parents[2] / "data"


def test_presets():
    lite, paper = preset("lite"), preset("paper")
    assert lite == MatcherConfig() and lite.name == "lite"
    assert paper.name == "paper"
    assert (paper.encoder2d_block, paper.encoder2d_layers) == ("basic", (3, 4, 6, 3))
    assert paper.encoder3d_block == "bottleneck" and sum(paper.encoder3d_layers) >= 16
    assert (paper.feature_dim, paper.lr, paper.batch_size, paper.max_epochs,
            paper.patience) == (128, 1e-4, 4, 100, 20)
    assert sum(lite.encoder3d_layers) < sum(paper.encoder3d_layers)
    assert max(lite.encoder2d_widths) < max(paper.encoder2d_widths)
    with pytest.raises(ValueError, match="unknown preset 'huge'; choose one of lite, paper"):
        preset("huge")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_yaml_round_trip(tmp_path, name):
    cfg = replace(preset(name), seed=7, learn_length_scale=True, hu_window=(-100.0, 200.0))
    cfg.to_yaml(tmp_path / "c.yaml")
    assert MatcherConfig.from_yaml(tmp_path / "c.yaml") == cfg
    assert MatcherConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_files_load_equal_to_the_presets(name):
    assert MatcherConfig.from_yaml(PROJECT_DATA / "presets" / f"{name}.yaml") == preset(name)


def test_to_dict_is_plain_and_checkpoint_safe(tmp_path):
    values = preset("paper").to_dict()
    assert set(values) == {f.name for f in fields(MatcherConfig)}
    assert values["encoder2d_layers"] == [3, 4, 6, 3]
    torch.save({"config": values}, tmp_path / "c.pt")
    assert torch.load(tmp_path / "c.pt", weights_only=True)["config"] == values


def test_partial_yaml_takes_lite_values_and_numeric_strings(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("max_epochs: 3\nlr: 1e-4\nencoder3d_widths: [4, 8]\n"
                    "encoder3d_layers: [1, 2]\n")
    cfg = MatcherConfig.from_yaml(path)
    assert cfg == replace(preset("lite"), max_epochs=3, lr=1e-4, encoder3d_widths=(4, 8),
                          encoder3d_layers=(1, 2))
    path.write_text("")
    assert MatcherConfig.from_yaml(path) == preset("lite")


def test_unknown_key_is_a_clear_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("max_epochs: 3\nlearning_rate: 0.1\n")
    with pytest.raises(InputError) as info:
        MatcherConfig.from_yaml(path)
    message = str(info.value)
    assert message.startswith(f"{path}: unknown config key(s) learning_rate; valid keys: ")
    assert "lr" in message
    with pytest.raises(ValueError, match="unknown config key"):
        MatcherConfig.from_dict({"batchsize": 2})


def test_bad_values_and_files(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("crop_mode: cubic\nuse_scb: 1\n")
    with pytest.raises(InputError, match=r"c\.yaml: use_scb must be bool, got 1"):
        MatcherConfig.from_yaml(path)
    path.write_text("crop_mode: cubic\n")
    with pytest.raises(InputError, match="crop_mode must be one of"):
        MatcherConfig.from_yaml(path)
    path.write_text("- 1\n- 2\n")
    with pytest.raises(InputError, match="must be a mapping"):
        MatcherConfig.from_yaml(path)
    path.write_text("lr: [1\n")
    with pytest.raises(InputError, match="cannot read the config"):
        MatcherConfig.from_yaml(path)
    with pytest.raises(InputError, match="cannot read the config"):
        MatcherConfig.from_yaml(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="encoder2d_layers .* equal length"):
        MatcherConfig(encoder2d_layers=(1, 1), encoder2d_widths=(8,))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        MatcherConfig(temperature=0.0)
