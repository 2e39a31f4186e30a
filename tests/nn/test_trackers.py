import pytest
import torch
import torch.nn.functional as F

from lngraph.nn.trackers import (
    CrossAttentionTracker,
    SiameseTracker,
    VoxelEmbeddingTracker,
    VoxelEncoder,
    box_sum,
    candidate_grid,
    check_cube_size,
    heatmap_loss,
    refine_peak,
    valid_correlation,
)

TEMPLATE, SEARCH = 13, 29


def _subcube(search, centre, size):
    """The ``size``-cube of ``search`` ``[1, D, D, D]`` centred on array index ``centre``."""
    h = size // 2
    z, y, x = centre
    return search[:, z - h:z + h + 1, y - h:y + h + 1, x - h:x + h + 1]


def test_check_cube_size():
    assert check_cube_size(17) == 17
    for bad in (5, 15, 16, 18):
        with pytest.raises(ValueError, match="≡ 1 mod 4"):
            check_cube_size(bad, "template_size")


def test_valid_correlation_and_box_sum_match_direct_computation():
    torch.manual_seed(0)
    f, g = torch.randn(2, 3, 4, 4, 4), torch.randn(2, 3, 9, 9, 9)
    direct = torch.cat([F.conv3d(g[b:b + 1], f[b:b + 1]) for b in range(2)])[:, 0]
    assert torch.allclose(valid_correlation(f, g), direct, atol=1e-4)
    assert torch.allclose(box_sum(g, 4), F.avg_pool3d(g, 4, stride=1) * 64, atol=1e-4)


def test_encoder_features_of_a_subcube_are_a_subgrid_of_the_search_features():
    torch.manual_seed(0)
    encoder = VoxelEncoder(8)
    search = torch.rand(1, 1, SEARCH, SEARCH, SEARCH)
    template = _subcube(search[0], (14, 10, 18), TEMPLATE)[None]  # starts at (8, 4, 12)
    f, g = encoder(template), encoder(search)
    assert f.shape[-1] == (TEMPLATE - 7) // 2 and g.shape[-1] == (SEARCH - 7) // 2
    assert torch.allclose(f, g[..., 4:7, 2:5, 6:9], atol=1e-5)
    assert repr(encoder) == "VoxelEncoder(channels=8)"


def test_heatmap_loss_is_smallest_at_the_target():
    n = 5
    target = torch.tensor([[1.0, 2.0, 3.0]])
    losses = {}
    for peak in [(1, 2, 3), (3, 2, 3), (0, 0, 0)]:
        logits = torch.zeros(1, n, n, n)
        logits[(0, *peak)] = 8.0
        losses[peak] = heatmap_loss(logits, target).item()
    assert losses[(1, 2, 3)] < losses[(3, 2, 3)] < losses[(0, 0, 0)]


def test_refine_peak_is_the_local_centroid():
    logits = torch.full((2, 5, 5, 5), -30.0)
    logits[0, 2, 2, 2] = 0.0
    logits[0, 2, 2, 3] = 0.0  # two equal neighbours: the centroid is half way
    logits[1, 0, 4, 1] = 0.0  # at the border
    out = refine_peak(logits)
    assert torch.allclose(out, torch.tensor([[2.0, 2.0, 2.5], [0.0, 4.0, 1.0]]), atol=1e-6)


@pytest.mark.parametrize("cls", [SiameseTracker, VoxelEmbeddingTracker, CrossAttentionTracker])
def test_shapes_and_candidate_grid(cls):
    torch.manual_seed(0)
    net = cls(8)
    out = net(torch.rand(3, 1, TEMPLATE, TEMPLATE, TEMPLATE),
              torch.rand(3, 1, SEARCH, SEARCH, SEARCH))
    n = (SEARCH - TEMPLATE) // 2 + 1
    assert out.shape == (3, n, n, n)
    first, stride = candidate_grid(TEMPLATE)
    # The candidates are the template placements inside the search cube, symmetric about
    # its centre.
    assert first == (TEMPLATE - 1) / 2 and first + stride * (n - 1) == SEARCH - 1 - first


@pytest.mark.parametrize("cls", [SiameseTracker, VoxelEmbeddingTracker, CrossAttentionTracker])
def test_shifting_the_search_content_shifts_the_heatmap(cls):
    """Two search voxels along x are one candidate (no border or position cue inside)."""
    torch.manual_seed(2)
    net = cls(8).eval()
    template, search = torch.rand(1, 1, TEMPLATE, TEMPLATE, TEMPLATE), torch.rand(
        1, 1, SEARCH, SEARCH, SEARCH)
    with torch.no_grad():
        before = net(template, search)
        after = net(template, torch.roll(search, 2, dims=-1))
    assert torch.allclose(after[..., 1:], before[..., :-1], atol=1e-4)


@pytest.mark.parametrize("cls", [SiameseTracker, VoxelEmbeddingTracker])
def test_untrained_similarity_peaks_exactly_at_a_copied_template(cls):
    """The template is a sub-cube of the search cube: the normalised correlation (1) and the
    cosine of identical embeddings (1) are largest where it was cut."""
    torch.manual_seed(1)
    net = cls(8).eval()
    search = torch.rand(2, 1, SEARCH, SEARCH, SEARCH)
    centres = [(14 + 4, 14 - 6, 14 + 2), (14 - 8, 14, 14 + 6)]
    template = torch.stack([_subcube(s, c, TEMPLATE) for s, c in zip(search, centres,
                                                                      strict=True)])
    with torch.no_grad():
        logits = net(template, search)
    n = logits.shape[-1]
    peak = torch.stack(torch.unravel_index(logits.flatten(1).argmax(1), (n, n, n)), -1)
    first, stride = candidate_grid(TEMPLATE)
    assert (first + stride * peak).tolist() == [list(c) for c in centres]


def test_contrastive_loss_prefers_the_true_position_of_a_copied_template():
    torch.manual_seed(0)
    net = VoxelEmbeddingTracker(8)
    search = torch.rand(1, 1, SEARCH, SEARCH, SEARCH)
    centre = (10, 16, 12)  # template index (6, 6, 6) sits at this search index
    template = _subcube(search[0], centre, TEMPLATE)[None]
    # Anchors: every template feature voxel m (template index 4 + 2m), at search index
    # centre - 6 + 4 + 2m.
    anchors = torch.arange(27)
    grid = torch.stack(torch.unravel_index(anchors, (3, 3, 3)), -1).float()
    truth = (torch.tensor(centre) - 2 + 2 * grid)[None]
    losses = [net.contrastive_loss(template, search, anchors, truth + shift).item()
              for shift in (0.0, 2.0, 4.0)]
    assert losses[0] < losses[1] < losses[2]
    assert repr(net) == "VoxelEmbeddingTracker(channels=8, dim=16, tau=0.1)"
