import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lngraph.matching.batched import apply_threshold, batched_assignment


def brute_force(score: np.ndarray, threshold):
    """The maximum-total one-to-one assignment of min(n1, n2) pairs by enumeration, then
    the threshold: ``(matches sorted by src, scores)``."""
    n1, n2 = score.shape
    best, best_pairs = -np.inf, []
    if n1 <= n2:
        for cols in itertools.permutations(range(n2), n1):
            total = sum(score[i, j] for i, j in enumerate(cols))
            if total > best:
                best, best_pairs = total, list(enumerate(cols))
    else:
        for rows in itertools.permutations(range(n1), n2):
            total = sum(score[i, j] for j, i in enumerate(rows))
            if total > best:
                best, best_pairs = total, sorted((i, j) for j, i in enumerate(rows))
    kept = [(i, j) for i, j in best_pairs if threshold is None or score[i, j] >= threshold]
    matches = np.array(kept, dtype=np.int64).reshape(-1, 2)
    return matches, score[matches[:, 0], matches[:, 1]]


def _t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_all_matched():
    scores = _t([[0.9, 0.1, 0.0], [0.2, 0.8, 0.1], [0.0, 0.3, 0.7]])
    out = batched_assignment(scores, threshold=0.5)
    assert out.matches0.tolist() == [[0, 1, 2]]
    assert out.matches1.tolist() == [[0, 1, 2]]
    assert out.scores0.tolist() == [[0.9, 0.8, 0.7]]


def test_all_unmatched_below_threshold():
    scores = _t([[0.4, 0.1], [0.2, 0.3]])
    out = batched_assignment(scores, threshold=0.5)
    assert out.matches0.tolist() == [[-1, -1]]
    assert out.matches1.tolist() == [[-1, -1]]
    assert out.scores0.tolist() == [[0.0, 0.0]]


def test_rectangular_keeps_the_best_partners():
    # 2 earlier nodes, 3 later: node 0 -> 2, node 1 -> 0; later node 1 is new.
    scores = _t([[0.1, 0.2, 0.9], [0.8, 0.7, 0.0]])
    out = batched_assignment(scores, threshold=0.5)
    assert out.matches0.tolist() == [[2, 0]]
    assert out.matches1.tolist() == [[1, -1, 0]]
    # The assignment maximises the total, not each row greedily.
    greedy_trap = _t([[0.9, 0.85], [0.8, 0.1]])
    assert batched_assignment(greedy_trap, threshold=0.0).matches0.tolist() == [[1, 0]]


def test_empty_sides():
    for shape in ((0, 3), (3, 0), (0, 0)):
        out = batched_assignment(torch.zeros(shape, dtype=torch.float64))
        assert out.matches0.shape == (1, shape[0]) and out.matches1.shape == (1, shape[1])
        assert (out.matches0 == -1).all() and (out.matches1 == -1).all()
        matches, scores, n_src, n_dst = out.pairs()[0]
        assert matches.shape == (0, 2) and scores.shape == (0,)
        assert (n_src, n_dst) == shape


def test_padded_batch_equals_each_pair_alone():
    a = _t([[0.9, 0.2], [0.1, 0.6], [0.3, 0.4]])           # 3 x 2
    b = _t([[0.2, 0.7, 0.55]])                             # 1 x 3
    padded = torch.full((2, 3, 3), 0.99, dtype=torch.float64)   # padding would win if used
    padded[0, :3, :2], padded[1, :1, :3] = a, b
    src_mask = torch.tensor([[True, True, True], [True, False, False]])
    dst_mask = torch.tensor([[True, True, False], [True, True, True]])
    out = batched_assignment(padded, src_mask=src_mask, dst_mask=dst_mask, threshold=0.5)
    alone = [batched_assignment(x, threshold=0.5).pairs()[0] for x in (a, b)]
    for got, want in zip(out.pairs(), alone, strict=True):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_allclose(got[1], want[1])
        assert got[2:] == want[2:]
    assert out.matches0.tolist() == [[0, 1, -1], [1, -1, -1]]
    assert out.matches1.tolist() == [[0, 1, -1], [-1, 0, -1]]


def test_decision_scores_decide_and_matchability_multiplies():
    scores = _t([[0.9, 0.1], [0.1, 0.8]])
    decision = _t([[0.3, float("nan")], [float("nan"), 0.95]])
    out = batched_assignment(scores, decision=decision, threshold=0.5)
    assert out.matches0.tolist() == [[-1, 1]]
    assert out.scores0[0, 1].item() == pytest.approx(0.95)
    out = batched_assignment(scores, threshold=0.5, matchability0=_t([1.0, 0.5]),
                             matchability1=_t([1.0, 1.0]))
    assert out.matches0.tolist() == [[0, -1]]          # 0.8 * 0.5 < 0.5
    assert out.scores0[0, 0].item() == pytest.approx(0.9)


def test_reassign_and_missing_decisions():
    scores = _t([[0.6, 0.5], [0.5, 0.6]])
    decision = _t([[0.0, 1.0], [1.0, 0.0]])
    out = batched_assignment(scores, decision=decision, threshold=0.5, reassign=True)
    assert out.matches0.tolist() == [[1, 0]]
    with pytest.raises(ValueError, match="reassign needs decision"):
        batched_assignment(scores, decision=_t([[0.0, float("nan")], [1.0, 0.0]]),
                           reassign=True)
    with pytest.raises(ValueError, match="no decision score"):
        batched_assignment(scores, decision=torch.full((2, 2), float("nan"),
                                                       dtype=torch.float64))


def test_non_finite_scores_are_never_assigned():
    scores = _t([[float("-inf"), 0.7], [0.6, float("nan")]])
    assert batched_assignment(scores, threshold=None).matches0.tolist() == [[1, 0]]
    scores = _t([[float("-inf"), float("nan")]])
    assert batched_assignment(scores, threshold=None).matches0.tolist() == [[-1]]


def test_bad_inputs():
    with pytest.raises(ValueError, match="must be \\[B, N1, N2\\]"):
        batched_assignment(torch.zeros(2, 2, 2, 2))
    with pytest.raises(ValueError, match="do not fit"):
        batched_assignment(torch.zeros(1, 2, 2), src_mask=torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="prefix"):
        batched_assignment(torch.zeros(1, 2, 2), src_mask=torch.tensor([[False, True]]))
    with pytest.raises(ValueError, match="decision shape"):
        batched_assignment(torch.zeros(1, 2, 2), decision=torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match="matchability0 must have shape"):
        batched_assignment(torch.zeros(1, 2, 2), matchability0=torch.zeros(1, 3))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 4), st.integers(0, 5), st.integers(0, 2 ** 31 - 1),
       st.sampled_from([None, 0.0, 0.3, 0.5, 0.8]))
def test_equals_brute_force_and_threshold_later(n1, n2, seed, threshold):
    rng = np.random.default_rng(seed)
    score = rng.random((n1, n2))
    out = batched_assignment(torch.from_numpy(score), threshold=threshold)
    matches, scores, _, _ = out.pairs()[0]
    want_matches, want_scores = brute_force(score, threshold)
    np.testing.assert_array_equal(matches, want_matches)
    np.testing.assert_allclose(scores, want_scores)
    # One assignment with threshold None, thresholded afterwards, gives the same matches.
    if threshold is not None:
        later = apply_threshold(batched_assignment(torch.from_numpy(score), threshold=None),
                                threshold)
        assert torch.equal(later.matches0, out.matches0)
        assert torch.equal(later.matches1, out.matches1)
        assert torch.equal(later.scores0, out.scores0)
