import math

import pytest
import torch
import torch.nn.functional as F

from lngraph.nn.assignment_head import Assignment, AssignmentHead, assignment_nll

#: P_ij of the hand-made 3 × 3 case, and P_i∅, P_∅j.
P = [[0.70, 0.10, 0.05],
     [0.10, 0.05, 0.60],
     [0.05, 0.10, 0.10]]
UNMATCHED0 = [0.20, 0.30, 0.80]
UNMATCHED1 = [0.25, 0.65, 0.30]


def hand_case(pad: int = 0) -> tuple[Assignment, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Matches (0, 0) and (1, 2); src 2 and dst 1 unmatched; ``pad`` padded rows and columns
    holding values that must not count."""
    n = 3 + pad
    log_p = torch.full((1, n, n), math.log(0.9))
    log_p[0, :3, :3] = torch.tensor(P).log()
    u0 = torch.full((1, n), math.log(0.01))
    u1 = torch.full((1, n), math.log(0.01))
    u0[0, :3] = torch.tensor(UNMATCHED0).log()
    u1[0, :3] = torch.tensor(UNMATCHED1).log()
    mask = torch.zeros(1, n, dtype=torch.bool)
    mask[0, :3] = True
    target = torch.zeros(1, n, n)
    target[0, 0, 0] = target[0, 1, 2] = 1.0
    if pad:
        target[0, 3, 3] = target[0, 0, 3] = 1.0   # "matches" of padded nodes are ignored
    out = Assignment(log_p, u0, u1, torch.zeros(1, n), torch.zeros(1, n))
    return out, target, mask, mask.clone()


@pytest.mark.parametrize("pad", [0, 1])
def test_nll_of_a_hand_made_case(pad):
    out, target, mask0, mask1 = hand_case(pad)
    positive = -(math.log(0.70) + math.log(0.60)) / 2
    negative = -(math.log(0.80) + math.log(0.65)) / 2
    loss = assignment_nll(out, target, mask0, mask1)
    assert loss.item() == pytest.approx(0.5 * positive + 0.5 * negative, rel=1e-6)


def test_nll_with_an_empty_term():
    out, target, mask0, mask1 = hand_case()
    # No ground-truth match: every node is unmatched; the positive term is 0.
    loss = assignment_nll(out, torch.zeros_like(target), mask0, mask1)
    expected = -sum(math.log(p) for p in UNMATCHED0 + UNMATCHED1) / 6
    assert loss.item() == pytest.approx(0.5 * expected, rel=1e-6)
    # Every node matched (a full permutation): the negative term is 0.
    full = torch.zeros_like(target)
    full[0, 0, 0] = full[0, 1, 2] = full[0, 2, 1] = 1.0
    loss = assignment_nll(out, full, mask0, mask1)
    expected = -(math.log(0.70) + math.log(0.60) + math.log(0.10)) / 3
    assert loss.item() == pytest.approx(0.5 * expected, rel=1e-6)
    # No node at all.
    none = torch.zeros_like(mask0)
    loss = assignment_nll(out, target, none, none)
    assert loss.item() == 0.0


def dual_softmax_by_hand(head: AssignmentHead, x, y):
    """``[n1, n2]`` P_ij of one unpadded pair (module docstring), with the head's weights."""
    sim = head.project(x) @ head.project(y).T / math.sqrt(head.channels)
    z0 = head.matchability(x).squeeze(-1)
    z1 = head.matchability(y).squeeze(-1)
    return (sim.softmax(1) * sim.softmax(0) * torch.sigmoid(z0)[:, None]
            * torch.sigmoid(z1)[None, :])


def test_probabilities_equal_the_formula_and_rows_sum_to_at_most_one():
    torch.manual_seed(0)
    head = AssignmentHead(8)
    x, y = torch.randn(1, 4, 8), torch.randn(1, 5, 8)
    mask0, mask1 = torch.ones(1, 4, dtype=torch.bool), torch.ones(1, 5, dtype=torch.bool)
    out = head(x, y, mask0, mask1)
    p = out.probability[0]
    torch.testing.assert_close(p, dual_softmax_by_hand(head, x[0], y[0]))
    assert (p.sum(1) <= 1 + 1e-6).all() and (p.sum(0) <= 1 + 1e-6).all()
    torch.testing.assert_close(out.log_unmatched0, F.logsigmoid(-out.matchability0))
    torch.testing.assert_close(out.log_unmatched1, F.logsigmoid(-out.matchability1))
    # P(i matched to someone) + P(i unmatched) <= 1.
    assert (p.sum(1) + out.log_unmatched0[0].exp() <= 1 + 1e-6).all()


def test_certain_matchability_leaves_the_dual_softmax():
    torch.manual_seed(1)
    head = AssignmentHead(8)
    with torch.no_grad():
        head.matchability.weight.zero_()
        head.matchability.bias.fill_(50.0)     # σ(z) = 1 for every node
    x, y = torch.randn(1, 4, 8), torch.randn(1, 5, 8)
    out = head(x, y, torch.ones(1, 4, dtype=torch.bool), torch.ones(1, 5, dtype=torch.bool))
    sim = head.project(x[0]) @ head.project(y[0]).T / math.sqrt(8)
    torch.testing.assert_close(out.probability[0], sim.softmax(1) * sim.softmax(0))
    assert (out.log_unmatched0 < -40).all()
    # With one earlier node the column softmax is 1: its row is the row softmax, summing to 1.
    one = head(x[:, :1], y, torch.ones(1, 1, dtype=torch.bool),
               torch.ones(1, 5, dtype=torch.bool))
    torch.testing.assert_close(one.probability[0, 0], sim[0].softmax(0))
    assert one.probability[0, 0].sum().item() == pytest.approx(1.0, abs=1e-6)


def test_padding_and_scans_without_nodes():
    torch.manual_seed(2)
    head = AssignmentHead(8)
    sizes = [(3, 2), (0, 2), (2, 0), (1, 3)]
    x, y = 5 * torch.randn(4, 3, 8), 5 * torch.randn(4, 3, 8)
    mask0 = torch.tensor([[i < n1 for i in range(3)] for n1, _ in sizes])
    mask1 = torch.tensor([[j < n2 for j in range(3)] for _, n2 in sizes])
    out = head(x, y, mask0, mask1)
    valid = mask0[:, :, None] & mask1[:, None, :]
    assert (out.log_assignment[~valid] == -math.inf).all()
    assert torch.isfinite(out.log_assignment[valid]).all()
    assert (out.probability[~valid] == 0).all()
    for t in (out.log_assignment, out.log_unmatched0, out.log_unmatched1):
        assert not torch.isnan(t).any()
    # Each pair's block equals the pair computed alone (padding takes no probability).
    for b, (n1, n2) in enumerate(sizes):
        if n1 and n2:
            torch.testing.assert_close(out.probability[b, :n1, :n2],
                                       dual_softmax_by_hand(head, x[b, :n1], y[b, :n2]))
    target = torch.zeros(4, 3, 3)
    target[0, 0, 1] = target[3, 0, 2] = 1.0
    loss = assignment_nll(out, target, mask0, mask1)
    assert torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters())


def test_the_matchability_learns_from_the_loss():
    torch.manual_seed(3)
    head = AssignmentHead(8)
    x, y = torch.randn(1, 2, 8), torch.randn(1, 2, 8)
    mask = torch.ones(1, 2, dtype=torch.bool)
    # Every node matched: dL/dc = -1/2 · mean over matches of (1 - σ(z_i)) + (1 - σ(z'_j)).
    out = head(x, y, mask, mask)
    loss = assignment_nll(out, torch.eye(2)[None], mask, mask)
    loss.backward()
    s0, s1 = torch.sigmoid(out.matchability0[0]), torch.sigmoid(out.matchability1[0])
    expected = -0.5 * ((1 - s0) + (1 - s1)).mean()
    assert head.matchability.bias.grad.item() == pytest.approx(expected.item(), rel=1e-5)
    assert head.matchability.bias.grad.item() < 0
    assert head.matchability.weight.grad.abs().sum() > 0
    assert head.project.weight.grad.abs().sum() > 0
    # No node matched: L = 1/2 mean -log σ(-z), dL/dc = 1/2 · mean σ(z) over the four nodes.
    head.zero_grad()
    out = head(x, y, mask, mask)
    loss = assignment_nll(out, torch.zeros(1, 2, 2), mask, mask)
    assert torch.isfinite(loss)
    loss.backward()
    expected = 0.5 * torch.cat([torch.sigmoid(out.matchability0[0]),
                                torch.sigmoid(out.matchability1[0])]).mean()
    assert head.matchability.bias.grad.item() == pytest.approx(expected.item(), rel=1e-5)
    # Only the matchability takes part in that loss.
    assert head.project.weight.grad is None or (head.project.weight.grad == 0).all()


def test_pairwise_term():
    torch.manual_seed(4)
    head = AssignmentHead(8, edge_dim=4)
    plain = AssignmentHead(8)
    plain.load_state_dict(head.state_dict(), strict=False)
    x, y = torch.randn(1, 3, 8), torch.randn(1, 4, 8)
    mask0, mask1 = torch.ones(1, 3, dtype=torch.bool), torch.ones(1, 4, dtype=torch.bool)
    attr = torch.randn(1, 3, 4, 4)
    with torch.no_grad():
        head.pairwise[-1].weight.zero_()
        head.pairwise[-1].bias.fill_(3.0)     # a constant added to every logit changes nothing
        torch.testing.assert_close(head(x, y, mask0, mask1, attr).log_assignment,
                                   plain(x, y, mask0, mask1).log_assignment)
        # A large term on one entry per row makes it that row's (and column's) choice.
        head.pairwise[-1].bias.zero_()
        head.pairwise[-1].weight[0, :] = 1.0
        head.pairwise[0].weight.zero_()
        head.pairwise[0].bias.zero_()
        head.pairwise[0].weight[:, 3] = 1.0    # g(e) = 8 GELU(e_3)
        attr = torch.zeros(1, 3, 4, 4)
        attr[0, [0, 1, 2], [2, 0, 3], 3] = 10.0
        p = head(x, y, mask0, mask1, attr).probability[0]
    z0 = torch.sigmoid(head.matchability(x[0])).squeeze(-1)
    z1 = torch.sigmoid(head.matchability(y[0])).squeeze(-1)
    torch.testing.assert_close(p[[0, 1, 2], [2, 0, 3]], z0 * z1[[2, 0, 3]], rtol=1e-3,
                               atol=1e-3)
    with pytest.raises(ValueError, match="edge_attr must be given exactly"):
        head(x, y, mask0, mask1)
    with pytest.raises(ValueError, match="edge_dim=0"):
        plain(x, y, mask0, mask1, attr)


def test_score_matchability_adds_the_log_sum_exp_of_the_pair_scores():
    torch.manual_seed(5)
    head = AssignmentHead(8, edge_dim=4, score_matchability=True)
    plain = AssignmentHead(8, edge_dim=4)
    plain.load_state_dict({k: v for k, v in head.state_dict().items() if k != "beta"})
    x, y = torch.randn(1, 3, 8), torch.randn(1, 4, 8)
    mask0, mask1 = torch.ones(1, 3, dtype=torch.bool), torch.ones(1, 4, dtype=torch.bool)
    attr = torch.randn(1, 3, 4, 4)
    out, ref = head(x, y, mask0, mask1, attr), plain(x, y, mask0, mask1, attr)
    sim = (head.project(x[0]) @ head.project(y[0]).T / math.sqrt(8)
           + head.pairwise(attr[0]).squeeze(-1))
    torch.testing.assert_close(out.matchability0[0], ref.matchability0[0] + sim.logsumexp(1))
    torch.testing.assert_close(out.matchability1[0], ref.matchability1[0] + sim.logsumexp(0))
    # A node whose every pair score falls (its candidates moved away) becomes less matchable,
    # although its features are the same.
    far = attr.clone()
    with torch.no_grad():
        far[0, 0] = 0.0
        head.pairwise[0].weight.zero_()
        head.pairwise[0].bias.zero_()
        head.pairwise[0].weight[:, 3] = 1.0
        head.pairwise[-1].weight.fill_(-1.0)        # g(e) = -8 GELU(e_3): falls with distance
        near_z = head(x, y, mask0, mask1, far).matchability0[0, 0]
        far[0, 0, :, 3] = 5.0
        far_z = head(x, y, mask0, mask1, far).matchability0[0, 0]
    assert far_z < near_z - 1.0
    # β learns from the loss; a scan without nodes gives finite values.
    loss = assignment_nll(head(x, y, mask0, mask1, attr), torch.eye(3, 4)[None], mask0, mask1)
    loss.backward()
    assert head.beta.grad is not None and head.beta.grad.abs() > 0
    empty = head(x, y[:, :0], mask0, mask1[:, :0], attr[:, :, :0])
    assert torch.isfinite(empty.log_unmatched0).all() and (empty.log_unmatched0 > -1e-6).all()


def test_repr():
    assert repr(AssignmentHead(16, edge_dim=4)) == "AssignmentHead(16, edge_dim=4)"
    assert repr(AssignmentHead(8)) == "AssignmentHead(8, edge_dim=0)"
    assert (repr(AssignmentHead(8, score_matchability=True))
            == "AssignmentHead(8, edge_dim=0, score_matchability=True)")
