import numpy as np

from lngraph.io.cohort import NodeTable, Scan, ScanPair
from lngraph.synth.realism import (
    nearest_neighbour_distances,
    pair_residuals,
    quantiles,
    residual_displacements,
    unmatched_share,
)


def test_nearest_neighbour_distances():
    t = NodeTable.from_arrays([[0.0, 0, 0], [3, 4, 0], [0, 0, 10]], [5.0, 5, 5])
    np.testing.assert_allclose(nearest_neighbour_distances([t, t.take([0])]), [5.0, 5.0, 10.0])


def test_residual_is_zero_for_pure_translation_and_sees_an_outlier():
    a = np.array([[0.0, 0, 0], [10, 0, 0], [0, 10, 0]])
    np.testing.assert_allclose(residual_displacements([a], [a + [4.0, -2, 7]]), 0.0, atol=1e-12)
    b = a + 5.0
    b[0] += [3.0, 0, 0]  # one lesion moved 3 mm more than the others
    np.testing.assert_allclose(residual_displacements([a, a[:1]], [b, b[:1]]), [3.0, 1.5, 1.5])


POSITION = {"a": [0.0, 0, 0], "b": [20.0, 0, 0], "c": [0.0, 30, 0], "d": [9.0, 9, 9]}


def _scan(sid, tracks, shift):
    pos = np.array([POSITION[t] for t in tracks]) + shift
    return Scan("p", sid, sid, None, NodeTable.from_arrays(pos, np.full(len(tracks), 8.0),
                                                           track_id=tracks))


def test_pair_statistics():
    pair = ScanPair(_scan("0", ["a", "b", "c"], 0.0), _scan("1", ["b", "a", "d"], 5.0))
    assert unmatched_share([pair]) == 2 / 6
    np.testing.assert_allclose(pair_residuals([pair]), [0.0, 0.0], atol=1e-12)
    q = quantiles([1.0, 2.0, 3.0])
    assert q["p50"] == 2.0 and q["max"] == 3.0 and q["n"] == 3
    assert np.isnan(quantiles([])["p50"])
