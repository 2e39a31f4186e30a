"""``lngraph train`` on the example cohort (geometry only), then ``evaluate --model``."""

import json
from pathlib import Path

import pytest
import yaml

from lngraph.cli import main as cli_main
from lngraph.models import load_checkpoint

EXAMPLE = str(Path(__file__).resolve().parents[2] / "data" / "example_cohort")


@pytest.fixture
def run_cli(monkeypatch):
    monkeypatch.setattr(cli_main, "COMMANDS", ("lngraph.cli.train", "lngraph.cli.evaluate"))
    return cli_main.main


def test_command_is_registered():
    assert "lngraph.cli.train" in cli_main.COMMANDS


def test_train_then_evaluate_held_out(run_cli, tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli(["train", EXAMPLE, "--out", str(run), "--fold", "0", "--folds", "2",
                    "--max-epochs", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "training the geometry-only matcher" in printed
    assert f"model:   {run / 'model.ckpt'}" in printed
    model, config, extra = load_checkpoint(run / "model.ckpt")
    assert config.model.geometry_only
    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    assert config["model"]["geometry_only"] is True
    split = json.loads((run / "split.json").read_text(encoding="utf-8"))
    assert split["fold"] == 0 and split["folds"] == 2 and len(split["test"]) == 1
    assert sorted(split["train"] + split["val"] + split["test"]) == ["P01", "P02"]
    assert extra["train_patients"] == split["train"]
    # one training patient: no validation metrics
    assert json.loads((run / "metrics.json").read_text(encoding="utf-8")) == {}

    out = tmp_path / "metrics.json"
    assert run_cli(["evaluate", "--model", str(run / "model.ckpt"), EXAMPLE, "--out", str(out),
                    "--patients-from", str(run), "--matches", str(tmp_path / "m.csv")]) == 0
    rows = (tmp_path / "m.csv").read_text(encoding="utf-8").splitlines()[1:]
    assert rows and all(row.startswith(split["test"][0]) for row in rows)
    pairs = {tuple(row.split(",")[0:4:2]) for row in rows}
    assert json.loads(out.read_text(encoding="utf-8"))["n_pairs"] == len(pairs)


def test_evaluate_fold_matches_train_fold(run_cli, tmp_path):
    run = tmp_path / "run"
    assert run_cli(["train", EXAMPLE, "--out", str(run), "--fold", "1", "--folds", "2",
                    "--max-epochs", "1", "--quiet", "--set", "model.feature_dim=16",
                    "optim.lr=3e-3"]) == 0
    _, config, _ = load_checkpoint(run / "model.ckpt")
    assert (config.model.feature_dim, config.optim.lr) == (16, 3e-3)
    test_patient = json.loads((run / "split.json").read_text(encoding="utf-8"))["test"][0]
    assert run_cli(["evaluate", "--model", str(run / "model.ckpt"), EXAMPLE,
                    "--out", str(tmp_path / "x.json"), "--fold", "1", "--folds", "2",
                    "--matches", str(tmp_path / "m.csv")]) == 0
    rows = (tmp_path / "m.csv").read_text(encoding="utf-8").splitlines()[1:]
    assert rows and all(row.startswith(test_patient) for row in rows)


def test_errors(run_cli, tmp_path, capsys):
    assert run_cli(["train", EXAMPLE, "--out", str(tmp_path / "r"), "--fold", "3",
                    "--folds", "2", "--quiet"]) == 2
    assert "--fold must be in 0..1, got 3" in capsys.readouterr().err
    assert run_cli(["train", EXAMPLE, "--out", str(tmp_path / "r"), "--fold", "0",
                    "--folds", "5", "--quiet"]) == 2
    assert "5 folds need at least 5 patients, got 2" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: {lr: fast}\n")
    assert run_cli(["train", EXAMPLE, "--out", str(tmp_path / "r"), "--config", str(bad)]) == 2
    assert f"{bad}: optim.lr must be" in capsys.readouterr().err
    assert run_cli(["train", EXAMPLE, "--out", str(tmp_path / "r"),
                    "--set", "model.feature_dim=8", "optim.learning_rate=0.1"]) == 2
    assert "--set: unknown key optim.learning_rate; valid keys of optim: lr, " in \
        capsys.readouterr().err
    assert run_cli(["train", EXAMPLE, "--out", str(tmp_path / "r"), "--set", "optim.lr"]) == 2
    assert "--set wants SECTION.KEY=VALUE, got 'optim.lr'" in capsys.readouterr().err
    assert run_cli(["evaluate", "--model", str(tmp_path / "none.ckpt"), EXAMPLE,
                    "--out", str(tmp_path / "x.json")]) == 2
    assert "none.ckpt: no such checkpoint, and not a shipped model name" in \
        capsys.readouterr().err
    assert run_cli(["evaluate", "--predictions", str(tmp_path / "m.csv"), EXAMPLE,
                    "--out", str(tmp_path / "x.json"), "--fold", "0"]) == 2
    assert "--patients-from, --fold and --matches need --model" in capsys.readouterr().err
