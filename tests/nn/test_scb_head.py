import pytest
import torch

from lngraph.nn.scb_head import SCBHead, scb_score


def node_inputs(n: int, gen: torch.Generator):
    """feature_3d, tokens_3d, view_features, view_tokens."""
    return (torch.randn(n, 16, generator=gen), torch.randn(n, 8, 12, generator=gen),
            torch.randn(n, 9, 16, generator=gen), torch.randn(n, 9, 4, 10, generator=gen))


def all_pairs(n1: int, n2: int) -> torch.Tensor:
    return torch.cartesian_prod(torch.arange(n1), torch.arange(n2)).T


def test_eq3_on_hand_set_probabilities():
    p = torch.tensor([[0.9] * 9,
                      [0.9] * 5 + [0.1] * 4,
                      [0.5, 0.49, 0.6, 0.0, 1.0, 0.2, 0.3, 0.4, 0.45]])
    expected = torch.tensor([0.9, 0.9 * 5 / 9, (0.5 + 0.6 + 1.0) / 9])
    torch.testing.assert_close(scb_score(p), expected)
    assert scb_score(torch.zeros(0, 9)).shape == (0,)


def test_shapes_and_candidate_subsets_agree():
    gen = torch.Generator().manual_seed(0)
    head = SCBHead(16, 12, 10, hidden_channels=8, chunk_size=5)
    src = head.node_tokens(*node_inputs(4, gen))
    dst = head.node_tokens(*node_inputs(3, gen))
    assert [tuple(s.shape) for s in src.sets] == [(4, 8, 24), (4, 4, 24), (4, 4, 24)]
    assert src.summary.shape == (4, 3, 8)
    torch.testing.assert_close(src.summary.norm(dim=-1), torch.ones(4, 3))
    assert src.weight.shape == (4, 3) and src.gate.shape == (4, 9)
    torch.testing.assert_close(src.weight[:, 0], torch.ones(4))
    logits = head(src, dst, all_pairs(4, 3))
    assert logits.shape == (12, 9)
    # Scoring only some pairs (e.g. the Hungarian ones) gives the same numbers for them.
    some = torch.tensor([[3, 0, 2], [1, 2, 0]])
    torch.testing.assert_close(head(src, dst, some), logits[[3 * 3 + 1, 0 * 3 + 2, 2 * 3 + 0]])
    assert head(src, dst, torch.zeros(2, 0, dtype=torch.long)).shape == (0, 9)


def test_gate_receives_a_gradient():
    gen = torch.Generator().manual_seed(1)
    head = SCBHead(16, 12, 10, hidden_channels=8)
    src = head.node_tokens(*node_inputs(3, gen))
    dst = head.node_tokens(*node_inputs(3, gen))
    logits = head(src, dst, all_pairs(3, 3))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, torch.eye(3).flatten()[:, None].expand_as(logits))
    loss.backward()
    assert head.gate.weight.grad is not None and head.gate.weight.grad.abs().sum() > 0
    assert head.gate.bias.grad is not None


def test_top2_views_follow_the_gate():
    head = SCBHead(16, 12, 10)
    with torch.no_grad():
        head.gate.weight.zero_()
        head.gate.weight[0, 0] = 1.0
        head.gate.bias.zero_()
    features = torch.zeros(1, 9, 16)
    features[0, :, 0] = torch.tensor([0.0, 3.0, 1.0, 0.0, 5.0, 0.0, 0.0, 0.0, 0.0])
    scores, index, weight = head.select_views(features)
    assert index.tolist() == [[4, 1]]
    soft = torch.softmax(scores, -1)
    torch.testing.assert_close(weight, 9 * soft[:, [4, 1]])


def test_untrained_head_scores_a_node_highest_against_itself():
    gen = torch.Generator().manual_seed(2)
    torch.manual_seed(2)
    head = SCBHead(16, 12, 10, hidden_channels=16)
    tokens = head.node_tokens(*node_inputs(5, gen))
    logits = head(tokens, tokens, all_pairs(5, 5))[:, 0].view(5, 5)   # the (3D, 3D) combination
    others = logits.masked_fill(torch.eye(5, dtype=torch.bool), float("-inf"))
    assert (logits.diagonal() > others.amax(1)).all()


def test_repr():
    assert repr(SCBHead(16, 12, 10)) == \
        "SCBHead(hidden_channels=32, num_views=9, temperature=0.1)"


@pytest.mark.parametrize("n_src, n_dst", [(0, 3), (2, 0)])
def test_empty_scans(n_src, n_dst):
    gen = torch.Generator().manual_seed(3)
    head = SCBHead(16, 12, 10)
    src = head.node_tokens(*node_inputs(n_src, gen))
    dst = head.node_tokens(*node_inputs(n_dst, gen))
    assert head(src, dst, all_pairs(n_src, n_dst)).shape == (0, 9)
