"""Multi-scan tracking: synchronisation of pairwise matchings into consistent tracks."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lngraph.io.matches import PairPrediction
from lngraph.matching.tracks import (
    DEFAULT_THRESHOLD,
    block_affinity,
    chain_tracks,
    link_predictions,
    pairwise_affinity,
    spectral_denoise,
    synchronize,
)


def _match(n_src, n_dst, pairs, scores=None):
    return PairPrediction(n_src, n_dst, np.asarray(pairs, np.int64).reshape(-1, 2), scores)


def _partition(labels) -> set[frozenset[int]]:
    groups: dict[int, set[int]] = {}
    for node, label in enumerate(np.asarray(labels).tolist()):
        groups.setdefault(label, set()).add(node)
    return {frozenset(g) for g in groups.values()}


def _check_valid(tracks):
    """Every node in exactly one track, tracks numbered 0..K-1, one node per scan at most,
    and the implied pairwise matchings one-to-one and cycle-consistent."""
    n = sum(tracks.sizes)
    assert tracks.labels.shape == (n,)
    assert set(tracks.labels.tolist()) == set(range(tracks.n_tracks))
    for s in range(len(tracks.sizes)):
        labels = tracks.scan_labels(s)
        assert len(set(labels.tolist())) == len(labels)      # never two nodes of one scan
    table = tracks.table()
    assert (table >= 0).sum() == n
    implied = {}
    for a, b in itertools.combinations(range(len(tracks.sizes)), 2):
        matches, scores = tracks.pair_matches(a, b)
        pred = PairPrediction(tracks.sizes[a], tracks.sizes[b], matches, scores)  # one-to-one
        implied[(a, b)] = dict(map(tuple, pred.matches.tolist()))
        assert np.all((pred.scores >= 0) & (pred.scores <= 1))
    for a, b, c in itertools.combinations(range(len(tracks.sizes)), 3):
        for i, j in implied[(a, b)].items():
            if j in implied[(b, c)]:
                assert implied[(a, c)].get(i) == implied[(b, c)][j]


def test_a_node_missing_from_the_middle_scan_stays_one_track():
    # scan A: a0, a1; scan B: b0 (= a0); scan C: c0 (= a0), c1 (= a1, missing from B)
    preds = {(0, 1): _match(2, 1, [[0, 0]]),
             (1, 2): _match(1, 2, [[0, 0]]),
             (0, 2): _match(2, 2, [[0, 0], [1, 1]])}
    tracks = link_predictions((2, 1, 2), preds)
    _check_valid(tracks)
    assert _partition(tracks.labels) == {frozenset({0, 2, 3}), frozenset({1, 4})}
    np.testing.assert_array_equal(tracks.table(), [[0, 0, 0], [1, -1, 1]])
    # chaining consecutive pairs cannot bridge the gap: a1 and c1 become two tracks
    chain = link_predictions((2, 1, 2), preds, mode="chain")
    assert _partition(chain.labels) == {frozenset({0, 2, 3}), frozenset({1}), frozenset({4})}


def test_contradictory_matches_are_resolved_consistently():
    # A1<->B1, B1<->C1 but A1<->C2: no track assignment keeps all three
    preds = {(0, 1): _match(1, 1, [[0, 0]]),
             (1, 2): _match(1, 2, [[0, 0]]),
             (0, 2): _match(1, 2, [[0, 1]])}
    tracks = link_predictions((1, 1, 2), preds)
    _check_valid(tracks)
    kept = sum(len(tracks.pair_matches(a, b)[0]) for a, b in preds)
    assert kept == 2                      # the most of the three a consistent set can keep
    # with scores, the weak A1<->C2 gives way: {A1, B1, C1} and {C2}
    scored = {(0, 1): _match(1, 1, [[0, 0]], [0.9]),
              (1, 2): _match(1, 2, [[0, 0]], [0.9]),
              (0, 2): _match(1, 2, [[0, 1]], [0.4])}
    tracks = link_predictions((1, 1, 2), scored, weights="score")
    assert _partition(tracks.labels) == {frozenset({0, 1, 2}), frozenset({3})}
    np.testing.assert_array_equal(tracks.pair_matches(0, 2)[0], [[0, 0]])


def test_the_majority_of_scans_wins_a_contradiction():
    # scans A, B, C (two nodes), D; every pair links A1, B1, C1, D1 except that A-C says C2
    preds = {(0, 1): _match(1, 1, [[0, 0]]), (1, 2): _match(1, 2, [[0, 0]]),
             (0, 2): _match(1, 2, [[0, 1]]), (2, 3): _match(2, 1, [[0, 0]]),
             (0, 3): _match(1, 1, [[0, 0]]), (1, 3): _match(1, 1, [[0, 0]])}
    tracks = synchronize((1, 1, 2, 1), {k: pairwise_affinity(p) for k, p in preds.items()})
    assert _partition(tracks.labels) == {frozenset({0, 1, 2, 4}), frozenset({3})}


def test_chain_scores_are_products_along_the_chain():
    pairwise = {(0, 1): np.array([[0.5]]), (1, 2): np.array([[0.8]]),
                (0, 2): np.array([[0.0]])}
    tracks = chain_tracks((1, 1, 1), pairwise)
    assert tracks.n_tracks == 1
    assert tracks.pair_matches(0, 2)[1][0] == pytest.approx(0.4)
    assert tracks.pair_matches(1, 2)[1][0] == pytest.approx(0.8)


def test_spectral_denoising_of_consistent_matchings_is_exact():
    # two tracks of 3 and 2 nodes and one lone node over three scans
    a = np.zeros((6, 3))
    a[[0, 2, 4], 0] = 1
    a[[1, 5], 1] = 1
    a[3, 2] = 1
    w = a @ a.T
    denoised, rank = spectral_denoise(w)
    assert rank == 2                                     # the lone node needs no component
    off = ~np.eye(6, dtype=bool)
    np.testing.assert_allclose(denoised[off], w[off], atol=1e-9)


def test_block_affinity_layout_and_errors():
    w = block_affinity((2, 1), {(0, 1): np.array([[0.25], [1.0]])})
    np.testing.assert_allclose(w, [[1, 0, 0.25], [0, 1, 1.0], [0.25, 1.0, 1]])
    with pytest.raises(ValueError, match="earlier, later"):
        synchronize((1, 1), {(1, 0): np.ones((1, 1))})
    with pytest.raises(ValueError, match="shape"):
        synchronize((1, 2), {(0, 1): np.ones((1, 1))})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        synchronize((1, 1), {(0, 1): np.full((1, 1), 2.0)})
    with pytest.raises(ValueError, match="mode"):
        link_predictions((1,), {}, mode="greedy")


def test_empty_and_single_scan_patients():
    assert synchronize((), {}).n_tracks == 0
    assert synchronize((0, 0), {(0, 1): np.zeros((0, 0))}).n_tracks == 0
    tracks = synchronize((3,), {})
    np.testing.assert_array_equal(tracks.labels, [0, 1, 2])
    assert chain_tracks((0, 2), {(0, 1): np.zeros((0, 2))}).n_tracks == 2


@st.composite
def score_matrices(draw):
    """A patient of 1-5 scans with random (sparse) pairwise affinities in [0, 1]."""
    sizes = draw(st.lists(st.integers(0, 6), min_size=1, max_size=5))
    pairwise = {}
    for a, b in itertools.combinations(range(len(sizes)), 2):
        if draw(st.booleans()) or b == a + 1:
            seed = draw(st.integers(0, 2**31 - 1))
            rng = np.random.default_rng(seed)
            x = rng.random((sizes[a], sizes[b]))
            x[rng.random(x.shape) < draw(st.floats(0.0, 0.9))] = 0.0
            pairwise[(a, b)] = x
    return sizes, pairwise


@settings(max_examples=150, deadline=None)
@given(score_matrices(), st.floats(0.05, 0.95))
def test_tracks_never_hold_two_nodes_of_one_scan(case, threshold):
    sizes, pairwise = case
    _check_valid(synchronize(sizes, pairwise, threshold=threshold))
    _check_valid(chain_tracks(sizes, pairwise))


@st.composite
def consistent_patients(draw):
    """True tracks with skips, node orders shuffled per scan, and their exact matchings."""
    n_scans = draw(st.integers(1, 6))
    presence = np.array(draw(st.lists(st.lists(st.booleans(), min_size=n_scans,
                                               max_size=n_scans), max_size=10)),
                        dtype=bool).reshape(-1, n_scans)
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    order = [rng.permutation(np.flatnonzero(presence[:, s])) for s in range(n_scans)]
    pairwise = {(a, b): (order[a][:, None] == order[b][None, :]).astype(float)
                for a, b in itertools.combinations(range(n_scans), 2)}
    truth = np.concatenate([order[s] for s in range(n_scans)]) if n_scans else np.zeros(0)
    return [len(o) for o in order], pairwise, truth


@settings(max_examples=150, deadline=None)
@given(consistent_patients())
def test_consistent_matchings_are_recovered_exactly(case):
    sizes, pairwise, truth = case
    tracks = synchronize(sizes, pairwise, threshold=DEFAULT_THRESHOLD)
    assert _partition(tracks.labels) == _partition(truth)
    same = tracks.labels[:, None] == tracks.labels[None, :]
    np.fill_diagonal(same, False)
    assert np.allclose(tracks.affinity[same], 1.0)        # implied matches score 1
