"""Nine views: exact values on an index-encoding cube, distinctness, numpy/torch agreement."""

import itertools

import numpy as np
import pytest
import torch

from lngraph.data import nine_views


def index_cube(size: int) -> np.ndarray:
    """``[1, S, S, S]`` cube whose voxel (z, y, x) holds 10000 z + 100 y + x."""
    z, y, x = np.meshgrid(*[np.arange(size)] * 3, indexing="ij")
    return (10000.0 * z + 100.0 * y + x)[None]


def code(z, y, x):
    return 10000.0 * np.asarray(z) + 100.0 * np.asarray(y) + np.asarray(x)


@pytest.mark.parametrize("size", [5, 4])
def test_exact_planes_on_an_index_cube(size):
    views = nine_views(index_cube(size))[0]
    r, t = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    m, last = (size - 1) / 2, size - 1
    expected = [
        code(m, r, t), code(r, m, t), code(r, t, m),        # central planes (mean when S even)
        code(r, t, t), code(r, t, last - t),                 # y–x diagonals
        code(t, r, t), code(t, r, last - t),                 # z–x diagonals
        code(t, t, r), code(t, last - t, r),                 # z–y diagonals
    ]
    assert views.shape == (9, size, size)
    for got, want in zip(views, expected, strict=True):
        np.testing.assert_allclose(got, want)


def test_hand_checked_voxels():
    views = nine_views(index_cube(3))[0]
    assert views[0, 2, 1] == code(1, 2, 1)   # axial: z = 1, y = 2, x = 1
    assert views[4, 0, 0] == code(0, 0, 2)   # y–x anti-diagonal starts at x = S - 1
    assert views[6, 1, 2] == code(2, 1, 0)   # z–x anti-diagonal: z = t = 2, x = 0
    assert views[8, 2, 0] == code(0, 2, 2)   # z–y anti-diagonal: z = 0, y = 2, x = r = 2


def test_all_nine_views_differ_on_a_random_cube():
    views = nine_views(np.random.default_rng(0).random((2, 24, 24, 24), dtype=np.float32))
    assert views.shape == (2, 9, 24, 24) and views.dtype == np.float32
    for a, b in itertools.combinations(range(9), 2):
        assert not np.allclose(views[:, a], views[:, b]), (a, b)


def test_every_view_passes_through_the_centre_of_an_odd_cube():
    cube = np.zeros((1, 7, 7, 7))
    cube[0, 3, 3, 3] = 1.0
    views = nine_views(cube)[0]
    assert (views.sum(axis=(1, 2)) == 1.0).all() and (views[:, 3, 3] == 1.0).all()


def test_torch_and_channel_axis_agree_with_numpy():
    cubes = np.random.default_rng(1).random((3, 6, 6, 6), dtype=np.float32)
    expected = nine_views(cubes)
    got = nine_views(torch.from_numpy(cubes)[:, None])
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    np.testing.assert_array_equal(got.numpy(), expected)
    np.testing.assert_array_equal(nine_views(cubes[:, None]), expected)


def test_gradients_flow_through_torch_views():
    cubes = torch.rand(2, 4, 4, 4, requires_grad=True)
    nine_views(cubes).sum().backward()
    assert cubes.grad is not None and cubes.grad.abs().sum() > 0


def test_non_cubes_are_rejected():
    with pytest.raises(ValueError, match=r"expected cubes \[N, S, S, S\].*got \(2, 4, 4, 5\)"):
        nine_views(np.zeros((2, 4, 4, 5)))
