"""World LPS ↔ index ↔ array order, checked against SimpleITK on an oblique anisotropic image."""

import numpy as np
import pytest
import SimpleITK as sitk

from lngraph.io.coords import (
    ImageGeometry,
    array_order_to_index,
    index_to_array_order,
    lps_to_ras,
    ras_to_lps,
)


def _rotation(axis, angle_deg):
    a = np.deg2rad(angle_deg)
    c, s = np.cos(a), np.sin(a)
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


@pytest.fixture
def oblique_image():
    """A 7×5×4 image, spacing 0.7×1.3×2.5 mm, tilted about two axes, with a non-zero origin."""
    image = sitk.Image([7, 5, 4], sitk.sitkFloat32)
    image.SetSpacing((0.7, 1.3, 2.5))
    image.SetOrigin((-12.5, 40.25, 101.0))
    image.SetDirection(tuple((_rotation(2, 25.0) @ _rotation(0, -17.0)).ravel()))
    return image


@pytest.fixture
def geometry(oblique_image):
    return ImageGeometry.from_image(oblique_image)


def test_from_image_reads_every_field(oblique_image, geometry):
    assert geometry.origin == pytest.approx(oblique_image.GetOrigin())
    assert geometry.spacing == pytest.approx(oblique_image.GetSpacing())
    assert geometry.direction == pytest.approx(oblique_image.GetDirection())
    assert geometry.size == (7, 5, 4)


def test_index_to_world_matches_simpleitk(oblique_image, geometry):
    rng = np.random.default_rng(0)
    index = rng.uniform(-2.0, 8.0, size=(20, 3))
    expected = np.array([oblique_image.TransformContinuousIndexToPhysicalPoint(tuple(u))
                         for u in index])
    np.testing.assert_allclose(geometry.index_to_world(index), expected, atol=1e-9)


def test_world_to_index_matches_simpleitk(oblique_image, geometry):
    rng = np.random.default_rng(1)
    world = np.asarray(oblique_image.GetOrigin()) + rng.uniform(-20, 20, size=(20, 3))
    expected = np.array([oblique_image.TransformPhysicalPointToContinuousIndex(tuple(p))
                         for p in world])
    np.testing.assert_allclose(geometry.world_to_index(world), expected, atol=1e-9)


def test_round_trips_world_index_array(geometry):
    rng = np.random.default_rng(2)
    world = rng.uniform(-100, 100, size=(4, 5, 3))  # any leading shape
    index = geometry.world_to_index(world)
    assert index.shape == world.shape
    np.testing.assert_allclose(geometry.index_to_world(index), world, atol=1e-9)
    array = geometry.world_to_array(world)
    np.testing.assert_allclose(array, index[..., ::-1], atol=1e-12)
    np.testing.assert_allclose(geometry.array_to_world(array), world, atol=1e-9)


def test_array_order_addresses_the_numpy_voxel(oblique_image, geometry):
    index = (5, 1, 3)
    image = sitk.Image(oblique_image)
    image[index] = 7.0
    array = sitk.GetArrayFromImage(image)
    world = oblique_image.TransformIndexToPhysicalPoint(index)
    k, j, i = np.rint(geometry.world_to_array(world)).astype(int)
    assert (k, j, i) == (3, 1, 5)
    assert array[k, j, i] == 7.0
    assert array.sum() == 7.0


def test_index_and_array_order_are_reversals():
    u = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    np.testing.assert_array_equal(index_to_array_order(u), [[3, 2, 1], [6, 5, 4]])
    np.testing.assert_array_equal(array_order_to_index(index_to_array_order(u)), u)


def test_contains_honours_the_half_voxel_margin(geometry):
    inside = geometry.index_to_world([[0, 0, 0], [6, 4, 3], [-0.49, 4.49, 3.0]])
    outside = geometry.index_to_world([[-0.51, 0, 0], [6, 4, 3.51], [3, 5.2, 1]])
    assert geometry.contains(inside).all()
    assert not geometry.contains(outside).any()


def test_extent_is_size_times_spacing(geometry):
    np.testing.assert_allclose(geometry.extent_mm, [4.9, 6.5, 10.0])


def test_ras_lps_negates_x_and_y_and_is_an_involution():
    ras = np.array([[10.0, -20.0, 30.0], [-1.5, 2.5, -3.5]])
    np.testing.assert_array_equal(ras_to_lps(ras), [[-10.0, 20.0, 30.0], [1.5, -2.5, -3.5]])
    np.testing.assert_array_equal(lps_to_ras(ras_to_lps(ras)), ras)


@pytest.mark.parametrize(("spacing", "direction", "message"), [
    ((1.0, 0.0, 1.0), tuple(np.eye(3).ravel()), "spacing must be positive"),
    ((1.0, 1.0, 1.0), (2, 0, 0, 0, 1, 0, 0, 0, 1), "direction must be orthonormal"),
    ((1.0, 1.0, 1.0), (1, 1, 0, 0, 1, 0, 0, 0, 1), "direction must be orthonormal"),  # det 1
])
def test_rejects_bad_geometry(spacing, direction, message):
    with pytest.raises(ValueError, match=message):
        ImageGeometry(origin=(0, 0, 0), spacing=spacing, direction=direction, size=(2, 2, 2))
