from dataclasses import replace

import numpy as np
import pytest

from lngraph.io.errors import InputError
from lngraph.synth.anatomy import NODE_Z_RANGE, sample_anatomy
from lngraph.synth.nodes import (
    FreeSpace,
    NihCase,
    needed_clearance,
    nih_layout,
    paint_node,
    prior_layout,
    read_nih_cases,
    sample_count,
    sample_identity,
    sample_sizes,
)
from lngraph.synth.raster import VolumeGrid


@pytest.fixture(scope="module")
def world():
    anatomy = sample_anatomy(np.random.default_rng(8))
    return anatomy, FreeSpace.of(anatomy)


def test_count_prior_matches_nih():
    rng = np.random.default_rng(0)
    counts = np.array([sample_count(rng) for _ in range(20000)])
    np.testing.assert_allclose(np.percentile(counts, [25, 50, 75]), [2, 5, 9], atol=1)
    assert counts.min() == 1 and counts.max() <= 40


def test_size_prior_matches_nih():
    short, long_ = sample_sizes(np.random.default_rng(0), 50000)
    np.testing.assert_allclose(np.percentile(short, [10, 50, 90]), [9.1, 12.6, 21.7], atol=1.0)
    np.testing.assert_allclose(np.median(long_), 16.3, atol=1.0)
    assert np.all(long_ >= short)


def test_prior_layout_in_fat_and_apart(world):
    anatomy, free = world
    nodes = []
    rng = np.random.default_rng(1)
    for _ in range(5):
        nodes += prior_layout(anatomy, free, rng)
        pos = np.array([n.centre for n in nodes[-1:]])
        assert NODE_Z_RANGE[0] <= pos[0, 2] <= NODE_Z_RANGE[1]
    for n in nodes:
        assert free.at(n.centre) >= needed_clearance(n.short_mm) - 1e-6
        assert anatomy.mesenteric.distance_to_axis(n.centre[None])[0] >= 0.4 * n.short_mm


def test_prior_layout_is_seeded(world):
    anatomy, free = world
    a = prior_layout(anatomy, free, np.random.default_rng(3))
    b = prior_layout(anatomy, free, np.random.default_rng(3))
    np.testing.assert_array_equal([n.centre for n in a], [n.centre for n in b])


def _painted(spec, short, long_, shape=49, spacing=1.0):
    half = (shape - 1) / 2 * spacing
    grid = VolumeGrid(tuple(spec.centre - half), (spacing,) * 3, (shape,) * 3)
    vol = np.full(grid.array_shape, -100.0, np.float32)
    paint_node(vol, grid, spec, short, long_, spec.rotation, spec.texture_phase, spacing)
    return vol


def test_node_rendering_keeps_identity():
    rng = np.random.default_rng(5)
    spec = replace(sample_identity(rng, [0.0, 0, 0], 12.0, 16.0, "test"), necrotic=False)
    vol = _painted(spec, 12.0, 16.0)
    c = vol.shape[0] // 2
    assert abs(vol[c, c, c] - spec.hu) < 3.5 * spec.texture_amp  # soft tissue at the centre
    assert vol[0, 0, 0] == -100.0  # untouched far away
    inside = vol > -20
    volume_mm3 = inside.sum()
    expected = 4 / 3 * np.pi * 8 * 6 * (6 + spec.mid_frac * 2)
    assert abs(volume_mm3 - expected) / expected < 0.3
    # the same node twice as large is the same pattern, scaled
    big = _painted(spec, 24.0, 32.0, shape=97)
    for dk, dj, di in ((0, 0, 0), (2, -1, 1), (-3, 2, 0)):
        np.testing.assert_allclose(big[2 * (c + dk), 2 * (c + dj), 2 * (c + di)],
                                   vol[c + dk, c + dj, c + di], atol=1e-3)


def test_hilum_and_necrosis_are_low_density():
    rng = np.random.default_rng(0)
    spec = sample_identity(rng, [0.0, 0, 0], 12.0, 16.0, "test")
    with_hilum = replace(spec, hilum=np.array([0.0, 1.0, 0.0]), hilum_size=0.5)
    vol = _painted(with_hilum, 12.0, 16.0)
    node = _painted(replace(spec, hilum=None), 12.0, 16.0)
    fatty = (vol < -40) & (node > -20)
    assert fatty.sum() > 20
    necrotic = replace(spec, hilum=None, necrotic=True, texture_amp=0.0, hu=60.0)
    big = _painted(necrotic, 24.0, 30.0)
    c = big.shape[0] // 2
    assert abs(big[c, c, c] - 15.0) < 5.0
    small = _painted(necrotic, 12.0, 15.0)  # below the necrosis size: solid
    assert abs(small[c, c, c] - 60.0) < 1.0


def test_nih_layout_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="NIH CT Lymph Nodes annotations not found.*'prior'"):
        read_nih_cases(tmp_path / "absent")
    with pytest.raises(InputError, match="no abdominal"):
        (tmp_path / "MED_LYMPH_001").mkdir()
        (tmp_path / "MED_LYMPH_001" / "MED_LYMPH_001_lymphnodes_physicalPoints.txt").write_text(
            "1 2 3\n")
        (tmp_path / "MED_LYMPH_001" / "MED_LYMPH_001_lymphnodes_sizes.txt").write_text("10\n")
        read_nih_cases(tmp_path)


def test_nih_layout_fits_a_case_into_the_phantom(world):
    anatomy, free = world
    rel = np.array([[0.0, 0, 0], [30, 0, 0], [0, 20, 0], [0, 0, 400.0]])  # too tall: shrunk
    case = NihCase("X", rel + [100.0, -50, -300], np.array([8.0, 10, 12, 14]),
                   np.array([10.0, 12, 15, 18]))
    nodes = nih_layout(case, anatomy, free, np.random.default_rng(0))
    assert len(nodes) == 4
    np.testing.assert_array_equal([n.short_mm for n in nodes], case.short_mm)
    pos = np.array([n.centre for n in nodes])
    assert np.all((pos[:, 2] >= NODE_Z_RANGE[0]) & (pos[:, 2] <= NODE_Z_RANGE[1]))
    for n in nodes:
        assert free.at(n.centre) >= needed_clearance(n.short_mm) - 1e-6


def test_read_nih_cases(shared_data):
    cases = read_nih_cases(shared_data / "nih_ct_lymph_nodes")
    assert len(cases) == 86 and sum(len(c.pos) for c in cases) == 595
    assert all(np.all(c.long_mm >= c.short_mm) for c in cases)
