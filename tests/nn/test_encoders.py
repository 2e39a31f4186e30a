import copy
import math

import pytest
import torch

from lngraph.nn.encoders import (
    RESNET_DEPTHS,
    BasicBlock,
    Bottleneck,
    FeatureNorm,
    GeometryEncoder,
    ResNetEncoder,
    knn_geometry,
)


@pytest.mark.parametrize("dims, block", [(2, "basic"), (3, "basic"), (2, "bottleneck"),
                                         (3, "bottleneck")])
def test_shapes(dims, block):
    enc = ResNetEncoder(dims, (1, 1, 1), (4, 8, 8), block, out_channels=16, stem_stride=2,
                        token_grid=2)
    x = torch.rand(3, 1, *(24,) * dims)
    feature, tokens = enc(x)
    expansion = 4 if block == "bottleneck" else 1
    assert feature.shape == (3, 16)
    assert tokens.shape == (3, 2**dims, 8 * expansion)
    assert enc.token_channels == 8 * expansion


def test_empty_and_single_batches_work():
    enc = ResNetEncoder(3, (1, 1), (4, 8), out_channels=8).train()
    assert enc(torch.rand(0, 1, 24, 24, 24))[0].shape == (0, 8)
    assert enc(torch.rand(1, 1, 24, 24, 24))[0].shape == (1, 8)
    # In evaluation a sample gives the same output alone or inside a batch.
    enc.eval()
    x = torch.rand(2, 1, 24, 24, 24)
    torch.testing.assert_close(enc(x[:1])[0], enc(x)[0][:1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_a_batch_in_parts_gives_the_one_pass_output(dims, training):
    torch.manual_seed(0)
    enc = ResNetEncoder(dims, (1, 1), (4, 8), out_channels=8, stem_stride=2,
                        token_grid=2).train(training)
    x = torch.rand(7, 1, *(16,) * dims)
    feature, tokens = enc(x)                 # one pass (7 × 16^dims < chunk_elements)
    enc.chunk_elements = 3 * 16 ** dims      # three parts of 3, 2 and 2 samples
    parts = enc(x)
    torch.testing.assert_close(parts[0], feature, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(parts[1], tokens, rtol=1e-5, atol=1e-6)
    enc.grid_tokens = False
    no_tokens = enc(x)
    assert no_tokens[1] is None
    torch.testing.assert_close(no_tokens[0], feature, rtol=1e-5, atol=1e-6)
    assert enc(x[:0])[0].shape == (0, 8)


def test_a_3d_network_is_channels_last_and_loads_either_layout():
    torch.manual_seed(1)
    enc = ResNetEncoder(3, (1, 1), (4, 8), out_channels=8, stem_stride=2).eval()
    convs = [m for m in enc.modules() if isinstance(m, torch.nn.Conv3d)]
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last_3d) for m in convs)
    plain = copy.deepcopy(enc).to(memory_format=torch.contiguous_format)
    assert not all(m.weight.is_contiguous(memory_format=torch.channels_last_3d)
                   for m in plain.modules() if isinstance(m, torch.nn.Conv3d))
    x = torch.rand(5, 1, 16, 16, 16)
    for a, b in zip(enc(x), plain(x), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    fresh = ResNetEncoder(3, (1, 1), (4, 8), out_channels=8, stem_stride=2).eval()
    fresh.load_state_dict(plain.state_dict())
    assert torch.equal(fresh(x)[0], enc(x)[0])


def test_feature_norm_centres_a_batch_and_tolerates_tiny_ones():
    norm = FeatureNorm(3).train()
    x = torch.tensor([[10.0, 1.0, 5.0], [10.2, 3.0, 5.0], [9.8, 2.0, 5.0]])
    y = norm(x)
    torch.testing.assert_close(y.mean(0), torch.zeros(3), rtol=0, atol=1e-4)
    # A single vector is normalised with the running statistics (as in evaluation).
    one = x[:1]
    expected = (one - norm.running_mean) / torch.sqrt(norm.running_var + norm.eps)
    torch.testing.assert_close(norm(one), expected)
    assert norm(x[:0]).shape == (0, 3)


def test_depths_count_blocks():
    block, layers = RESNET_DEPTHS["resnet34"]
    enc = ResNetEncoder(2, layers, (64, 128, 256, 512), block, out_channels=128)
    assert sum(isinstance(m, BasicBlock) for m in enc.modules()) == 16
    block, layers = RESNET_DEPTHS["resnet50"]
    enc = ResNetEncoder(3, layers, (4, 4, 4, 4), block)
    assert sum(isinstance(m, Bottleneck) for m in enc.modules()) == 16


def test_invalid_arguments():
    with pytest.raises(ValueError, match="dims"):
        ResNetEncoder(4, (1,), (4,))
    with pytest.raises(ValueError, match="equal length"):
        ResNetEncoder(2, (1, 1), (4,))
    with pytest.raises(ValueError, match="block"):
        ResNetEncoder(2, (1,), (4,), block="dense")


def test_knn_geometry_by_hand():
    # Three nodes on a line: 0 at 0 mm, 1 at 10 mm, 2 at 30 mm; radii 2, 4, 8; k = 2, D = 10.
    pos = torch.tensor([[0.0, 0, 0], [10.0, 0, 0], [30.0, 0, 0]])
    radius = torch.tensor([2.0, 4.0, 8.0])
    g = knn_geometry(pos, radius, None, k=2, distance_scale=10.0)
    assert g.shape == (3, 2 + 3 * 2)
    expected0 = [math.log(2), 0.2, math.exp(-1), math.exp(-3), math.log(2), math.log(4), 1, 1]
    torch.testing.assert_close(g[0], torch.tensor(expected0))
    expected1 = [math.log(4), 0.4, math.exp(-1), math.exp(-2), -math.log(2), math.log(2), 1, 1]
    torch.testing.assert_close(g[1], torch.tensor(expected1))


def test_knn_geometry_pads_small_scans_and_respects_batches():
    pos = torch.tensor([[0.0, 0, 0], [10.0, 0, 0], [500.0, 0, 0]])
    radius = torch.tensor([2.0, 2.0, 3.0])
    g = knn_geometry(pos, radius, torch.tensor([0, 0, 1]), k=3, distance_scale=10.0)
    # Node 0's only neighbour is node 1; node 2 is alone in its scan.
    torch.testing.assert_close(g[0, 2:5], torch.tensor([math.exp(-1), 0.0, 0.0]))
    torch.testing.assert_close(g[0, 8:11], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(g[2, 2:], torch.zeros(9))
    assert knn_geometry(torch.zeros(0, 3), torch.zeros(0), None, k=3).shape == (0, 11)


def test_geometry_encoder_is_rigid_and_permutation_invariant():
    gen = torch.Generator().manual_seed(0)
    pos = torch.randn(8, 3, generator=gen) * 30
    radius = torch.rand(8, generator=gen) * 5 + 2
    enc = GeometryEncoder(16, k=4)
    angle = math.radians(50)
    rot = torch.tensor([[math.cos(angle), 0, math.sin(angle)], [0, 1, 0],
                        [-math.sin(angle), 0, math.cos(angle)]])
    moved = pos @ rot.T + torch.tensor([40.0, -7.0, 13.0])
    torch.testing.assert_close(enc(moved, radius), enc(pos, radius), rtol=1e-4, atol=1e-5)
    perm = torch.randperm(8, generator=gen)
    torch.testing.assert_close(enc(pos[perm], radius[perm]), enc(pos, radius)[perm])
