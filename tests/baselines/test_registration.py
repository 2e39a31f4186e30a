import numpy as np
import pytest
import SimpleITK as sitk

from lngraph.baselines import REGISTRY
from lngraph.baselines.registration import (
    ImageRegistration,
    RegistrationParams,
    register_images,
    transform_points,
)
from lngraph.io.cohort import NodeTable, Scan, ScanPair

SIZE, SPACING, ORIGIN = (40, 40, 32), (2.5, 2.5, 3.0), (-50.0, -50.0, -48.0)
RNG = np.random.default_rng(0)
BLOBS = RNG.uniform(-30, 30, (12, 3)) * [1.0, 1.0, 1.2]
SIGMAS, AMPLITUDES = RNG.uniform(4, 9, 12), RNG.uniform(300, 900, 12)


def _phantom_hu(points):
    """A smooth phantom in HU: an air-surrounded body with twelve Gaussian blobs."""
    body = np.exp(-(((points / [42.0, 36.0, 44.0]) ** 2).sum(1)) ** 4)
    value = -1000 + 1000 * body
    for centre, sigma, amplitude in zip(BLOBS, SIGMAS, AMPLITUDES, strict=True):
        value += amplitude * np.exp(-((points - centre) ** 2).sum(1) / (2 * sigma ** 2))
    return value


def _image(warp=None):
    """The phantom on the test grid; with ``warp``, voxel q shows the phantom at warp(q)."""
    index = np.stack(np.meshgrid(*[np.arange(s) for s in SIZE], indexing="ij"), -1)
    points = np.asarray(ORIGIN) + index.reshape(-1, 3) * np.asarray(SPACING)
    if warp is not None:
        points = transform_points(warp, points)
    array = _phantom_hu(points).reshape(SIZE).transpose(2, 1, 0).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    return image


def _known_affine():
    rotation = sitk.Euler3DTransform((0, 0, 0), np.deg2rad(4), np.deg2rad(-3), np.deg2rad(6))
    matrix = np.asarray(rotation.GetMatrix()).reshape(3, 3) @ np.diag([1.04, 0.97, 1.02])
    affine = sitk.AffineTransform(3)
    affine.SetMatrix(matrix.ravel().tolist())
    affine.SetTranslation((5.0, -4.0, 3.0))
    return affine


@pytest.fixture(scope="module")
def image_pair(tmp_path_factory):
    """Earlier and later scans of one patient: the later image shows the earlier anatomy
    moved by a known affine ``A`` (later(q) = earlier(A q)), so an earlier point p lies at
    A⁻¹ p in the later scan."""
    folder = tmp_path_factory.mktemp("registration")
    affine = _known_affine()
    sitk.WriteImage(_image(), str(folder / "t0.mha"))
    sitk.WriteImage(_image(affine), str(folder / "t1.mha"))
    centres = BLOBS
    truth = transform_points(affine.GetInverse(), centres)
    order = np.arange(len(centres))[::-1]  # the later table lists nodes in another order
    tracks = np.array([f"n{k}" for k in range(len(centres))], object)
    src = Scan("p", "t0", "0", folder / "t0.mha",
               NodeTable.from_arrays(centres, np.full(12, 8.0), track_id=tracks))
    dst = Scan("p", "t1", "1", folder / "t1.mha",
               NodeTable.from_arrays(truth[order], np.full(12, 8.0), track_id=tracks[order]))
    return ScanPair(src, dst), truth


def test_recovers_known_affine_within_2mm_and_matches(image_pair):
    pair, truth = image_pair
    assert np.linalg.norm(pair.src.nodes.pos - truth, axis=1).max() > 8  # a real motion
    # The default pipeline (affine, then B-spline), lightened to keep the test quick.
    params = RegistrationParams(samples=4000, bspline_iterations=4, threads=1)
    method = ImageRegistration(gate_mm=5.0, params=params)
    pred = method.predict(pair)
    assert np.linalg.norm(pred.points - truth, axis=1).max() < 2.0
    assert sorted(map(tuple, pred.matches.tolist())) == [(k, 11 - k) for k in range(12)]
    assert method.last_seconds > 0


def test_affine_stage_alone_maps_fixed_points_into_moving_space(image_pair):
    pair, truth = image_pair
    fixed, moving = sitk.ReadImage(str(pair.src.image)), sitk.ReadImage(str(pair.dst.image))
    transform = register_images(fixed, moving, RegistrationParams(bspline_mesh=0, threads=1))
    assert isinstance(transform, sitk.AffineTransform)
    err = np.linalg.norm(transform_points(transform, pair.src.nodes.pos) - truth, axis=1)
    assert err.max() < 2.0


def test_registered_and_needs_images():
    assert REGISTRY["registration"] is ImageRegistration
    assert ImageRegistration.needs_images
    nodes = NodeTable.from_arrays(np.zeros((1, 3)), [8.0])
    pair = ScanPair(Scan("p", "a", "0", None, nodes), Scan("p", "b", "1", None, nodes))
    with pytest.raises(ValueError, match="scan 'a' of patient 'p' has no image"):
        ImageRegistration().predict(pair)


def test_empty_scan_skips_registration():
    nodes = NodeTable.from_arrays(np.zeros((2, 3)), [8.0, 8.0])
    pair = ScanPair(Scan("p", "a", "0", None, nodes), Scan("p", "b", "1", None,
                                                           NodeTable.empty()))
    pred = ImageRegistration().predict(pair)
    assert (pred.n_src, pred.n_dst, len(pred.matches)) == (2, 0, 0)
    assert np.isnan(pred.points).all()


def test_params_validation():
    with pytest.raises(ValueError, match="one entry per pyramid level"):
        RegistrationParams(shrink=(4, 2), smooth_mm=(1.0,))
    with pytest.raises(ValueError, match="initializer"):
        RegistrationParams(initializer="centre")
