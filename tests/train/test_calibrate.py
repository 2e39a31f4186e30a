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
#: The same with the old fused asymmetric matcher, whose fusion weights are calibrated.
ASYMMETRIC = GEOMETRY.with_values({"model.architecture": "asymmetric",
                                   "model.seag_learn_q": False})
#: Architecture → geometry-only config.
CONFIGS = {"graph": GEOMETRY, "asymmetric": ASYMMETRIC}


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
    # the graph matcher has no SCB head: its assignment probability decides
    assert decision_key(preset("lite").with_values({"model.use_scb": True})) == \
        "model.similarity_threshold"


@pytest.fixture(scope="module")
def fits(geometry_cohort, tmp_path_factory):
    """``fits(architecture)``: a matcher of that architecture fitted with threshold calibration
    (once per module), and its validation patients."""
    done = {}

    def fit(architecture: str):
        if architecture not in done:
            patients = geometry_cohort.patients
            config = CONFIGS[architecture].updated(
                protocol={"calibrate_threshold": True, "calibrate_fusion": False})
            result = fit_matcher(geometry_cohort, config, train_patients=patients[:16],
                                 val_patients=patients[16:20],
                                 out_dir=tmp_path_factory.mktemp(f"cal-{architecture}"),
                                 max_epochs=4, seed=0, progress=False)
            done[architecture] = result, patients[16:20]
        return done[architecture]

    return fit


@pytest.fixture(params=sorted(CONFIGS))
def fitted(request, fits):
    return fits(request.param)


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


def test_fit_fusion_refits_the_weights_on_held_out_pairs(fits, geometry_cohort):
    from lngraph.train.calibrate import fit_fusion

    result, val = fits("asymmetric")
    model, config, _ = load_checkpoint(result.checkpoint)
    assert config.model.fuses_scores
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
    graph, graph_config, _ = load_checkpoint(fits("graph")[0].checkpoint)
    with pytest.raises(ValueError, match="asymmetric architecture"):
        fit_fusion(graph, graph_config, pairs)


def test_fit_with_fusion_calibration_stores_the_weights(geometry_cohort, tmp_path):
    patients = geometry_cohort.patients
    config = ASYMMETRIC.with_values({"protocol.calibrate_fusion": True,
                                     "model.size_prior": True})
    result = fit_matcher(geometry_cohort, config, train_patients=patients[:8],
                         val_patients=patients[16:20], out_dir=tmp_path, max_epochs=1, seed=0,
                         progress=False)
    model, _, extra = load_checkpoint(result.checkpoint)
    assert set(extra["fusion"]) == {"seag", "encoder", "distance", "size", "bias"}
    np.testing.assert_allclose(model.fusion_bias.item(), extra["fusion"]["bias"], rtol=1e-6)


def test_the_graph_matcher_has_no_fusion_to_calibrate(geometry_cohort, tmp_path):
    patients = geometry_cohort.patients
    config = GEOMETRY.with_values({"protocol.calibrate_fusion": True})
    assert not config.model.fuses_scores
    result = fit_matcher(geometry_cohort, config, train_patients=patients[:8],
                         val_patients=patients[16:20], out_dir=tmp_path, max_epochs=1, seed=0,
                         progress=False)
    _, _, extra = load_checkpoint(result.checkpoint)
    assert extra["fusion"] is None and "fusion" not in result.calibration_skipped


def test_validation_scores_each_epoch_as_calibrated_and_fit_reproduces_the_best(
        geometry_cohort, tmp_path):
    import pandas as pd

    patients = geometry_cohort.patients
    config = ASYMMETRIC.updated(protocol={"calibrate_fusion": True, "calibrate_threshold": True})
    result = fit_matcher(geometry_cohort, config, train_patients=patients[:16],
                         val_patients=patients[16:20], out_dir=tmp_path, max_epochs=3, seed=0,
                         progress=False)
    log = pd.read_csv(result.log_dir / "metrics.csv").dropna(subset=["val_score"])
    assert len(log) == 3
    best = log["val_score"].max()
    # The checkpoint's fusion and threshold are fitted the same way after training.
    assert result.val_metrics["score"] == pytest.approx(best, abs=1e-6)
    assert log["val_score"].iloc[result.best_epoch] == pytest.approx(best)


# too few or one-sided validation pairs --------------------------------------------------------
def _pair(src_tracks, dst_tracks, patient="V"):
    """A scan pair whose nodes carry the given track ids (positions are irrelevant here)."""
    from lngraph.io.cohort import NodeTable, Scan, ScanPair

    def scan(name, tracks):
        pos = np.arange(3 * len(tracks), dtype=float).reshape(-1, 3)
        return Scan(patient, f"{patient}{name}", name, None, NodeTable.from_arrays(
            pos, np.full(len(tracks), 8.0), track_id=np.array(tracks, object)))

    return ScanPair(scan("a", src_tracks), scan("b", dst_tracks))


def test_fusion_and_threshold_problems_name_what_the_pairs_lack():
    from lngraph.train.calibrate import fusion_problem, threshold_problem

    both = _pair(["a", "b", "c"], ["a", "b", "d"])      # matches, one gone, one new
    assert fusion_problem([both]) is None and threshold_problem([both]) is None
    assert fusion_problem([]) == threshold_problem([]) == "no validation scan pair"
    single = _pair(["a"], ["a"])                        # one node, matched
    assert "no unmatched node pair" in fusion_problem([single])
    assert "no new or disappeared node" in threshold_problem([single])
    persist = _pair(["a", "b"], ["b", "a"])             # every node persists
    assert fusion_problem([persist]) is None           # wrong pairs are unmatched node pairs
    assert "no new or disappeared node" in threshold_problem([persist])
    unrelated = _pair(["a", "b"], ["c"], patient="W")   # nothing matched
    assert "no matched node pair" in fusion_problem([unrelated])
    assert "(patients W)" in fusion_problem([unrelated])
    assert "no matched node" in threshold_problem([unrelated])
    assert "no node pair" in fusion_problem([_pair([], ["a"])])
    assert fusion_problem([single, unrelated]) is None   # pooled over the pairs
    assert threshold_problem([single, unrelated]) is None


def test_fit_logistic_refuses_one_class_and_no_data():
    import torch

    from lngraph.train.calibrate import fit_logistic

    ones = [(torch.zeros(2, 2, 3), torch.ones(2, 2))]
    with pytest.raises(ValueError, match="needs matched and unmatched node pairs"):
        fit_logistic(ones, torch.zeros(3), 0.0)
    with pytest.raises(ValueError, match="got no node pair"):
        fit_logistic([], torch.zeros(3), 0.0)


@pytest.fixture(scope="module")
def three_patients(tmp_path_factory):
    """``lngraph synth`` with 3 patients (geometry only): the validation patient P0003 has
    single-node scans whose node persists — too one-sided for either calibration."""
    from lngraph.io.cohort import read_cohort
    from lngraph.synth import generate_cohort

    root = generate_cohort(tmp_path_factory.mktemp("synth3"), 3, 0, images=False,
                           progress=False)
    cohort = read_cohort(root)
    assert [(len(p.src.nodes), len(p.dst.nodes)) for p in cohort.pairs(patients=["P0003"])] \
        == [(1, 1), (1, 1)]
    return cohort


def test_one_sided_validation_keeps_the_defaults_with_a_warning(three_patients, tmp_path):
    import torch

    from lngraph.train.calibrate import CalibrationWarning
    from lngraph.train.fit import _best_state

    config = ASYMMETRIC.updated(protocol={"calibrate_threshold": True,
                                          "calibrate_fusion": True},
                                model={"similarity_threshold": 0.35})
    with pytest.warns(CalibrationWarning) as record:
        result = fit_matcher(three_patients, config, train_patients=["P0001", "P0002"],
                             val_patients=["P0003"], out_dir=tmp_path, max_epochs=2, seed=0,
                             progress=False)
    (warning,) = [w for w in record if w.category is CalibrationWarning]
    text = str(warning.message)
    assert "fusion weights not calibrated (no unmatched node pair" in text
    assert "the trained fusion weights are kept" in text
    assert "decision threshold not calibrated (no new or disappeared node" in text
    assert "model.similarity_threshold = 0.35 is kept" in text
    # every assigned pair is right: no temperature is best
    assert "confidence not calibrated (score calibration needs correct and wrong matches" in text
    assert "model.score_temperature = 1 and model.score_bias = 0 are kept" in text
    assert result.validated and result.val_metrics["n_pairs"] == 2
    assert set(result.calibration_skipped) == {"fusion", "threshold", "confidence"}
    model, loaded, extra = load_checkpoint(result.checkpoint)
    assert extra["validated"] is True
    assert extra["calibration_skipped"] == result.calibration_skipped
    assert extra["fusion"] is None and extra["calibration"] is None
    assert extra["confidence"] is None
    assert loaded.model.similarity_threshold == 0.35
    assert (loaded.model.score_temperature, loaded.model.score_bias) == (1.0, 0.0)
    trained = _best_state(str(tmp_path / "lightning" / "best.ckpt"))
    assert torch.equal(model.fusion_weight, trained["fusion_weight"])
    assert torch.equal(model.fusion_bias, trained["fusion_bias"])


@pytest.mark.parametrize("architecture", sorted(CONFIGS))
def test_validation_patients_without_a_pair_train_without_validation(three_patients, tmp_path,
                                                                      architecture):
    from lngraph.io.cohort import Cohort
    from lngraph.train.calibrate import CalibrationWarning

    # P0003 keeps only its first scan: a validation patient without a scan pair
    scans = [s for s in three_patients.scans.values()
             if s.patient_id != "P0003" or s.timepoint == three_patients.scans_of("P0003")[0]
             .timepoint]
    cohort = Cohort(scans)
    with pytest.warns(CalibrationWarning, match=r"validation skipped: no validation pair: the 1 "
                                                r"validation patient\(s\) \(P0003\) have one "
                                                r"scan each; training runs 2 epoch\(s\)"):
        result = fit_matcher(cohort, CONFIGS[architecture], train_patients=["P0001", "P0002"],
                             val_patients=["P0003"], out_dir=tmp_path, max_epochs=2,
                             progress=False)
    assert not result.validated and result.val_metrics == {} and result.epochs == 2
    _, _, extra = load_checkpoint(result.checkpoint)
    assert extra["validated"] is False and extra["val_metrics"] == {}
    # only the asymmetric matcher has fusion weights to calibrate
    assert set(result.calibration_skipped) == (
        {"fusion", "threshold", "confidence"} if architecture == "asymmetric"
        else {"threshold", "confidence"})
    assert extra["calibration_skipped"] == result.calibration_skipped
    assert result.calibration_skipped["threshold"].startswith("no validation pair: ")


def test_fit_stores_the_confidence_map_fitted_on_validation(fitted, geometry_cohort):
    from lngraph.metrics import calibration_summary, match_events, temperature_scale
    from lngraph.train.calibrate import fit_confidence

    result, val = fitted
    model, config, extra = load_checkpoint(result.checkpoint)
    conf = extra["confidence"]
    assert "confidence" not in result.calibration_skipped
    assert (config.model.score_temperature, config.model.score_bias) == \
        (conf["temperature"], conf["bias"]) != (1.0, 0.0)
    # maximum likelihood on the validation assigned pairs: the NLL falls, and so does the ECE
    assert conf["nll"] < conf["nll_raw"] and conf["ece"] < conf["ece_raw"]
    assert conf["threshold_confidence"] == pytest.approx(float(temperature_scale(
        config.model.similarity_threshold, conf["temperature"], conf["bias"])))
    pairs = geometry_cohort.pairs(patients=val)
    raw = predict_pairs(model, pairs, threshold=0.0, calibrated=False)
    scores, labels = match_events(zip(pairs, raw, strict=True))
    assert calibration_summary(scores, labels, conf["temperature"], conf["bias"])["ece"] == \
        pytest.approx(conf["ece"])
    again = fit_confidence(model, config, pairs)        # deterministic: the same map
    assert (again.temperature, again.bias) == pytest.approx((conf["temperature"], conf["bias"]))
    # the decisions are those of the raw scores at the calibrated threshold; the scores mapped
    kept = predict_pairs(model, pairs)
    for k, r in zip(kept, threshold_predictions(raw, config.model.similarity_threshold),
                    strict=True):
        np.testing.assert_array_equal(k.matches, r.matches)
        np.testing.assert_allclose(k.scores, temperature_scale(r.scores, conf["temperature"],
                                                               conf["bias"]), rtol=1e-9)
        assert (k.scores >= conf["threshold_confidence"] - 1e-12).all()


def test_recalibrating_a_checkpoint_chooses_the_threshold_again(fits, geometry_cohort, tmp_path):
    from lngraph.io.errors import InputError
    from lngraph.models import save_checkpoint
    from lngraph.train import recalibrate_checkpoint

    result, val = fits("graph")
    model, config, extra = load_checkpoint(result.checkpoint)
    chosen = config.model.similarity_threshold
    moved = tmp_path / "moved.ckpt"        # the same weights with another threshold
    save_checkpoint(moved, model, config.with_values({"model.similarity_threshold": 0.99}),
                    extra)
    out = recalibrate_checkpoint(moved, tmp_path / "again.ckpt", cohort=geometry_cohort)
    assert out.config.model.similarity_threshold == chosen
    _, again, again_extra = load_checkpoint(tmp_path / "again.ckpt")
    assert again.model.similarity_threshold == chosen
    assert again_extra["recalibrated"] == {"threshold_before": 0.99, "threshold": chosen}
    assert again_extra["calibration"]["threshold"] == chosen
    assert again_extra["val_patients"] == list(val)
    with pytest.raises(InputError, match="training cohort /nowhere is not there"):
        recalibrate_checkpoint(moved, cohort="/nowhere")
