"""Rendering checks on one patient (seed 6: three scans, 7 annotated nodes) at half the
default resolution, without noise unless stated."""

import numpy as np
import pytest
from scipy import ndimage

from lngraph.synth.phantom import PatientRenderer, pull_back_coordinates, simulate_patient
from lngraph.synth.presets import DEFAULT, DEFAULT_GRID

GRID = DEFAULT_GRID.scaled(0.5)
#: Lowest correlation accepted between a node's neighbourhood in the baseline and the same
#: anatomy in a follow-up (noise-free, node size changed by less than 15 %).
MIN_NEIGHBOURHOOD_CORRELATION = 0.8


@pytest.fixture(scope="module")
def sim():
    return simulate_patient("P0007", 6, "default")


@pytest.fixture(scope="module")
def renderer(sim):
    return PatientRenderer(sim, GRID)


@pytest.fixture(scope="module")
def clean(sim, renderer):
    return [renderer.scan(t, noise=False) for t in range(sim.n_scans)]


def _sample(volume, geometry, points):
    idx = geometry.world_to_array(np.asarray(points, dtype=float).reshape(-1, 3)).T
    return ndimage.map_coordinates(volume.astype(np.float32), idx, order=1, cval=-1000)


def test_simulation_is_deterministic(sim):
    again = simulate_patient("P0007", 6, "default")
    for t in range(sim.n_scans):
        a, b = sim.node_table(t), again.node_table(t)
        np.testing.assert_array_equal(a.pos, b.pos)
        np.testing.assert_array_equal(a.track_id, b.track_id)
    other = simulate_patient("P0007", 7, "default")
    assert len(other.node_table(0)) != len(sim.node_table(0)) or not np.allclose(
        other.node_table(0).pos, sim.node_table(0).pos)


def test_track_ids_consistent(sim):
    for t in range(sim.n_scans):
        table = sim.node_table(t)
        assert len(set(table.track_id)) == len(table)
        ann = sim.annotations[t]
        assert list(table.track_id) == [sim.track_id(int(i)) for i in ann.index]
        # the same track is the same canonical node (up to the annotation jitter)
        canonical = sim.transforms[t].to_canonical(table.pos)
        truth = np.array([sim.timeline.specs[i].centre for i in ann.index]).reshape(-1, 3)
        assert np.linalg.norm(canonical - truth, axis=1).max() < 10 * DEFAULT.centre_jitter_mm


def test_follow_up_centre_is_the_deformed_baseline_centre(sim):
    t0, t1 = sim.transforms[0], sim.transforms[1]
    a0, a1 = sim.annotations[0], sim.annotations[1]
    common = np.intersect1d(a0.index, a1.index)
    assert len(common) >= 3
    p0 = a0.pos[[list(a0.index).index(i) for i in common]]
    p1 = a1.pos[[list(a1.index).index(i) for i in common]]
    mapped = t1.from_canonical(t0.to_canonical(p0))
    err = np.linalg.norm(mapped - p1, axis=1)
    sigma = DEFAULT.centre_jitter_mm
    assert err.max() < 10 * sigma and err.mean() < 5 * sigma
    # without jitter the true centres agree exactly
    c = np.array([sim.timeline.specs[i].centre for i in common])
    np.testing.assert_allclose(t1.from_canonical(t0.to_canonical(t0.from_canonical(c))),
                               t1.from_canonical(c), atol=1e-4)


def test_node_centres_inside_body_on_soft_tissue(sim, renderer, clean):
    geometry = renderer.geometry()
    tl = sim.timeline
    for t in range(sim.n_scans):
        table = sim.node_table(t)
        assert np.all(geometry.contains(table.pos))
        assert np.all(_sample(clean[t], geometry, table.pos) > -300)  # inside the body
        big = [i for i in sim.annotations[t].index if tl.short_mm[t, i] >= 8.0]
        truth = sim.transforms[t].from_canonical(np.array([tl.specs[i].centre for i in big]))
        hu = _sample(clean[t], geometry, truth)
        assert np.all((hu > -30) & (hu < 120)), hu  # soft tissue, not fat, vessel or bone


def test_image_around_node_matches_deformed_baseline(sim, renderer, clean):
    geometry = renderer.geometry()
    t0, t1 = sim.transforms[0], sim.transforms[1]
    tl = sim.timeline
    offsets = np.stack(np.meshgrid(*[np.arange(-15.0, 15.1, 3.0)] * 3, indexing="ij"), -1)
    offsets = offsets.reshape(-1, 3)
    steady = [i for i in np.flatnonzero(tl.annotated[0] & tl.annotated[1])
              if abs(np.log(tl.short_mm[1, i] / tl.short_mm[0, i])) < np.log(1.15)]
    assert steady
    corr = []
    for i in steady:
        x0 = t0.from_canonical(tl.specs[i].centre[None]) + offsets
        x1 = t1.from_canonical(t0.to_canonical(x0))
        a, b = _sample(clean[0], geometry, x0), _sample(clean[1], geometry, x1)
        corr.append(np.corrcoef(a, b)[0, 1])
    assert np.mean(corr) > MIN_NEIGHBOURHOOD_CORRELATION, corr


def test_scan_is_int16_with_noise(sim, renderer, clean):
    noisy = renderer.scan(0)
    assert noisy.dtype == np.int16 and noisy.shape == GRID.shape[::-1]
    np.testing.assert_array_equal(noisy, renderer.scan(0))
    diff = noisy.astype(float) - clean[0]
    assert abs(diff.std() - sim.noise_hu[0]) < 0.2 * sim.noise_hu[0]
    assert clean[0].min() >= -1024 and np.median(clean[0][:, :3, :3]) == -1000  # air corner


@pytest.mark.parametrize("scale", [0.25, 1.0])
def test_pull_back_interpolation_is_accurate(sim, scale):
    grid = DEFAULT_GRID.scaled(scale)
    t = sim.transforms[1]
    coords = pull_back_coordinates(t, grid)
    rng = np.random.default_rng(0)
    for _ in range(20):
        i, j, k = (int(rng.integers(n)) for n in grid.shape)
        x = grid.origin + np.array([i, j, k]) * np.asarray(grid.spacing)
        exact = t.to_canonical(x[None])[0]
        got = np.array([c[k, j, i] for c in coords])
        assert np.linalg.norm(got - exact) < 0.3  # mm, far below a voxel
