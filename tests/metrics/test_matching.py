"""docs/design.md, *Metrics* metrics on hand-made pairs with exact expected values."""

import json
import math

import numpy as np
import pytest

from lngraph.io.cohort import Cohort, NodeTable, Scan, ScanPair
from lngraph.io.matches import PairPrediction
from lngraph.metrics import (
    evaluate_predictions,
    mean_std_over_folds,
    pair_counts,
    summarize,
    write_metrics_json,
)

NAN_KEYS = ("precision", "recall", "f1", "nlr", "dlr", "new_precision", "disappeared_precision",
            "cpm_radius", "cpm_10mm", "med_mm", "med_std_mm")


def _scan(scan_id, tracks, pos=None, radius=5.0, patient="P", timepoint="1"):
    n = len(tracks)
    pos = np.zeros((n, 3)) if pos is None else np.asarray(pos, float).reshape(n, 3)
    long_axis = np.broadcast_to(2.0 * np.asarray(radius, float), (n,))
    nodes = NodeTable.from_arrays(pos, np.full(n, 1.0), long_axis,
                                  node_id=[f"{scan_id}_{k}" for k in range(n)], track_id=tracks)
    return Scan(patient, scan_id, timepoint, None, nodes)


def _pair(src_tracks, dst_tracks, **dst_kwargs):
    return ScanPair(_scan("a", src_tracks), _scan("b", dst_tracks, timepoint="2", **dst_kwargs))


def _metrics(pair, matches=(), points=None):
    pred = PairPrediction(len(pair.src.nodes), len(pair.dst.nodes), list(matches), points=points)
    return summarize([pair_counts(pair, pred)])


def _assert_metrics(got, expected):
    for key, value in expected.items():
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(got[key]), key
        else:
            assert got[key] == pytest.approx(value, abs=1e-12), key


def test_all_matched():
    pair = _pair(["A", "B", "C"], ["A", "B", "C"])
    got = _metrics(pair, [[0, 0], [1, 1], [2, 2]])
    _assert_metrics(got, dict(precision=1.0, recall=1.0, f1=1.0, nlr=math.nan, dlr=math.nan,
                              new_precision=math.nan, disappeared_precision=math.nan,
                              cpm_radius=1.0, cpm_10mm=1.0, med_mm=0.0, med_std_mm=0.0,
                              n_pairs=1, n_gt_matches=3, n_cpm_missed=0, n_cpm_located=3))


def test_all_new():
    got = _metrics(_pair([], ["A", "B", "C"]))
    _assert_metrics(got, dict(precision=math.nan, recall=math.nan, f1=math.nan, nlr=1.0,
                              new_precision=1.0, dlr=math.nan, disappeared_precision=math.nan,
                              cpm_radius=math.nan, cpm_10mm=math.nan, med_mm=math.nan,
                              n_gt_new=3, n_pred_new=3, n_correct_new=3, n_gt_matches=0,
                              n_cpm_missed=0))


def test_all_disappeared():
    got = _metrics(_pair(["A", "B"], []))
    _assert_metrics(got, dict(dlr=1.0, disappeared_precision=1.0, nlr=math.nan,
                              new_precision=math.nan, precision=math.nan, recall=math.nan,
                              n_gt_disappeared=2, n_pred_disappeared=2))


def test_everything_unmatched_is_not_rewarded():
    got = _metrics(_pair(["A", "B"], ["A", "B"]))
    _assert_metrics(got, dict(precision=math.nan, recall=0.0, f1=0.0, dlr=math.nan, nlr=math.nan,
                              disappeared_precision=0.0, new_precision=0.0, cpm_radius=0.0,
                              cpm_10mm=0.0, med_mm=math.nan, n_cpm_missed=2, n_cpm_located=0))


def test_unequal_sizes():
    pair = _pair(["A", "B", "C", "D"], ["B", "A", "E"])
    got = _metrics(pair, [[0, 1], [1, 2], [2, 0]])
    _assert_metrics(got, dict(precision=1 / 3, recall=1 / 2, f1=0.4, dlr=1 / 2,
                              disappeared_precision=1.0, nlr=0.0, new_precision=math.nan,
                              n_pred_matches=3, n_correct_matches=1, n_gt_matches=2,
                              n_gt_disappeared=2, n_pred_disappeared=1, n_correct_disappeared=1,
                              n_gt_new=1, n_pred_new=0, n_cpm_missed=0))


def test_empty_scans():
    got = _metrics(_pair([], []))
    for key in NAN_KEYS:
        assert math.isnan(got[key]), key
    assert got["n_pairs"] == 1 and got["n_gt_matches"] == 0 and got["n_cpm_missed"] == 0
    assert summarize([])["n_pairs"] == 0 and math.isnan(summarize([])["recall"])


def test_swap_of_two_matches_with_centre_points():
    dst_pos = [[0, 0, 0], [6, 0, 0], [50, 0, 0]]
    pair = _pair(["A", "B", "C"], ["A", "B", "C"], pos=dst_pos, radius=5.0)
    got = _metrics(pair, [[0, 1], [1, 0], [2, 2]])
    # A and B are placed at each other's centre: d = 6 > r = 5; C is exact.
    _assert_metrics(got, dict(precision=1 / 3, recall=1 / 3, f1=1 / 3, cpm_radius=1 / 3,
                              cpm_10mm=1 / 3, med_mm=4.0, med_std_mm=math.sqrt(8.0),
                              n_correct_matches=1, n_cpm_missed=0))


def test_tracker_points_radius_vs_10mm():
    dst_pos = [[0, 0, 0], [100, 0, 0], [200, 0, 0], [300, 0, 0]]
    pair = _pair(["A", "B", "C", "D"], ["A", "B", "C", "D"], pos=dst_pos,
                 radius=[12.0, 4.0, 5.0, 6.0])
    points = [[11, 0, 0],        # d = 11 < r = 12, but > min(12, 10)
              [104, 0, 0],       # d = 4 = r: not < r, but <= min(4, 10)
              [200, 3, 0],       # d = 3: both
              [np.nan] * 3]      # no point and no partner: a miss
    got = _metrics(pair, [], points=points)
    _assert_metrics(got, dict(cpm_radius=2 / 4, cpm_10mm=2 / 4, med_mm=6.0,
                              med_std_mm=math.sqrt(38 / 3), n_cpm_missed=1, n_cpm_located=3))


def test_points_override_partner_and_nan_point_falls_back():
    pair = _pair(["A", "B"], ["A", "B"], pos=[[0, 0, 0], [30, 0, 0]], radius=5.0)
    points = [[0, 0, 2], [np.nan] * 3]
    got = _metrics(pair, [[0, 1], [1, 0]], points=points)
    # A: the point (d = 2) wins over its wrong partner; B: no point, partner A's centre, d = 30.
    _assert_metrics(got, dict(cpm_radius=1 / 2, med_mm=16.0, precision=0.0, n_cpm_missed=0))


def test_pooled_not_averaged():
    good = _pair(["A"], ["A"])
    bad = ScanPair(_scan("c", ["A", "B", "C"]), _scan("d", ["B", "C", "A"], timepoint="2"))
    counts = [pair_counts(good, PairPrediction(1, 1, [[0, 0]])),
              pair_counts(bad, PairPrediction(3, 3, [[0, 0], [1, 1], [2, 2]]))]
    got = summarize(counts)
    assert got["precision"] == pytest.approx(1 / 4)  # micro; the macro mean would be 1/2
    assert got["n_pairs"] == 2 and got["n_gt_matches"] == 4


def test_untracked_nodes_are_not_judged():
    pair = _pair(["A", None, "C"], ["A", "B", None])
    got = _metrics(pair, [[0, 0], [1, 1]])
    _assert_metrics(got, dict(n_pred_matches=1, n_correct_matches=1, n_gt_matches=1,
                              n_pred_disappeared=1, n_gt_disappeared=1, n_pred_new=0,
                              n_gt_new=1, precision=1.0, dlr=1.0, nlr=0.0))


def test_prediction_of_wrong_size():
    with pytest.raises(ValueError, match="2 x 2 nodes but pair a -> b has 1 x 1"):
        pair_counts(_pair(["A"], ["A"]), PairPrediction(2, 2))


def test_mean_std_over_folds():
    folds = [dict(precision=0.5, n_pairs=2, name="x", ok=True),
             dict(precision=1.0, n_pairs=4, name="y", ok=True),
             dict(precision=math.nan, n_pairs=6, name="z", ok=False)]
    got = mean_std_over_folds(folds)
    assert set(got) == {"precision", "n_pairs"}
    # sample standard deviation (ddof=1); the NaN fold is left out of "precision"
    assert got["precision"] == pytest.approx((0.75, math.sqrt(0.125)))
    assert got["n_pairs"] == pytest.approx((4.0, 2.0))
    nan_mean, nan_std = mean_std_over_folds([{"recall": math.nan}])["recall"]
    assert math.isnan(nan_mean) and math.isnan(nan_std)
    assert mean_std_over_folds([]) == {}


def test_mean_std_over_folds_is_the_sample_standard_deviation():
    # values 1, 2, 3: mean 2, squared deviations 1 + 0 + 1 = 2, over n - 1 = 2 → std 1.0
    # (the population std would be sqrt(2/3) ≈ 0.816)
    got = mean_std_over_folds([{"f1": 1.0}, {"f1": 2.0}, {"f1": 3}])["f1"]
    assert got == (2.0, 1.0)


def test_mean_std_over_one_fold_has_no_spread():
    mean, std = mean_std_over_folds([{"f1": 0.5}, {"f1": math.nan}])["f1"]
    assert mean == 0.5 and math.isnan(std)


@pytest.fixture
def cohort():
    return Cohort([_scan("s1", ["A", "B"]), _scan("s2", ["A", "C"], timepoint="2"),
                   _scan("s3", [], timepoint="3"), _scan("e1", [], patient="E"),
                   _scan("e2", [], patient="E", timepoint="2"), _scan("q1", ["A"], patient="Q")])


def test_evaluate_predictions(cohort):
    preds = {("s1", "s2"): PairPrediction(2, 2, [[0, 0]])}
    got = evaluate_predictions(cohort, preds)
    assert got["n_pairs"] == 1 and got["precision"] == 1.0 and got["dlr"] == 1.0
    # Asked for every consecutive pair: the empty E pair is scored without a prediction.
    with pytest.raises(ValueError, match="no prediction for pair s2 -> s3"):
        evaluate_predictions(cohort, preds, cohort.pairs())
    preds[("s2", "s3")] = PairPrediction(2, 0)
    got = evaluate_predictions(cohort, preds, cohort.pairs())
    assert got["n_pairs"] == 3 and got["n_gt_disappeared"] == 3
    with pytest.raises(ValueError, match="s1 -> s3 is not among the pairs to score"):
        evaluate_predictions(cohort, {("s1", "s3"): PairPrediction(2, 0)}, cohort.pairs())


@pytest.mark.parametrize("key", [("s2", "s1"), ("s1", "q1"), ("s1", "zz")])
def test_evaluate_rejects_pairs_not_in_cohort(cohort, key):
    with pytest.raises(ValueError, match=f"{key[0]} -> {key[1]} is not a scan pair of the cohort"):
        evaluate_predictions(cohort, {key: PairPrediction(2, 2)})


def test_write_metrics_json(tmp_path):
    metrics = {**_metrics(_pair(["A"], [])), "folds": {"f1": (0.5, np.float32(0.25))},
               "count": np.int64(3)}
    path = write_metrics_json(tmp_path / "m" / "metrics.json", metrics)
    text = path.read_text(encoding="utf-8")
    assert "NaN" not in text
    loaded = json.loads(text)
    assert loaded["precision"] is None and loaded["dlr"] == 1.0 and loaded["n_pairs"] == 1
    assert loaded["folds"] == {"f1": [0.5, 0.25]} and loaded["count"] == 3
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]
