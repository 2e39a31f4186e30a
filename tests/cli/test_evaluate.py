"""``lngraph evaluate --predictions``: JSON output, printed table, pair selection and errors."""

import json

import numpy as np
import pytest

from lngraph.cli import main as cli_main
from lngraph.io import PairPrediction, write_cohort, write_matches
from lngraph.io.cohort import NodeTable, Scan, read_cohort


@pytest.fixture
def run_cli(monkeypatch):
    """Run ``lngraph`` with only this subcommand registered (others may not exist yet)."""
    monkeypatch.setattr(cli_main, "COMMANDS", ("lngraph.cli.evaluate",))
    return cli_main.main


def _scan(patient, scan_id, timepoint, tracks, xs):
    n = len(tracks)
    pos = np.column_stack([xs, np.zeros(n), np.zeros(n)]) if n else np.zeros((0, 3))
    nodes = NodeTable.from_arrays(pos, np.full(n, 8.0), np.full(n, 10.0),
                                  node_id=[f"{scan_id}n{k}" for k in range(n)], track_id=tracks)
    return Scan(patient, scan_id, timepoint, None, nodes)


@pytest.fixture
def cohort(tmp_path):
    scans = [
        _scan("P", "p1", "1", ["A", "B", "C"], [0, 50, 100]),
        _scan("P", "p2", "2", ["A", "B", "D"], [3, 50, 200]),
        _scan("Q", "q1", "2020-01-01", [], []),
        _scan("Q", "q2", "2020-06-01", [], []),
    ]
    return read_cohort(write_cohort(tmp_path / "cohort", scans))


def test_command_is_registered():
    assert "lngraph.cli.evaluate" in cli_main.COMMANDS


def test_evaluate_predictions(run_cli, cohort, tmp_path, capsys):
    # A matched (right, d = 0), B matched to D (wrong, d = 150 mm), C disappeared (right),
    # so B is left over as a (wrong) new node.
    pred = PairPrediction(3, 3, [[0, 0], [1, 2]], [0.9, 0.4])
    matches = write_matches(tmp_path / "matches.csv", [(cohort.pair("p1", "p2"), pred)])
    out = tmp_path / "res" / "metrics.json"
    assert run_cli(["evaluate", "--predictions", str(matches), str(cohort.root),
                    "--out", str(out)]) == 0
    metrics = json.loads(out.read_text(encoding="utf-8"))
    assert metrics["n_pairs"] == 1 and metrics["n_gt_matches"] == 2
    assert metrics["precision"] == 0.5 and metrics["recall"] == 0.5 and metrics["f1"] == 0.5
    assert metrics["dlr"] == 1.0 and metrics["disappeared_precision"] == 1.0
    assert metrics["nlr"] == 0.0 and metrics["new_precision"] == 0.0
    assert metrics["cpm_radius"] == 0.5 and metrics["med_mm"] == 75.0
    printed = capsys.readouterr().out
    assert "1 scan pairs, 2 ground-truth matches, 0 of them predicted unmatched" in printed
    assert "Precision" in printed and "50.00 %" in printed and "75.00 mm" in printed


def test_all_pairs_mode_needs_every_pair(run_cli, cohort, tmp_path, capsys):
    matches = write_matches(tmp_path / "matches.csv", [])
    out = tmp_path / "metrics.json"
    args = ["evaluate", "--predictions", str(matches), str(cohort.root), "--out", str(out),
            "--allow-empty"]
    assert run_cli(args) == 0
    metrics = json.loads(out.read_text(encoding="utf-8"))
    assert metrics["n_pairs"] == 0 and metrics["precision"] is None
    assert "n/a" in capsys.readouterr().out
    assert run_cli([*args, "--pairs", "consecutive"]) == 2
    err = capsys.readouterr().err
    assert f"lngraph evaluate: error: {matches}: no prediction for pair p1 -> p2" in err


def test_empty_predictions_need_allow_empty(run_cli, cohort, tmp_path, capsys):
    matches = write_matches(tmp_path / "matches.csv", [])
    out = tmp_path / "metrics.json"
    args = ["evaluate", "--predictions", str(matches), str(cohort.root), "--out", str(out)]
    assert run_cli(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lngraph evaluate: error: {matches}: the file holds no predictions "
                          "(a header but no rows); if that is intended, pass --allow-empty")
    assert len(err.strip().splitlines()) == 1  # one line, no traceback
    assert not out.exists()
    assert run_cli([*args, "--allow-empty"]) == 0
    assert json.loads(out.read_text(encoding="utf-8"))["n_pairs"] == 0


def test_allow_empty_is_refused_with_a_model(run_cli, cohort, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    assert run_cli(["evaluate", "--model", str(tmp_path / "model.ckpt"), str(cohort.root),
                    "--out", str(out), "--allow-empty"]) == 2
    assert "--allow-empty applies to --predictions only" in capsys.readouterr().err


def test_bad_predictions_file(run_cli, cohort, tmp_path, capsys):
    bad = tmp_path / "matches.csv"
    bad.write_text("src_scan,src_node,dst_scan,dst_node,score,status\np1,p1n0,p2,zz,1,matched\n")
    out = tmp_path / "metrics.json"
    assert run_cli(["evaluate", "--predictions", str(bad), str(cohort.root),
                    "--out", str(out)]) == 2
    assert (f"{bad}, line 2: dst_node 'zz' is not a node of scan 'p2'"
            in capsys.readouterr().err)
    assert not out.exists()


def test_predictions_are_required(run_cli, cohort, tmp_path):
    with pytest.raises(SystemExit):
        run_cli(["evaluate", str(cohort.root), "--out", str(tmp_path / "m.json")])
