import numpy as np
import pytest

from lngraph.synth.anatomy import sample_anatomy
from lngraph.synth.bowel import (
    GAS_HU,
    MAX_DISTENSION,
    BowelField,
    plan_bowel,
    sample_bowel_state,
)
from lngraph.synth.nodes import FreeSpace
from lngraph.synth.raster import VolumeGrid


@pytest.fixture(scope="module")
def planned():
    anatomy = sample_anatomy(np.random.default_rng(6))
    free = FreeSpace.of(anatomy)
    nodes = np.array([[20.0, anatomy.vertebra_y - 60, 0.0], [-30.0, anatomy.vertebra_y - 80,
                                                            -40.0]])
    radius = np.array([15.0, 10.0])
    loops = plan_bowel(anatomy, free, nodes, radius, np.random.default_rng(1))
    return anatomy, free, nodes, radius, loops


def test_loops_avoid_nodes_and_each_other(planned):
    _, free, nodes, radius, loops = planned
    assert sum(lp.kind == "colon" for lp in loops) == 1
    assert sum(len(lp.points) for lp in loops if lp.kind == "small") * 5.0 > 1500
    for lp in loops:
        d = np.linalg.norm(lp.points[:, None] - nodes[None], axis=-1)
        assert np.all(d - radius[None] - MAX_DISTENSION * lp.radius[:, None] > 0)
        assert np.all(free.at(lp.points) > lp.radius)  # inside the abdominal fat
    for a in range(len(loops)):
        for b in range(a + 1, len(loops)):
            d = np.linalg.norm(loops[a].points[:, None] - loops[b].points[None], axis=-1)
            assert np.all(d > loops[a].radius[:, None] + loops[b].radius[None])


def test_field_paints_only_near_loops(planned):
    _, _, _, _, loops = planned
    grid = VolumeGrid((-150.0, -120.0, -140.0), (4.0, 4.0, 6.0), (76, 61, 47))
    field = BowelField.of(loops, grid, 4.0)
    vol = np.full(grid.array_shape, -100.0, np.float32)
    state = sample_bowel_state(loops, np.random.default_rng(0), oral_contrast=False)
    field.paint(vol, state, np.ones((8, 3)) * 0.5, 4.0)
    changed = np.flatnonzero(vol.reshape(-1) != -100.0)
    assert set(changed) <= set(field.index)
    assert vol.min() < -500 or not state.gas.any()  # gas shows where there is some
    assert vol.min() >= GAS_HU - 1e-3


def test_states_differ_between_scans(planned):
    loops = planned[4]
    rng = np.random.default_rng(0)
    a, b = (sample_bowel_state(loops, rng, oral_contrast=False) for _ in range(2))
    assert not np.allclose(a.radius_factor, b.radius_factor)
    assert np.all(a.radius_factor <= MAX_DISTENSION)
