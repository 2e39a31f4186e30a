import math

import pytest
import torch

from lngraph.nn.conv import PositionalAttentionConv


def complete_graph(n: int) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    keep = rows != cols
    return torch.stack([rows[keep], cols[keep]])


def all_pairs(n_src: int, n_dst: int) -> torch.Tensor:
    """``[2, n_src n_dst]`` every (source, target) combination."""
    rows, cols = torch.meshgrid(torch.arange(n_src), torch.arange(n_dst), indexing="ij")
    return torch.stack([rows.flatten(), cols.flatten()])


def dense_reference(conv: PositionalAttentionConv, x_src, x_dst, edge_index, edge_attr=None):
    """The layer's formula with dense matrices, one target at a time (module docstring)."""
    h, d = conv.heads, conv.channels
    c = d // h
    q = conv.query(x_dst).view(-1, h, c)
    k = conv.key(x_src).view(-1, h, c)
    v = conv.value(x_src).view(-1, h, c)
    bias = None if edge_attr is None else conv.bias(edge_attr)
    messages = []
    for i in range(len(x_dst)):
        edges = (edge_index[1] == i).nonzero().flatten()
        sources = edge_index[0, edges]
        logits = torch.einsum("hc,jhc->jh", q[i], k[sources]) / math.sqrt(c)
        if bias is not None:
            logits = logits + bias[edges]
        alpha = torch.softmax(logits, dim=0) if len(edges) else logits
        messages.append(torch.einsum("jh,jhc->hc", alpha, v[sources]).reshape(d))
    m = conv.merge(torch.stack(messages))
    return x_dst + conv.update_mlp(torch.cat([x_dst, m], dim=-1))


def capture_messages(conv: PositionalAttentionConv):
    """A list that receives the aggregated messages (the input of ``merge``) of each call."""
    seen = []
    conv.merge.register_forward_hook(lambda module, args, out: seen.append(args[0].detach()))
    return seen


def test_output_shapes():
    torch.manual_seed(0)
    conv = PositionalAttentionConv(16, heads=2, edge_dim=4)
    x = torch.randn(5, 16)
    edge_index = complete_graph(5)
    assert conv(x, edge_index, torch.randn(20, 4)).shape == (5, 16)
    x_src, x_dst = torch.randn(3, 16), torch.randn(4, 16)
    out = conv((x_src, x_dst), all_pairs(3, 4), torch.randn(12, 4))
    assert out.shape == (4, 16)
    # No edges at all: each target keeps only its residual update.
    assert conv((x_src, x_dst), torch.empty(2, 0, dtype=torch.long),
                torch.empty(0, 4)).shape == (4, 16)


@pytest.mark.parametrize("edge_dim", [0, 4])
def test_values_equal_the_dense_formula(edge_dim):
    torch.manual_seed(1)
    conv = PositionalAttentionConv(16, heads=4, edge_dim=edge_dim)
    x = torch.randn(5, 16)
    edge_index = complete_graph(5)
    attr = torch.randn(20, 4) if edge_dim else None
    torch.testing.assert_close(conv(x, edge_index, attr),
                               dense_reference(conv, x, x, edge_index, attr))
    # A bipartite graph where the targets have 3, 1 and 0 sources.
    x_src, x_dst = torch.randn(3, 16), torch.randn(3, 16)
    edge_index = torch.tensor([[0, 1, 2, 1], [0, 0, 0, 1]])
    attr = torch.randn(4, 4) if edge_dim else None
    torch.testing.assert_close(conv((x_src, x_dst), edge_index, attr),
                               dense_reference(conv, x_src, x_dst, edge_index, attr))


def test_bipartite_form_updates_only_the_targets():
    torch.manual_seed(2)
    conv = PositionalAttentionConv(16, heads=2)
    x_src, x_dst = torch.randn(3, 16), torch.randn(2, 16)
    src_before = x_src.clone()
    edge_index = torch.tensor([[0, 1, 2], [0, 0, 0]])   # target 1 has no source
    out = conv((x_src, x_dst), edge_index)
    assert out.shape == (2, 16)
    assert torch.equal(x_src, src_before)
    # Target 0's output depends on the sources; target 1's does not.
    out2 = conv((x_src + 1.0, x_dst), edge_index)
    assert not torch.allclose(out2[0], out[0])
    torch.testing.assert_close(out2[1], out[1])
    # A target without sources receives a zero message: x + MLP([x, merge(0)]).
    lonely = x_dst[1:] + conv.update_mlp(torch.cat([x_dst[1:], conv.merge.bias[None]], dim=-1))
    torch.testing.assert_close(out[1:], lonely)


def test_permuting_targets_permutes_the_output_and_sources_change_nothing():
    torch.manual_seed(3)
    conv = PositionalAttentionConv(16, heads=2, edge_dim=4)
    x_src, x_dst = torch.randn(4, 16), torch.randn(5, 16)
    edge_index = all_pairs(4, 5)[:, torch.randperm(20)[:14]]  # an irregular bipartite graph
    attr = torch.randn(14, 4)
    base = conv((x_src, x_dst), edge_index, attr)

    perm = torch.tensor([3, 0, 4, 1, 2])                # new target k is old target perm[k]
    relabelled = torch.stack([edge_index[0], torch.argsort(perm)[edge_index[1]]])
    out = conv((x_src, x_dst[perm]), relabelled, attr)
    torch.testing.assert_close(out, base[perm], rtol=1e-5, atol=1e-6)

    perm = torch.tensor([2, 3, 1, 0])                   # new source k is old source perm[k]
    relabelled = torch.stack([torch.argsort(perm)[edge_index[0]], edge_index[1]])
    order = torch.randperm(14, generator=torch.Generator().manual_seed(0))  # and edge order
    out = conv((x_src[perm], x_dst), relabelled[:, order], attr[order])
    torch.testing.assert_close(out, base, rtol=1e-5, atol=1e-6)


def test_attention_weights_of_each_target_sum_to_one():
    torch.manual_seed(4)
    conv = PositionalAttentionConv(16, heads=2, edge_dim=4)
    messages = capture_messages(conv)
    b = torch.randn(16)
    with torch.no_grad():
        conv.value.weight.zero_()
        conv.value.bias.copy_(b)             # every source sends the same value b
    x_src, x_dst = torch.randn(6, 16), torch.randn(3, 16)
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 5, 5], [0, 0, 0, 0, 0, 1, 2]])
    conv((x_src, x_dst), edge_index, 10 * torch.randn(7, 4))   # large, unequal biases
    # Σ_j α_ij b = b for every target, whatever the logits.
    torch.testing.assert_close(messages[-1], b.expand(3, 16), rtol=1e-5, atol=1e-6)


def test_equal_logits_give_the_mean_of_the_values():
    torch.manual_seed(5)
    conv = PositionalAttentionConv(16, heads=2)
    messages = capture_messages(conv)
    with torch.no_grad():
        conv.query.weight.zero_()
        conv.query.bias.zero_()              # every logit 0: uniform attention
    x_src, x_dst = torch.randn(5, 16), torch.randn(2, 16)
    edge_index = torch.tensor([[0, 1, 2, 3, 4], [0, 0, 0, 1, 1]])
    conv((x_src, x_dst), edge_index)
    value = conv.value(x_src).detach()
    expected = torch.stack([value[:3].mean(0), value[3:].mean(0)])
    torch.testing.assert_close(messages[-1], expected, rtol=1e-5, atol=1e-6)


def test_the_bias_is_per_head_and_can_silence_a_source():
    # Head 0's bias is -4 GELU(e), head 1's is 0; all query-key logits are 0 and the values
    # are the source features, so head 0 reads channels 0-1 and head 1 channels 2-3.
    torch.manual_seed(6)
    conv = PositionalAttentionConv(4, heads=2, edge_dim=1)
    messages = capture_messages(conv)
    with torch.no_grad():
        conv.query.weight.zero_()
        conv.query.bias.zero_()
        conv.value.weight.copy_(torch.eye(4))
        conv.value.bias.zero_()
        conv.bias[0].weight.fill_(1.0)
        conv.bias[0].bias.zero_()
        conv.bias[2].weight.zero_()
        conv.bias[2].weight[0, :] = -1.0
        conv.bias[2].bias.zero_()
    x_src = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    x_dst = torch.zeros(1, 4)
    edge_index = torch.tensor([[0, 1], [0, 0]])
    conv((x_src, x_dst), edge_index, torch.tensor([[0.0], [0.0]]))
    torch.testing.assert_close(messages[-1], torch.tensor([[3.0, 4.0, 5.0, 6.0]]))
    # A bias of about -4000 on source 1 in head 0 only: head 0 reads source 0 alone.
    conv((x_src, x_dst), edge_index, torch.tensor([[0.0], [1e3]]))
    torch.testing.assert_close(messages[-1], torch.tensor([[1.0, 2.0, 5.0, 6.0]]))


def test_gradients_reach_every_parameter():
    torch.manual_seed(7)
    conv = PositionalAttentionConv(16, heads=2, edge_dim=4)
    x = torch.randn(4, 16, requires_grad=True)
    conv(x, complete_graph(4), torch.randn(12, 4)).square().sum().backward()
    for name, param in conv.named_parameters():
        assert param.grad is not None, name
        if name == "bias.2.bias":
            # One constant per head added to all its logits: the softmax does not see it.
            assert param.grad.abs().max() < 1e-5
        else:
            assert param.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0


def test_edge_attr_must_match_edge_dim():
    x, edge_index = torch.randn(3, 16), complete_graph(3)
    with pytest.raises(ValueError, match="edge_attr must be given exactly when edge_dim > 0"):
        PositionalAttentionConv(16, heads=2)(x, edge_index, torch.randn(6, 4))
    with pytest.raises(ValueError, match=r"edge_dim=4"):
        PositionalAttentionConv(16, heads=2, edge_dim=4)(x, edge_index)


def test_channels_must_be_a_multiple_of_heads():
    with pytest.raises(ValueError, match=r"channels \(10\) must be a multiple of heads \(4\)"):
        PositionalAttentionConv(10, heads=4)
    assert PositionalAttentionConv(12, heads=4).heads == 4


def test_repr():
    assert repr(PositionalAttentionConv(16, heads=2, edge_dim=4)) == \
        "PositionalAttentionConv(16, heads=2, edge_dim=4)"
    assert repr(PositionalAttentionConv(8)) == "PositionalAttentionConv(8, heads=4, edge_dim=0)"


def test_parameters_and_reset():
    with_bias = PositionalAttentionConv(16, heads=2, edge_dim=4)
    without = PositionalAttentionConv(16, heads=2)
    d = 16
    # q, k, v, merge: d² + d each; bias MLP: 4d + d + 2d + 2; update MLP: 2d·2d + 2d,
    # LayerNorm 2 · 2d, 2d·d + d.
    core = 4 * (d * d + d) + (4 * d * d + 2 * d) + 4 * d + (2 * d * d + d)
    assert sum(p.numel() for p in without.parameters()) == core
    assert sum(p.numel() for p in with_bias.parameters()) == core + (4 * d + d + 2 * d + 2)
    assert without.bias is None

    shapes = {k: v.shape for k, v in with_bias.state_dict().items()}
    torch.manual_seed(11)
    with_bias.reset_parameters()
    first = {k: v.clone() for k, v in with_bias.state_dict().items()}
    torch.manual_seed(12)
    with_bias.reset_parameters()
    other = {k: v.clone() for k, v in with_bias.state_dict().items()}
    torch.manual_seed(11)
    with_bias.reset_parameters()
    again = with_bias.state_dict()
    assert {k: v.shape for k, v in again.items()} == shapes
    for key, value in again.items():
        assert torch.equal(value, first[key]), key
    # Every linear layer (the edge-bias MLP included) is redrawn; LayerNorm is reset to 1, 0.
    for key in first:
        if "update_mlp.1" in key:
            assert torch.equal(first[key], other[key]), key
        else:
            assert not torch.equal(first[key], other[key]), key
    assert torch.equal(first["update_mlp.1.weight"], torch.ones(32))


@pytest.mark.parametrize("edge_dim", [0, 4])
def test_edges_in_chunks_give_the_one_pass_output(edge_dim):
    torch.manual_seed(8)
    conv = PositionalAttentionConv(16, heads=4, edge_dim=edge_dim)
    x_src = torch.randn(6, 16, requires_grad=True)
    x_dst = torch.randn(5, 16)
    edge_index = all_pairs(6, 5)[:, torch.randperm(30)[:23]]
    attr = torch.randn(23, 4) if edge_dim else None
    whole = conv((x_src, x_dst), edge_index, attr)
    (grad,) = torch.autograd.grad(whole.square().sum(), x_src)
    conv.chunk_size = 4                      # 6 calls, the last with 3 edges
    chunked = conv((x_src, x_dst), edge_index, attr)
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(chunked, dense_reference(conv, x_src, x_dst, edge_index, attr))
    torch.testing.assert_close(torch.autograd.grad(chunked.square().sum(), x_src)[0], grad)
    assert conv((x_src, x_dst), edge_index[:, :0],
                attr[:0] if edge_dim else None).shape == (5, 16)


def test_edge_values_let_a_single_source_tell_its_edge():
    """With one source the attention weight is 1 whatever the bias, so only the edge values
    make the message depend on the edge's features."""
    torch.manual_seed(0)
    x = (torch.randn(1, 8), torch.randn(1, 8))
    edge_index = torch.tensor([[0], [0]])
    near, far = torch.tensor([[0.1, 0.0, 0.0, 0.1]]), torch.tensor([[9.0, 0.0, 0.0, 9.0]])
    plain = PositionalAttentionConv(8, heads=2, edge_dim=4)
    torch.testing.assert_close(plain(x, edge_index, near), plain(x, edge_index, far))
    valued = PositionalAttentionConv(8, heads=2, edge_dim=4, edge_values=True)
    assert not torch.allclose(valued(x, edge_index, near), valued(x, edge_index, far))
    assert repr(valued) == "PositionalAttentionConv(8, heads=2, edge_dim=4, edge_values=True)"
    with pytest.raises(ValueError, match="edge_values needs edge features"):
        PositionalAttentionConv(8, heads=2, edge_values=True)
