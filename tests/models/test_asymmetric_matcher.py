import math

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, HeteroData

from lngraph.io.matches import PairPrediction
from lngraph.matching import hungarian_max
from lngraph.models import AsymmetricMatcher, preset
from lngraph.nn import scb_score

CROP = 16
TINY = preset("lite").updated(model={"encoder2d_widths": (4, 8, 8),
                                      "encoder3d_widths": (4, 8, 8), "feature_dim": 16,
                                      "use_scb": True, "scb_hidden": 8},
                               crops={"size": CROP})
#: τ of the matching-score logits.
TAU = TINY.model.similarity_temperature


def complete_graph(n: int) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    keep = rows != cols
    return torch.stack([rows[keep], cols[keep]])


def pair_graph(pos_src, pos_dst, matches, radius_src=None, radius_dst=None, crops=None):
    """The pair ``HeteroData`` of DESIGN §3.4, built by hand."""
    data = HeteroData()
    for node_type, pos, radius in (("src", pos_src, radius_src), ("dst", pos_dst, radius_dst)):
        n = len(pos)
        data[node_type].num_nodes = n
        data[node_type].pos = pos
        data[node_type].radius = torch.full((n,), 5.0) if radius is None else radius
        if crops is not None:
            data[node_type].cube, data[node_type].views = crops[node_type]
        data[node_type, "intra", node_type].edge_index = complete_graph(n)
    data["src", "cross", "dst"].edge_label_index = torch.as_tensor(
        matches, dtype=torch.long).reshape(-1, 2).T
    return data


def random_crops(n: int, gen: torch.Generator):
    cube = torch.rand(n, 1, CROP, CROP, CROP, generator=gen)
    views = torch.rand(n, 9, CROP, CROP, generator=gen)
    return cube, views


def random_pair(n_src: int, n_dst: int, seed: int, images: bool = True) -> HeteroData:
    """Later scan = the first nodes of the earlier one, moved a little, plus new nodes."""
    gen = torch.Generator().manual_seed(seed)
    kept = min(n_src, n_dst) - (1 if min(n_src, n_dst) > 1 else 0)
    pos_src = torch.randn(n_src, 3, generator=gen) * 25
    pos_dst = torch.cat([pos_src[:kept] + torch.randn(kept, 3, generator=gen),
                         torch.randn(n_dst - kept, 3, generator=gen) * 25 + 60])
    radius_src = torch.rand(n_src, generator=gen) * 6 + 3
    radius_dst = torch.cat([radius_src[:kept], torch.rand(n_dst - kept, generator=gen) * 6 + 3])
    crops = None
    if images:
        src = random_crops(n_src, gen)
        dst = random_crops(n_dst, gen)
        noise = 0.05 * torch.rand(src[0][:kept].shape, generator=gen)
        dst = (torch.cat([src[0][:kept] + noise, dst[0][kept:]]),
               torch.cat([src[1][:kept], dst[1][kept:]]))
        crops = {"src": src, "dst": dst}
    matches = [[i, i] for i in range(kept)]
    return pair_graph(pos_src, pos_dst, matches, radius_src, radius_dst, crops)


def permute(data: HeteroData, node_type: str, perm: torch.Tensor) -> HeteroData:
    out = data.clone()
    for key in ("pos", "radius", "cube", "views"):
        if key in out[node_type]:
            out[node_type][key] = out[node_type][key][perm]
    inverse = torch.argsort(perm)
    row = 0 if node_type == "src" else 1
    label = out["src", "cross", "dst"].edge_label_index.clone()
    label[row] = inverse[label[row]]
    out["src", "cross", "dst"].edge_label_index = label
    return out


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return AsymmetricMatcher(TINY)


@pytest.fixture(scope="module")
def geometry_model():
    torch.manual_seed(0)
    return AsymmetricMatcher(TINY.updated(model={"geometry_only": True}))


def test_output_shapes_on_a_batch_of_unequal_pairs(model):
    batch = Batch.from_data_list([random_pair(3, 4, 0), random_pair(0, 2, 1),
                                  random_pair(5, 0, 2), random_pair(2, 2, 3)])
    out = model(batch)
    assert out.similarity.shape == (4, 5, 4)
    assert out.pair_mask.sum().item() == 3 * 4 + 0 + 0 + 2 * 2
    assert out.src_matchability.shape == (10,) and out.dst_matchability.shape == (8,)
    assert out.candidates.shape == (2, 16) and out.scb_logits.shape == (16, 9)
    # Every candidate pairs nodes of the same graph.
    assert (batch["src"].batch[out.candidates[0]] == batch["dst"].batch[out.candidates[1]]).all()
    # Per pair, S equals the similarity computed on that pair alone (in evaluation, where
    # feature normalisation uses running statistics).
    model.eval()
    with torch.no_grad():
        together, alone = model(batch), model(random_pair(3, 4, 0))
    model.train()
    torch.testing.assert_close(together.similarity[0, :3, :4], alone.similarity[0],
                               rtol=1e-4, atol=1e-5)
    losses = model.loss(batch, out)
    assert set(losses) == {"se", "te", "seag", "scb", "total"}
    assert all(torch.isfinite(v) for v in losses.values())
    losses["total"].backward()
    predictions = model.predict(batch)
    assert [(p.n_src, p.n_dst) for p in predictions] == [(3, 4), (0, 2), (5, 0), (2, 2)]
    assert all(isinstance(p, PairPrediction) for p in predictions)
    assert model.training    # predict() evaluates in eval mode and restores the mode
    single = model.predict_pair(random_pair(3, 4, 0))
    assert single.matches.tolist() == predictions[0].matches.tolist()


@pytest.mark.parametrize("node_type", ["src", "dst"])
def test_permuting_a_scan_permutes_similarity(model, node_type):
    data = random_pair(5, 6, 4)
    n = data[node_type].num_nodes
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        base, moved = model(data), model(permute(data, node_type, perm))
    expected = base.similarity[0][perm] if node_type == "src" else base.similarity[0][:, perm]
    torch.testing.assert_close(moved.similarity[0], expected, rtol=1e-4, atol=1e-5)
    base_loss = model.loss(data, base)
    moved_loss = model.loss(permute(data, node_type, perm), moved)
    for key in base_loss:
        torch.testing.assert_close(moved_loss[key], base_loss[key], rtol=1e-4, atol=1e-5)


def test_geometry_mode_is_invariant_to_a_rigid_motion_of_one_scan(geometry_model):
    data = random_pair(6, 5, 6, images=False)
    a = math.radians(33)
    rot = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0],
                        [0.0, 0.0, 1.0]])
    moved = data.clone()
    moved["dst"].pos = data["dst"].pos @ rot.T + torch.tensor([80.0, -20.0, 150.0])
    with torch.no_grad():
        torch.testing.assert_close(geometry_model(moved).similarity,
                                   geometry_model(data).similarity, rtol=1e-4, atol=1e-5)
    # Without the position prior the whole matching score is rigid-invariant too.
    torch.manual_seed(0)
    plain = AsymmetricMatcher(TINY.updated(model={"geometry_only": True,
                                                  "position_prior": False}))
    with torch.no_grad():
        torch.testing.assert_close(plain(moved).match_logits, plain(data).match_logits,
                                   rtol=1e-4, atol=1e-4)


def test_geometry_mode_needs_no_crops_and_image_mode_says_so(model, geometry_model):
    data = random_pair(4, 4, 7, images=False)
    out = geometry_model(data)
    assert out.scb_logits.shape == (0, 9) and out.src.views is None
    assert geometry_model.loss(data, out)["se"].item() == 0.0
    prediction = geometry_model.predict_pair(data)
    assert prediction.n_src == 4 and (prediction.scores >= TINY.model.similarity_threshold).all()
    with pytest.raises(ValueError, match="no crops"):
        model(data)


@pytest.mark.parametrize("geometry_only", [False, True])
def test_a_few_steps_lower_the_loss(geometry_only):
    torch.manual_seed(1)
    model = AsymmetricMatcher(TINY.updated(model={"geometry_only": geometry_only},
                                           optim={"lr": 3e-3}))
    batch = Batch.from_data_list([random_pair(6, 6, 8, not geometry_only),
                                  random_pair(5, 6, 9, not geometry_only)])
    optimizer = torch.optim.Adam(model.parameters(), lr=model.config.optim.lr)
    losses = []
    for _ in range(8):
        loss = model.loss(batch, model(batch))["total"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_predict_uses_scb_on_the_hungarian_pairs(model):
    data = random_pair(4, 5, 10)
    prediction = model.predict_pair(data)
    # The same by hand: Hungarian on P, Eq. 3 on those pairs, drop those below 0.5.
    model.eval()
    with torch.no_grad():
        sim = model(data).score[0].double().numpy()
        hungarian = hungarian_max(sim)
        out = model(data, torch.as_tensor(hungarian.T))
    model.train()
    s = scb_score(out.scb_prob).double().numpy()
    keep = s >= model.config.model.scb_threshold
    assert prediction.matches.tolist() == hungarian[keep].tolist()
    np.testing.assert_allclose(prediction.scores, s[keep], rtol=1e-6)
    # Reassigning on the combined score scores all 20 pairs and still gives a valid matching.
    reassigning = AsymmetricMatcher(TINY.updated(model={"scb_reassign": True}))
    reassigning.load_state_dict(model.state_dict())
    assert len(reassigning.predict_pair(data).matches) <= 4


def test_matchability_is_the_best_score(model):
    data = random_pair(3, 4, 11)
    with torch.no_grad():
        out = model(data)
    torch.testing.assert_close(out.src_matchability, out.score[0].amax(1))
    torch.testing.assert_close(out.dst_matchability, out.score[0].amax(0))


def test_without_the_prior_the_score_is_the_similarity():
    torch.manual_seed(0)
    plain = AsymmetricMatcher(TINY.updated(model={"position_prior": False}))
    with torch.no_grad():
        out = plain(random_pair(3, 4, 11))
    torch.testing.assert_close(out.match_logits, (out.similarity - 0.5) / TAU)
    torch.testing.assert_close(out.src_matchability, out.similarity[0].amax(1).clamp_min(0))
    assert not any("prior" in name for name, _ in plain.named_parameters())


def test_each_temperature_has_one_use():
    """``model.similarity_temperature`` scales the matching logits, ``model.scb_temperature``
    the SCB head's, ``loss.temperature`` only the InfoNCE losses."""
    torch.manual_seed(0)
    data = random_pair(3, 4, 11)
    config = TINY.updated(model={"position_prior": False, "similarity_temperature": 0.2,
                                 "scb_temperature": 0.3}, loss={"temperature": 0.4})
    model = AsymmetricMatcher(config)
    assert model.scb.temperature == 0.3
    with torch.no_grad():
        out = model(data)
        torch.testing.assert_close(out.match_logits, (out.similarity - 0.5) / 0.2)
        other_loss = AsymmetricMatcher(config.with_values({"loss.temperature": 0.05}))
        other_loss.load_state_dict(model.state_dict())
        same = other_loss(data)
        torch.testing.assert_close(same.match_logits, out.match_logits)
        assert model.loss(data, out)["seag"] == other_loss.loss(data, same)["seag"]
        assert model.loss(data, out)["te"] != other_loss.loss(data, same)["te"]


@pytest.mark.parametrize("geometry_only", [False, True])
def test_the_position_prior_is_invariant_to_translating_a_scan(geometry_only):
    torch.manual_seed(0)
    model = AsymmetricMatcher(TINY.updated(model={"geometry_only": geometry_only})).eval()
    data = random_pair(6, 5, 12, images=not geometry_only)
    moved = data.clone()
    moved["dst"].pos = data["dst"].pos + torch.tensor([80.0, -20.0, 150.0])
    with torch.no_grad():
        base, shifted = model(data), model(moved)
    torch.testing.assert_close(shifted.match_logits, base.match_logits, rtol=1e-4, atol=1e-4)
    assert model.predict_pair(moved).matches.tolist() == model.predict_pair(data).matches.tolist()


def test_the_position_prior_prefers_the_aligned_partner():
    # Identical appearance everywhere: only the aligned distance tells the partners apart.
    torch.manual_seed(0)
    model = AsymmetricMatcher(TINY.updated(model={"geometry_only": True}))
    pos = torch.tensor([[0.0, 0.0, 0.0], [40.0, 0.0, 0.0], [0.0, 40.0, 0.0], [0.0, 0.0, 40.0]])
    data = pair_graph(pos, pos[[2, 0, 3, 1]] + torch.tensor([5.0, 7.0, -3.0]),
                      [[0, 1], [1, 3], [2, 0], [3, 2]])
    with torch.no_grad():
        logits = model(data).match_logits[0]
    assert logits.argmax(1).tolist() == [1, 3, 0, 2]


def test_fusion_terms_and_their_weights_make_the_logits():
    torch.manual_seed(0)
    config = TINY.updated(model={"encoder_similarity": True, "size_prior": True})
    model = AsymmetricMatcher(config).eval()
    assert model.fusion_terms == ["seag", "encoder", "distance", "size"]
    torch.testing.assert_close(model.fusion_weight.detach(), torch.tensor([1.0, 1.0, -4.0, -1.0]))
    data = random_pair(4, 5, 3)
    with torch.no_grad():
        out = model(data)
        x = model.fusion_features(data, out.similarity, out.src, out.dst)
    assert x.shape == (1, 4, 5, 4)
    torch.testing.assert_close(out.match_logits, x @ model.fusion_weight.detach() + 4.0)
    torch.testing.assert_close(x[..., 0], (out.similarity - 0.5) / TAU)
    # encoder term: cosine of 3D feature + mean view feature, each normalised
    z = {k: torch.nn.functional.normalize(f.feature, dim=-1)
         + torch.nn.functional.normalize(f.views.mean(1), dim=-1)
         for k, f in (("src", out.src), ("dst", out.dst))}
    cos = torch.nn.functional.normalize(z["src"], dim=-1) @ \
        torch.nn.functional.normalize(z["dst"], dim=-1).T
    torch.testing.assert_close(x[0, ..., 1], cos / TAU)
    # size term: |log r_i - log r_j|
    size = (data["src"].radius.log()[:, None] - data["dst"].radius.log()[None]).abs()
    torch.testing.assert_close(x[0, ..., 3], size)


def test_the_size_term_is_the_absolute_log_size_ratio():
    # Two nodes at the same place in the later scan: only the size tells which is the partner.
    torch.manual_seed(0)
    model = AsymmetricMatcher(TINY.updated(model={"geometry_only": True, "size_prior": True,
                                                  "use_seag": False})).eval()
    pos = torch.tensor([[0.0, 0.0, 0.0], [60.0, 0.0, 0.0]])
    data = pair_graph(pos, pos[[0, 0]] + 0.5, [[0, 1]], torch.tensor([4.0, 9.0]),
                      torch.tensor([9.0, 4.0]))
    with torch.no_grad():
        x = model.fusion_features(data, model(data).similarity, *[
            model.encode(data[t]) for t in ("src", "dst")])
    size = x[0, 0, :, -1]
    assert size[1] == 0.0 and size[0] == pytest.approx(math.log(9 / 4))


@pytest.mark.parametrize("sizes", [(3, 0), (0, 4)])
def test_a_batch_whose_scans_on_one_side_are_all_empty_trains_and_predicts(sizes):
    # e.g. the last training batch holding one pair whose later scan has no node
    torch.manual_seed(0)
    model = AsymmetricMatcher(TINY).train()
    batch = Batch.from_data_list([random_pair(*sizes, seed=4)])
    losses = model.loss(batch, model(batch))
    assert torch.isfinite(losses["total"])
    losses["total"].backward()
    prediction = model.predict(batch)[0]
    assert (prediction.n_src, prediction.n_dst) == sizes and len(prediction.matches) == 0
