import numpy as np
import pytest

from lngraph.synth.anatomy import (
    LABELS,
    NODE_Z_RANGE,
    TISSUE_HU,
    random_rotation,
    render_anatomy,
    sample_anatomy,
)
from lngraph.synth.raster import VolumeGrid


@pytest.fixture(scope="module")
def anatomy():
    return sample_anatomy(np.random.default_rng(4))


def _label_at(label, grid, point):
    k, j, i = np.round(grid.world_to_array(np.asarray(point, float))).astype(int)
    return label[k, j, i]


def test_sampling_is_seeded(anatomy):
    again = sample_anatomy(np.random.default_rng(4))
    assert again.body == anatomy.body and len(again.structures) == len(anatomy.structures)
    other = sample_anatomy(np.random.default_rng(5))
    assert other.body != anatomy.body


def test_labels_of_landmarks(anatomy):
    grid = VolumeGrid((-160.0, -120.0, -40.0), (2.0, 2.0, 4.0), (161, 121, 21))
    hu, label = render_anatomy(anatomy, grid, rng=np.random.default_rng(0))
    yv = anatomy.vertebra_y
    assert _label_at(label, grid, [0, yv, 0]) == LABELS["bone"]
    aorta = next(s for s in anatomy.structures if s.name == "aorta").shape
    on_aorta = aorta.a[np.argmin(np.abs(aorta.a[:, 2]))]
    assert _label_at(label, grid, [on_aorta[0], on_aorta[1], 0]) == LABELS["vessel"]
    assert _label_at(label, grid, [-155, -115, 0]) == LABELS["air"]
    assert _label_at(label, grid, [0, -anatomy.body.b + 5, 0]) == LABELS["body"]
    assert hu.dtype == np.float32 and hu.min() >= -1000 - 1e-3
    fat = hu[label == LABELS["cavity_fat"]]
    assert -115 < np.median(fat) < -75  # visceral fat
    bone = hu[label == LABELS["bone"]]  # cortical and cancellous bone, discs, canal
    assert np.percentile(bone, 90) > 500


def test_labels_only_rendering(anatomy):
    grid = VolumeGrid((-160.0, -120.0, -40.0), (4.0, 4.0, 8.0), (81, 61, 11))
    hu, label = render_anatomy(anatomy, grid, rng=None)
    assert hu is None and label.dtype == np.uint8 and set(np.unique(label)) <= set(
        LABELS.values())


def test_stations_and_tissues(anatomy):
    assert {st.name for st in anatomy.stations} >= {"left_paraaortic", "aortocaval",
                                                    "mesenteric", "left_iliac"}
    for st in anatomy.stations:
        assert NODE_Z_RANGE[0] <= st.path[:, 2].min() and st.path[:, 2].max() <= NODE_Z_RANGE[1]
    assert abs(sum(st.weight for st in anatomy.stations) - 1.0) < 1e-9
    assert all(s.tissue in TISSUE_HU and s.label in LABELS for s in anatomy.structures)
    widths = 2 * np.concatenate([anatomy.mesenteric.ra, anatomy.mesenteric.rb])
    assert widths.min() >= 2.5 and widths.max() <= 10.0  # mesenteric vessels 3-10 mm wide


def test_random_rotation_is_orthonormal():
    r = random_rotation(np.random.default_rng(0))
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.isclose(np.linalg.det(r), 1.0)
