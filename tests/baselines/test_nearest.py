import numpy as np
import pytest

from lngraph.baselines import REGISTRY
from lngraph.baselines.nearest import Nearest, robust_translation
from lngraph.io.cohort import NodeTable, Scan, ScanPair


def _pair(src, dst) -> ScanPair:
    def scan(pos, sid):
        pos = np.asarray(pos, dtype=float).reshape(-1, 3)
        return Scan("p", sid, sid, None, NodeTable.from_arrays(pos, np.full(len(pos), 10.0)))
    return ScanPair(scan(src, "0"), scan(dst, "1"))


def _cluster(seed=0, n=12):
    rng = np.random.default_rng(seed)
    return rng.uniform(-80, 80, (n, 3))


def test_registered():
    assert REGISTRY["nearest"] is Nearest
    assert not Nearest.needs_images and not Nearest.learned
    assert repr(Nearest(gate_mm=12)) == "Nearest(gate_mm=12, iterations=10)"


def test_pure_translation_is_recovered_exactly():
    src = _cluster()
    shift = np.array([23.0, -31.0, 47.0])  # larger than the typical spacing of the nodes
    order = np.random.default_rng(1).permutation(len(src))
    dst = (src + shift)[order]
    np.testing.assert_allclose(robust_translation(src, dst), shift, atol=1e-9)
    pred = Nearest().predict(_pair(src, dst))
    assert len(pred.matches) == len(src)
    np.testing.assert_array_equal(order[pred.matches[:, 1]], pred.matches[:, 0])
    np.testing.assert_allclose(pred.scores, 1.0)


def test_translation_robust_to_new_and_gone_nodes():
    src = _cluster(2, 10)
    shift = np.array([5.0, 12.0, -28.0])
    dst = np.concatenate([src[2:] + shift, np.array([[200.0, 0, 0], [-150.0, 40, 10]])])
    np.testing.assert_allclose(robust_translation(src, dst), shift, atol=1e-9)
    pred = Nearest().predict(_pair(src, dst))
    np.testing.assert_array_equal(pred.matches, np.stack([np.arange(2, 10), np.arange(8)], 1))
    np.testing.assert_array_equal(pred.disappeared, [0, 1])
    np.testing.assert_array_equal(pred.new, [8, 9])


def test_gate_is_respected():
    src = np.array([[0.0, 0, 0], [100.0, 0, 0], [0.0, 100, 0]])
    dst = src.copy()
    dst[2] += [0.0, 0.0, 14.0]  # within a 15 mm gate, not within 10 mm
    pred = Nearest(gate_mm=15).predict(_pair(src, dst))
    assert len(pred.matches) == 3
    pred = Nearest(gate_mm=10).predict(_pair(src, dst))
    np.testing.assert_array_equal(pred.matches, [[0, 0], [1, 1]])
    np.testing.assert_array_equal(pred.disappeared, [2])
    np.testing.assert_array_equal(pred.new, [2])
    d = np.linalg.norm(src[pred.matches[:, 0]] + robust_translation(src, dst, 10.0)
                       - dst[pred.matches[:, 1]], axis=1)
    np.testing.assert_allclose(pred.scores, np.exp(-d / 10.0))


def test_empty_and_single_node_sets():
    assert len(Nearest().predict(_pair(np.zeros((0, 3)), _cluster())).matches) == 0
    pred = Nearest().predict(_pair(_cluster(), np.zeros((0, 3))))
    assert len(pred.matches) == 0 and len(pred.disappeared) == 12
    pred = Nearest().predict(_pair([[1.0, 2, 3]], [[40.0, 50, 60]]))
    np.testing.assert_array_equal(pred.matches, [[0, 0]])  # one node each: the shift aligns them


def test_invalid_gate():
    with pytest.raises(ValueError, match="gate_mm must be positive"):
        Nearest(gate_mm=0)
