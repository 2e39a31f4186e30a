"""Expected calibration error, reliability curves, temperature scaling and match events."""

import math

import numpy as np
import pytest

from lngraph.io.cohort import NodeTable, Scan, ScanPair
from lngraph.io.matches import PairPrediction
from lngraph.metrics import (
    calibration_summary,
    expected_calibration_error,
    fit_scaling,
    fit_temperature,
    match_events,
    reliability_curve,
    temperature_scale,
)
from lngraph.metrics.calibration import N_BINS, bin_index, logit


def bernoulli(seed: int, n: int = 200_000):
    """Scores uniform on [0, 1] and labels drawn Bernoulli(score): calibrated by design."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=n)
    return p, (rng.uniform(size=n) < p).astype(float)


def test_a_perfectly_calibrated_score_has_an_ece_near_zero():
    p, y = bernoulli(0)
    assert expected_calibration_error(p, y) < 0.02


def test_an_over_confident_score_has_a_large_ece():
    p, y = bernoulli(1)
    sharp = temperature_scale(p, 1 / 3)          # logits tripled: over-confident
    assert expected_calibration_error(sharp, y) > 0.1
    assert expected_calibration_error(np.ones_like(p), y) == pytest.approx(1 - y.mean())


def test_the_temperature_fitted_on_over_confident_scores_exceeds_one_and_lowers_ece():
    p, y = bernoulli(2)
    sharp = temperature_scale(p, 1 / 3)
    t = fit_temperature(sharp, y)
    assert t > 1 and t == pytest.approx(3.0, rel=0.05)
    before = expected_calibration_error(sharp, y)
    after = expected_calibration_error(temperature_scale(sharp, t), y)
    assert after < 0.02 < before
    # under-confident scores get a temperature below 1
    assert fit_temperature(temperature_scale(p, 2.0), y) == pytest.approx(0.5, rel=0.05)


def test_temperature_and_bias_recover_a_shifted_score():
    p, y = bernoulli(3)
    shifted = temperature_scale(p, 0.5, -2.0)    # σ(2·logit(p) − 2): sharp and too low
    t, b = fit_scaling(shifted, y)
    assert t == pytest.approx(2.0, rel=0.05) and b == pytest.approx(1.0, abs=0.05)
    assert expected_calibration_error(temperature_scale(shifted, t, b), y) < 0.02
    # a temperature alone keeps 0.5 fixed and cannot undo the shift
    t_only = fit_temperature(shifted, y)
    assert expected_calibration_error(temperature_scale(shifted, t_only), y) > 0.05
    assert fit_scaling(shifted, y, bias=False) == (pytest.approx(t_only), 0.0)


def test_temperature_scaling_is_monotone_and_the_identity_at_one():
    p = np.array([0.0, 1e-9, 0.2, 0.5, 0.7, 1 - 1e-9, 1.0])
    np.testing.assert_array_equal(temperature_scale(p, 1.0), p)
    for t, b in ((0.3, 0.0), (4.0, 1.5), (1.0, -2.0)):
        q = temperature_scale(p, t, b)
        assert np.all(np.diff(q) >= 0) and np.all((q >= 0) & (q <= 1))
        assert temperature_scale(0.5, t, b) == pytest.approx(1 / (1 + math.exp(-b)))
    np.testing.assert_allclose(logit(temperature_scale(0.8, 2.0, 0.5)), logit(0.8) / 2 + 0.5)
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="temperature"):
            temperature_scale(p, bad)
    with pytest.raises(ValueError, match="bias"):
        temperature_scale(p, 1.0, math.nan)


def test_bins_are_equal_width_and_closed_on_the_right():
    edges = np.arange(N_BINS + 1) / N_BINS
    assert bin_index(np.array([0.0]))[0] == 0 and bin_index(np.array([1.0]))[0] == N_BINS - 1
    assert bin_index(edges[1:]).tolist() == list(range(N_BINS))      # b/B closes bin b
    assert bin_index(edges[1:-1] + 1e-9).tolist() == list(range(1, N_BINS))


def test_reliability_curve_and_ece_by_hand():
    # bin 1 (0.0–0.5): confidences 0.2, 0.4 with labels 0, 1; bin 2 (0.5–1.0): 0.9 ×3, 1 1 0
    c = [0.2, 0.4, 0.9, 0.9, 0.9]
    y = [0, 1, 1, 1, 0]
    curve = reliability_curve(c, y, bins=2)
    np.testing.assert_allclose(curve.edges, [0, 0.5, 1])
    np.testing.assert_allclose(curve.confidence, [0.3, 0.9])
    np.testing.assert_allclose(curve.accuracy, [0.5, 2 / 3])
    assert curve.count.tolist() == [2, 3] and curve.n == 5
    assert curve.ece == pytest.approx(2 / 5 * 0.2 + 3 / 5 * (0.9 - 2 / 3))
    empty = reliability_curve([], [])
    assert empty.n == 0 and math.isnan(empty.ece) and np.isnan(empty.confidence).all()
    assert curve.to_dict()["count"] == [2, 3]


def test_bad_events_are_refused():
    with pytest.raises(ValueError, match="labels"):
        reliability_curve([0.5], [1, 0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reliability_curve([1.5], [1])
    with pytest.raises(ValueError, match="0 or 1"):
        reliability_curve([0.5], [0.5])
    with pytest.raises(ValueError, match="all 3 are correct"):
        fit_temperature([0.2, 0.6, 0.9], [1, 1, 1])
    with pytest.raises(ValueError, match="all 2 are wrong"):
        fit_scaling([0.2, 0.6], [0, 0])
    with pytest.raises(ValueError, match="none"):
        fit_temperature([], [])
    with pytest.raises(ValueError, match="0.5"):
        fit_temperature([0.5, 0.5], [0, 1])


def test_summary_reports_before_and_after():
    p, y = bernoulli(4, 50_000)
    sharp = temperature_scale(p, 0.25)
    s = calibration_summary(sharp, y, 4.0)
    assert s["n"] == len(p) and s["n_correct"] == int(y.sum())
    assert s["ece"] < 0.02 < s["ece_raw"] and s["nll"] < s["nll_raw"]
    assert s["ece_raw"] == pytest.approx(expected_calibration_error(sharp, y))
    assert sum(s["reliability"]["count"]) == len(p)


def _scan(scan_id, tracks):
    n = len(tracks)
    return Scan("P", scan_id, scan_id, None, NodeTable.from_arrays(
        np.zeros((n, 3)), np.full(n, 8.0), track_id=np.array(tracks, object)))


def test_match_events_label_each_scored_match_between_known_tracks():
    pair = ScanPair(_scan("a", ["A", "B", None, "C"]), _scan("b", ["B", "A", "X", "C"]))
    pred = PairPrediction(4, 4, [[0, 1], [1, 2], [2, 0], [3, 3]], [0.9, 0.4, 0.8, math.nan])
    scores, labels = match_events([(pair, pred)])
    # (0, 1) A–A right; (1, 2) B–X wrong; (2, 0) unknown track: left out; (3, 3): no score
    np.testing.assert_allclose(scores, [0.9, 0.4])
    np.testing.assert_array_equal(labels, [1.0, 0.0])
    clipped, _ = match_events([(pair, PairPrediction(4, 4, [[0, 1]], [1.7]))])
    assert clipped.tolist() == [1.0]
    with pytest.raises(ValueError, match="3 x 4"):
        match_events([(pair, PairPrediction(3, 4))])


def test_reliability_figure_is_written(tmp_path):
    from lngraph.viz import reliability_figure
    from lngraph.viz.reliability import curve_arrays, curve_ece

    p, y = bernoulli(5, 5000)
    sharp = temperature_scale(p, 0.3)
    raw = reliability_curve(sharp, y)
    as_json = {k: [None if isinstance(v, float) and math.isnan(v) else v for v in values]
               for k, values in reliability_curve(p, y).to_dict().items()}
    path = reliability_figure({"raw": raw, "calibrated": as_json}, tmp_path / "f" / "r.png",
                              title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert curve_ece(curve_arrays(raw)) == pytest.approx(raw.ece)
    with pytest.raises(ValueError, match="at least one"):
        reliability_figure({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="share their bins"):
        reliability_figure({"a": raw, "b": reliability_curve(p, y, bins=5)}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
