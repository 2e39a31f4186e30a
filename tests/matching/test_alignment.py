import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lngraph.matching.alignment import alignment_shifts, pairwise_distances, robust_translation


def aligned_distances(src, dst, gate_mm=15.0, local_scale_mm=0.0):
    """``‖src_i + u_i - dst_j‖``: the distances the matcher's distance term uses."""
    src = np.asarray(src, dtype=float).reshape(-1, 3)
    dst = np.asarray(dst, dtype=float).reshape(-1, 3)
    return pairwise_distances(src + alignment_shifts(src, dst, gate_mm, local_scale_mm), dst)


def test_a_pure_translation_is_recovered_exactly():
    src = np.random.default_rng(0).normal(0, 40, (12, 3))
    shift = np.array([12.5, -30.0, 7.25])
    np.testing.assert_allclose(robust_translation(src, src + shift), shift, atol=1e-9)
    np.testing.assert_allclose(np.diag(aligned_distances(src, src + shift)), 0.0, atol=1e-9)


def test_twenty_percent_outliers_do_not_move_the_translation():
    rng = np.random.default_rng(1)
    src = rng.uniform(-80, 80, (20, 3))
    shift = np.array([-25.0, 14.0, 60.0])
    dst = src + shift + rng.normal(0, 0.5, src.shape)
    dst[:4] = rng.uniform(-80, 80, (4, 3)) + np.array([300.0, 0.0, 0.0])   # 4 of 20 elsewhere
    t = robust_translation(src, dst)
    assert np.linalg.norm(t - shift) < 0.5
    # The centroid difference is far off: the outliers would drag a mean.
    assert np.linalg.norm(dst.mean(0) - src.mean(0) - shift) > 40


def test_empty_sets_and_pairwise_distances():
    np.testing.assert_array_equal(robust_translation(np.zeros((0, 3)), np.ones((2, 3))),
                                  np.zeros(3))
    assert aligned_distances(np.zeros((0, 3)), np.ones((2, 3))).shape == (0, 2)
    np.testing.assert_allclose(pairwise_distances(np.zeros((1, 3)), np.array([[3.0, 4.0, 0.0]])),
                               [[5.0]])


def test_large_scans_vote_on_a_sample_and_still_recover_the_shift():
    from lngraph.matching.alignment import MAX_CANDIDATES

    rng = np.random.default_rng(5)
    src = rng.uniform(0, 300, size=(200, 3))
    shift = np.array([21.0, -13.0, 8.0])
    dst = src + shift + rng.normal(0, 1.0, size=src.shape)
    dst[:30] = rng.uniform(0, 300, size=(30, 3))  # 15% replaced by unrelated nodes
    assert len(src) * len(dst) > MAX_CANDIDATES
    t = robust_translation(src, dst)
    np.testing.assert_allclose(t, shift, atol=0.5)


def _two_clusters(rng):
    """Two node clusters 200 mm apart that move 12 mm in opposite directions along x."""
    left = rng.uniform(-20, 20, (8, 3)) + np.array([-100.0, 0.0, 0.0])
    right = rng.uniform(-20, 20, (8, 3)) + np.array([100.0, 0.0, 0.0])
    src = np.concatenate([left, right])
    shift = np.where(src[:, :1] < 0, [[-12.0, 0.0, 0.0]], [[12.0, 0.0, 0.0]])
    return src, src + shift, shift


def test_local_shifts_follow_each_cluster_where_one_translation_cannot():
    from lngraph.matching.alignment import local_shifts

    src, dst, shift = _two_clusters(np.random.default_rng(2))
    u = local_shifts(src, dst, gate_mm=30.0, scale_mm=30.0, prior_weight=0.01)
    np.testing.assert_allclose(u, shift, atol=0.05)
    # One translation leaves one of the clusters 24 mm off (or both 12 mm).
    t = robust_translation(src, dst, gate_mm=30.0)
    assert np.abs(src + t - dst).max() >= 12.0 - 1e-9
    d = aligned_distances(src, dst, gate_mm=30.0, local_scale_mm=30.0)
    assert np.diag(d).max() < 2.0    # the default prior weight pulls a little towards t


def test_local_shifts_without_rounds_are_the_translation_and_move_with_the_scans():
    from lngraph.matching.alignment import local_shifts

    rng = np.random.default_rng(3)
    src, dst, _ = _two_clusters(rng)
    t = robust_translation(src, dst)
    np.testing.assert_allclose(local_shifts(src, dst, rounds=0), np.repeat(t[None], 16, 0))
    u = local_shifts(src, dst)
    move = np.array([40.0, -7.0, 3.0])
    np.testing.assert_allclose(local_shifts(src, dst + move), u + move, atol=1e-9)
    np.testing.assert_allclose(local_shifts(src + move, dst), u - move, atol=1e-9)
    assert local_shifts(np.zeros((0, 3)), dst).shape == (0, 3)
    np.testing.assert_array_equal(local_shifts(src, np.zeros((0, 3))), np.zeros((16, 3)))


def _rotation(axis, degrees):
    """Rodrigues' rotation matrix."""
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    a = np.radians(degrees)
    return np.eye(3) + np.sin(a) * cross + (1 - np.cos(a)) * cross @ cross


def _turned_scan(seed=0, degrees=10.0, n=10):
    rng = np.random.default_rng(seed)
    src = rng.uniform(-100, 100, (n, 3))
    rotation = _rotation(rng.normal(size=3), degrees)
    dst = src @ rotation.T + np.array([20.0, -5.0, 30.0]) + rng.normal(0, 0.5, (n, 3))
    return src, dst, rotation


def test_robust_rigid_undoes_a_turned_patient():
    from lngraph.matching.alignment import robust_rigid

    src, dst, rotation = _turned_scan()
    found, t = robust_rigid(src, dst)
    angle = np.degrees(np.arccos(np.clip((np.trace(found.T @ rotation) - 1) / 2, -1, 1)))
    assert angle < 1.0
    assert np.linalg.norm(src @ found.T + t - dst, axis=1).max() < 2.5
    # the translation alone leaves the far nodes far off; the rigid shifts bring them home
    plain = alignment_shifts(src, dst, 15.0, 30.0)
    rigid = alignment_shifts(src, dst, 15.0, 30.0, rigid=True)
    assert np.linalg.norm(src + rigid - dst, axis=1).max() < 3.0
    assert np.linalg.norm(src + plain - dst, axis=1).max() > 10.0


def test_robust_rigid_follows_translations_of_either_scan():
    from lngraph.matching.alignment import robust_rigid

    src, dst, _ = _turned_scan(seed=1)
    rotation, t = robust_rigid(src, dst)
    moved = src @ rotation.T + t
    a, b = np.array([40.0, -7.0, 3.0]), np.array([-12.0, 30.0, 55.0])
    rotation2, t2 = robust_rigid(src + a, dst + b)
    np.testing.assert_allclose(rotation2, rotation, atol=1e-9)
    np.testing.assert_allclose((src + a) @ rotation2.T + t2, moved + b, atol=1e-6)
    shifts = alignment_shifts(src, dst, 15.0, 30.0, rigid=True)
    np.testing.assert_allclose(alignment_shifts(src + a, dst + b, 15.0, 30.0, rigid=True),
                               shifts + b - a, atol=1e-6)


def test_robust_rigid_keeps_the_translation_for_few_nodes_or_large_angles():
    from lngraph.matching.alignment import robust_rigid

    src, dst, _ = _turned_scan(seed=2, n=2)
    rotation, t = robust_rigid(src, dst)
    np.testing.assert_array_equal(rotation, np.eye(3))
    np.testing.assert_allclose(t, robust_translation(src, dst))
    np.testing.assert_allclose(alignment_shifts(src, dst, 15.0, 30.0, rigid=True),
                               alignment_shifts(src, dst, 15.0, 30.0))
    src, dst, _ = _turned_scan(seed=3, degrees=45.0)     # beyond max_angle_deg: no rotation
    rotation, _ = robust_rigid(src, dst, max_angle_deg=20.0)
    np.testing.assert_array_equal(rotation, np.eye(3))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 30), st.integers(1, 30), st.floats(0.5, 60.0), st.integers(0, 2**31 - 1))
def test_the_vote_drops_only_candidates_that_cannot_win(n, m, spread, seed):
    """The pruned vote keeps the full sum of every candidate that can win and drops only
    candidates whose full vote is below the winner's."""
    from lngraph.matching.alignment import _votes

    rng = np.random.default_rng(seed)
    src = rng.uniform(0, 200, (n, 3))
    dst = np.concatenate([src[: min(n, m)] + rng.normal(0, spread, (min(n, m), 3)),
                          rng.uniform(0, 200, (max(0, m - n), 3))])
    candidates = np.concatenate([[dst.mean(0) - src.mean(0)] if n else np.zeros((1, 3)),
                                 (dst[None] - src[:, None]).reshape(-1, 3)])
    sigma = 7.5
    nearest = np.linalg.norm(src[None, :, None] + candidates[:, None, None] - dst[None, None],
                             axis=-1).min(-1)
    full = np.exp(-nearest ** 2 / (2 * sigma ** 2)).sum(-1)
    votes = _votes(src, dst, candidates, sigma, block=4)
    kept = np.isfinite(votes)
    np.testing.assert_allclose(votes[kept], full[kept], rtol=1e-12, atol=1e-9)
    assert np.all(full[~kept] < full.max() - 1e-9)
    assert kept[np.argmax(full)]


def wide_turned_scan(seed, degrees=15.0, n=10):
    """A 10-node layout turned by 15° about its centroid, shifted and jittered by 4 mm: far
    enough that the translation lines up the wrong nodes (seed 29; also used by
    ``tests/baselines/test_geometry_fusion.py``)."""
    from lngraph.matching.alignment import axis_angle

    rng = np.random.default_rng(seed)
    src = rng.uniform(-120, 120, (n, 3)) * [1.0, 1.0, 0.6]
    axis = rng.normal(size=3)
    rotation = axis_angle(axis / np.linalg.norm(axis), degrees)
    dst = ((src - src.mean(axis=0)) @ rotation.T + src.mean(axis=0)
           + np.array([20.0, -5.0, 30.0]) + rng.normal(0, 4.0, (n, 3)))
    return src, dst, rotation


def test_the_rotation_search_recovers_a_turn_the_refinement_misses():
    from lngraph.matching.alignment import rigid_vote, robust_rigid

    src, dst, rotation = wide_turned_scan(29)
    plain = robust_rigid(src, dst)
    np.testing.assert_array_equal(plain[0], np.eye(3))          # no round accepted
    assert np.linalg.norm(src @ plain[0].T + plain[1] - dst, axis=1).min() > 50.0
    found, t = robust_rigid(src, dst, search=True)
    angle = np.degrees(np.arccos(np.clip((np.trace(found.T @ rotation) - 1) / 2, -1, 1)))
    assert angle < 3.0
    assert np.linalg.norm(src @ found.T + t - dst, axis=1).max() < 10.0
    assert rigid_vote(src, dst, found, t) > rigid_vote(src, dst, *plain) + 5.0
    shifts = alignment_shifts(src, dst, 15.0, 30.0, rigid=True, search=True)
    assert np.linalg.norm(src + shifts - dst, axis=1).max() < 12.0
    # the search follows translations of either scan, like the refinement
    a, b = np.array([40.0, -7.0, 3.0]), np.array([-12.0, 30.0, 55.0])
    np.testing.assert_allclose(alignment_shifts(src + a, dst + b, 15.0, 30.0, rigid=True,
                                                search=True), shifts + b - a, atol=1e-6)


def test_the_rotation_search_leaves_an_accepted_refinement_alone():
    from lngraph.matching.alignment import robust_rigid

    for seed in (0, 1):
        src, dst, _ = _turned_scan(seed=seed)
        for got, want in zip(robust_rigid(src, dst, search=True), robust_rigid(src, dst),
                             strict=True):
            np.testing.assert_array_equal(got, want)
    src, dst, _ = _turned_scan(seed=2, n=2)        # too few nodes for a rotation: no search
    np.testing.assert_array_equal(robust_rigid(src, dst, search=True)[0], np.eye(3))


def test_the_search_rotations_are_proper_and_cover_both_senses():
    from lngraph.matching.alignment import SEARCH_ANGLES_DEG, SEARCH_AXES, SEARCH_ROTATIONS

    assert SEARCH_ROTATIONS.shape == (SEARCH_AXES * len(SEARCH_ANGLES_DEG) * 2, 3, 3)
    np.testing.assert_allclose(SEARCH_ROTATIONS @ SEARCH_ROTATIONS.transpose(0, 2, 1),
                               np.broadcast_to(np.eye(3), SEARCH_ROTATIONS.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(SEARCH_ROTATIONS), 1.0)
    angles = np.degrees(np.arccos(np.clip((np.trace(SEARCH_ROTATIONS, axis1=1, axis2=2) - 1) / 2,
                                          -1, 1)))
    np.testing.assert_allclose(np.sort(np.unique(angles.round(9))), SEARCH_ANGLES_DEG)
    # each start's inverse is a start too (the two senses about one axis)
    inverses = SEARCH_ROTATIONS.transpose(0, 2, 1)
    assert all(np.abs(SEARCH_ROTATIONS - r).max(axis=(1, 2)).min() < 1e-12 for r in inverses)
