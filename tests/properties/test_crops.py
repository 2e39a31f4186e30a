"""Property-based tests (Hypothesis) of physical-space crops and image coordinates on random
oblique, anisotropic images.

Random geometries: origin within ±200 mm per axis, spacing 0.5–3 mm per axis, 20–30 voxels
per axis, direction cosines a random rotation (Euler angles) optionally composed with a
reflection of one axis (an improper direction, as NIfTI files flipped to LPS have). A single
bright voxel at a random interior voxel ``v``, at world point ``p =
image.TransformIndexToPhysicalPoint(v)``, must

* land at the centre of every cube cropped around ``p`` (:func:`crop_cubes`, both modes):
  the centre sample lies exactly on ``p``, so with an odd size the cube's unique maximum is
  the centre voxel; with an even size (centre between voxels) the maximum lies within the
  voxel's trilinear support;
* appear in every cube exactly as trilinear interpolation at the documented sample points;
* move to the documented voxel when the crop centre moves by whole grid steps (numpy order
  ``(z, y, x)`` along the LPS axes);
* be found by :class:`ImageGeometry` at ``v``, whose world↔index↔array maps agree with
  SimpleITK and invert each other.

``LNGRAPH_PROPERTY_EXAMPLES=N`` runs N random examples per property instead of the default
fixed (derandomized) set.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np
import SimpleITK as sitk
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from lngraph.data.crops import crop_cubes
from lngraph.io.coords import ImageGeometry

_EXAMPLES = os.environ.get("LNGRAPH_PROPERTY_EXAMPLES")
PROPERTY = settings(max_examples=int(_EXAMPLES) if _EXAMPLES else 30, deadline=None,
                    derandomize=_EXAMPLES is None, database=None, print_blob=True)

BACKGROUND_HU, BRIGHT_HU = 0.0, 1000.0
#: HU window of the crops: background → 0.5, the bright voxel → 1, air outside → 0.
WINDOW = (-1000.0, 1000.0)


class Geometry(NamedTuple):
    """A random image geometry and a voxel of it (what Hypothesis prints and shrinks)."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    euler_deg: tuple[float, float, float]
    flip: int  # -1: proper rotation; 0, 1, 2: also reflect that index axis
    voxel: tuple[int, int, int]  # index (i, j, k) of the bright voxel

    @property
    def direction(self) -> np.ndarray:
        d = Rotation.from_euler("zyx", self.euler_deg, degrees=True).as_matrix()
        if self.flip >= 0:
            d[:, self.flip] *= -1
        return d

    def image(self, bright: bool = True) -> sitk.Image:
        array = np.full(self.size[::-1], BACKGROUND_HU, dtype=np.float32)
        if bright:
            i, j, k = self.voxel
            array[k, j, i] = BRIGHT_HU
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(tuple(self.direction.ravel()))
        return image


@st.composite
def geometries(draw) -> Geometry:
    size = tuple(draw(st.integers(20, 30)) for _ in range(3))
    spacing = tuple(draw(st.floats(0.5, 3.0)) for _ in range(3))
    origin = tuple(draw(st.floats(-200.0, 200.0)) for _ in range(3))
    # Angles in whole millidegrees: Hypothesis' float search otherwise reaches subnormal angles
    # (1e-306 degrees), whose direction cosines (products near underflow) make ITK's VNL SVD
    # fail ("suspicious return value (3) from SVDC"), so SimpleITK maps every point to NaN and
    # resamples pure air. Direction cosines read from files never get that small.
    euler = tuple(draw(st.integers(-180_000, 180_000)) / 1000 for _ in range(3))
    flip = draw(st.integers(-1, 2))
    voxel = tuple(draw(st.integers(1, n - 2)) for n in size)
    return Geometry(size, spacing, origin, euler, flip, voxel)


def crop_spacings():
    return st.tuples(*[st.floats(0.5, 3.0)] * 3)


def bright_point(image: sitk.Image, geometry: Geometry) -> np.ndarray:
    return np.asarray(image.TransformIndexToPhysicalPoint(geometry.voxel), dtype=np.float64)


def _argmax(cube: np.ndarray) -> tuple[int, ...]:
    return tuple(int(a) for a in np.unravel_index(np.argmax(cube), cube.shape))


def sample_points(centre, spacing, size: int) -> np.ndarray:
    """``[S, S, S, 3]`` world point of every cube voxel, by the documented formula
    ``centre + ((c - m) s_x, (b - m) s_y, (a - m) s_z)`` for ``cube[a, b, c]``."""
    a, b, c = np.meshgrid(*[np.arange(size) - (size - 1) / 2] * 3, indexing="ij")
    return np.asarray(centre) + np.stack([c * spacing[0], b * spacing[1], a * spacing[2]], -1)


def expected_cube(image: sitk.Image, geometry: Geometry, points: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The windowed trilinear samples of the one-bright-voxel image at ``points``, and a mask
    of the points not within rounding of the image's outer faces (where air takes over)."""
    u = ImageGeometry.from_image(image).world_to_index(points)
    weight = np.prod(np.clip(1 - np.abs(u - np.asarray(geometry.voxel)), 0, 1), axis=-1)
    size = np.asarray(geometry.size)
    inside = np.all((u >= -0.5) & (u <= size - 0.5), axis=-1)
    sure = np.all((np.abs(u + 0.5) > 1e-6) & (np.abs(u - (size - 0.5)) > 1e-6), axis=-1)
    background = (BACKGROUND_HU - WINDOW[0]) / (WINDOW[1] - WINDOW[0])
    value = np.where(inside, background + (1 - background) * weight, 0.0)
    return value, sure


@PROPERTY
@given(geometry=geometries(), size=st.integers(5, 14), spacing=crop_spacings())
def test_bright_voxel_at_the_centre_of_a_fixed_mode_cube(geometry, size, spacing):
    """Odd size: the centre sample lies on the bright voxel's centre, so it has the voxel's
    full value and is the cube's unique maximum. Even size (centre between samples): the
    maximum, if the voxel is seen at all, lies within the voxel's interpolation support (one
    voxel along each index axis; not always in the central 2×2×2 block: the support of an
    oblique anisotropic voxel is a slanted box)."""
    image = geometry.image()
    point = bright_point(image, geometry)
    cube = crop_cubes(image, [point], mode="fixed", size=size, spacing_mm=spacing,
                      window=WINDOW)[0]
    assert cube.shape == (size,) * 3
    if size % 2:
        c = (size - 1) // 2
        assert abs(cube[c, c, c] - 1.0) < 1e-5
        assert _argmax(cube) == (c, c, c)
        others = np.delete(cube.ravel(), np.ravel_multi_index((c, c, c), cube.shape))
        assert (others < cube[c, c, c] - 1e-3).all()
    elif cube.max() > 0.5 + 1e-4:
        where = sample_points(point, spacing, size)[_argmax(cube)]
        offset = ImageGeometry.from_image(image).world_to_index(where) - geometry.voxel
        assert (np.abs(offset) < 1).all(), offset


@PROPERTY
@given(geometry=geometries(), size=st.integers(4, 12), spacing=crop_spacings(),
       shift=st.tuples(*[st.floats(-2.0, 2.0)] * 3))
def test_cube_is_the_trilinear_sample_at_the_documented_points(geometry, size, spacing, shift):
    """Every voxel of a cube around any point near the bright voxel is the windowed trilinear
    interpolation of the image at ``centre + ((c - m) s_x, (b - m) s_y, (a - m) s_z)``."""
    image = geometry.image()
    centre = bright_point(image, geometry) + np.asarray(shift)
    assume(ImageGeometry.from_image(image).contains(centre))
    cube = crop_cubes(image, [centre], mode="fixed", size=size, spacing_mm=spacing,
                      window=WINDOW)[0]
    value, sure = expected_cube(image, geometry, sample_points(centre, spacing, size))
    np.testing.assert_allclose(cube[sure], value[sure], atol=1e-5)


@PROPERTY
@given(geometry=geometries(), size=st.sampled_from([7, 9, 11, 15]),
       radius=st.floats(1.0, 12.0), factor=st.floats(0.5, 3.0), min_fov=st.floats(1.0, 20.0))
def test_bright_voxel_at_the_centre_of_a_radius_mode_cube(geometry, size, radius, factor,
                                                          min_fov):
    image = geometry.image()
    point = bright_point(image, geometry)
    cube = crop_cubes(image, [point], [radius], mode="radius", size=size,
                      radius_factor=factor, min_fov_mm=min_fov, window=WINDOW)[0]
    c = (size - 1) // 2
    assert abs(cube[c, c, c] - 1.0) < 1e-5
    assert _argmax(cube) == (c, c, c)


@PROPERTY
@given(geometry=geometries(), spacing=crop_spacings(),
       steps=st.tuples(*[st.integers(-2, 2)] * 3))
def test_moving_the_crop_centre_by_grid_steps_moves_the_voxel(geometry, spacing, steps):
    """Cropping around ``p - (c s_x, b s_y, a s_z)`` puts the bright voxel at array index
    ``(m + a, m + b, m + c)``: numpy order (z, y, x) along the world LPS axes."""
    size = 9
    image = geometry.image()
    point = bright_point(image, geometry)
    a, b, c = steps
    centre = point - np.array([c * spacing[0], b * spacing[1], a * spacing[2]])
    assume(ImageGeometry.from_image(image).contains(centre))  # crops need it in the image
    cube = crop_cubes(image, [centre], mode="fixed", size=size, spacing_mm=spacing,
                      window=WINDOW)[0]
    m = (size - 1) // 2
    assert _argmax(cube) == (m + a, m + b, m + c)
    assert abs(cube[m + a, m + b, m + c] - 1.0) < 1e-5


@PROPERTY
@given(geometry=geometries(), offsets=st.lists(st.tuples(*[st.floats(-3.0, 3.0)] * 3),
                                              min_size=1, max_size=5))
def test_image_geometry_maps_points_consistently(geometry, offsets):
    image = geometry.image()
    g = ImageGeometry.from_image(image)
    point = bright_point(image, geometry)
    # the bright voxel's world point maps back onto its index, array order and value
    np.testing.assert_allclose(g.world_to_index(point), geometry.voxel, atol=1e-6)
    k, j, i = np.rint(g.world_to_array(point)).astype(int)
    assert (i, j, k) == geometry.voxel
    assert sitk.GetArrayViewFromImage(image)[k, j, i] == BRIGHT_HU
    np.testing.assert_allclose(g.index_to_world(geometry.voxel), point, atol=1e-6)
    assert g.contains(point)
    # continuous indices around it (some outside the image): both ways agree with SimpleITK
    # and invert each other, in every order
    index = np.asarray(geometry.voxel, dtype=np.float64) + np.asarray(offsets)
    world = g.index_to_world(index)
    expected = np.array([image.TransformContinuousIndexToPhysicalPoint(tuple(u))
                         for u in index])
    np.testing.assert_allclose(world, expected, atol=1e-6)
    back = np.array([image.TransformPhysicalPointToContinuousIndex(tuple(p)) for p in world])
    np.testing.assert_allclose(g.world_to_index(world), back, atol=1e-6)
    np.testing.assert_allclose(g.world_to_index(world), index, atol=1e-6)
    np.testing.assert_allclose(g.array_to_world(g.world_to_array(world)), world, atol=1e-6)
    np.testing.assert_allclose(g.world_to_array(world), index[:, ::-1], atol=1e-6)
    size = np.asarray(geometry.size)
    inside = np.all((index >= -0.5) & (index <= size - 0.5), axis=1)
    margin = np.all((index >= -0.5 + 1e-6) & (index <= size - 0.5 - 1e-6), axis=1)
    outside = np.any((index < -0.5 - 1e-6) | (index > size - 0.5 + 1e-6), axis=1)
    got = g.contains(world)
    assert got[margin].all() and not got[outside].any()
    assert (got == inside)[margin | outside].all()
