"""Choosing the decision threshold on validation pairs."""

import numpy as np
import pytest

from lngraph.io.matches import PairPrediction
from lngraph.metrics import evaluate_predictions
from lngraph.models import load_checkpoint, matcher_graphs, predict_pairs, preset
from lngraph.train import calibrate_threshold, fit_matcher
from lngraph.train.calibrate import decision_key, threshold_predictions
from lngraph.train.module import selection_score

GEOMETRY = preset("lite").with_values({"model.geometry_only": True, "optim.batch_size": 4,
                                        "optim.lr": 3e-3, "optim.patience": 20})


def test_threshold_predictions_keep_pairs_at_or_above_the_threshold():
    p = PairPrediction(3, 3, np.array([[0, 2], [1, 0], [2, 1]]), np.array([0.2, 0.5, 0.9]))
    kept = threshold_predictions([p], 0.5)[0]
    np.testing.assert_array_equal(kept.matches, [[1, 0], [2, 1]])
    np.testing.assert_array_equal(kept.scores, [0.5, 0.9])
    assert (kept.n_src, kept.n_dst) == (3, 3)
    assert len(threshold_predictions([p], 0.95)[0].matches) == 0


def test_decision_key_follows_scb():
    assert decision_key(preset("lite")) == "model.similarity_threshold"
    assert decision_key(preset("paper")) == "model.scb_threshold"
    assert decision_key(preset("paper").with_values({"model.geometry_only": True})) == \
        "model.similarity_threshold"


@pytest.fixture(scope="module")
def fitted(geometry_cohort, tmp_path_factory):
    patients = geometry_cohort.patients
    config = GEOMETRY.updated(protocol={"calibrate_threshold": True, "calibrate_fusion": False})
    result = fit_matcher(geometry_cohort, config, train_patients=patients[:16],
                         val_patients=patients[16:20], out_dir=tmp_path_factory.mktemp("cal"),
                         max_epochs=4, seed=0, progress=False)
    return result, patients[16:20]


def test_calibration_picks_the_best_validation_threshold_and_stores_it(fitted, geometry_cohort):
    result, val = fitted
    model, config, extra = load_checkpoint(result.checkpoint)
    cal = extra["calibration"]
    assert cal["key"] == "model.similarity_threshold"
    assert config.model.similarity_threshold == cal["threshold"]
    assert cal["scores"][f"{cal['threshold']:g}"] == pytest.approx(max(cal["scores"].values()))
    # The stored validation metrics are those of the calibrated checkpoint.
    pairs = geometry_cohort.pairs(patients=val)
    again = evaluate_predictions(geometry_cohort, {
        (p.src.scan_id, p.dst.scan_id): q
        for p, q in zip(pairs, predict_pairs(model, pairs), strict=True)}, pairs)
    assert selection_score(again) == pytest.approx(result.val_metrics["score"])
    assert result.val_metrics["score"] == pytest.approx(max(cal["scores"].values()))


def test_calibration_agrees_with_predicting_at_each_threshold(fitted, geometry_cohort):
    result, val = fitted
    model, config, _ = load_checkpoint(result.checkpoint)
    pairs = geometry_cohort.pairs(patients=val)
    cal = calibrate_threshold(model, config, geometry_cohort, pairs, grid=(0.3, 0.6))
    for theta in (0.3, 0.6):
        direct = predict_pairs(model, pairs, threshold=theta)
        m = evaluate_predictions(geometry_cohort, {
            (p.src.scan_id, p.dst.scan_id): q for p, q in zip(pairs, direct, strict=True)}, pairs)
        assert cal.scores[theta] == pytest.approx(selection_score(m))
    with pytest.raises(ValueError, match="validation pairs"):
        calibrate_threshold(model, config, geometry_cohort, [], grid=(0.5,))


def _validation_bce(model, config, pairs):
    """Class-balanced BCE of the matching score, pooled over every node pair of ``pairs``."""
    import torch

    from lngraph.nn.losses import class_balanced_bce

    logits, targets = [], []
    with torch.no_grad():
        for graph in matcher_graphs(pairs, config):
            out = model.eval()(graph)
            logits.append(out.match_logits[out.pair_mask])
            targets.append(model.match_targets(graph, out)[out.pair_mask])
    return float(class_balanced_bce(torch.cat(logits), torch.cat(targets), logits=True))


def test_fit_fusion_refits_the_weights_on_held_out_pairs(fitted, geometry_cohort):
    from lngraph.train.calibrate import fit_fusion

    result, val = fitted
    model, config, _ = load_checkpoint(result.checkpoint)
    pairs = geometry_cohort.pairs(patients=val)
    before = _validation_bce(model, config, pairs)
    weights = fit_fusion(model, config, pairs)
    assert list(weights) == [*model.fusion_terms, "bias"]
    np.testing.assert_allclose([weights[t] for t in model.fusion_terms],
                               model.fusion_weight.detach().numpy(), rtol=1e-6)
    assert weights["distance"] < 0     # farther apart, less likely the same node
    assert _validation_bce(model, config, pairs) < before
    with pytest.raises(ValueError, match="position_prior"):
        fit_fusion(model, config.with_values({"model.position_prior": False}), pairs)


def test_fit_with_fusion_calibration_stores_the_weights(geometry_cohort, tmp_path):
    patients = geometry_cohort.patients
    config = GEOMETRY.with_values({"protocol.calibrate_fusion": True, "model.size_prior": True})
    result = fit_matcher(geometry_cohort, config, train_patients=patients[:8],
                         val_patients=patients[16:20], out_dir=tmp_path, max_epochs=1, seed=0,
                         progress=False)
    model, _, extra = load_checkpoint(result.checkpoint)
    assert set(extra["fusion"]) == {"seag", "encoder", "distance", "size", "bias"}
    np.testing.assert_allclose(model.fusion_bias.item(), extra["fusion"]["bias"], rtol=1e-6)


def test_validation_scores_each_epoch_as_calibrated_and_fit_reproduces_the_best(
        geometry_cohort, tmp_path):
    import pandas as pd

    patients = geometry_cohort.patients
    config = GEOMETRY.updated(protocol={"calibrate_fusion": True, "calibrate_threshold": True})
    result = fit_matcher(geometry_cohort, config, train_patients=patients[:16],
                         val_patients=patients[16:20], out_dir=tmp_path, max_epochs=3, seed=0,
                         progress=False)
    log = pd.read_csv(result.log_dir / "metrics.csv").dropna(subset=["val_score"])
    assert len(log) == 3
    best = log["val_score"].max()
    # The checkpoint's fusion and threshold are fitted the same way after training.
    assert result.val_metrics["score"] == pytest.approx(best, abs=1e-6)
    assert log["val_score"].iloc[result.best_epoch] == pytest.approx(best)
