"""The SCB correction (Hungarian on the matching score, SCB's score decides) as the batched
assignment applies it, on hand-made pairs."""

import numpy as np
import pytest
import torch

from lngraph.matching.batched import batched_assignment

NAN = np.nan


def scb_correct(sim, scb=None, threshold=0.5, reassign=False):
    """One pair through :func:`batched_assignment`: ``(matches [M, 2], scores [M])``."""
    out = batched_assignment(torch.as_tensor(np.asarray(sim, dtype=np.float64)),
                             decision=None if scb is None else torch.as_tensor(scb),
                             threshold=threshold, reassign=reassign)
    matches, scores, _, _ = out.pairs()[0]
    return matches, scores


def test_all_matched():
    sim = np.array([[0.9, 0.2, 0.1], [0.3, 0.8, 0.2], [0.1, 0.4, 0.7]])
    scb = np.array([[0.95, NAN, NAN], [NAN, 0.7, NAN], [NAN, NAN, 0.6]])
    matches, scores = scb_correct(sim, scb)
    assert matches.tolist() == [[0, 0], [1, 1], [2, 2]]
    np.testing.assert_allclose(scores, [0.95, 0.7, 0.6])


def test_scb_drops_pairs_the_similarity_would_keep():
    sim = np.array([[0.9, 0.2], [0.3, 0.8]])
    scb = np.array([[0.8, NAN], [NAN, 0.3]])
    matches, scores = scb_correct(sim, scb)
    assert matches.tolist() == [[0, 0]]       # src 1 disappeared, dst 1 new
    np.testing.assert_allclose(scores, [0.8])


def test_all_new_and_disappeared():
    sim = np.array([[0.9, 0.2], [0.3, 0.8]])
    scb = np.array([[0.1, NAN], [NAN, 0.0]])
    matches, scores = scb_correct(sim, scb)
    assert matches.shape == (0, 2) and scores.shape == (0,)
    # Without SCB the similarity itself decides.
    assert scb_correct(sim * 0.4)[0].shape == (0, 2)


def test_rectangular():
    sim = np.array([[0.1, 0.9, 0.3, 0.2], [0.8, 0.7, 0.1, 0.0]])     # n1 = 2 < n2 = 4
    matches, scores = scb_correct(sim)
    assert matches.tolist() == [[0, 1], [1, 0]]
    np.testing.assert_allclose(scores, [0.9, 0.8])
    matches, _ = scb_correct(sim.T)                                   # n1 = 4 > n2 = 2
    assert matches.tolist() == [[0, 1], [1, 0]]
    matches, _ = scb_correct(sim.T, threshold=0.85)
    assert matches.tolist() == [[1, 0]]


@pytest.mark.parametrize("shape", [(0, 0), (0, 3), (4, 0)])
def test_zero_nodes(shape):
    matches, scores = scb_correct(np.zeros(shape), np.zeros(shape))
    assert matches.shape == (0, 2) and scores.shape == (0,)


def test_reassign_on_the_combined_score():
    # S prefers (0, 0) and (1, 1) (sum 1.5 vs 1.4); SCB strongly prefers the swap.
    sim = np.array([[0.8, 0.7], [0.7, 0.7]])
    scb = np.array([[0.1, 0.9], [0.9, 0.6]])
    assert scb_correct(sim, scb)[0].tolist() == [[1, 1]]      # (0, 0) dropped by SCB
    matches, scores = scb_correct(sim, scb, reassign=True)
    assert matches.tolist() == [[0, 1], [1, 0]]
    np.testing.assert_allclose(scores, [0.9, 0.9])


def test_errors():
    with pytest.raises(ValueError, match=r"must be \[B, N1, N2\]"):
        scb_correct(np.zeros(3))
    with pytest.raises(ValueError, match="shape"):
        scb_correct(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="every pair"):
        scb_correct(np.eye(2), np.array([[1.0, NAN], [NAN, 1.0]]), reassign=True)
    with pytest.raises(ValueError, match="no decision score"):
        scb_correct(np.eye(2), np.full((2, 2), NAN))
