"""Physical-space crops: centring on oblique anisotropic volumes, axis order, exact sample
points, modes, padding, windowing, a real CT nodule, and nodes outside the image."""

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial.transform import Rotation

from lngraph.data import CropParams, crop_cubes
from lngraph.data.crops import MIN_FOV_MM, RADIUS_FACTOR, grid_spacing
from lngraph.io import ImageGeometry, InputError, read_image

SPHERE_CENTRE = np.array([3.3, -7.9, 12.6])  # LPS mm, not on a voxel centre


def oblique_volume(value_at, size=(60, 64, 32), spacing=(0.9, 0.8, 2.5)) -> sitk.Image:
    """A tilted, anisotropic float32 image whose voxels hold ``value_at(world points)``."""
    image = sitk.Image(list(size), sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetDirection(tuple(Rotation.from_euler("xyz", [14.0, -9.0, 27.0], degrees=True)
                             .as_matrix().ravel()))
    geometry = ImageGeometry.from_image(image)
    centre_index = (np.asarray(size) - 1) / 2
    image.SetOrigin(tuple(SPHERE_CENTRE - geometry.index_to_world_matrix @ centre_index
                          + np.array([1.1, -0.7, 0.9])))
    geometry = ImageGeometry.from_image(image)
    k, j, i = np.meshgrid(*(np.arange(n) for n in size[::-1]), indexing="ij")
    world = geometry.array_to_world(np.stack([k, j, i], axis=-1).astype(np.float64))
    out = sitk.GetImageFromArray(value_at(world).astype(np.float32))
    out.CopyInformation(image)
    return out


def soft_sphere(radius_mm: float, centre=SPHERE_CENTRE):
    """500 HU inside a sphere, -100 HU outside, with a 1 mm linear edge."""
    def value_at(world):
        distance = np.linalg.norm(world - centre, axis=-1)
        return -100.0 + 600.0 * np.clip(radius_mm + 0.5 - distance, 0.0, 1.0)
    return value_at


def centroid(cube: np.ndarray) -> np.ndarray:
    """Intensity-weighted centroid in array order (z, y, x)."""
    grid = np.meshgrid(*(np.arange(n) for n in cube.shape), indexing="ij")
    return np.array([(g * cube).sum() / cube.sum() for g in grid])


@pytest.fixture(scope="module")
def sphere_image():
    return oblique_volume(soft_sphere(4.0))


@pytest.mark.parametrize("mode", ["fixed", "radius"])
def test_sphere_lands_in_the_centre_voxel(sphere_image, mode):
    cube = crop_cubes(sphere_image, [SPHERE_CENTRE], [4.0], mode=mode, window=(-100, 500))[0]
    assert cube.shape == (24, 24, 24) and cube.dtype == np.float32
    np.testing.assert_array_less(np.abs(centroid(cube) - 11.5), 0.5)
    assert cube[11:13, 11:13, 11:13].min() > 0.99 and cube[0, 0, 0] == 0.0


def test_cube_is_in_zyx_order_aligned_with_lps(sphere_image):
    """Moving the crop centre +x, +y or +z moves the sphere to lower x, y or z indices."""
    shifts = np.array([[1.4, 0.0, 0.0], [0.0, 2.1, 0.0], [0.0, 0.0, 4.0]])
    cubes = crop_cubes(sphere_image, SPHERE_CENTRE + shifts, mode="fixed", window=(-100, 500))
    expected = 11.5 - np.array([[0, 0, 2], [0, 3, 0], [2, 0, 0]])  # in 0.7/0.7/2 mm steps
    for cube, where in zip(cubes, expected, strict=True):
        np.testing.assert_array_less(np.abs(centroid(cube) - where), 0.5)


def test_values_are_trilinear_samples_at_the_documented_points():
    """cube[a, b, c] = CT interpolated at centre + ((c-m) sx, (b-m) sy, (a-m) sz), m = 11.5."""
    rng = np.random.default_rng(3)
    image = oblique_volume(lambda w: rng.normal(0.0, 150.0, w.shape[:-1]))
    geometry = ImageGeometry.from_image(image)
    centres = SPHERE_CENTRE + rng.uniform(-6, 6, size=(3, 3))
    cubes = crop_cubes(image, centres, mode="fixed", window=(-1000, 1000))
    a, b, c = np.meshgrid(*[np.arange(24) - 11.5] * 3, indexing="ij")
    offsets = np.stack([c * 0.7, b * 0.7, a * 2.0], axis=-1)
    array = sitk.GetArrayFromImage(image)
    for centre, cube in zip(centres, cubes, strict=True):
        where = geometry.world_to_array(centre + offsets)
        values = ndimage.map_coordinates(array, np.moveaxis(where, -1, 0), order=1)
        np.testing.assert_allclose(cube, (values + 1000) / 2000, atol=1e-5)


def test_window_maps_hu_linearly_onto_unit_interval():
    image = oblique_volume(lambda w: np.full(w.shape[:-1], 40.0))
    cube = crop_cubes(image, [SPHERE_CENTRE], [5.0])[0]
    np.testing.assert_allclose(cube, 0.5)  # (40 + 160) / 400, the default window
    np.testing.assert_allclose(crop_cubes(image, [SPHERE_CENTRE], mode="fixed",
                                          window=(-1000, 0))[0], 1.0)


def test_outside_the_image_reads_air():
    image = oblique_volume(lambda w: np.full(w.shape[:-1], 40.0))
    geometry = ImageGeometry.from_image(image)
    corner = geometry.index_to_world([0, 0, 0])
    cube = crop_cubes(image, [corner], mode="fixed", window=(-1000, 40))[0]
    assert cube.min() == 0.0 and cube.max() == 1.0  # air → 0, the image → 1


def test_default_params_are_the_lite_crops():
    params = CropParams()
    assert (params.mode, params.size, params.window, params.spacing_mm, params.min_fov_mm,
            params.radius_factor) == ("radius", 24, (-160.0, 240.0), (0.7, 0.7, 2.0), 16.0, 2.5)
    assert (MIN_FOV_MM, RADIUS_FACTOR) == (16.0, 2.5)


def test_params_coerce_values_and_list_every_problem():
    params = CropParams(size="16", window=[-100, 200], spacing_mm=[1, 1, 2], min_fov_mm="12")
    assert (params.size, params.window, params.spacing_mm, params.min_fov_mm) == (
        16, (-100.0, 200.0), (1.0, 1.0, 2.0), 12.0)
    with pytest.raises(ValueError, match=r"^mode must be one of \('fixed', 'radius'\), got "
                                         r"'box'; size must be positive, got 0; radius_factor "
                                         r"must be positive, got -1\.0$"):
        CropParams(mode="box", size=0, radius_factor=-1)
    with pytest.raises(ValueError, match=r"^size must be int, got True$"):
        CropParams(size=True)


def test_grid_spacing_of_both_modes():
    fixed = grid_spacing(CropParams(mode="fixed"), 2)
    np.testing.assert_allclose(fixed, [[0.7, 0.7, 2.0]] * 2)
    radius = grid_spacing(CropParams(), 3, [10.0, 2.0, 5.6])  # 2 × 2.5 × radius, ≥ 16 mm
    np.testing.assert_allclose(radius[:, 0], [50.0 / 24, MIN_FOV_MM / 24, 28.0 / 24])
    assert (radius == radius[:, :1]).all()  # isotropic
    np.testing.assert_allclose(grid_spacing(CropParams(mode="radius", size=10), 1, [8.0]),
                               [[4.0, 4.0, 4.0]])
    np.testing.assert_allclose(
        grid_spacing(CropParams(mode="radius", size=10, radius_factor=2.0), 1, [8.0]),
        [[3.2, 3.2, 3.2]])
    with pytest.raises(ValueError, match="needs radii_mm"):
        grid_spacing(CropParams(mode="radius"), 1)


def test_radius_mode_scales_the_field_of_view(sphere_image):
    """A sphere cropped with twice its radius fills half as many voxels per axis."""
    tight, loose = crop_cubes(sphere_image, [SPHERE_CENTRE] * 2, [6.0, 12.0], mode="radius",
                              radius_factor=1.5, window=(-100, 500))
    ratio = (tight > 0.5).sum() / (loose > 0.5).sum()
    assert 6.0 < ratio < 10.0  # ideally 8 (volume scales with the cube of the field of view)


def test_no_nodes_gives_an_empty_array(sphere_image):
    assert crop_cubes(sphere_image, np.zeros((0, 3)), np.zeros(0), size=8).shape == (0, 8, 8, 8)


def test_bad_parameters_are_rejected(sphere_image):
    with pytest.raises(ValueError, match="mode must be one of"):
        crop_cubes(sphere_image, [SPHERE_CENTRE], mode="box")
    with pytest.raises(ValueError, match="window must be"):
        crop_cubes(sphere_image, [SPHERE_CENTRE], window=(10, -10))
    with pytest.raises(ValueError, match="1 centres but 2 radii"):
        crop_cubes(sphere_image, [SPHERE_CENTRE], [1.0, 2.0], mode="radius")


def test_node_outside_the_image_names_node_and_image(sphere_image):
    centres = [SPHERE_CENTRE, SPHERE_CENTRE + [0.0, 0.0, 400.0]]
    with pytest.raises(InputError, match=r"scan\.nii\.gz \(node n7\): centre \(3\.3, -7\.9, "
                                         r"412\.6\) mm \(LPS\) lies outside the image"):
        crop_cubes(sphere_image, centres, mode="fixed", node_ids=["n3", "n7"],
                   source="scan.nii.gz")
    with pytest.raises(InputError, match=r"<image> \(node 1\): .* lies outside the image, "
                                         r"whose world box is x, y, z = "):
        crop_cubes(sphere_image, centres, [4.0, 4.0])


@pytest.fixture
def lung1(shared_data):
    shared = shared_data / "real_ct"
    return read_image(shared / "lung1_image.nrrd"), read_image(shared / "lung1_label.nrrd")


@pytest.mark.parametrize("mode", ["fixed", "radius"])
def test_real_ct_nodule_sits_at_the_crop_centre(lung1, mode):
    image, label = lung1
    geometry = ImageGeometry.from_image(label)
    mask = sitk.GetArrayViewFromImage(label) > 0
    world = geometry.array_to_world(np.argwhere(mask).astype(np.float64))
    centre = world.mean(axis=0)
    radius = (world.max(axis=0) - world.min(axis=0)).max() / 2
    label_cube = crop_cubes(label, [centre], [radius], mode=mode, window=(0, 1))[0]
    np.testing.assert_array_less(np.abs(centroid(label_cube) - 11.5), 0.5)
    image_cube = crop_cubes(image, [centre], [radius], mode=mode)[0]
    assert image_cube[10:14, 10:14, 10:14].mean() > 3 * image_cube[:, :2, :2].mean()
