import math

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, HeteroData

from lngraph.io.matches import PairPrediction
from lngraph.matching import hungarian_max
from lngraph.matching.alignment import alignment_shifts
from lngraph.models import (
    AsymmetricMatcher,
    MatcherConfig,
    build_matcher,
    preset,
    to_predictions,
)
from lngraph.nn import scb_score

CROP = 16
TINY = preset("lite").updated(model={"architecture": "asymmetric",
                                      "encoder2d_widths": (4, 8, 8),
                                      "encoder3d_widths": (4, 8, 8), "feature_dim": 16,
                                      "use_scb": True, "scb_hidden": 8},
                               crops={"size": CROP})
#: τ of the matching-score logits.
TAU = TINY.model.similarity_temperature


def complete_graph(n: int) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    keep = rows != cols
    return torch.stack([rows[keep], cols[keep]])


def add_shift(data: HeteroData, config: MatcherConfig = TINY) -> HeteroData:
    """Set ``src.shift`` from the pair's current positions, as the graph builders do (one pair,
    before batching), with the config's alignment settings."""
    m = config.model
    shift = alignment_shifts(data["src"].pos.double().numpy(), data["dst"].pos.double().numpy(),
                             m.position_gate_mm, m.position_local_mm)
    data["src"].shift = torch.as_tensor(shift, dtype=torch.float32).reshape(-1, 3)
    return data


def pair_graph(pos_src, pos_dst, matches, radius_src=None, radius_dst=None, crops=None,
               config: MatcherConfig = TINY):
    """The pair ``HeteroData`` of docs/design.md, *Pair graphs*, built by hand, with the
    alignment shifts of ``config``."""
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
    return add_shift(data, config)


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
    """``data`` with the nodes of one scan reordered; the alignment shifts are recomputed
    from the reordered positions (what a user with that node order gets)."""
    out = data.clone()
    for key in ("pos", "radius", "cube", "views"):
        if key in out[node_type]:
            out[node_type][key] = out[node_type][key][perm]
    inverse = torch.argsort(perm)
    row = 0 if node_type == "src" else 1
    label = out["src", "cross", "dst"].edge_label_index.clone()
    label[row] = inverse[label[row]]
    out["src", "cross", "dst"].edge_label_index = label
    return add_shift(out)


def moved_scan(data: HeteroData, rot: torch.Tensor | None = None,
               offset: tuple[float, float, float] = (80.0, -20.0, 150.0)) -> HeteroData:
    """``data`` with the later scan rotated by ``rot`` and translated by ``offset``, its
    alignment shifts recomputed."""
    moved = data.clone()
    pos = data["dst"].pos if rot is None else data["dst"].pos @ rot.T
    moved["dst"].pos = pos + torch.tensor(offset)
    return add_shift(moved)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return AsymmetricMatcher(TINY)


@pytest.fixture(scope="module")
def geometry_model():
    torch.manual_seed(0)
    return AsymmetricMatcher(TINY.updated(model={"geometry_only": True}))


def test_the_config_builds_it_with_or_without_seags_learnable_q():
    torch.manual_seed(0)
    learned = build_matcher(TINY)
    assert type(learned) is AsymmetricMatcher and learned.seag.learn_q
    names = {name for name, _ in learned.named_parameters()}
    assert {"seag.q_weight1", "seag.q_weight2"} <= names
    torch.testing.assert_close(learned.seag.q_weight1.detach(), torch.eye(16))
    fixed = build_matcher(TINY.with_values({"model.seag_learn_q": False}))
    assert type(fixed) is AsymmetricMatcher and not fixed.seag.learn_q
    assert not any(name.startswith("seag.q_weight") for name, _ in fixed.named_parameters())
    # Q starts at the identity: the same outputs as the parameter-free SEAG
    fixed.load_state_dict({k: v for k, v in learned.state_dict().items()
                           if not k.startswith("seag.q_weight")})
    batch = Batch.from_data_list([random_pair(4, 3, 0), random_pair(2, 3, 1)])
    with torch.no_grad():
        torch.testing.assert_close(fixed.eval()(batch).score, learned.eval()(batch).score)


def test_output_shapes_on_a_batch_of_unequal_pairs(model):
    pairs = [random_pair(3, 4, 0), random_pair(0, 2, 1), random_pair(5, 0, 2),
             random_pair(2, 2, 3)]
    batch = Batch.from_data_list(pairs)
    assert batch["src"].shift.shape == (10, 3) and batch["src"].shift.dtype == torch.float32
    out = model(batch)
    assert out.similarity.shape == out.match_logits.shape == out.score.shape == (4, 5, 4)
    assert out.src_mask.sum(1).tolist() == [3, 0, 5, 2]
    assert out.dst_mask.sum(1).tolist() == [4, 2, 0, 2]
    assert out.pair_mask.sum().item() == 3 * 4 + 0 + 0 + 2 * 2
    torch.testing.assert_close(out.score, torch.sigmoid(out.match_logits))
    assert out.candidates.shape == (2, 16) and out.scb_logits.shape == (16, 9)
    # Every candidate pairs nodes of the same graph.
    assert (batch["src"].batch[out.candidates[0]] == batch["dst"].batch[out.candidates[1]]).all()
    # Per pair, S and the matching logits (with the pair's own alignment shifts) equal those
    # computed on that pair alone (in evaluation, where feature normalisation uses running
    # statistics).
    model.eval()
    with torch.no_grad():
        together = model(batch)
        for b, (n1, n2) in ((0, (3, 4)), (3, (2, 2))):
            alone = model(pairs[b])
            for key in ("similarity", "match_logits"):
                torch.testing.assert_close(getattr(together, key)[b, :n1, :n2],
                                           getattr(alone, key)[0], rtol=1e-4, atol=1e-5)
    model.train()
    losses = model.loss(batch, out)
    assert set(losses) == {"se", "te", "seag", "scb", "total"}
    assert all(torch.isfinite(v) for v in losses.values())
    losses["total"].backward()

    matches = model.match(batch)
    assert model.training    # match() evaluates in eval mode and restores the mode
    assert matches.matches0.shape == (4, 5) and matches.matches1.shape == (4, 4)
    assert matches.scores0.shape == (4, 5)
    assert (matches.matches0[~out.src_mask] == -1).all()
    assert (matches.matches1[~out.dst_mask] == -1).all()
    # matches1 is the inverse of matches0, pair by pair.
    for b in range(4):
        for i, j in enumerate(matches.matches0[b].tolist()):
            if j >= 0:
                assert matches.matches1[b, j] == i
        assert (matches.matches0[b] >= 0).sum() == (matches.matches1[b] >= 0).sum()
    predictions = to_predictions(matches)
    assert [(p.n_src, p.n_dst) for p in predictions] == [(3, 4), (0, 2), (5, 0), (2, 2)]
    assert all(isinstance(p, PairPrediction) for p in predictions)
    assert len(predictions[1].matches) == len(predictions[2].matches) == 0
    single = model.match(pairs[0])
    assert single.matches0.shape == (1, 3)
    assert single.matches0[0].tolist() == matches.matches0[0, :3].tolist()
    assert to_predictions(single)[0].matches.tolist() == predictions[0].matches.tolist()


@pytest.mark.parametrize("node_type", ["src", "dst"])
def test_permuting_a_scan_permutes_similarity(model, node_type):
    data = random_pair(5, 6, 4)
    n = data[node_type].num_nodes
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(5))
    moved_data = permute(data, node_type, perm)
    with torch.no_grad():
        base, moved = model(data), model(moved_data)
    for key in ("similarity", "match_logits"):
        full = getattr(base, key)[0]
        expected = full[perm] if node_type == "src" else full[:, perm]
        torch.testing.assert_close(getattr(moved, key)[0], expected, rtol=1e-4, atol=1e-4)
    base_loss = model.loss(data, base)
    moved_loss = model.loss(moved_data, moved)
    for key in base_loss:
        torch.testing.assert_close(moved_loss[key], base_loss[key], rtol=1e-4, atol=1e-5)


def test_geometry_mode_is_invariant_to_a_rigid_motion_of_one_scan(geometry_model):
    data = random_pair(6, 5, 6, images=False)
    a = math.radians(33)
    rot = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0],
                        [0.0, 0.0, 1.0]])
    moved = moved_scan(data, rot)
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
        torch.testing.assert_close(plain(moved).score, plain(data).score,
                                   rtol=1e-4, atol=1e-5)


def test_geometry_mode_needs_no_crops_and_image_mode_says_so(model, geometry_model):
    data = random_pair(4, 4, 7, images=False)
    out = geometry_model(data)
    assert out.scb_logits.shape == (0, 9) and out.src.views is None
    assert geometry_model.loss(data, out)["se"].item() == 0.0
    threshold = TINY.model.similarity_threshold
    prediction = to_predictions(geometry_model.match(data))[0]
    assert (prediction.n_src, prediction.n_dst) == (4, 4)
    # Without SCB the rule is Hungarian on P, keeping the pairs with P >= the threshold.
    geometry_model.eval()
    with torch.no_grad():
        score = geometry_model(data).score[0].double().numpy()
    geometry_model.train()
    expected = hungarian_max(score)
    expected = expected[score[expected[:, 0], expected[:, 1]] >= threshold]
    assert prediction.matches.tolist() == expected.tolist()
    np.testing.assert_allclose(prediction.scores, score[expected[:, 0], expected[:, 1]],
                               rtol=1e-6)
    assert (prediction.scores >= threshold).all()
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


def test_match_uses_scb_on_the_hungarian_pairs(model):
    data = random_pair(4, 5, 10)
    # The rule by hand: Hungarian on P, Eq. 3 on those pairs, drop those below the threshold.
    model.eval()
    with torch.no_grad():
        out = model(data)
        hungarian = hungarian_max(out.score[0].double().numpy())
        by_hand = model(data, torch.as_tensor(hungarian.T))
        decision = model.scb_decision(out)[0].double().numpy()
    model.train()
    s = scb_score(torch.sigmoid(by_hand.scb_logits)).double().numpy()
    assert len(hungarian) == 4
    # scb_decision holds Eq. 3 on the assigned pairs and NaN on the other 16.
    np.testing.assert_allclose(decision[hungarian[:, 0], hungarian[:, 1]], s, rtol=1e-6)
    assert np.isnan(decision).sum() == 4 * 5 - 4
    # Threshold 0 keeps every assigned pair with its SCB score; the config's threshold and
    # one halfway across the widest gap between the scores keep those that reach it.
    ordered = np.sort(s)
    gap = int(np.argmax(np.diff(ordered)))
    middle = float(ordered[gap:gap + 2].mean())
    for threshold in (0.0, None, middle):
        limit = model.config.model.scb_threshold if threshold is None else threshold
        matches = model.match(data, threshold)
        keep = s >= limit
        prediction = to_predictions(matches)[0]
        assert prediction.matches.tolist() == hungarian[keep].tolist(), threshold
        np.testing.assert_allclose(prediction.scores, s[keep], rtol=1e-6)
        expected0 = np.full(4, -1)
        expected0[hungarian[keep, 0]] = hungarian[keep, 1]
        assert matches.matches0[0].tolist() == expected0.tolist()
    assert 0 < len(to_predictions(model.match(data, middle))[0].matches) < 4
    assert model.training

    # Reassigning scores all 20 pairs and assigns on (P + s) / 2.
    reassigning = AsymmetricMatcher(TINY.updated(model={"scb_reassign": True}))
    reassigning.load_state_dict(model.state_dict())
    reassigning.eval()
    with torch.no_grad():
        out = reassigning(data)    # SCB on every same-pair combination
        decision = reassigning.scb_decision(out)[0].double().numpy()
    every = scb_score(torch.sigmoid(out.scb_logits)).double().numpy().reshape(4, 5)
    np.testing.assert_allclose(decision, every, rtol=1e-6)
    pairs = hungarian_max((out.score[0].double().numpy() + decision) / 2)
    keep = decision[pairs[:, 0], pairs[:, 1]] >= TINY.model.scb_threshold
    prediction = to_predictions(reassigning.match(data))[0]
    assert prediction.matches.tolist() == pairs[keep].tolist()
    assert len(set(prediction.matches[:, 1].tolist())) == len(prediction.matches) <= 4


def test_assign_on_a_padded_batch_is_hungarian_on_each_pair_score():
    # With the position prior the assignment maximises P = sigmoid(logits) over the valid
    # block of each pair; padded rows and columns are never assigned (no SCB here: P decides).
    torch.manual_seed(0)
    model = AsymmetricMatcher(TINY.updated(model={"use_scb": False})).eval()
    batch = Batch.from_data_list([random_pair(3, 4, 11), random_pair(2, 1, 12),
                                  random_pair(4, 2, 13)])
    with torch.no_grad():
        out = model(batch)
    torch.testing.assert_close(out.score, torch.sigmoid(out.match_logits))
    assert ((out.score >= 0) & (out.score <= 1)).all()
    expected_mask = torch.zeros(3, 4, 4, dtype=torch.bool)
    expected_mask[0, :3, :4] = expected_mask[1, :2, :1] = expected_mask[2, :4, :2] = True
    assert torch.equal(out.pair_mask, expected_mask)
    threshold = TINY.model.similarity_threshold
    for limit in (0.0, threshold):
        matches = model.assign(out, limit)
        assert matches.matches0.shape == (3, 4) and matches.matches1.shape == (3, 4)
        for b, (n1, n2) in enumerate(((3, 4), (2, 1), (4, 2))):
            score = out.score[b, :n1, :n2].double().numpy()
            pairs = hungarian_max(score)
            pairs = pairs[score[pairs[:, 0], pairs[:, 1]] >= limit]
            expected0 = np.full(4, -1)
            expected0[pairs[:, 0]] = pairs[:, 1]
            assert matches.matches0[b].tolist() == expected0.tolist(), (b, limit)
            np.testing.assert_allclose(matches.scores0[b, pairs[:, 0]].numpy(),
                                       score[pairs[:, 0], pairs[:, 1]], rtol=1e-6)
    assert model.match(batch).matches0.tolist() == model.assign(out).matches0.tolist()


def test_the_prior_needs_the_alignment_shifts(model):
    data = random_pair(3, 4, 11)
    del data["src"].shift
    with pytest.raises(ValueError, match="no alignment shifts"):
        model(data)
    # Without the prior the graph needs none (matcher_graphs builds none for such a config).
    torch.manual_seed(0)
    plain = AsymmetricMatcher(TINY.updated(model={"position_prior": False}))
    with torch.no_grad():
        assert plain(data).score.shape == (1, 3, 4)


def test_without_the_prior_the_score_is_the_similarity():
    torch.manual_seed(0)
    plain = AsymmetricMatcher(TINY.updated(model={"position_prior": False}))
    with torch.no_grad():
        out = plain(random_pair(3, 4, 11))
    torch.testing.assert_close(out.match_logits, (out.similarity - 0.5) / TAU)
    torch.testing.assert_close(out.score, out.similarity)
    assert not any("fusion" in name or "prior" in name for name, _ in plain.named_parameters())


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
    moved = moved_scan(data)
    # The recomputed alignment shifts follow the translation.
    torch.testing.assert_close(moved["src"].shift,
                               data["src"].shift + torch.tensor([80.0, -20.0, 150.0]),
                               rtol=0, atol=1e-3)
    with torch.no_grad():
        base, shifted = model(data), model(moved)
    torch.testing.assert_close(shifted.match_logits, base.match_logits, rtol=1e-4, atol=1e-4)
    a, b = model.match(moved, threshold=0.0), model.match(data, threshold=0.0)
    assert a.matches0.tolist() == b.matches0.tolist()
    torch.testing.assert_close(a.scores0, b.scores0, rtol=1e-4, atol=1e-5)
    assert model.match(moved).matches0.tolist() == model.match(data).matches0.tolist()


def test_the_position_prior_prefers_the_aligned_partner():
    # Identical appearance everywhere: only the aligned distance tells the partners apart.
    torch.manual_seed(0)
    model = AsymmetricMatcher(TINY.updated(model={"geometry_only": True}))
    pos = torch.tensor([[0.0, 0.0, 0.0], [40.0, 0.0, 0.0], [0.0, 40.0, 0.0], [0.0, 0.0, 40.0]])
    data = pair_graph(pos, pos[[2, 0, 3, 1]] + torch.tensor([5.0, 7.0, -3.0]),
                      [[0, 1], [1, 3], [2, 0], [3, 2]])
    # The alignment recovers the translation for every node.
    torch.testing.assert_close(data["src"].shift, torch.tensor([[5.0, 7.0, -3.0]]).expand(4, 3),
                               rtol=0, atol=1e-3)
    with torch.no_grad():
        logits = model(data).match_logits[0]
    assert logits.argmax(1).tolist() == [1, 3, 0, 2]
    assert model.match(data, threshold=0.0).matches0[0].tolist() == [1, 3, 0, 2]


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
    # distance term: ‖c_i + u_i - c_j‖ / gate, u the graph's alignment shifts
    aligned = data["src"].pos + data["src"].shift
    distance = (aligned[:, None, :] - data["dst"].pos[None, :, :]).norm(dim=-1)
    torch.testing.assert_close(x[0, ..., 2], distance / config.model.position_gate_mm)
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
    assert batch["src"].shift.shape == (sizes[0], 3)
    losses = model.loss(batch, model(batch))
    assert torch.isfinite(losses["total"])
    losses["total"].backward()
    matches = model.match(batch)
    assert matches.matches0.shape == (1, sizes[0]) and matches.matches1.shape == (1, sizes[1])
    assert (matches.matches0 == -1).all() and (matches.matches1 == -1).all()
    prediction = to_predictions(matches)[0]
    assert (prediction.n_src, prediction.n_dst) == sizes and len(prediction.matches) == 0
    assert prediction.matches.shape == (0, 2) and len(prediction.scores) == 0
