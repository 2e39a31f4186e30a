import math

import numpy as np
import pytest
import torch

from lngraph.nn.conv import SEAGConv


def complete_graph(n: int) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    keep = rows != cols
    return torch.stack([rows[keep], cols[keep]])


def dense_reference(h: np.ndarray, pos: np.ndarray, length_scale: float, sigma: float):
    """the SEAGConv update rule written with dense matrices (sums over all nodes, the node itself
    included)."""
    def softmax_rows(a):
        e = np.exp(a - a.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    d = h.shape[1]
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    q = np.exp(-dist / length_scale) @ h
    h1 = h + softmax_rows(q @ q.T / math.sqrt(d)) @ q
    sq = ((h1[:, None] - h1[None]) ** 2).sum(-1)
    q1 = np.exp(-sq / sigma**2) @ h1
    h2 = np.maximum(h1 + softmax_rows(q1 @ q1.T / math.sqrt(d)) @ q1, 0.0)
    return q, h1, h2


def test_three_node_values_by_hand():
    # Nodes on a line 10 mm apart, ℓ = 10 mm: w01 = w12 = e^-1, w02 = e^-2.
    h = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]])
    pos = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [20.0, 0.0, 0.0]])
    q, h1, h2 = dense_reference(h, pos, length_scale=10.0, sigma=1.0)
    e1, e2 = math.exp(-1), math.exp(-2)
    # q_0 = h_0 + e^-1 h_1 + e^-2 h_2, written out.
    np.testing.assert_allclose(q[0], [1 + e2, e1 - e2])
    conv = SEAGConv(2, length_scale=10.0, sigma=1.0)
    out = conv(torch.tensor(h, dtype=torch.float32), torch.tensor(pos, dtype=torch.float32),
               complete_graph(3))
    np.testing.assert_allclose(out.detach().numpy(), h2, rtol=1e-5, atol=1e-6)


def test_two_isolated_nodes_in_closed_form():
    # 1 km apart (w01 = 0) and σ tiny (w¹01 = 0): q = h, q¹ = h¹; only the attention mixes.
    h = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    pos = torch.tensor([[0.0, 0.0, 0.0], [1e6, 0.0, 0.0]])
    a = math.exp(1 / math.sqrt(2)) / (math.exp(1 / math.sqrt(2)) + 1)  # α00 = softmax(1/√2, 0)
    h1_0, h1_1 = np.array([1 + a, 1 - a]), np.array([1 - a, 1 + a])
    self_logit, other_logit = (2 + 2 * a * a) / math.sqrt(2), 2 * (1 - a * a) / math.sqrt(2)
    b = math.exp(self_logit) / (math.exp(self_logit) + math.exp(other_logit))
    h2_0 = np.maximum(h1_0 + b * h1_0 + (1 - b) * h1_1, 0)
    out = SEAGConv(2, sigma=1e-3)(h, pos, complete_graph(2))
    np.testing.assert_allclose(out[0].detach().numpy(), h2_0, rtol=1e-6)
    np.testing.assert_allclose(out[1].detach().numpy(), h2_0[::-1], rtol=1e-6)


def test_values_match_reference_on_random_graph():
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(6, 4, generator=gen)
    pos = torch.randn(6, 3, generator=gen) * 15
    conv = SEAGConv(4, length_scale=12.0, sigma=2.0)
    out = conv(h, pos, complete_graph(6))
    _, _, h2 = dense_reference(h.double().numpy(), pos.double().numpy(), 12.0, 2.0)
    np.testing.assert_allclose(out.detach().numpy(), h2, rtol=1e-4, atol=1e-5)


def test_repr():
    assert repr(SEAGConv(128)) == \
        "SEAGConv(128, length_scale=20.0, learn_length_scale=False, learn_q=False)"
    assert repr(SEAGConv(64, length_scale=15, learn_length_scale=True)) == \
        "SEAGConv(64, length_scale=15.0, learn_length_scale=True, learn_q=False)"
    assert repr(SEAGConv(64, learn_q=True)) == \
        "SEAGConv(64, length_scale=20.0, learn_length_scale=False, learn_q=True)"


def test_parameters_and_reset():
    fixed = SEAGConv(8, length_scale=20.0)
    assert [name for name, _ in fixed.named_parameters()] == ["log_sigma"]
    learned = SEAGConv(8, length_scale=20.0, learn_length_scale=True, sigma=3.0)
    assert {name for name, _ in learned.named_parameters()} == {"log_length_scale",
                                                                "log_sigma"}
    with torch.no_grad():
        learned.log_length_scale.fill_(0.0)
        learned.log_sigma.fill_(0.0)
    learned.reset_parameters()
    assert learned.log_length_scale.exp().item() == pytest.approx(20.0)
    assert learned.log_sigma.exp().item() == pytest.approx(3.0)
    with pytest.raises(ValueError, match="must be > 0"):
        SEAGConv(8, length_scale=0.0)


def test_gradients_reach_sigma_and_length_scale():
    conv = SEAGConv(4, learn_length_scale=True)
    gen = torch.Generator().manual_seed(1)
    out = conv(torch.randn(5, 4, generator=gen), torch.randn(5, 3, generator=gen) * 20,
               complete_graph(5))
    out.square().sum().backward()
    assert conv.log_sigma.grad.abs() > 0
    assert conv.log_length_scale.grad.abs() > 0


def test_permutation_equivariance():
    gen = torch.Generator().manual_seed(2)
    h, pos = torch.randn(7, 4, generator=gen), torch.randn(7, 3, generator=gen) * 20
    conv = SEAGConv(4)
    perm = torch.randperm(7, generator=gen)
    out = conv(h, pos, complete_graph(7))
    out_perm = conv(h[perm], pos[perm], complete_graph(7))
    torch.testing.assert_close(out_perm, out[perm], rtol=1e-5, atol=1e-6)


def test_rigid_motion_invariance():
    gen = torch.Generator().manual_seed(3)
    h, pos = torch.randn(6, 4, generator=gen), torch.randn(6, 3, generator=gen) * 20
    a, b = math.radians(37), math.radians(-20)
    rot_z = torch.tensor([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0],
                          [0, 0, 1]])
    rot_x = torch.tensor([[1, 0, 0], [0, math.cos(b), -math.sin(b)],
                          [0, math.sin(b), math.cos(b)]])
    moved = pos @ (rot_x @ rot_z).T + torch.tensor([120.0, -45.0, 300.0])
    conv = SEAGConv(4)
    torch.testing.assert_close(conv(h, moved, complete_graph(6)),
                               conv(h, pos, complete_graph(6)), rtol=1e-4, atol=1e-5)


def test_self_loops_in_input_are_not_doubled_and_empty_graphs_work():
    gen = torch.Generator().manual_seed(4)
    h, pos = torch.randn(3, 2, generator=gen), torch.randn(3, 3, generator=gen)
    conv = SEAGConv(2)
    with_loops = torch.cat([complete_graph(3), torch.arange(3).repeat(2, 1)], dim=1)
    torch.testing.assert_close(conv(h, pos, with_loops), conv(h, pos, complete_graph(3)))
    assert conv(torch.zeros(0, 2), torch.zeros(0, 3), complete_graph(0)).shape == (0, 2)
    # A single node attends to itself: h1 = 2h, q1 = h1, h2 = relu(2 h1).
    single = torch.tensor([[0.5, -1.0]])
    torch.testing.assert_close(conv(single, torch.zeros(1, 3), complete_graph(1)),
                               torch.tensor([[2.0, 0.0]]))


def random_rotation(gen: torch.Generator) -> torch.Tensor:
    rot, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen))
    return rot * torch.linalg.det(rot)  # det 1: a proper rotation


def randomize_q(conv: SEAGConv, seed: int) -> SEAGConv:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        conv.q_weight1.copy_(torch.randn(conv.channels, conv.channels, generator=gen))
        conv.q_weight2.copy_(torch.randn(conv.channels, conv.channels, generator=gen))
    return conv


def test_learn_q_parameters_state_dict_and_reset():
    plain = SEAGConv(4)
    assert not hasattr(plain, "q_weight1") or plain.q_weight1 is None
    assert set(plain.state_dict()) == {"log_length_scale", "log_sigma"}
    conv = SEAGConv(4, learn_q=True)
    assert {name for name, _ in conv.named_parameters()} == {"log_sigma", "q_weight1",
                                                             "q_weight2"}
    assert set(conv.state_dict()) == {"log_length_scale", "log_sigma", "q_weight1",
                                      "q_weight2"}
    randomize_q(conv, 5).reset_parameters()
    torch.testing.assert_close(conv.q_weight1.data, torch.eye(4), rtol=0, atol=0)
    torch.testing.assert_close(conv.q_weight2.data, torch.eye(4), rtol=0, atol=0)
    # An old (learn_q=False) checkpoint loads unchanged.
    plain.load_state_dict(SEAGConv(4, sigma=2.0).state_dict())
    assert plain.log_sigma.exp().item() == pytest.approx(2.0)


def test_learn_q_at_identity_init_matches_parameter_free_layer():
    gen = torch.Generator().manual_seed(6)
    h, pos = torch.randn(8, 5, generator=gen), torch.randn(8, 3, generator=gen) * 20
    edge_index = complete_graph(8)[:, torch.randperm(56, generator=gen)[:30]]
    for edges in (edge_index, complete_graph(8)):
        torch.testing.assert_close(SEAGConv(5, sigma=2.0, learn_q=True)(h, pos, edges),
                                   SEAGConv(5, sigma=2.0)(h, pos, edges), rtol=0, atol=0)


def test_learn_q_matches_bilinear_dense_reference():
    gen = torch.Generator().manual_seed(7)
    n, d = 6, 4
    h, pos = torch.randn(n, d, generator=gen), torch.randn(n, 3, generator=gen) * 15
    conv = randomize_q(SEAGConv(d, length_scale=12.0, sigma=2.0, learn_q=True), 8)
    out = conv(h, pos, complete_graph(n))
    assert not torch.allclose(out, SEAGConv(d, length_scale=12.0, sigma=2.0)(
        h, pos, complete_graph(n)), rtol=1e-3, atol=1e-3)

    hd, w1, w2 = h.double(), conv.q_weight1.detach().double(), conv.q_weight2.detach().double()
    q = torch.exp(-torch.cdist(pos.double(), pos.double()) / 12.0) @ hd
    h1 = hd + torch.softmax(q @ w1 @ q.T / math.sqrt(d), dim=1) @ q
    q1 = torch.exp(-torch.cdist(h1, h1).square() / 4.0) @ h1
    h2 = torch.relu(h1 + torch.softmax(q1 @ w2 @ q1.T / math.sqrt(d), dim=1) @ q1)
    torch.testing.assert_close(out.double(), h2, rtol=1e-4, atol=1e-5)


def test_gradients_reach_q_weights():
    conv = randomize_q(SEAGConv(4, learn_q=True), 9)
    gen = torch.Generator().manual_seed(10)
    out = conv(torch.randn(5, 4, generator=gen), torch.randn(5, 3, generator=gen) * 20,
               complete_graph(5))
    out.square().sum().backward()
    assert conv.q_weight1.grad.abs().sum() > 0
    assert conv.q_weight2.grad.abs().sum() > 0


def test_learn_q_permutation_equivariance_and_rigid_motion_invariance():
    gen = torch.Generator().manual_seed(11)
    h, pos = torch.randn(7, 4, generator=gen), torch.randn(7, 3, generator=gen) * 20
    edge_index = complete_graph(7)[:, torch.randperm(42, generator=gen)[:25]]
    conv = randomize_q(SEAGConv(4, learn_q=True), 12)
    out = conv(h, pos, edge_index)

    perm = torch.randperm(7, generator=gen)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(7)
    torch.testing.assert_close(conv(h[perm], pos[perm], inv[edge_index]), out[perm],
                               rtol=1e-5, atol=1e-6)

    moved = pos @ random_rotation(gen).T + torch.randn(3, generator=gen) * 100
    torch.testing.assert_close(conv(h, moved, edge_index), out, rtol=1e-4, atol=1e-5)
