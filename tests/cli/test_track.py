"""``lngraph track`` end to end on a tiny geometry-only series, and its evaluation."""

import argparse
import json

import numpy as np
import pytest
import torch

from lngraph.cli import main as cli_main
from lngraph.cli.track import evaluate_tracks_command
from lngraph.io.cohort import read_cohort
from lngraph.io.matches import read_matches
from lngraph.matching.tracks import DEFAULT_THRESHOLD
from lngraph.metrics.tracking import read_tracks
from lngraph.models import build_matcher, preset, save_checkpoint
from lngraph.synth import generate_cohort


@pytest.fixture
def run_cli(monkeypatch):
    """Run ``lngraph`` with only this subcommand registered."""
    monkeypatch.setattr(cli_main, "COMMANDS", ("lngraph.cli.track",))
    return cli_main.main


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """Two geometry-only patients of four scans each."""
    return generate_cohort(tmp_path_factory.mktemp("series") / "c", 2, seed=3, timepoints=4,
                           images=False, progress=False)


@pytest.fixture(scope="module")
def geometry_model(tmp_path_factory):
    """An untrained geometry-only ``lite`` matcher saved as a checkpoint."""
    torch.manual_seed(0)
    config = preset("lite").with_values({"model.geometry_only": True})
    path = tmp_path_factory.mktemp("model") / "model.ckpt"
    return save_checkpoint(path, build_matcher(config), config)


def test_track_with_nearest_writes_every_output(run_cli, series, tmp_path, capsys):
    out = tmp_path / "tracks"
    assert run_cli(["track", str(series), "--out", str(out), "--method", "nearest",
                    "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "2 patient(s), 8 scans" in printed and "method nearest, mode sync" in printed
    cohort = read_cohort(series)
    tracks = read_tracks(out / "tracks.csv", cohort)            # valid: one node per scan
    assert sorted(tracks) == sorted(cohort.scans)
    matches = read_matches(out / "matches.csv", cohort)
    assert sorted(matches) == sorted((p.src.scan_id, p.dst.scan_id) for p in cohort.pairs("all"))
    for (src, dst), pred in matches.items():                     # matches.csv = the tracks
        same = {(i, j) for i, a in enumerate(tracks[src]) for j, b in enumerate(tracks[dst])
                if a == b}
        assert set(map(tuple, pred.matches.tolist())) == same
    for patient in cohort.patients:
        assert (out / "figures" / f"{patient}.png").stat().st_size > 1000
        for scan in cohort.scans_of(patient):
            document = json.loads((out / "markups" / patient / f"{scan.scan_id}.mrk.json")
                                  .read_text())
            labels = [p["label"] for m in document["markups"] for p in m["controlPoints"]]
            assert sorted(label.split(" ")[1] for label in labels) == sorted(
                tracks[scan.scan_id])                            # labels carry the track id
    info = json.loads((out / "track.json").read_text())
    assert info["mode"] == "sync" and info["threshold"] == DEFAULT_THRESHOLD
    assert info["nodes"] == sum(len(s.nodes) for s in cohort.scans.values())


def test_evaluate_tracks_command(run_cli, series, tmp_path, capsys):
    out = tmp_path / "tracks"
    assert run_cli(["track", str(series), "--out", str(out), "--method", "nearest",
                    "--quiet", "--no-figures"]) == 0
    assert not (out / "figures").exists()
    capsys.readouterr()
    args = argparse.Namespace(cohort=series, tracks=out / "tracks.csv",
                              out=tmp_path / "m.json", quiet=True)
    assert evaluate_tracks_command(args) == 0
    printed = capsys.readouterr().out
    assert "IDF1" in printed and "ID switches" in printed and "P0001" in printed
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert 0.0 < metrics["cohort"]["idf1"] <= 1.0
    assert set(metrics["patients"]) == {"P0001", "P0002"}
    # the ground truth scores itself perfectly
    truth = tmp_path / "truth.csv"
    rows = ["patient_id,scan_id,node_id,track_id"] + [
        f"{s.patient_id},{s.scan_id},{n},{t}" for s in read_cohort(series).scans.values()
        for n, t in zip(s.nodes.node_id, s.nodes.track_id, strict=True)]
    truth.write_text("\n".join(rows) + "\n")
    args.tracks, args.out = truth, None
    assert evaluate_tracks_command(args) == 0
    assert "IDF1                100.00 %" in capsys.readouterr().out


def test_chain_mode_and_a_model(run_cli, series, geometry_model, tmp_path):
    assert run_cli(["track", str(series), "--out", str(tmp_path / "chain"), "--method",
                    "nearest", "--mode", "chain", "--quiet", "--no-figures",
                    "--pairs", "consecutive"]) == 0
    cohort = read_cohort(series)
    assert len(read_matches(tmp_path / "chain" / "matches.csv", cohort)) == len(cohort.pairs())
    assert run_cli(["track", str(series), "--out", str(tmp_path / "model"), "--model",
                    str(geometry_model), "--device", "cpu", "--quiet", "--no-figures"]) == 0
    tracks = read_tracks(tmp_path / "model" / "tracks.csv", cohort)
    assert sum(len(v) for v in tracks.values()) == sum(len(s.nodes)
                                                        for s in cohort.scans.values())


def test_errors_are_one_line_exit_2(run_cli, series, tmp_path, capsys):
    out = tmp_path / "tracks"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert run_cli(["track", str(series), "--out", str(out), "--method", "nearest"]) == 2
    assert (out / "keep.txt").exists()                          # refused, untouched
    assert run_cli(["track", str(series), "--out", str(tmp_path / "o"), "--method",
                    "matcher"]) == 2
    assert "trained first" in capsys.readouterr().err
    assert run_cli(["track", str(series), "--out", str(tmp_path / "o"), "--method",
                    "registration"]) == 2
    assert "reads CT images" in capsys.readouterr().err
    assert run_cli(["track", str(series), "--out", str(tmp_path / "o"), "--model",
                    str(tmp_path / "absent.ckpt")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_track_ids_are_patient_scoped_and_ordered(series, tmp_path, run_cli):
    assert run_cli(["track", str(series), "--out", str(tmp_path / "t"), "--method",
                    "nearest", "--quiet", "--no-figures"]) == 0
    lines = (tmp_path / "t" / "tracks.csv").read_text().splitlines()
    first = lines[1].split(",")
    assert first[0] == "P0001" and first[3] == "P0001_T001"
    ids = [line.split(",")[3] for line in lines[1:]]
    assert all(t.startswith(line.split(",")[0] + "_T") for t, line in zip(ids, lines[1:],
                                                                          strict=True))
    numbers = [int(t.rsplit("T", 1)[1]) for t in ids if t.startswith("P0001_")]
    seen = list(dict.fromkeys(numbers))
    assert seen == sorted(seen) and np.array_equal(np.unique(numbers),
                                                   np.arange(1, len(seen) + 1))
