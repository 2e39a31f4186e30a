"""``lngraph models`` and the shipped-model registry (:mod:`lngraph.models.zoo`)."""

import pytest

from lngraph.cli import main as cli_main
from lngraph.io.errors import InputError
from lngraph.models import zoo


@pytest.fixture
def run_cli(monkeypatch):
    monkeypatch.setattr(cli_main, "COMMANDS", ("lngraph.cli.models",))
    return cli_main.main


def test_every_shipped_model_is_installed_with_its_card():
    for model in zoo.shipped_models():
        assert model.available, model.checkpoint
        text = model.card.read_text(encoding="utf-8")
        assert text.startswith(f"# Model card: `{model.name}`")
        assert "## Measured quality" in text and "## Limits" in text


def test_shipped_models_load_and_match_their_kind():
    from lngraph.models import load_checkpoint

    _, image_config, _ = load_checkpoint(zoo.model_path(None, images=True))
    _, geometry_config, _ = load_checkpoint(zoo.model_path(None, images=False))
    assert not image_config.model.geometry_only
    assert geometry_config.model.geometry_only


def test_models_lists_and_prints_a_card(run_cli, capsys):
    assert run_cli(["models"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in zoo.SHIPPED)
    assert run_cli(["models", "lite-geometry"]) == 0
    assert capsys.readouterr().out.startswith("# Model card: `lite-geometry`")
    assert run_cli(["models", "nope"]) == 2
    assert "no shipped model named 'nope'" in capsys.readouterr().err


def test_model_path_resolution(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.ckpt").write_bytes(b"x")
    assert zoo.model_path(run, images=True) == run / "model.ckpt"
    assert zoo.model_path(run / "model.ckpt", images=False) == run / "model.ckpt"
    assert zoo.model_path("lite-image", images=False).name == "lite-image.ckpt"
    with pytest.raises(InputError, match="not a shipped model name"):
        zoo.model_path(tmp_path / "missing.ckpt", images=True)
