"""``lngraph evaluate``: the grammar (COHORT, one input of --predictions / --model / --tracks,
optional --out), JSON output, printed table, pair selection, the confidence report and errors."""

import json
import sys
import types

import numpy as np
import pytest
import torch

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


def test_an_input_is_required(run_cli, cohort, tmp_path):
    with pytest.raises(SystemExit):
        run_cli(["evaluate", str(cohort.root), "--out", str(tmp_path / "m.json")])


def test_inputs_exclude_each_other(run_cli, cohort, tmp_path, capsys):
    matches = write_matches(tmp_path / "matches.csv", [])
    for other in (["--model", "lite-geometry"], ["--tracks", str(tmp_path / "tracks.csv")]):
        with pytest.raises(SystemExit):
            run_cli(["evaluate", str(cohort.root), "--predictions", str(matches), *other])
        assert "not allowed with argument" in capsys.readouterr().err


def test_out_is_optional_and_the_table_always_printed(run_cli, cohort, tmp_path, capsys):
    pred = PairPrediction(3, 3, [[0, 0], [1, 2]], [0.9, 0.4])
    matches = write_matches(tmp_path / "matches.csv", [(cohort.pair("p1", "p2"), pred)])
    assert run_cli(["evaluate", str(cohort.root), "--predictions", str(matches)]) == 0
    printed = capsys.readouterr().out
    assert "F1" in printed and "50.00 %" in printed and "written" not in printed
    # the scores' calibration: 0.9 right, 0.4 wrong → |1 - 0.9| and |0 - 0.4|, over 2
    assert "scored matches (n = 2): ECE 0.250" in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort", "matches.csv"]


def test_predictions_report_the_calibration_of_their_scores(run_cli, cohort, tmp_path, capsys):
    pred = PairPrediction(3, 3, [[0, 0], [1, 2]], [0.9, 0.4])
    matches = write_matches(tmp_path / "matches.csv", [(cohort.pair("p1", "p2"), pred)])
    out = tmp_path / "res" / "metrics.json"
    assert run_cli(["evaluate", str(cohort.root), "--predictions", str(matches), "--out",
                    str(out), "--quiet"]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))["calibration"]
    assert report["bins"] == 15 and report["matches"]["n"] == 2
    assert report["matches"]["ece"] == pytest.approx(0.25)
    assert sum(report["matches"]["reliability"]["count"]) == 2
    diagram = tmp_path / "res" / "metrics.reliability.png"
    assert diagram.read_bytes()[:4] == b"\x89PNG"
    assert f"reliability diagram written to {diagram}" in capsys.readouterr().out


def _geometry_model(tmp_path, **model):
    """An untrained geometry-only graph matcher saved as RUN/model.ckpt."""
    from lngraph.models import build_matcher, preset, save_checkpoint

    config = preset("lite").updated(model={"geometry_only": True, "feature_dim": 16,
                                           "layers": 1, "heads": 2, "geometry_hidden": 16,
                                           "similarity_threshold": 0.02, **model})
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "run" / "model.ckpt", build_matcher(config).eval(), config)


def test_model_reports_ece_before_and_after_its_confidence_map(run_cli, cohort, tmp_path,
                                                               capsys):
    ckpt = _geometry_model(tmp_path, score_temperature=0.5, score_bias=2.0)
    out = tmp_path / "eval" / "test.json"
    matches = tmp_path / "eval" / "matches.csv"
    # the run folder names its model.ckpt
    assert run_cli(["evaluate", str(cohort.root), "--model", str(ckpt.parent), "--out",
                    str(out), "--matches", str(matches), "--device", "cpu", "--quiet"]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads(out.read_text(encoding="utf-8"))
    report = metrics["calibration"]
    assert (report["temperature"], report["bias"], report["calibrated"]) == (0.5, 2.0, True)
    assigned, kept = report["assigned_pairs"], report["kept"]
    assert assigned["n"] == 3 and kept["n"] <= 3         # p1 -> p2: three assigned pairs
    assert kept["n"] == report["matches"]["n"] == metrics["n_pred_matches"]
    for part in (assigned, kept):
        assert part["ece_raw"] is not None and part["ece"] is not None
    assert "the model's confidence map: sigma(logit(p) / 0.5 + 2)" in printed
    assert (f"assigned pairs (n = 3): ECE {assigned['ece_raw']:.3f} raw -> "
            f"{assigned['ece']:.3f} calibrated") in printed
    assert (tmp_path / "eval" / "test.reliability.png").is_file()
    # matches.csv holds the calibrated confidences, at least f(θ) each
    from lngraph.io.matches import read_matches
    from lngraph.metrics import temperature_scale

    scores = read_matches(matches, cohort)[("p1", "p2")].scores
    assert len(scores) == kept["n"]
    assert (scores >= float(temperature_scale(0.02, 0.5, 2.0)) - 1e-12).all()


def test_an_uncalibrated_model_says_so(run_cli, cohort, tmp_path, capsys):
    ckpt = _geometry_model(tmp_path)
    assert run_cli(["evaluate", str(cohort.root), "--model", str(ckpt), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "no fitted confidence map" in printed and "assigned pairs (n = 3): ECE" in printed
    assert "raw ->" not in printed


def test_an_unknown_model_names_the_shipped_ones(run_cli, cohort, tmp_path, capsys):
    assert run_cli(["evaluate", str(cohort.root), "--model", str(tmp_path / "nope.ckpt")]) == 2
    err = capsys.readouterr().err
    assert "no such checkpoint, and not a shipped model name (shipped: lite-image" in err


def test_tracks_are_handed_to_the_track_command(run_cli, cohort, tmp_path, monkeypatch):
    seen = []
    fake = types.ModuleType("lngraph.cli.track")
    fake.evaluate_tracks_command = lambda args: seen.append(args) or 0
    monkeypatch.setitem(sys.modules, "lngraph.cli.track", fake)
    tracks = tmp_path / "tracks.csv"
    assert run_cli(["evaluate", str(cohort.root), "--tracks", str(tracks), "--quiet"]) == 0
    (args,) = seen
    assert (args.cohort, args.tracks, args.out, args.quiet) == (cohort.root, tracks, None, True)
    out = tmp_path / "m.json"
    assert run_cli(["evaluate", str(cohort.root), "--tracks", str(tracks), "--out",
                    str(out)]) == 0
    assert seen[-1].out == out


@pytest.mark.parametrize("option", [["--allow-empty"], ["--matches", "m.csv"],
                                    ["--pairs", "all"]])
def test_model_or_prediction_options_are_refused_with_tracks(run_cli, cohort, tmp_path, capsys,
                                                             option):
    assert run_cli(["evaluate", str(cohort.root), "--tracks", str(tmp_path / "t.csv"),
                    *option]) == 2
    assert "lngraph evaluate: error:" in capsys.readouterr().err
