import numpy as np
import pandas as pd
import pytest

from lngraph.cli.bench import parse_settings
from lngraph.cli.main import main
from lngraph.io.cohort import NodeTable, Scan, write_cohort


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    """Four geometry-only patients with two scans: the later one shifted, minus one node."""
    rng = np.random.default_rng(1)
    scans = []
    for p in range(4):
        pos = rng.uniform(-80, 80, (6, 3))
        tracks = np.array([f"P{p}-{k}" for k in range(6)], object)
        size = np.full(6, 10.0)
        scans.append(Scan(f"P{p}", f"P{p}_a", "1", None,
                          NodeTable.from_arrays(pos, size, track_id=tracks)))
        scans.append(Scan(f"P{p}", f"P{p}_b", "2", None, NodeTable.from_arrays(
            pos[1:] + 12.0, size[1:], track_id=tracks[1:])))
    return write_cohort(tmp_path_factory.mktemp("cohort"), scans)


def test_bench_writes_the_leaderboard(cohort_dir, tmp_path, capsys):
    out = tmp_path / "board"
    code = main(["bench", str(cohort_dir), "--methods", "nearest,pointset", "--folds", "2",
                 "--out", str(out), "--set", "pointset.gate_mm=20", "--quiet"])
    assert code == 0
    assert f"wrote {out / 'leaderboard.md'}" in capsys.readouterr().out
    summary = pd.read_csv(out / "leaderboard.csv")
    assert list(summary["method"]) == ["nearest", "pointset"]
    assert (summary["f1_mean"] == 1.0).all()
    assert "`pointset`: gate_mm=20" in (out / "leaderboard.md").read_text(encoding="utf-8")


def test_bench_reports_bad_arguments(cohort_dir, tmp_path, capsys):
    assert main(["bench", str(cohort_dir), "--methods", "nearest,nope",
                 "--out", str(tmp_path)]) == 2
    assert "unknown method(s) nope" in capsys.readouterr().err
    assert main(["bench", str(cohort_dir), "--set", "gate_mm=3", "--out", str(tmp_path)]) == 2
    assert "--set wants METHOD.KEY=VALUE, got 'gate_mm=3'" in capsys.readouterr().err
    assert main(["bench", str(cohort_dir), "--methods", "nearest", "--folds", "9",
                 "--out", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(cohort_dir) in err and "9 folds need at least 9 patients, got 4" in err


def test_parse_settings_reads_values_as_yaml():
    assert parse_settings(["lgm.epochs=5", "lgm.appearance=false", "nearest.gate_mm=12.5"]) == {
        "lgm": {"epochs": 5, "appearance": False}, "nearest": {"gate_mm": 12.5}}


@pytest.mark.slow
def test_quick_bench_runs_every_method_on_a_tiny_cohort_with_images(tmp_path):
    import torch

    from lngraph.synth import DEFAULT_GRID, generate_cohort

    torch.set_num_threads(1)
    cohort = generate_cohort(tmp_path / "cohort", 4, seed=2, grid=DEFAULT_GRID.scaled(0.25),
                             progress=False)
    out = tmp_path / "board"
    assert main(["bench", str(cohort), "--quick", "--out", str(out), "--quiet"]) == 0
    summary = pd.read_csv(out / "leaderboard.csv").set_index("method")
    assert {"nearest", "pointset", "registration", "lgm", "geometry_fusion", "dlt_lite",
            "sam_lite", "tlt_lite", "abl_appearance", "abl_seag", "abl_te", "abl_se", "abl_scb",
            "matcher", "matcher_geometry"} <= set(summary.index)
    assert (summary["status"] == "ok").all()
    assert (summary["folds"] == 2).all()
    assert "quick; max epochs 2" in (out / "leaderboard.md").read_text(encoding="utf-8")


def test_bench_extra_val_joins_validation_and_refuses_shared_patients(cohort_dir, tmp_path,
                                                                       capsys):
    from lngraph.io.cohort import read_cohort

    scans = list(read_cohort(cohort_dir).scans.values())
    extra = write_cohort(tmp_path / "extra", [
        Scan("V" + s.patient_id, "V" + s.scan_id, s.timepoint, s.image, s.nodes)
        for s in scans])
    out = tmp_path / "board"
    assert main(["bench", str(cohort_dir), "--methods", "nearest", "--folds", "2",
                 "--extra-val", str(extra), "--out", str(out), "--quiet"]) == 0
    text = (out / "leaderboard.md").read_text(encoding="utf-8")
    assert "- extra validation: every fold's validation patients plus" in text
    assert main(["bench", str(cohort_dir), "--methods", "nearest", "--folds", "2",
                 "--extra-val", str(cohort_dir), "--out", str(tmp_path / "b2"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(cohort_dir) in err and "P0, P1, P2, P3 are also in the cohort" in err
    assert not (tmp_path / "b2").exists()
