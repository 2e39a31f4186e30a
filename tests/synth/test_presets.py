import numpy as np
import pytest

from lngraph.synth.presets import DEFAULT, DEFAULT_GRID, EASY, HARD, PRESETS, get_preset


def test_default_grid_is_documented_size():
    assert DEFAULT_GRID.shape == (192, 160, 96)
    np.testing.assert_allclose(DEFAULT_GRID.fov_mm, [307.2, 256.0, 288.0])
    np.testing.assert_allclose(DEFAULT_GRID.origin + (np.array(DEFAULT_GRID.shape) - 1) / 2
                               * DEFAULT_GRID.spacing, 0.0)


def test_scaled_grid_keeps_field_of_view():
    g = DEFAULT_GRID.scaled(0.25)
    assert g.shape == (48, 40, 24)
    np.testing.assert_allclose(g.fov_mm, DEFAULT_GRID.fov_mm)


def test_presets_bracket_default():
    assert get_preset("default") is DEFAULT and get_preset(HARD) is HARD
    assert list(PRESETS) == ["easy", "default", "hard"]
    for field in ("rotation_deg", "breathing_mm", "p_disappear", "p_new", "size_sigma",
                  "centre_jitter_mm", "texture_change"):
        assert getattr(EASY, field) < getattr(DEFAULT, field) < getattr(HARD, field), field
    assert EASY.deformation_mm[1] < DEFAULT.deformation_mm[1] < HARD.deformation_mm[1]
    for p in PRESETS.values():
        lo, hi = p.unmatched_bounds
        assert 0 < lo < hi < 0.25


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset 'medium'; choose one of easy, default"):
        get_preset("medium")
