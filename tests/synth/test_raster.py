import numpy as np

from lngraph.synth.raster import (
    Ellipsoid,
    TubeSet,
    VolumeGrid,
    blend,
    occupancy,
    smooth_noise,
    tube_occupancy,
)


def test_occupancy_ramp():
    np.testing.assert_allclose(occupancy(np.array([-2.0, -0.5, 0.0, 0.5, 2.0]), 1.0),
                               [1.0, 1.0, 0.5, 0.0, 0.0])


def test_ellipsoid_sdf_exact_on_axes():
    rot = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])  # long axis along world y
    e = Ellipsoid(np.array([1.0, 2, 3]), np.array([10.0, 5, 2]), rot)
    x, y, z = (np.array([1.0, 1.0, 1.0, 7.0]), np.array([14.0, 2.0, 2.0, 2.0]),
               np.array([3.0, 3.0, 6.0, 3.0]))
    np.testing.assert_allclose(e.sdf(x, y, z), [2.0, -2.0, 1.0, 1.0])  # centre: -min axis
    lo, hi = e.bounds()
    np.testing.assert_allclose(lo, [-4, -8, 1])
    np.testing.assert_allclose(hi, [6, 12, 5])


def test_tube_distance_and_taper():
    t = TubeSet.polyline([[0.0, 0, 0], [10, 0, 0]], [2.0, 4.0])
    np.testing.assert_allclose(t.distance_to_axis(np.array([[5.0, 6, 0], [-3, 0, 0],
                                                            [10, 0, 0]])), [3.0, 1.0, -4.0])


def test_grid_box_and_tube_occupancy():
    grid = VolumeGrid((-10.0, -10.0, -10.0), (1.0, 1.0, 2.0), (21, 21, 11))
    assert grid.array_shape == (11, 21, 21)
    box = grid.box([-2.0, -2.0, -2.0], [2.0, 2.0, 2.0])
    assert box == (slice(4, 7), slice(8, 13), slice(8, 13))
    assert grid.box([50.0, 0, 0], [60.0, 1, 1]) is None
    np.testing.assert_allclose(grid.world_to_array([[0.0, 0.0, 0.0]]), [[5.0, 10.0, 10.0]])
    tube = TubeSet.polyline([[0.0, 0, -20], [0.0, 0, 20]], 3.0)
    box, occ = tube_occupancy(tube, grid, edge_mm=1.0)
    vol = np.zeros(grid.array_shape, np.float32)
    blend(vol, box, occ, 100.0)
    assert vol[5, 10, 10] == 100.0 and vol[5, 10, 13] == 50.0 and vol[5, 10, 15] == 0.0


def test_smooth_noise_normalised_and_seeded():
    a = smooth_noise((8, 16, 16), 1.5, np.random.default_rng(0))
    b = smooth_noise((8, 16, 16), 1.5, np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)
    assert abs(a.mean()) < 1e-5 and abs(a.std() - 1) < 1e-4
