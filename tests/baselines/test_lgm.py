import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy.spatial.transform import Rotation

from lngraph.baselines import REGISTRY
from lngraph.baselines.lgm import (
    LGM,
    LGMNet,
    appearance_features,
    balanced_bce,
    geometry_features,
)
from lngraph.io.cohort import Cohort, NodeTable, Scan
from lngraph.io.matches import PairPrediction
from lngraph.metrics.matching import pair_counts, summarize


def _toy_cohort(n_patients, seed, jitter_mm=6.0):
    """Two scans per patient: the later one is a rigid motion of the earlier plus jitter,
    ~10% of nodes disappear, up to two appear, sizes change, rows are shuffled."""
    rng = np.random.default_rng(seed)
    scans = []
    for p in range(n_patients):
        n = int(rng.integers(6, 12))
        pos = rng.normal(0, 45, (n, 3))
        short = rng.uniform(6, 20, n)
        long_ = short * rng.uniform(1.0, 1.8, n)
        tracks = np.array([f"p{p}t{k}" for k in range(n)], object)
        keep = rng.random(n) > 0.1
        rot = Rotation.from_euler("xyz", rng.uniform(-8, 8, 3), degrees=True).as_matrix()
        moved = pos @ rot.T + rng.uniform(-30, 30, 3) + rng.normal(0, jitter_mm, (n, 3))
        growth = np.exp(rng.normal(0, 0.25, n))
        n_new = int(rng.integers(0, 3))
        new_short = rng.uniform(6, 20, n_new)
        later = NodeTable.from_arrays(
            np.concatenate([moved[keep], rng.normal(0, 45, (n_new, 3))]),
            np.concatenate([short[keep] * growth[keep], new_short]),
            np.concatenate([long_[keep] * growth[keep], new_short * 1.3]),
            track_id=np.concatenate([tracks[keep], [f"p{p}new{k}" for k in range(n_new)]]))
        scans += [Scan(f"p{p}", f"p{p}a", "0", None,
                       NodeTable.from_arrays(pos, short, long_, track_id=tracks)),
                  Scan(f"p{p}", f"p{p}b", "1", None, later.take(rng.permutation(len(later))))]
    return Cohort(scans)


def _random_prediction(pair, rng):
    n1, n2 = len(pair.src.nodes), len(pair.dst.nodes)
    k = min(n1, n2)
    matches = np.stack([rng.permutation(n1)[:k], rng.permutation(n2)[:k]], axis=1)
    return PairPrediction(n1, n2, matches)


@pytest.fixture(scope="module")
def fitted():
    torch.set_num_threads(1)
    cohort = _toy_cohort(16, seed=0)
    patients = cohort.patients
    train, val, test = (cohort.subset(patients[:8]), cohort.subset(patients[8:11]),
                        cohort.subset(patients[11:]))
    return LGM(epochs=4, qp_iterations=60, seed=0).fit(train, val), test


def test_fit_predict_beats_random(fitted):
    method, test = fitted
    assert len(method.history) == 4 and method.history[-1] < method.history[0]
    assert method.threshold in np.round(np.arange(0.05, 0.96, 0.05), 2)
    preds = [method.predict(p) for p in test.pairs()]
    for pair, pred in zip(test.pairs(), preds, strict=True):
        assert isinstance(pred, PairPrediction)
        assert (pred.n_src, pred.n_dst) == (len(pair.src.nodes), len(pair.dst.nodes))
        assert ((pred.scores >= method.threshold) & (pred.scores <= 1 + 1e-9)).all()
    ours = summarize([pair_counts(p, pred) for p, pred in zip(test.pairs(), preds,
                                                                strict=True)])
    rng = np.random.default_rng(0)
    chance = summarize([pair_counts(p, _random_prediction(p, rng)) for p in test.pairs()])
    assert ours["f1"] > 0.7 and ours["f1"] > chance["f1"] + 0.4


def test_predict_is_deterministic_and_handles_empty_scans(fitted):
    method, test = fitted
    pair = test.pairs()[0]
    first, second = method.predict(pair), method.predict(pair)
    assert np.array_equal(first.matches, second.matches)
    empty = type(pair)(pair.src, Scan(pair.dst.patient_id, "e", "2", None, NodeTable.empty()))
    pred = method.predict(empty)
    assert (pred.n_src, pred.n_dst, len(pred.matches)) == (len(pair.src.nodes), 0, 0)


def test_predict_needs_fit_and_registered():
    assert REGISTRY["lgm"] is LGM and LGM.learned
    cohort = _toy_cohort(1, seed=1)
    with pytest.raises(RuntimeError, match="fit"):
        LGM().predict(cohort.pairs()[0])
    with pytest.raises(ValueError, match="appearance=True needs a cohort"):
        LGM(appearance=True).fit(cohort)
    with pytest.raises(ValueError, match="scan 'p0a' of patient 'p0' has no image"):
        appearance_features(cohort.scans["p0a"])


def test_geometry_features_are_rigid_invariant():
    scan = _toy_cohort(1, seed=2).scans_of("p0")[0]
    rot = Rotation.from_euler("xyz", [20, -10, 35], degrees=True).as_matrix()
    t = scan.nodes
    moved = Scan("p0", "m", "0", None, NodeTable(t.node_id, t.pos @ rot.T + [5, -40, 12],
                                                 t.short_axis_mm, t.long_axis_mm, t.track_id))
    assert np.allclose(geometry_features(scan), geometry_features(moved))
    assert geometry_features(scan).shape == (len(t), 10)


def test_geometry_features_exact_for_two_nodes():
    nodes = NodeTable.from_arrays([[0, 0, 0], [30, 0, 0]], [10.0, 8.0], [20.0, np.nan])
    f = geometry_features(Scan("p", "s", "0", None, nodes))
    assert f[0, 0] == pytest.approx(np.log(10.0)) and f[1, 0] == pytest.approx(np.log(4.0))
    assert f[0, 2] == pytest.approx(np.log(2.0)) and f[1, 2] == 0.0
    assert f[0, 3] == pytest.approx(np.log1p(3.0)) and f[0, 4] == pytest.approx(np.log1p(20.0))
    assert f[0, 7] == 0.0 and f[0, 8] == pytest.approx(np.log(2.0))  # 0 within 25, 1 within 50
    assert f[0, 9] == pytest.approx(np.log1p(1.5))


def test_appearance_features_see_a_bright_node(tmp_path):
    index = np.stack(np.meshgrid(*[np.arange(40)] * 3, indexing="ij"), -1) - 19.5
    array = np.where((index ** 2).sum(-1) < 36, 100.0, -100.0).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    sitk.WriteImage(image, str(tmp_path / "img.mha"))
    nodes = NodeTable.from_arrays([[19.5, 19.5, 19.5], [8.0, 8.0, 8.0]], [12.0, 12.0])
    f = appearance_features(Scan("p", "s", "0", tmp_path / "img.mha", nodes))
    assert f.shape == (2, 8)
    assert f[0, 0] > f[0, 7]  # bright core, darker outer shell
    assert f[1, 1] == pytest.approx(0.0, abs=1e-6)  # a uniform region has no texture


def test_encoder_starts_as_identity_and_bce_is_balanced():
    net = LGMNet(5).double()
    x = torch.randn(4, 5, dtype=torch.float64)
    assert torch.allclose(net.encoder(x), x)
    soft = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    target = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    assert float(balanced_bce(soft, target)) == pytest.approx(np.log(2.0))
    assert float(balanced_bce(torch.eye(2), torch.eye(2))) == pytest.approx(0.0, abs=1e-5)
