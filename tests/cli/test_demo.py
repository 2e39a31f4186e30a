"""``lngraph demo``: help, argument checks, the comparison table, and (slow) a tiny full run."""

import json
import math

import pytest

from lngraph.cli import main as cli_main
from lngraph.cli.demo import BASELINE_NAME, MODEL_NAME, _matching_cohort, comparison_table
from lngraph.io.cohort import read_cohort
from lngraph.io.matches import read_matches
from lngraph.metrics import summarize


@pytest.fixture
def run_cli(monkeypatch):
    """Run ``lngraph`` with only this subcommand registered."""
    monkeypatch.setattr(cli_main, "COMMANDS", ("lngraph.cli.demo",))
    return cli_main.main


def test_command_is_registered():
    assert "lngraph.cli.demo" in cli_main.COMMANDS


def test_help(run_cli, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["demo", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--out", "--patients", "--seed", "--max-epochs", "--workers"):
        assert option in text


def test_too_few_patients(run_cli, tmp_path, capsys):
    assert run_cli(["demo", "--out", str(tmp_path / "demo"), "--patients", "2"]) == 2
    assert "--patients must be at least 3" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


def test_comparison_table():
    good = {**summarize([]), "precision": 0.975, "recall": 1.0, "med_mm": 3.25}
    bad = {**summarize([]), "precision": 0.5, "recall": math.nan, "med_mm": 12.0}
    lines = comparison_table({"ours": good, "nearest": bad}).splitlines()
    assert lines[0].split() == ["ours", "nearest"]
    assert lines[1].split() == ["Precision", "97.50", "%", "50.00", "%"]
    assert lines[2].split() == ["Recall", "100.00", "%", "n/a"]
    assert lines[-1].split() == ["MED", "3.25", "mm", "12.00", "mm"]
    assert len({len(line) for line in lines}) == 1  # aligned columns


def test_an_unrelated_folder_is_not_reused(tmp_path):
    assert _matching_cohort(tmp_path, 3, 0) is None
    (tmp_path / "synth.json").write_text(json.dumps({"patients": 4, "seed": 0, "images": True,
                                                     "preset": {"name": "default"}}))
    assert _matching_cohort(tmp_path, 3, 0) is None


@pytest.mark.slow
def test_demo_end_to_end(run_cli, tmp_path, capsys):
    out = tmp_path / "demo"
    assert run_cli(["demo", "--out", str(out), "--patients", "3", "--max-epochs", "1",
                    "--workers", "1", "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    for line in ("Precision", "NLR (new found)", "DLR (disappeared found)", "CPM@Radius", "MED",
                 "model:", "metrics:", "matches:", "figure:"):
        assert line in printed
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert set(metrics["methods"]) == {MODEL_NAME, BASELINE_NAME}
    assert len(metrics["test_patients"]) == 1
    cohort = read_cohort(out / "cohort")
    test_pairs = cohort.pairs("consecutive", metrics["test_patients"])
    predictions = read_matches(out / "matches.csv", cohort)
    assert set(predictions) == {(p.src.scan_id, p.dst.scan_id) for p in test_pairs
                                if len(p.src.nodes) + len(p.dst.nodes)}
    assert (out / "figure.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "run" / "model.ckpt").is_file()
    assert _matching_cohort(out / "cohort", 3, 3) is not None  # a rerun reuses the cohort
    images = {p.name: p.stat().st_ino for p in (out / "cohort" / "images").iterdir()}

    # a rerun replaces the earlier demo's output without --overwrite, reusing its cohort
    assert run_cli(["demo", "--out", str(out), "--patients", "3", "--max-epochs", "1",
                    "--workers", "1", "--seed", "3"]) == 0
    assert "reusing the cohort" in capsys.readouterr().out
    assert {p.name: p.stat().st_ino for p in (out / "cohort" / "images").iterdir()} == images
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no temporary folder left


def test_a_rerun_links_the_earlier_cohort(tmp_path, capsys):
    from lngraph.cli.demo import _cohort
    from lngraph.synth import DEFAULT_GRID, generate_cohort

    earlier = generate_cohort(tmp_path / "old" / "cohort", 1, seed=0, progress=False,
                              grid=DEFAULT_GRID.scaled(0.25))
    cohort = _cohort(tmp_path / "new" / "cohort", earlier, 1, 0, 1)
    assert "reusing the cohort" in capsys.readouterr().out
    assert cohort.root == tmp_path / "new" / "cohort" and cohort.has_images
    for image in (earlier / "images").iterdir():
        assert (tmp_path / "new" / "cohort" / "images" / image.name).stat().st_ino == \
            image.stat().st_ino  # a hard link, not a copy
