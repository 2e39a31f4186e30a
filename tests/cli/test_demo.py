"""``lngraph demo``: help, argument checks, the comparison table, what the default cohort
holds, and (slow) a tiny full run and a run with the defaults."""

import json
import math

import pytest

from lngraph.cli import main as cli_main
from lngraph.cli.demo import (
    BASELINES,
    DEFAULT_PATIENTS,
    DEFAULT_SEED,
    MODEL_NAME,
    PRESET,
    SPLIT_FOLDS,
    _matching_cohort,
    comparison_table,
    one_torch_thread,
    unmatched_counts,
)
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
    for option in ("--out", "--patients", "--seed", "--max-epochs", "--workers", "--quiet",
                   "--device", "--cache-dir", "--overwrite", "examples:"):
        assert option in text


def test_too_few_patients(run_cli, tmp_path, capsys):
    assert run_cli(["demo", "--out", str(tmp_path / "demo"), "--patients", "2"]) == 2
    assert "--patients must be at least 3" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


def test_comparison_table():
    good = {**summarize([]), "precision": 0.975, "recall": 1.0, "med_mm": 3.25}
    bad = {**summarize([]), "precision": 0.5, "recall": math.nan, "med_mm": 12.0}
    lines = comparison_table({"ours": good, "nearest": bad, "lgm": good}).splitlines()
    assert lines[0].split() == ["ours", "nearest", "lgm"]
    assert lines[1].split() == ["Precision", "97.50", "%", "50.00", "%", "97.50", "%"]
    assert lines[2].split() == ["Recall", "100.00", "%", "n/a", "100.00", "%"]
    assert lines[-1].split() == ["MED", "3.25", "mm", "12.00", "mm", "3.25", "mm"]
    assert len({len(line) for line in lines}) == 1  # aligned columns


def test_default_cohort_shows_new_and_disappeared_nodes(tmp_path):
    """With the defaults the held-out pairs have new and disappeared nodes (so NLR and DLR
    have values) and the validation pairs can calibrate the threshold. The node tables do not
    depend on the images, so a geometry-only cohort of the same settings has the same."""
    from lngraph.synth import generate_cohort
    from lngraph.train import patient_folds
    from lngraph.train.calibrate import threshold_problem

    cohort = read_cohort(generate_cohort(tmp_path, DEFAULT_PATIENTS, DEFAULT_SEED, preset=PRESET,
                                         images=False, progress=False))
    split = patient_folds(cohort.patients, folds=SPLIT_FOLDS, seed=DEFAULT_SEED)[0]
    new, gone = unmatched_counts(cohort.pairs("consecutive", split.test))
    assert new >= 3 and gone >= 3
    assert threshold_problem(cohort.pairs("consecutive", split.val)) is None


def test_lightning_info_is_silenced_and_restored():
    """In a fresh interpreter, where importing Lightning sets its loggers' levels: inside
    ``quiet_lightning`` its informational messages ("GPU available", tips) are off."""
    import subprocess
    import sys

    code = """
import logging
from lngraph.cli.demo import quiet_lightning
with quiet_lightning():
    from lightning.pytorch.utilities.rank_zero import rank_zero_info
    rank_zero_info("GPU available: chatter")
    logging.getLogger("lightning.pytorch").warning("a real warning")
assert logging.getLogger("lightning.pytorch").isEnabledFor(logging.INFO)  # restored
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert "chatter" not in done.stdout + done.stderr
    assert "a real warning" in done.stderr


def test_torch_runs_on_one_thread_and_is_restored():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with one_torch_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


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
    captured = capsys.readouterr()
    printed = captured.out
    for line in ("Precision", "NLR (new found)", "DLR (disappeared found)", "CPM@Radius", "MED",
                 "[1/5]", "[5/5]", "epoch  1/1", "model:", "metrics:", "matches:", "figure:"):
        assert line in printed
    # not a terminal: no progress bars, and no Lightning chatter
    assert "\r" not in printed + captured.err
    for chatter in ("GPU available", "Tip", "Seed set", "Total params"):
        assert chatter not in printed + captured.err
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert set(metrics["methods"]) == {MODEL_NAME, *BASELINES}
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


#: Rows of the table that every method fills with the defaults.
ROWS = ("precision", "recall", "f1", "nlr", "new_precision", "dlr", "disappeared_precision",
        "cpm_radius", "med_mm")


@pytest.mark.slow
def test_demo_with_the_defaults_shows_something(run_cli, tmp_path, capsys):
    """The default demo (minutes): held-out pairs with new and disappeared nodes, a value in
    every row, three methods that differ, and a trained model at least as good as nearest."""
    out = tmp_path / "demo"
    assert run_cli(["demo", "--out", str(out)]) == 0
    assert "note:" not in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    methods = metrics["methods"]
    ours = methods[MODEL_NAME]
    assert ours["n_gt_new"] > 0 and ours["n_gt_disappeared"] > 0
    for name in methods:
        assert not any(math.isnan(methods[name][key]) for key in ROWS), name
    names = list(methods)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert any(methods[a][key] != methods[b][key] for key in ROWS), (a, b)
    assert metrics["val_metrics"]["f1"] > 0.8
    assert ours["f1"] >= methods["nearest"]["f1"]
