import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lngraph.baselines.base import Method, register
from lngraph.bench.leaderboard import run_leaderboard
from lngraph.bench.registry import import_methods, method_names
from lngraph.bench.report import METRICS, TIMINGS, summarize_leaderboard
from lngraph.io.cohort import NodeTable, Scan, read_cohort, write_cohort

FRACTIONS = [k for k, _, unit in METRICS if unit == "%"]
DOCS_EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "mine.py"


def tiny_scans(patients: int = 6, seed: int = 0) -> list[Scan]:
    """Patients with two scans, no images: 5-8 nodes, the later scan shifted by up to 20 mm
    and jittered by 1 mm, with one node gone and one new."""
    rng = np.random.default_rng(seed)
    scans = []
    for p in range(patients):
        n = int(rng.integers(5, 9))
        pos = rng.uniform(-80, 80, (n, 3))
        size = rng.uniform(6, 16, n)
        tracks = np.array([f"P{p}-{k}" for k in range(n)], object)
        scans.append(Scan(f"P{p}", f"P{p}_a", "1", None,
                          NodeTable.from_arrays(pos, size, track_id=tracks)))
        later = pos[1:] + rng.uniform(-20, 20, 3) + rng.normal(0, 1.0, (n - 1, 3))
        scans.append(Scan(f"P{p}", f"P{p}_b", "2", None, NodeTable.from_arrays(
            np.concatenate([later, [[150.0, 150.0, 150.0]]]), np.append(size[1:], 10.0),
            track_id=np.append(tracks[1:], f"P{p}-new"))))
    return scans


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    return write_cohort(tmp_path_factory.mktemp("geo"), tiny_scans())


@pytest.fixture(scope="module")
def board(cohort_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("board")
    rows = run_leaderboard(cohort_dir, ["nearest", "pointset", "asymmetric"], folds=2,
                           seeds=(0, 1), out_dir=out, command="test-command", progress=False)
    return rows, out


def test_writes_every_output(board):
    _, out = board
    for name in ("leaderboard.csv", "leaderboard_folds.csv", "leaderboard.md",
                 "leaderboard.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "leaderboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "leaderboard.md").read_text(encoding="utf-8")
    for expected in ("- command: `test-command`", "- commit: `", "- machine: ",
                     "12 scans", "2-fold patient-level", "| `nearest` |", "| `pointset` |",
                     "| `asymmetric` | skipped | needs images"):
        assert expected in text


def test_rows_and_summary_have_every_column(board, cohort_dir):
    rows, out = board
    summary = pd.read_csv(out / "leaderboard.csv")
    for key, _, _ in METRICS + TIMINGS:
        assert {f"{key}_mean", f"{key}_std"} <= set(summary.columns)
        assert key in rows.columns
    assert {"method", "status", "note", "seed", "fold", "test_ids", "n_cpm_missed"} <= set(
        rows.columns)
    assert summary.set_index("method")["status"].to_dict() == {
        "nearest": "ok", "pointset": "ok", "asymmetric": "skipped"}
    folds = pd.read_csv(out / "leaderboard_folds.csv")
    assert len(folds) == len(rows) == 2 * 2 * 2 + 1


def test_every_method_sees_the_same_folds(board, cohort_dir):
    rows, _ = board
    ok = rows[rows["status"] == "ok"]
    splits = {name: sorted(zip(g["seed"], g["fold"], g["test_ids"], strict=True))
              for name, g in ok.groupby("method")}
    assert splits["nearest"] == splits["pointset"]
    patients = sorted(read_cohort(cohort_dir).patients)
    for seed in (0, 1):
        tests = [ids.split() for s, _, ids in splits["nearest"] if s == seed]
        assert sorted(p for t in tests for p in t) == patients


def test_fractions_lie_in_unit_interval_and_geometry_scores_well(board):
    rows, _ = board
    ok = rows[rows["status"] == "ok"]
    values = ok[FRACTIONS].to_numpy(float)
    assert np.isfinite(values).any()
    assert ((values[np.isfinite(values)] >= 0) & (values[np.isfinite(values)] <= 1)).all()
    summary = summarize_leaderboard(rows).set_index("method")
    assert summary.loc["nearest", "f1_mean"] > 0.9
    assert summary.loc["nearest", "folds"] == 4
    assert summary.loc["nearest", "n_gt_matches"] == ok.loc[ok["method"] == "nearest",
                                                             "n_gt_matches"].sum() / 2


def test_a_crashing_method_is_recorded_not_dropped(cohort_dir, registry):
    @register
    class Broken(Method):
        name = "broken_for_test"

        def predict(self, pair):
            raise RuntimeError("no luck")

    rows = run_leaderboard(cohort_dir, ["broken_for_test", "nearest"], folds=2,
                           progress=False)
    broken = rows[rows["method"] == "broken_for_test"]
    assert list(broken["status"]) == ["failed", "failed"]
    assert broken["note"].iloc[0] == "RuntimeError: no luck"
    assert (rows.loc[rows["method"] == "nearest", "status"] == "ok").all()
    summary = summarize_leaderboard(rows).set_index("method")
    assert summary.loc["broken_for_test", "status"] == "failed"
    assert summary.loc["broken_for_test", "note"].startswith("failed in 2 of 2 folds")
    assert math.isnan(summary.loc["broken_for_test", "f1_mean"])


def test_the_documented_method_file_joins_the_leaderboard(cohort_dir, registry):
    import_methods([str(DOCS_EXAMPLE)])
    assert method_names("all")[-1] == "mine"
    rows = run_leaderboard(cohort_dir, ["mine"], folds=2, progress=False)
    assert (rows["status"] == "ok").all()
    assert rows["n_pairs"].sum() == 6 and rows["n_gt_matches"].sum() > 0
