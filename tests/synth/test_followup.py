import numpy as np
import pytest

from lngraph.synth.anatomy import sample_anatomy
from lngraph.synth.followup import (
    MAX_FIELD_GRADIENT,
    DisplacementField,
    ScanTransform,
    annotate,
    evolve_nodes,
    sample_transform,
)
from lngraph.synth.nodes import ANNOTATION_MIN_SHORT_MM, FreeSpace, sample_count, sample_identity
from lngraph.synth.presets import DEFAULT, EASY, HARD, PRESETS


@pytest.fixture(scope="module")
def world():
    anatomy = sample_anatomy(np.random.default_rng(2))
    probe = np.concatenate([st.path for st in anatomy.stations])
    return anatomy, FreeSpace.of(anatomy), probe


def test_linear_field_and_rigid_inverse():
    field = DisplacementField(linear=np.diag([0.1, 0.0, -0.05]), centre=np.zeros(3),
                              core_axes=np.array([1e4, 1e4]), k=np.zeros((0, 3)),
                              phase=np.zeros(0), amp=np.zeros((0, 3)),
                              visceral=np.zeros(0, bool), y_visceral=0.0, breathing_mm=0.0,
                              z_diaphragm=0.0, bump_centre=np.zeros((1, 3)),
                              bump_shift=np.zeros((1, 3)), bump_radius=np.ones(1))
    core = 0.35 + 0.65 / (1 + np.exp(-100 / 15))  # the centre of a huge core moves fully
    np.testing.assert_allclose(field(np.array([[10.0, 5, 20]])), [[core, 0, -core]],
                               rtol=1e-4)
    t = ScanTransform(np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]), np.array([1.0, 2, 3]),
                      np.array([10.0, 0, 0]))
    np.testing.assert_allclose(t.to_canonical([[10.0, 0, 0]]), [[11.0, 2, 3]])
    x = np.random.default_rng(0).uniform(-100, 100, (20, 3))
    np.testing.assert_allclose(t.from_canonical(t.to_canonical(x)), x, atol=1e-12)


@pytest.mark.parametrize("preset", [EASY, DEFAULT, HARD], ids=lambda p: p.name)
def test_follow_up_transform_is_invertible_and_smooth(world, preset):
    anatomy, _, probe = world
    rng = np.random.default_rng(1)
    for _ in range(3):
        t = sample_transform(preset, anatomy, rng, probe, baseline=False)
        assert t.field.max_gradient(probe) <= MAX_FIELD_GRADIENT + 1e-9
        x = rng.uniform([-100, -80, -90], [100, 40, 90], (200, 3))
        np.testing.assert_allclose(t.to_canonical(t.from_canonical(x)), x, atol=1e-5)
        moved = np.linalg.norm(t.field(probe), axis=1)
        assert moved.mean() > 0.5  # a follow-up does deform
        angle = np.degrees(np.arccos(np.clip((np.trace(t.rotation) - 1) / 2, -1, 1)))
        assert angle <= preset.rotation_deg + 1e-9
        assert np.all(np.abs(t.translation) <= np.asarray(preset.translation_mm) + 1e-9)


def test_baseline_pose_is_small(world):
    anatomy, _, probe = world
    t = sample_transform(DEFAULT, anatomy, np.random.default_rng(0), probe, baseline=True)
    assert t.field is None and np.all(np.abs(t.translation) <= 1.0)


def _baseline(anatomy, rng, n):
    pts = np.concatenate([st.path for st in anatomy.stations])
    return [sample_identity(rng, pts[rng.integers(len(pts))], rng.uniform(6, 20),
                            rng.uniform(20, 25), "test") for _ in range(n)]


def test_timeline_invariants(world):
    anatomy, free, _ = world
    rng = np.random.default_rng(4)
    tl = evolve_nodes(_baseline(anatomy, rng, 15), [], 3, HARD, anatomy, free, rng)
    n = len(tl.specs)
    assert tl.short_mm.shape == tl.long_mm.shape == tl.present.shape == (3, n)
    assert tl.rotation.shape == (3, n, 3, 3)
    assert np.all(tl.present >= tl.annotated)  # annotated nodes are visible
    assert np.all(tl.short_mm[tl.annotated] >= ANNOTATION_MIN_SHORT_MM)
    assert np.all(tl.long_mm >= tl.short_mm)
    appears = ~tl.present[:-1] & tl.present[1:]
    first_seen = tl.present.argmax(axis=0)
    for t, i in zip(*np.nonzero(appears), strict=True):  # only fresh nodes appear
        assert first_seen[i] == t + 1


@pytest.mark.parametrize("name", list(PRESETS))
def test_unmatched_share_within_preset_bounds(world, name):
    anatomy, free, _ = world
    preset = PRESETS[name]
    rng = np.random.default_rng(7)
    unmatched = total = 0
    for _ in range(150):
        tl = evolve_nodes(_baseline(anatomy, rng, sample_count(rng)), [], 2, preset, anatomy,
                          free, rng)
        a, b = tl.annotated
        unmatched += int((a & ~b).sum() + (b & ~a).sum())
        total += int(a.sum() + b.sum())
    lo, hi = preset.unmatched_bounds
    assert lo <= unmatched / total <= hi


def test_annotation_jitter_and_order(world):
    anatomy, free, probe = world
    rng = np.random.default_rng(3)
    tl = evolve_nodes(_baseline(anatomy, rng, 30), [], 2, EASY, anatomy, free, rng)
    t = sample_transform(EASY, anatomy, rng, probe, baseline=False)
    ann = annotate(tl, 1, t, EASY, np.random.default_rng(0))
    assert sorted(ann.index) == list(np.flatnonzero(tl.annotated[1]))
    assert list(ann.index) != sorted(ann.index)  # shuffled: order carries no identity
    truth = t.from_canonical(np.array([tl.specs[i].centre for i in ann.index]))
    err = ann.pos - truth
    assert 0.4 * EASY.centre_jitter_mm < err.std() < 1.6 * EASY.centre_jitter_mm
    assert np.all(ann.long_mm >= ann.short_mm)
