import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy.ndimage import map_coordinates

from lngraph.baselines import REGISTRY
from lngraph.baselines.nearest import robust_translation
from lngraph.baselines.trackers import (
    DLTLite,
    PatchSampler,
    SAMLite,
    TLTLite,
    TrackerParams,
    candidates_to_world,
    inside_image,
    warped_cube,
)
from lngraph.data.crops import crop_cubes
from lngraph.io.cohort import Cohort, NodeTable, Scan, ScanPair
from lngraph.io.coords import ImageGeometry
from lngraph.io.image import read_image
from lngraph.io.matches import PairPrediction

SIZE, SPACING = 64, 2.5
ORIGIN = -(SIZE - 1) / 2 * SPACING
#: Global motion of the later scan; every node also moves by its own residual on top of it.
SHIFT = np.array([7.0, -5.0, 4.0])
RNG = np.random.default_rng(0)
LATTICE = np.array([[x, y, z] for x in (-32, 32) for y in (-32, 32) for z in (-32, 32)], float)
CENTRES = LATTICE + RNG.uniform(-4, 4, LATTICE.shape)
SATELLITES = RNG.uniform(-9, 9, (8, 2, 3))
SATELLITE_HU = RNG.choice([-1, 1], (8, 2)) * RNG.uniform(80, 140, (8, 2))
SIGMAS = RNG.uniform(3.0, 5.0, 8)
RESIDUALS = RNG.uniform(-8, 8, (8, 3))
TEXTURE, TEXTURE_HU = RNG.uniform(-70, 70, (14, 3)), RNG.uniform(-60, 60, 14)
#: Small settings for fast tests (reach ±20 mm).
FAST = TrackerParams(template_size=13, search_size=33, steps=12, batch_size=4, seed=0)


def _render(centres, background_shift, seed):
    """Fat with a smooth texture (moved by ``background_shift``) and eight nodes, each a bright
    blob with two satellites of its own, at ``centres`` (world mm); 8 HU noise."""
    axis = ORIGIN + SPACING * np.arange(SIZE)
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
    points = np.stack([x, y, z], -1).astype(np.float32)
    hu = np.full(points.shape[:3], -80.0)
    for centre, amplitude in zip(TEXTURE + background_shift, TEXTURE_HU, strict=True):
        hu += amplitude * np.exp(-((points - centre) ** 2).sum(-1) / (2 * 12.0 ** 2))
    for k, centre in enumerate(centres):
        hu += 160 * np.exp(-((points - centre) ** 2).sum(-1) / (2 * SIGMAS[k] ** 2))
        for offset, amplitude in zip(SATELLITES[k], SATELLITE_HU[k], strict=True):
            hu += amplitude * np.exp(-((points - centre - offset) ** 2).sum(-1) / (2 * 2.5 ** 2))
    hu += np.random.default_rng(seed).normal(0, 8, hu.shape)
    image = sitk.GetImageFromArray(hu.astype(np.float32))
    image.SetSpacing((SPACING,) * 3)
    image.SetOrigin((ORIGIN,) * 3)
    return image


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """Earlier and later scan: the later one shows the anatomy moved by ``SHIFT``, and each
    node moved further by its own residual (up to 8 mm per axis), so a translation alone
    leaves errors of several millimetres; the later table lists the nodes in reverse order."""
    folder = tmp_path_factory.mktemp("trackers")
    truth = CENTRES + SHIFT + RESIDUALS
    sitk.WriteImage(_render(CENTRES, 0.0, 1), str(folder / "t0.mha"))
    sitk.WriteImage(_render(truth, SHIFT, 2), str(folder / "t1.mha"))
    tracks = np.array([f"n{k}" for k in range(8)], object)
    order = np.arange(8)[::-1]
    src = Scan("p", "t0", "0", folder / "t0.mha",
               NodeTable.from_arrays(CENTRES, np.full(8, 10.0), track_id=tracks))
    dst = Scan("p", "t1", "1", folder / "t1.mha",
               NodeTable.from_arrays(truth[order], np.full(8, 10.0), track_id=tracks[order]))
    return ScanPair(src, dst), truth


@pytest.fixture(scope="module")
def fitted(phantom):
    """Each tracker trained briefly (self-supervised) on the two scans of the phantom."""
    torch.set_num_threads(1)
    pair, _ = phantom
    cohort = Cohort([pair.src, pair.dst])
    return {cls.name: cls(FAST).fit(cohort) for cls in (DLTLite, SAMLite, TLTLite)}


def test_registered_as_learned_image_methods():
    for name in ("dlt_lite", "sam_lite", "tlt_lite"):
        assert REGISTRY[name].needs_images and REGISTRY[name].learned
    assert repr(DLTLite(steps=5)) == "DLTLite(steps=5)"
    assert repr(SAMLite(FAST, anchors=8)) == ("SAMLite(template_size=13, search_size=33, "
                                              "steps=12, batch_size=4, anchors=8)")


def test_params_are_checked():
    with pytest.raises(ValueError, match="template_size must be 9, 13, 17"):
        TrackerParams(template_size=16)
    with pytest.raises(ValueError, match="must exceed template_size"):
        TrackerParams(template_size=17, search_size=17)
    assert TrackerParams().reach_mm == 24.0


def test_warped_cube_motion(phantom):
    image = read_image(phantom[0].src.image)
    centre, shift = np.array([3.0, -4.0, 5.0]), np.array([4.0, -6.0, 2.0])
    plain = warped_cube(image, centre, 9, 2.0)
    assert np.array_equal(plain, crop_cubes(image, [centre], mode="fixed", size=9,
                                            spacing_mm=(2.0,) * 3)[0])
    # A pure shift: the cube shows the image around centre - shift.
    moved = warped_cube(image, centre, 9, 2.0, shift_mm=shift)
    expected = crop_cubes(image, [centre - shift], mode="fixed", size=9,
                          spacing_mm=(2.0,) * 3)[0]
    assert np.allclose(moved, expected, atol=1e-5)
    # Any affine: the voxel at centre + shift shows the image at the centre.
    matrix = np.array([[0.98, -0.17, 0.0], [0.17, 0.98, 0.05], [0.0, -0.05, 1.1]])
    cube = warped_cube(image, centre, 9, 2.0, matrix=matrix, shift_mm=shift)
    k, j, i = (4 + shift / 2.0)[::-1].astype(int)  # array order (z, y, x)
    assert cube[k, j, i] == pytest.approx(plain[4, 4, 4], abs=1e-5)


def test_sampler_knows_where_template_voxels_went(phantom):
    """Every voxel of a training template is found, by trilinear interpolation, at the search
    index the batch reports (no intensity jitter)."""
    pair, _ = phantom
    params = TrackerParams(template_size=13, search_size=33, batch_size=3, intensity_jitter=0.0)
    batch = PatchSampler([pair.src], params, np.random.default_rng(3)).batch()
    assert batch.template.shape == (3, 1, 13, 13, 13) and batch.search.shape == (3, 1, 33,
                                                                                  33, 33)
    axis = torch.arange(0.0, 13.0, 3.0)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    index = batch.search_index(2.0 * (grid - 6), 33, 2.0)
    for b in range(3):
        found = map_coordinates(batch.search[b, 0].numpy(), index[b].numpy().T, order=1)
        wanted = batch.template[b, 0].numpy()[tuple(grid.long().T)]
        assert np.abs(found - wanted).mean() < 0.02


def test_sampler_keeps_at_most_max_scans(phantom):
    pair, _ = phantom
    params = TrackerParams(template_size=13, search_size=33, max_scans=1)
    sampler = PatchSampler([pair.src, pair.dst], params, np.random.default_rng(0))
    assert len(sampler.images) == len(sampler.nodes) == len(sampler.tissue) == 1


def test_candidates_to_world_and_inside_image():
    # Candidate (1, 2, 3) at index 4 + 2m = (6, 8, 10) of a 17-cube (centre 8): offsets
    # (-2, 0, 2) voxels along (z, y, x), i.e. (+4, 0, -4) mm along (x, y, z).
    point = candidates_to_world([[1, 2, 3]], [[10.0, 20.0, 30.0]], 4.0, 2, 17, 2.0)
    assert np.allclose(point, [[14.0, 20.0, 26.0]])
    geometry = ImageGeometry((0.0, 0.0, 0.0), (1.0, 2.0, 3.0), tuple(np.eye(3).ravel()),
                             (10, 10, 10))
    assert np.allclose(inside_image(geometry, [[-5.0, 3.0, 40.0]]), [[0.0, 3.0, 27.0]])


@pytest.mark.parametrize("name", ["dlt_lite", "sam_lite", "tlt_lite"])
def test_tracks_local_motion_beyond_the_translation(fitted, phantom, name):
    pair, truth = phantom
    pred = fitted[name].predict(pair)
    assert isinstance(pred, PairPrediction) and pred.points.shape == (8, 3)
    error = np.linalg.norm(pred.points - truth, axis=1)
    shift = robust_translation(pair.src.nodes.pos, pair.dst.nodes.pos)
    translation_only = np.linalg.norm(CENTRES + shift - truth, axis=1)
    assert translation_only.mean() > 7.0  # the residual motion is real
    assert (error < 4.0).sum() >= 6
    assert np.median(error) < 0.3 * np.median(translation_only)
    correct = {(k, 7 - k) for k in range(8)}
    pairs = set(map(tuple, pred.matches.tolist()))
    assert len(pairs & correct) >= 6 and pairs <= correct
    assert fitted[name].last_seconds > 0


def test_fit_is_deterministic_by_seed(phantom):
    pair, _ = phantom
    cohort = Cohort([pair.src])
    tiny = dict(template_size=9, search_size=17, steps=2, batch_size=2, channels=4)
    a, b = (SAMLite(seed=5, **tiny).fit(cohort) for _ in range(2))
    c = SAMLite(seed=6, **tiny).fit(cohort)
    assert np.array_equal(a.predict_points(pair), b.predict_points(pair))
    weights = [torch.cat([p.flatten() for p in m.net.parameters()]) for m in (a, b, c)]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])


def test_interface_edge_cases(phantom):
    pair, _ = phantom
    with pytest.raises(RuntimeError, match="must be fitted"):
        DLTLite().predict(pair)
    with pytest.raises(ValueError, match="needs images"):
        DLTLite().fit(Cohort([Scan("p", "a", "0", None)]))
    method = DLTLite(template_size=9, search_size=17, steps=0).fit(Cohort([pair.src]))
    empty = ScanPair(Scan("p", "t0", "0", pair.src.image, NodeTable.empty()), pair.dst)
    pred = method.predict(empty)
    assert (pred.n_src, pred.n_dst, pred.points.shape, len(pred.matches)) == (0, 8, (0, 3), 0)
