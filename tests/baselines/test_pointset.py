import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from lngraph.baselines import REGISTRY
from lngraph.baselines.pointset import PointSet, cpd_affine, cpd_rigid, match_mapped_points
from lngraph.io.cohort import NodeTable, Scan, ScanPair


def _scene(seed, n=40, n_outliers=4, noise_mm=0.5):
    """Earlier points ``y``, later points ``x`` = R y + t (+noise) with the last
    ``n_outliers`` of each set replaced by unrelated points (10% unmatched)."""
    rng = np.random.default_rng(seed)
    y = rng.uniform(-80, 80, (n, 3))
    rot = Rotation.from_euler("xyz", rng.uniform(-15, 15, 3), degrees=True).as_matrix()
    t = rng.uniform(-25, 25, 3)
    x = y @ rot.T + t + rng.normal(0, noise_mm, (n, 3))
    x[-n_outliers:] = rng.uniform(-80, 80, (n_outliers, 3)) + t
    y_out = y.copy()
    y_out[-n_outliers:] = rng.uniform(-80, 80, (n_outliers, 3))
    return x, y_out, rot, t


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cpd_rigid_recovers_known_transform_with_outliers(seed):
    x, y, rot, t = _scene(seed)
    transform = cpd_rigid(x, y)
    inliers = y[:-4]
    err = np.linalg.norm(transform(inliers) - (inliers @ rot.T + t), axis=1)
    assert err.max() < 1.0
    assert np.allclose(transform.matrix, rot, atol=0.01)
    assert np.linalg.det(transform.matrix) == pytest.approx(1.0)


def test_cpd_affine_recovers_known_affine_with_outliers():
    rng = np.random.default_rng(3)
    y = rng.uniform(-80, 80, (40, 3))
    matrix = np.array([[1.08, 0.05, 0.0], [-0.04, 0.95, 0.06], [0.02, 0.0, 1.03]])
    x = y @ matrix.T + np.array([12.0, -7.0, 4.0])
    x[-4:] = rng.uniform(-80, 80, (4, 3))
    transform = cpd_affine(x, y)
    assert np.allclose(transform.matrix, matrix, atol=0.01)
    assert np.linalg.norm(transform(y[:-4]) - x[:-4], axis=1).max() < 0.5


def test_cpd_degenerate_sets_fall_back_to_translation():
    one = cpd_rigid(np.array([[5.0, 0.0, 0.0]]), np.array([[0.0, 0.0, 0.0]]))
    assert np.allclose(one.matrix, np.eye(3))
    assert np.allclose(one(np.zeros((1, 3))), [[5.0, 0.0, 0.0]])
    assert np.allclose(cpd_affine(np.zeros((0, 3)), np.ones((2, 3))).matrix, np.eye(3))


def test_match_mapped_points_exact_small_case():
    mapped = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]])
    dst = np.array([[30.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    matches, scores = match_mapped_points(mapped, dst, gate_mm=5.0)
    assert matches.tolist() == [[0, 1]]
    assert scores == pytest.approx([np.exp(-1 / 5)])


def test_gate_excludes_far_pairs_before_assignment():
    # Without the pre-gate, the assignment could pair 0-1 (2 mm) + 1-0 (20 mm); with it,
    # only feasible pairs compete: 0 takes 0 (4 mm) and 1 takes 1 (1 mm).
    mapped = np.array([[0.0, 0.0, 0.0], [20.0, 0.0, 0.0]])
    dst = np.array([[4.0, 0.0, 0.0], [21.0, 0.0, 0.0]])
    matches, _ = match_mapped_points(mapped, dst, gate_mm=10.0)
    assert matches.tolist() == [[0, 0], [1, 1]]


def _pair(x, y):
    n_y, n_x = len(y), len(x)
    src = Scan("p", "a", "0", None, NodeTable.from_arrays(y, np.full(n_y, 10.0)))
    dst = Scan("p", "b", "1", None, NodeTable.from_arrays(x, np.full(n_x, 10.0)))
    return ScanPair(src, dst)


@pytest.mark.parametrize("transform", ["rigid", "affine"])
def test_predict_matches_inliers_leaves_outliers_and_respects_gate(transform):
    x, y, rot, t = _scene(4)
    method = PointSet(transform=transform, gate_mm=8.0)
    pred = method.predict(_pair(x, y))
    matched = {tuple(m) for m in pred.matches.tolist()}
    assert {(i, i) for i in range(36)} <= matched
    assert all(i == j for i, j in matched if i < 36 or j < 36)
    assert np.allclose(pred.points[:36], y[:36] @ rot.T + t, atol=2.0)
    d = np.linalg.norm(pred.points[pred.matches[:, 0]] - x[pred.matches[:, 1]], axis=1)
    assert (d <= 8.0).all()
    assert pred.scores == pytest.approx(np.exp(-d / 8.0))


def test_tiny_gate_matches_nothing():
    x, y, _, _ = _scene(5)
    pred = PointSet(gate_mm=1e-3).predict(_pair(x, y))
    assert len(pred.matches) == 0
    assert len(pred.disappeared) == 40 and len(pred.new) == 40


def test_empty_scans():
    pred = PointSet().predict(_pair(np.zeros((0, 3)), np.ones((3, 3))))
    assert (pred.n_src, pred.n_dst, len(pred.matches)) == (3, 0, 0)
    assert np.allclose(pred.points, np.ones((3, 3)))


def test_registered_and_validates_arguments():
    assert REGISTRY["pointset"] is PointSet
    with pytest.raises(ValueError, match="transform"):
        PointSet(transform="spline")
    with pytest.raises(ValueError, match="gate_mm"):
        PointSet(gate_mm=0)
    with pytest.raises(ValueError, match="outlier_weight"):
        PointSet(outlier_weight=1.0)
