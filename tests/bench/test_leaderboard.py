import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lngraph.baselines.base import Method, register
from lngraph.bench.leaderboard import run_leaderboard
from lngraph.bench.registry import build_method, import_methods, method_names
from lngraph.bench.report import METRICS, TIMINGS, markdown_table, summarize_leaderboard
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
    rows = run_leaderboard(cohort_dir, ["nearest", "pointset", "matcher"], folds=2,
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
                     "| `matcher` | skipped | needs images"):
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
        "nearest": "ok", "pointset": "ok", "matcher": "skipped"}
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


def _fold_rows(method: str, f1s: list[float]) -> pd.DataFrame:
    """Hand-made ``ok`` rows of one method, one per fold, with the given F1 (other metrics
    0.5, timings 1 s)."""
    rows = []
    for k, f1 in enumerate(f1s):
        row = {key: 0.5 for key, _, _ in METRICS + TIMINGS}
        row.update(method=method, status="ok", note="", seed=0, fold=k, f1=f1,
                   n_gt_matches=10, n_cpm_missed=0)
        rows.append(row)
    return pd.DataFrame(rows)


def test_the_spread_over_folds_is_the_sample_standard_deviation():
    summary = summarize_leaderboard(_fold_rows("m", [0.1, 0.2, 0.3])).set_index("method")
    assert summary.loc["m", "f1_mean"] == pytest.approx(0.2)
    assert summary.loc["m", "f1_std"] == pytest.approx(0.1)  # ddof=1; population: 0.0816
    assert summary.loc["m", "precision_std"] == 0.0


def test_a_single_fold_prints_its_spread_as_n_a():
    summary = summarize_leaderboard(_fold_rows("one", [0.8]))
    assert math.isnan(summary.set_index("method").loc["one", "f1_std"])
    table = "\n".join(markdown_table(summary))
    assert "| `one` | 50.0 ± n/a | 50.0 ± n/a | 80.0 ± n/a |" in table
    assert "nan" not in table


def _turned(scans: list[Scan]) -> list[Scan]:
    """``scans`` with every later (``_b``) scan's nodes turned 180° about z and moved 400 mm
    along x: a motion that a translation-only method cannot undo."""
    return [Scan(s.patient_id, s.scan_id, s.timepoint, s.image,
                 NodeTable(s.nodes.node_id, s.nodes.pos * [-1.0, -1.0, 1.0] + [400.0, 0, 0],
                           s.nodes.short_axis_mm, s.nodes.long_axis_mm, s.nodes.track_id))
            if s.scan_id.endswith("_b") else s for s in scans]


def test_test_pairs_come_from_the_test_cohort(cohort_dir, tmp_path, registry):
    seen = {"fit": [], "predict": []}

    @register
    class Spy(Method):
        name = "spy_for_test"

        def fit(self, train, val=None):
            seen["fit"] += [s.nodes.pos for s in train.scans.values()]
            return self

        def predict(self, pair):
            seen["predict"].append((pair.src.scan_id, pair.dst.scan_id, pair.dst.nodes.pos))
            return build_method("nearest").predict(pair)

    cohort = read_cohort(cohort_dir)
    moved_dir = write_cohort(tmp_path / "moved", _turned(list(cohort.scans.values())))
    moved = read_cohort(moved_dir)
    rows = run_leaderboard(cohort_dir, ["spy_for_test", "nearest"], folds=2, progress=False,
                           test_cohort=moved_dir, out_dir=tmp_path / "out")
    assert (rows["status"] == "ok").all()
    # fitted on the original scans only, scored on the moved copy's pairs
    original = [s.nodes.pos for s in cohort.scans.values()]
    assert seen["fit"] and all(any(np.array_equal(p, o) for o in original)
                               for p in seen["fit"])
    assert sorted((a, b) for a, b, _ in seen["predict"]) == sorted(
        (p.src.scan_id, p.dst.scan_id) for p in cohort.pairs())
    for _, dst, pos in seen["predict"]:
        np.testing.assert_array_equal(pos, moved.scans[dst].nodes.pos)
    plain = run_leaderboard(cohort, ["nearest"], folds=2, progress=False)
    same = run_leaderboard(cohort, ["nearest"], folds=2, progress=False, test_cohort=cohort)
    shifted = rows[rows["method"] == "nearest"]
    assert list(plain["test_ids"]) == list(shifted["test_ids"]) == list(same["test_ids"])
    np.testing.assert_array_equal(plain["f1"], same["f1"])
    assert shifted["f1"].mean() < plain["f1"].mean() - 0.5  # turned: few matches
    text = (tmp_path / "out" / "leaderboard.md").read_text(encoding="utf-8")
    assert "- test scans: from another cohort" in text


def test_extra_validation_patients_join_every_folds_validation_only(cohort_dir, tmp_path,
                                                                    registry):
    seen = []

    @register
    class Spy(Method):
        name = "spy_for_val"

        def fit(self, train, val=None):
            seen.append((set(train.patients), set(val.patients)))
            return self

        def predict(self, pair):
            return build_method("nearest").predict(pair)

    extra = write_cohort(tmp_path / "extra", [
        Scan("V" + s.patient_id, "V" + s.scan_id, s.timepoint, s.image, s.nodes)
        for s in tiny_scans(2, seed=5)])
    rows = run_leaderboard(cohort_dir, ["spy_for_val"], folds=2, progress=False,
                           extra_val=extra, out_dir=tmp_path / "out")
    plain = run_leaderboard(cohort_dir, ["spy_for_val"], folds=2, progress=False)
    assert list(rows["test_ids"]) == list(plain["test_ids"])
    with_extra, without = seen[:2], seen[2:]
    for (train, val), (train0, val0) in zip(with_extra, without, strict=True):
        assert train == train0 and val == val0 | {"VP0", "VP1"}
    text = (tmp_path / "out" / "leaderboard.md").read_text(encoding="utf-8")
    assert "- extra validation: every fold's validation patients plus" in text
    clash = write_cohort(tmp_path / "clash", tiny_scans(2))
    with pytest.raises(ValueError, match="extra_val shares patient id"):
        run_leaderboard(cohort_dir, ["nearest"], folds=2, progress=False, extra_val=clash)


def test_test_cohort_must_have_the_same_patients_and_scans(cohort_dir, tmp_path):
    scans = list(read_cohort(cohort_dir).scans.values())
    fewer = write_cohort(tmp_path / "fewer", [s for s in scans if s.patient_id != "P0"])
    with pytest.raises(ValueError, match=r"same patients.*1 only in cohort \(P0\)"):
        run_leaderboard(cohort_dir, ["nearest"], folds=2, progress=False, test_cohort=fewer)
    renamed = write_cohort(tmp_path / "renamed", [
        Scan(s.patient_id, "P3_c" if s.scan_id == "P3_b" else s.scan_id, s.timepoint, s.image,
             s.nodes) for s in scans])
    with pytest.raises(ValueError, match="same scan ids.*patient P3"):
        run_leaderboard(cohort_dir, ["nearest"], folds=2, progress=False, test_cohort=renamed)


def test_reused_rows_are_kept_and_the_rerun_method_is_new(board, cohort_dir, tmp_path):
    rows, out = board
    again = run_leaderboard(cohort_dir, ["nearest"], folds=2, seeds=(0, 1), out_dir=tmp_path,
                            reuse=out / "leaderboard_folds.csv", progress=False)
    assert sorted(again["method"].unique()) == ["matcher", "nearest", "pointset"]
    old = rows[rows["method"] == "pointset"].reset_index(drop=True)
    kept = again[again["method"] == "pointset"].reset_index(drop=True)
    np.testing.assert_allclose(kept["f1"], old["f1"])
    assert kept["seed"].tolist() == old["seed"].tolist()
    assert (again[again["method"] == "nearest"]["status"] == "ok").all()
    text = (tmp_path / "leaderboard.md").read_text(encoding="utf-8")
    assert "- reused: the fold rows of `pointset`, `matcher` come from an earlier run" in text


def test_reused_rows_from_other_folds_are_refused(board, cohort_dir, tmp_path):
    _, out = board
    with pytest.raises(ValueError, match="reused row pointset seed 0 fold 0 was tested on other"):
        run_leaderboard(cohort_dir, ["nearest"], folds=3, seeds=(0, 1), out_dir=tmp_path,
                        reuse=out / "leaderboard_folds.csv", progress=False)


def test_score_pairs_scores_a_fitted_method_as_its_fold_row_does(cohort_dir):
    from lngraph.bench.leaderboard import fold_row, score_pairs
    from lngraph.data.folds import patient_folds
    from lngraph.metrics import pair_counts, summarize

    cohort = read_cohort(cohort_dir)
    split = patient_folds(cohort.patients, 2, 0, 0.2)[0]
    method = build_method("geometry_fusion", seed=0)
    row = fold_row(method, cohort, split, "consecutive")
    pairs = cohort.pairs("consecutive", split.test)
    again = score_pairs(method, pairs)          # the same fitted method, scored again
    expected = summarize([pair_counts(p, method.predict(p)) for p in pairs])
    for key, value in expected.items():
        assert again[key] == pytest.approx(value, nan_ok=True)
        assert row[key] == pytest.approx(value, nan_ok=True)
    assert again["seconds_per_pair"] == pytest.approx(again["predict_seconds"] / len(pairs))
    keys = list(row)        # the fold row's columns keep their order: fit, then predict time
    assert keys.index("predict_seconds") == keys.index("train_seconds") + 1
    assert keys.index("seconds_per_pair") == keys.index("train_seconds") + 2
