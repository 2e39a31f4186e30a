import numpy as np
import pytest

from lngraph.baselines import REGISTRY, GeometryFusion
from lngraph.baselines.geometry_fusion import (
    FEATURES,
    GATE_MM,
    THRESHOLDS,
    fit_balanced_logistic,
    pair_features,
)
from lngraph.data.folds import holdout_split
from lngraph.io.cohort import Cohort, NodeTable, Scan, ScanPair
from lngraph.io.matches import PairPrediction

FAR = (400.0, 400.0, 400.0)


def _patient(p: int, rng: np.random.Generator, shift=None) -> list[Scan]:
    """Two scans: the later one is the earlier translated by a known shift (plus 1 mm jitter
    and up to ±5 % size change); node 0 disappears and a new node appears far away."""
    n = int(rng.integers(6, 10))
    pos = rng.uniform(-80, 80, (n, 3))
    short = rng.uniform(6, 18, n)
    long_ = short * rng.uniform(1.0, 1.6, n)
    tracks = np.array([f"P{p}-{k}" for k in range(n)], object)
    shift = rng.uniform(-25, 25, 3) if shift is None else np.asarray(shift, float)
    later = pos[1:] + shift + rng.normal(0, 1.0, (n - 1, 3))
    growth = np.exp(rng.uniform(-0.05, 0.05, n - 1))
    later_nodes = NodeTable.from_arrays(
        np.concatenate([later, np.asarray([FAR]) + shift]),
        np.append(short[1:] * growth, 12.0), np.append(long_[1:] * growth, 14.0),
        track_id=np.append(tracks[1:], f"P{p}-new"))
    order = rng.permutation(len(later_nodes))
    return [Scan(f"P{p}", f"P{p}_a", "1", None, NodeTable.from_arrays(pos, short, long_,
                                                                   track_id=tracks)),
            Scan(f"P{p}", f"P{p}_b", "2", None, later_nodes.take(order))]


def _cohort(patients: int, seed: int) -> Cohort:
    rng = np.random.default_rng(seed)
    return Cohort([s for p in range(patients) for s in _patient(p, rng)])


@pytest.fixture(scope="module")
def fitted() -> GeometryFusion:
    return GeometryFusion(seed=0).fit(_cohort(8, seed=1))


@pytest.fixture(scope="module")
def test_pair() -> ScanPair:
    scans = _patient(99, np.random.default_rng(7), shift=(18.0, -12.0, 6.0))
    return ScanPair(scans[0], scans[1])


def _matched_tracks(pair: ScanPair, pred: PairPrediction) -> set[tuple[str, str]]:
    return {(pair.src.nodes.track_id[i], pair.dst.nodes.track_id[j]) for i, j in pred.matches}


def test_registered_as_a_geometric_learned_method():
    assert REGISTRY["geometry_fusion"] is GeometryFusion
    assert not GeometryFusion.needs_images
    assert GeometryFusion.learned and GeometryFusion.seeded
    assert GeometryFusion.epochs_option is None
    assert GeometryFusion.build(seed=3).seed == 3


def test_known_translation_is_matched_perfectly_and_the_far_node_left_new(fitted, test_pair):
    pred = fitted.predict(test_pair)
    assert isinstance(pred, PairPrediction)
    assert (pred.n_src, pred.n_dst) == (len(test_pair.src.nodes), len(test_pair.dst.nodes))
    src_tracks = test_pair.src.nodes.track_id
    expected = {(t, t) for t in src_tracks[1:]}
    assert _matched_tracks(test_pair, pred) == expected
    new = test_pair.dst.nodes.track_id[pred.new]
    assert list(new) == ["P99-new"]
    assert list(src_tracks[pred.disappeared]) == ["P99-0"]
    assert ((pred.scores >= fitted.threshold) & (pred.scores <= 1)).all()


def test_aligned_distance_is_small_for_partners(test_pair):
    x = pair_features(test_pair)
    assert x.shape == (len(test_pair.src.nodes), len(test_pair.dst.nodes), 2)
    gt = test_pair.gt_matches()
    assert (x[gt[:, 0], gt[:, 1], 0] < 0.5).all()   # < 7.5 mm after alignment (jitter 1 mm)
    assert (x[gt[:, 0], gt[:, 1], 1] < 0.06).all()  # |log growth| ≤ 0.05
    assert (x[..., 0] >= 0).all() and (x[..., 1] >= 0).all()


def test_invariant_to_translating_the_later_scan(fitted, test_pair):
    dst = test_pair.dst.nodes
    moved = NodeTable(dst.node_id, dst.pos + np.array([250.0, -130.0, 75.5]),
                      dst.short_axis_mm, dst.long_axis_mm, dst.track_id)
    other = ScanPair(test_pair.src, Scan("P99", "P99_b", "2", None, moved))
    a, b = fitted.predict(test_pair), fitted.predict(other)
    assert np.array_equal(a.matches, b.matches)
    np.testing.assert_allclose(a.scores, b.scores, rtol=0, atol=1e-9)
    np.testing.assert_allclose(pair_features(test_pair), pair_features(other), atol=1e-9)


def test_fitted_weights_have_the_expected_signs(fitted):
    distance, size = fitted.weight
    assert distance < 0 and size < 0
    assert np.isfinite(fitted.bias)
    assert fitted.threshold in THRESHOLDS
    assert set(fitted.val_scores) == set(THRESHOLDS)


def test_without_val_a_share_of_the_training_patients_chooses_the_threshold(fitted):
    cohort = _cohort(8, seed=1)
    _, val = holdout_split(cohort.patients, 0.2, seed=0)
    assert fitted.val_patients == val and len(val) == 2
    given = GeometryFusion().fit(cohort.subset(cohort.patients[:6]),
                                 cohort.subset(cohort.patients[6:]))
    assert given.val_patients == tuple(cohort.patients[6:])


def test_logistic_fit_recovers_known_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (4000, 2)) * [2.0, 0.5] + [1.0, 0.0]
    y = (rng.random(4000) < 1 / (1 + np.exp(-(x @ [-1.5, 2.0] + 0.5)))).astype(float)
    w, b = fit_balanced_logistic(x, y, l2=0.0)
    # class balancing only moves the bias; the slopes are those of the generating model
    np.testing.assert_allclose(w, [-1.5, 2.0], atol=0.2)
    assert np.isfinite(b)
    with pytest.raises(ValueError, match="matched and unmatched"):
        fit_balanced_logistic(x, np.ones(4000))


def test_predict_before_fit_is_a_clear_error(test_pair):
    with pytest.raises(RuntimeError, match=r"fit\(\) before predict\(\)"):
        GeometryFusion().predict(test_pair)


def test_fit_needs_ground_truth_pairs():
    scans = _patient(0, np.random.default_rng(0))
    unknown = [Scan(s.patient_id, s.scan_id, s.timepoint, None,
                    NodeTable.from_arrays(s.nodes.pos, s.nodes.short_axis_mm)) for s in scans]
    with pytest.raises(ValueError, match="ground truth"):
        GeometryFusion().fit(Cohort(unknown))


def test_empty_scans_give_an_empty_prediction(fitted, test_pair):
    empty = Scan("P99", "P99_b", "2", None, NodeTable.empty())
    pred = fitted.predict(ScanPair(test_pair.src, empty))
    assert (pred.n_src, pred.n_dst, len(pred.matches)) == (len(test_pair.src.nodes), 0, 0)


def test_runs_on_the_leaderboard():
    from lngraph.bench.leaderboard import run_leaderboard

    rows = run_leaderboard(_cohort(6, seed=3), ["geometry_fusion"], folds=2, progress=False)
    assert (rows["status"] == "ok").all() and len(rows) == 2
    assert (rows["f1"] > 0.95).all() and (rows["nlr"] == 1.0).all()


def test_the_frame_variant_adds_the_raw_centre_distance(test_pair):
    from lngraph.baselines.geometry_fusion import GeometryFusionFrame

    plain = pair_features(test_pair)
    framed = pair_features(test_pair, frame_scale_mm=50.0)
    np.testing.assert_allclose(framed[..., :2], plain)
    src, dst = test_pair.src.nodes, test_pair.dst.nodes
    np.testing.assert_allclose(framed[1, 2, 2], np.linalg.norm(src.pos[1] - dst.pos[2]) / 50)
    method = GeometryFusionFrame(seed=0)
    assert REGISTRY["geometry_fusion_frame"] is GeometryFusionFrame
    assert method.feature_names == ("distance", "size", "frame distance")
    assert repr(method).endswith("seed=0, frame_scale_mm=100)")
    fitted = method.fit(_cohort(8, seed=1))
    assert fitted.weight.shape == (3,)
    with pytest.raises(ValueError, match="frame_scale_mm must be positive"):
        GeometryFusion(frame_scale_mm=0.0)


def test_the_frame_feature_separates_lone_nodes_that_alignment_cannot():
    """One node per scan: alignment puts them on each other whatever their distance; the raw
    distance still tells a nearby partner from a far-away stranger."""
    from lngraph.baselines.geometry_fusion import GeometryFusionFrame

    def lone(p, offset, same):
        a = NodeTable.from_arrays([[0.0, 0.0, 0.0]], [10.0], track_id=[f"t{p}"])
        b = NodeTable.from_arrays([offset], [10.0], track_id=[f"t{p}" if same else f"u{p}"])
        return [Scan(f"P{p}", f"P{p}_a", "1", None, a), Scan(f"P{p}", f"P{p}_b", "2", None, b)]

    scans = [s for p in range(40) for s in lone(p, (0.0, 0.0, 20.0 if p % 2 else 200.0),
                                                 bool(p % 2))]
    cohort = Cohort(scans)
    train, val = cohort.subset(cohort.patients[:30]), cohort.subset(cohort.patients[30:])
    near = ScanPair(*lone(99, (0.0, 0.0, 25.0), True))
    far = ScanPair(*lone(98, (0.0, 0.0, 190.0), False))
    framed = GeometryFusionFrame().fit(train, val)
    assert len(framed.predict(near).matches) == 1 and len(framed.predict(far).matches) == 0
    plain = GeometryFusion().fit(train, val)
    assert len(plain.predict(near).matches) == len(plain.predict(far).matches)


def test_the_features_use_the_matchers_rigid_alignment_with_its_rotation_search():
    """A scan turned by 15° whose translation lines up the wrong nodes: the searched rigid
    alignment (the default, as the matcher's) lays partners onto each other, the plain one
    does not."""
    from ..matching.test_alignment import wide_turned_scan

    src, dst, _ = wide_turned_scan(29)
    tracks = [f"t{k}" for k in range(10)]
    pair = ScanPair(Scan("P", "a", "1", None, NodeTable.from_arrays(src, np.full(10, 8.0),
                                                                    track_id=tracks)),
                    Scan("P", "b", "2", None, NodeTable.from_arrays(dst, np.full(10, 8.0),
                                                                    track_id=tracks)))
    searched, plain = GeometryFusion(), GeometryFusion(rotation_search=False)
    assert searched.alignment.rotation_search and not plain.alignment.rotation_search
    assert not GeometryFusion(rigid=False, rotation_search=True).alignment.rotation_search
    distance = FEATURES.index("distance")
    for method, most in ((searched, 12.0 / GATE_MM), (plain, None)):
        partners = np.diagonal(pair_features(pair, method.alignment)[..., distance])
        if most is None:
            assert partners.max() > 50.0 / GATE_MM
        else:
            assert partners.max() < most
