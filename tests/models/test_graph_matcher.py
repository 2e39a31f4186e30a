import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, HeteroData
from torch_geometric.utils import to_dense_batch

from lngraph import __version__
from lngraph.data.geometry import pair_shifts
from lngraph.data.graph import CROSS, INTRA, complete_edge_index
from lngraph.io.errors import InputError
from lngraph.matching import hungarian_max
from lngraph.matching.batched import batched_assignment
from lngraph.models import (
    AsymmetricMatcher,
    GraphMatcher,
    MatcherConfig,
    alignment_params,
    build_matcher,
    load_checkpoint,
    preset,
    save_checkpoint,
    to_predictions,
)
from lngraph.models.checkpoint import ALL_PAIRS, FORMAT
from lngraph.models.graph_matcher import GraphMatcherOutput, SEAGBlock, edge_features
from lngraph.models.zoo import SHIPPED_DIR
from lngraph.nn.conv import PositionalAttentionConv

CROP = 16
TINY = preset("lite").updated(model={"encoder2d_widths": (4, 8, 8),
                                      "encoder3d_widths": (4, 8, 8), "feature_dim": 16,
                                      "layers": 2, "heads": 2, "geometry_hidden": 16},
                               crops={"size": CROP})
GEOMETRY = TINY.updated(model={"geometry_only": True})


def set_shift(data: HeteroData, config: MatcherConfig = TINY) -> HeteroData:
    """``src.shift`` from the pair's current centres, with the config's alignment settings."""
    shift = pair_shifts(data["src"].pos.double().numpy(), data["dst"].pos.double().numpy(),
                        alignment_params(config))
    data["src"].shift = torch.as_tensor(np.asarray(shift), dtype=torch.float32).reshape(-1, 3)
    return data


def pair_graph(pos_src, pos_dst, matches, radius_src=None, radius_dst=None, crops=None,
               shift: bool = True) -> HeteroData:
    """One pair graph as :mod:`lngraph.data.graph` builds it, by hand."""
    data = HeteroData()
    for node_type, pos, radius in (("src", pos_src, radius_src), ("dst", pos_dst, radius_dst)):
        n = len(pos)
        data[node_type].num_nodes = n
        data[node_type].pos = pos
        data[node_type].radius = torch.full((n,), 5.0) if radius is None else radius
        if crops is not None:
            data[node_type].cube, data[node_type].views = crops[node_type]
        data[INTRA[node_type]].edge_index = complete_edge_index(n)
    data[CROSS].edge_label_index = torch.as_tensor(matches, dtype=torch.long).reshape(-1, 2).T
    return set_shift(data) if shift else data


def random_pair(n_src: int, n_dst: int, seed: int, images: bool = True,
                shift: bool = True, crop: int = CROP) -> HeteroData:
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
        crops = {t: (torch.rand(n, 1, crop, crop, crop, generator=gen),
                     torch.rand(n, 9, crop, crop, generator=gen))
                 for t, n in (("src", n_src), ("dst", n_dst))}
    return pair_graph(pos_src, pos_dst, [[i, i] for i in range(kept)], radius_src, radius_dst,
                      crops, shift)


def permute(data: HeteroData, node_type: str, perm: torch.Tensor) -> HeteroData:
    """``data`` with one scan's nodes reordered (new node k = old node perm[k]): every node
    attribute, the intra edges and the ground truth relabelled; the shifts move with their
    nodes."""
    out = data.clone()
    for key in ("pos", "radius", "cube", "views", "shift"):
        if key in out[node_type]:
            out[node_type][key] = out[node_type][key][perm]
    inverse = torch.argsort(perm)
    out[INTRA[node_type]].edge_index = inverse[data[INTRA[node_type]].edge_index]
    label = out[CROSS].edge_label_index.clone()
    row = 0 if node_type == "src" else 1
    label[row] = inverse[label[row]]
    out[CROSS].edge_label_index = label
    return out


#: Output biases of the attention-bias and pairwise MLPs: a constant added to every logit of a
#: softmax changes nothing, so their gradient is 0 (up to rounding) — except the pairwise one
#: with ``score_matchability``, whose log-sum-exp it moves.
SHIFT_ONLY = ("bias.2.bias", "pairwise.2.bias")


def check_gradients(model: torch.nn.Module):
    """Every parameter received a finite gradient, non-zero unless it only shifts logits."""
    missing = []
    for name, p in model.named_parameters():
        if p.grad is None or not torch.isfinite(p.grad).all():
            missing.append(name)
        elif name.endswith(SHIFT_ONLY) and not (name.endswith("pairwise.2.bias") and getattr(
                model.config.model, "score_matchability", False)):
            assert p.grad.abs().max() < 1e-5, name
        elif not p.grad.abs().sum():
            missing.append(name)
    assert not missing, missing


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GraphMatcher(TINY).eval()


@pytest.fixture(scope="module")
def geometry_model():
    torch.manual_seed(0)
    return GraphMatcher(GEOMETRY).eval()


def test_build_matcher_and_the_layers_of_the_config():
    assert preset("lite").model.architecture == "graph"
    model = build_matcher(TINY)
    assert type(model) is GraphMatcher and not model.use_scb
    assert len(model.self_layers) == len(model.cross_layers) == len(model.heads) == 2
    assert repr(model.cross_layers[0]) == \
        "PositionalAttentionConv(16, heads=2, edge_dim=4, edge_values=True)"
    assert repr(model.self_layers[1]) == "PositionalAttentionConv(16, heads=2, edge_dim=4)"
    assert repr(model.heads[0]) == "AssignmentHead(16, edge_dim=4)"
    assert hasattr(model, "encoder3d") and not hasattr(model, "geometry_encoder")
    geometry = build_matcher(GEOMETRY)
    assert hasattr(geometry, "geometry_encoder") and not hasattr(geometry, "encoder3d")
    assert type(build_matcher(TINY.updated(model={"architecture": "asymmetric"}))) is \
        AsymmetricMatcher


def test_forward_on_a_batch_of_unequal_pairs(model):
    pairs = [random_pair(3, 4, 0), random_pair(0, 2, 1), random_pair(5, 0, 2),
             random_pair(2, 2, 3)]
    batch = Batch.from_data_list(pairs)
    with torch.no_grad():
        out = model(batch)
    assert out.score.shape == (4, 5, 4) and len(out.assignments) == (2 if model.training else 1)
    assert out.src_mask.sum(1).tolist() == [3, 0, 5, 2]
    assert out.dst_mask.sum(1).tolist() == [4, 2, 0, 2]
    torch.testing.assert_close(out.score, out.assignments[-1].log_assignment.exp())
    assert (out.score[~out.pair_mask] == 0).all() and not out.score.isnan().any()
    assert (out.score.sum(2) <= 1 + 1e-5).all() and (out.score.sum(1) <= 1 + 1e-5).all()
    # Each pair's block equals that pair alone (evaluation mode).
    for b, (n1, n2) in ((0, (3, 4)), (3, (2, 2))):
        with torch.no_grad():
            alone = model(pairs[b])
        torch.testing.assert_close(out.score[b, :n1, :n2], alone.score[0], rtol=1e-4,
                                   atol=1e-6)
    # The rule: Hungarian on P per pair, keeping P >= the threshold.
    matches = model.match(batch, threshold=0.0)
    for b, (n1, n2) in enumerate(((3, 4), (0, 2), (5, 0), (2, 2))):
        expected0 = np.full(5, -1)
        if n1 and n2:
            pairs_b = hungarian_max(out.score[b, :n1, :n2].double().numpy())
            expected0[pairs_b[:, 0]] = pairs_b[:, 1]
        assert matches.matches0[b].tolist() == expected0.tolist()
    threshold = TINY.model.similarity_threshold
    predictions = to_predictions(model.match(batch))
    for b, prediction in enumerate(predictions):
        scores = out.score[b].double().numpy()
        assert (prediction.scores >= threshold).all()
        np.testing.assert_allclose(prediction.scores, scores[tuple(prediction.matches.T)],
                                   rtol=1e-5)


@pytest.mark.parametrize("geometry_only", [False, True])
@pytest.mark.parametrize("node_type", ["src", "dst"])
def test_permuting_a_scan_permutes_the_scores(model, geometry_model, geometry_only, node_type):
    net = geometry_model if geometry_only else model
    data = random_pair(5, 6, 4, images=not geometry_only)
    perm = torch.randperm(data[node_type].num_nodes, generator=torch.Generator().manual_seed(5))
    moved = permute(data, node_type, perm)
    with torch.no_grad():
        base, out = net(data), net(moved)
    for a, b in zip(base.assignments, out.assignments, strict=True):
        expected = a.log_assignment[0][perm] if node_type == "src" else \
            a.log_assignment[0][:, perm]
        torch.testing.assert_close(b.log_assignment[0], expected, rtol=1e-4, atol=1e-4)
    expected = base.score[0][perm] if node_type == "src" else base.score[0][:, perm]
    torch.testing.assert_close(out.score[0], expected, rtol=1e-4, atol=1e-6)
    base_loss, moved_loss = net.loss(data, base), net.loss(moved, out)
    for key in base_loss:
        torch.testing.assert_close(moved_loss[key], base_loss[key], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("geometry_only", [False, True])
@pytest.mark.parametrize("node_type", ["src", "dst"])
def test_translating_a_scan_changes_nothing(model, geometry_model, geometry_only, node_type):
    net = geometry_model if geometry_only else model
    data = random_pair(6, 5, 6, images=not geometry_only)
    offset = torch.tensor([80.0, -20.0, 150.0])
    moved = data.clone()
    moved[node_type].pos = data[node_type].pos + offset
    set_shift(moved)
    # The recomputed alignment shifts absorb the translation.
    sign = 1.0 if node_type == "dst" else -1.0
    torch.testing.assert_close(moved["src"].shift, data["src"].shift + sign * offset, rtol=0,
                               atol=1e-3)
    with torch.no_grad():
        base, out = net(data), net(moved)
    torch.testing.assert_close(out.score, base.score, rtol=1e-4, atol=1e-4)
    assert net.match(moved, 0.0).matches0.tolist() == net.match(data, 0.0).matches0.tolist()


@pytest.mark.parametrize("config", [TINY, GEOMETRY], ids=["images", "geometry"])
def test_loss_and_gradients(config):
    torch.manual_seed(1)
    model = GraphMatcher(config).train()
    images = not config.model.geometry_only
    batch = Batch.from_data_list([random_pair(4, 5, 7, images), random_pair(3, 3, 8, images)])
    out = model(batch)
    losses = model.loss(batch, out)
    assert set(losses) == {"se", "te", "assignment", "total"}
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())
    c = config.loss
    torch.testing.assert_close(losses["total"], c.weight_assignment * losses["assignment"]
                               + c.weight_se * losses["se"] + c.weight_te * losses["te"])
    assert (losses["se"].item() == 0.0) == config.model.geometry_only
    assert losses["te"].item() > 0 and losses["assignment"].item() > 0
    losses["total"].backward()
    check_gradients(model)
    assert model.heads[0].matchability.weight.grad.abs().sum() > 0


def test_the_assignment_loss_is_the_mean_over_the_heads():
    torch.manual_seed(2)
    model = GraphMatcher(GEOMETRY).train()     # every head runs in training mode only
    data = random_pair(4, 4, 9, images=False)
    with torch.no_grad():
        out = model(data)
        target = model.match_targets(data, out)
    expected = torch.zeros(1, 4, 4)
    expected[0, [0, 1, 2], [0, 1, 2]] = 1.0
    assert torch.equal(target, expected)
    # Head h's term, written out: matches 0-0, 1-1, 2-2; src 3 and dst 3 unmatched.
    terms = []
    for a in out.assignments:
        positive = -a.log_assignment[0, [0, 1, 2], [0, 1, 2]].mean()
        negative = -(a.log_unmatched0[0, 3] + a.log_unmatched1[0, 3]) / 2
        terms.append(0.5 * positive + 0.5 * negative)
    losses = model.loss(data, out)
    torch.testing.assert_close(losses["assignment"], sum(terms) / 2)


def test_evaluation_mode_computes_only_the_deciding_head():
    torch.manual_seed(3)
    model = GraphMatcher(GEOMETRY)
    data = random_pair(4, 5, 4, images=False)
    with torch.no_grad():
        trained = model.train()(data)
        evaluated = model.eval()(data)
    assert len(trained.assignments) == GEOMETRY.model.layers and len(evaluated.assignments) == 1
    model.train()
    with torch.no_grad():
        again = model.eval()(data)
    torch.testing.assert_close(evaluated.score, again.score)


ABLATIONS = [{"use_cross": False}, {"position_prior": False}, {"self_layer": "attention"},
             {"self_layer": "seag"}, {"self_layer": "none"}, {"deep_supervision": False},
             {"use_cross": False, "self_layer": "none", "position_prior": False},
             {"score_matchability": True}]


@pytest.mark.parametrize("change", ABLATIONS, ids=lambda c: ",".join(f"{k}={v}"
                                                                      for k, v in c.items()))
def test_ablations_build_and_train(change):
    torch.manual_seed(3)
    config = GEOMETRY.updated(model=change)
    model = build_matcher(config).train()
    c = config.model
    assert len(model.cross_layers) == (2 if c.use_cross else 0)
    assert len(model.heads) == (2 if c.deep_supervision else 1)
    layer = {"attention": PositionalAttentionConv, "seag": SEAGBlock,
             "none": torch.nn.Identity}[c.self_layer]
    assert all(type(m) is layer for m in model.self_layers)
    if c.self_layer == "seag":
        assert model.self_layers[0].seag.learn_q == c.seag_learn_q
    edge_dim = 4 if c.position_prior else 0
    assert all(h.edge_dim == edge_dim for h in model.heads)
    assert all(m.edge_dim == edge_dim for m in model.cross_layers)
    batch = Batch.from_data_list([random_pair(4, 5, 10, False, shift=c.position_prior),
                                  random_pair(3, 3, 11, False, shift=c.position_prior)])
    out = model(batch)
    assert out.score.shape == (2, 4, 5) and len(out.assignments) == len(model.heads)
    losses = model.loss(batch, out)
    assert torch.isfinite(losses["total"])
    losses["total"].backward()
    check_gradients(model)
    assert model.match(batch).matches0.shape == (2, 4)


def test_the_position_prior_needs_the_shifts():
    data = random_pair(3, 4, 12, images=False, shift=False)
    assert "shift" not in data["src"]
    torch.manual_seed(4)
    with pytest.raises(ValueError, match=r"no alignment shifts \(src\.shift\)"):
        GraphMatcher(GEOMETRY)(data)
    plain = GraphMatcher(GEOMETRY.updated(model={"position_prior": False})).eval()
    with torch.no_grad():
        out = plain(data)
        assert out.score.shape == (1, 3, 4)
        # Without positions the shifts are not read.
        torch.testing.assert_close(plain(set_shift(data.clone())).score, out.score)


def test_positions_enter_the_layers_and_the_head(geometry_model):
    """With the prior, moving one later node (everything else kept, the shifts too) changes
    the scores; without it, the score of a scan moved rigidly is the same even when the
    shifts are left stale."""
    data = random_pair(4, 4, 13, images=False)
    moved = data.clone()
    moved["dst"].pos = data["dst"].pos.clone()
    moved["dst"].pos[0] += torch.tensor([0.0, 0.0, 10.0])
    with torch.no_grad():
        assert not torch.allclose(geometry_model(moved).score, geometry_model(data).score,
                                  atol=1e-4)
    torch.manual_seed(5)
    plain = GraphMatcher(GEOMETRY.updated(model={"position_prior": False})).eval()
    moved = data.clone()
    moved["dst"].pos = data["dst"].pos + torch.tensor([30.0, 40.0, -50.0])
    with torch.no_grad():
        torch.testing.assert_close(plain(moved).score, plain(data).score, rtol=1e-4,
                                   atol=1e-5)


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(6)
    model = GraphMatcher(TINY).train()
    data = random_pair(4, 5, 14)
    model(Batch.from_data_list([data, random_pair(3, 3, 15)]))   # moves the running statistics
    model.eval()
    path = save_checkpoint(tmp_path / "model.ckpt", model, TINY, extra={"note": "x"})
    loaded, config, extra = load_checkpoint(path)
    assert type(loaded) is GraphMatcher and not loaded.training
    assert config == TINY and extra == {"note": "x"}
    payload = torch.load(path, weights_only=True)
    assert payload["format_version"] == 4 and payload["config"]["model"]["architecture"] == \
        "graph"
    with torch.no_grad():
        a, b = model(data), loaded(data)
    assert torch.equal(a.score, b.score)
    for x, y in zip(a.assignments, b.assignments, strict=True):
        assert torch.equal(x.log_unmatched0, y.log_unmatched0)
    assert loaded.match(data).matches0.tolist() == model.match(data).matches0.tolist()


@pytest.mark.parametrize("feature_dim", [16, 6])
def test_a_format_3_checkpoint_is_the_asymmetric_matcher(tmp_path, feature_dim):
    # Format 3 had neither architectures nor the graph matcher's fields, and SEAG had no Q.
    # (feature_dim 6 is valid for the asymmetric matcher, not for the graph matcher's 4 heads.)
    config = GEOMETRY.updated(model={"architecture": "asymmetric", "seag_learn_q": False,
                                     "feature_dim": feature_dim})
    torch.manual_seed(7)
    old = AsymmetricMatcher(config).eval()
    values = config.to_dict()
    for key in ("architecture", "seag_learn_q", "layers", "heads", "self_layer", "use_cross",
                "deep_supervision"):
        del values["model"][key]
    del values["loss"]["weight_assignment"]
    path = tmp_path / "v3.ckpt"
    torch.save({"format": FORMAT, "format_version": 3, "lngraph_version": __version__,
                "config": values, "state_dict": old.state_dict(), "extra": {"epoch": 3}}, path)
    loaded, loaded_config, extra = load_checkpoint(path)
    assert type(loaded) is AsymmetricMatcher and extra == {"epoch": 3}
    assert loaded_config.model.architecture == "asymmetric"
    assert loaded_config.model.seag_learn_q is False and loaded.seag.learn_q is False
    assert loaded_config.model.feature_dim == feature_dim
    data = random_pair(4, 5, 16, images=False)
    with torch.no_grad():
        assert torch.equal(loaded(data).score, old(data).score)
    # The same file claiming format 4 is a graph matcher's config: the weights do not fit.
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = 4
    torch.save(payload, path)
    with pytest.raises(InputError):
        load_checkpoint(path)


def synthetic_pair(gen: torch.Generator) -> HeteroData:
    """A geometry-only pair: 10-14 nodes in a 150 mm box; the later scan is the earlier one
    translated (up to 40 mm per axis), jittered by 1 mm, with 0-3 nodes gone and 0-3 new."""
    n = int(torch.randint(10, 15, (1,), generator=gen))
    pos = torch.rand(n, 3, generator=gen) * 150
    radius = torch.rand(n, generator=gen) * 6 + 3
    keep = torch.randperm(n, generator=gen)[: n - int(torch.randint(0, 4, (1,), generator=gen))]
    n_new = int(torch.randint(0, 4, (1,), generator=gen))
    offset = (torch.rand(3, generator=gen) - 0.5) * 80
    later = torch.cat([pos[keep] + offset + torch.randn(len(keep), 3, generator=gen),
                       torch.rand(n_new, 3, generator=gen) * 150 + offset])
    later_radius = torch.cat([radius[keep] * (1 + 0.05 * torch.randn(len(keep), generator=gen)),
                              torch.rand(n_new, generator=gen) * 6 + 3])
    order = torch.randperm(len(later), generator=gen)
    position = torch.argsort(order)          # later node k moves to position[k]
    matches = [[int(i), int(position[k])] for k, i in enumerate(keep)]
    return pair_graph(pos, later[order], matches, radius, later_radius[order])


def f1(matches0: torch.Tensor, batch) -> float:
    truth = set()
    label = batch[CROSS].edge_label_index
    for i, j in zip(*label.tolist(), strict=True):
        g = int(batch["src"].batch[i])
        truth.add((g, i - int(batch["src"].ptr[g]), j - int(batch["dst"].ptr[g])))
    predicted = {(g, i, j) for g in range(matches0.shape[0])
                 for i, j in enumerate(matches0[g].tolist()) if j >= 0}
    return 2 * len(predicted & truth) / (len(predicted) + len(truth))


@pytest.mark.parametrize("config", [TINY, GEOMETRY], ids=["images", "geometry"])
def test_a_few_steps_lower_the_loss(config):
    torch.manual_seed(9)
    model = GraphMatcher(config).train()
    images = not config.model.geometry_only
    batch = Batch.from_data_list([random_pair(5, 6, 17, images), random_pair(6, 5, 18, images)])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = model.loss(batch, model(batch))["total"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


@pytest.mark.slow
def test_a_short_training_beats_chance():
    # about 10 s on one CPU thread
    gen = torch.Generator().manual_seed(0)
    pool = [synthetic_pair(gen) for _ in range(64)]
    held_out = Batch.from_data_list([synthetic_pair(gen) for _ in range(16)])
    torch.manual_seed(10)
    model = GraphMatcher(GEOMETRY).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for step in range(100):
        start = 8 * step % len(pool)
        batch = Batch.from_data_list(pool[start:start + 8])
        loss = model.loss(batch, model(batch))["total"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10])
    trained = f1(model.match(held_out).matches0, held_out)
    # Chance: the same rule (Hungarian, every assigned pair kept) on random scores.
    with torch.no_grad():
        out = model(held_out)
    random = torch.rand(out.score.shape, generator=torch.Generator().manual_seed(1))
    chance = f1(batched_assignment(random, src_mask=out.src_mask, dst_mask=out.dst_mask,
                                   threshold=0.0).matches0, held_out)
    assert chance < 0.2
    assert trained > 0.85 and trained > chance + 0.6



# The layers on the union node set, the sparse cross edges -------------------------------------
def reference_forward(model: GraphMatcher, data: HeteroData) -> GraphMatcherOutput:
    """The forward pass written as before the union-node-set layers: the crop encoders in one
    pass on contiguous weights, each scan's intra layer and each cross direction its own
    operator call, every (src, dst) node pair of a pair graph a cross edge."""
    g = model.config.model.position_gate_mm
    num_graphs = getattr(data, "num_graphs", 1)
    encoders = [getattr(model, n) for n in ("encoder3d", "encoder2d") if hasattr(model, n)]
    for encoder in encoders:
        encoder.chunk_elements = 2 ** 40
        encoder.to(memory_format=torch.contiguous_format)
    try:
        (src, x0), (dst, x1) = model.tokens(data, "src"), model.tokens(data, "dst")
    finally:
        for encoder in encoders:
            del encoder.chunk_elements
            if encoder.dims == 3:
                encoder.to(memory_format=torch.channels_last_3d)
    p0, p1 = model.positions(data)
    pairs = (src.batch[:, None] == dst.batch[None, :]).nonzero().T

    def intra(layer, x, node_type):
        if isinstance(layer, torch.nn.Identity):
            return x
        pos, edge_index = data[node_type].pos, data[INTRA[node_type]].edge_index
        if isinstance(layer, SEAGBlock):
            return layer(x, pos, edge_index)
        return layer(x, edge_index, edge_features(pos[edge_index[0]] - pos[edge_index[1]], g))

    def dense(x, batch):
        return to_dense_batch(x, batch, batch_size=num_graphs)

    heads = list(model.heads)
    first_head = len(model.self_layers) - len(heads)
    assignments = []
    for index, layer in enumerate(model.self_layers):
        x0, x1 = intra(layer, x0, "src"), intra(layer, x1, "dst")
        if model.cross_layers:
            cross = model.cross_layers[index]
            attr10 = attr01 = None
            if cross.edge_dim:
                offset = p1[pairs[1]] - p0[pairs[0]]
                attr10, attr01 = edge_features(offset, g), edge_features(-offset, g)
            x0, x1 = cross((x1, x0), pairs.flip(0), attr10), cross((x0, x1), pairs, attr01)
        if index >= first_head and (model.training or index == len(model.self_layers) - 1):
            head = heads[index - first_head]
            (d0, mask0), (d1, mask1) = dense(x0, src.batch), dense(x1, dst.batch)
            attr = None
            if head.edge_dim:
                q0, q1 = dense(p0, src.batch)[0], dense(p1, dst.batch)[0]
                attr = edge_features(q1[:, None, :, :] - q0[:, :, None, :], g)
            assignments.append(head(d0, d1, mask0, mask1, attr))
    return GraphMatcherOutput(src, dst, assignments, assignments[-1].probability, mask0, mask1)


def assert_same_output(new: GraphMatcherOutput, reference: GraphMatcherOutput, rtol=1e-5,
                       atol=1e-4):
    assert torch.equal(new.src_mask, reference.src_mask)
    assert torch.equal(new.dst_mask, reference.dst_mask)
    torch.testing.assert_close(new.score, reference.score, rtol=rtol, atol=atol)
    assert len(new.assignments) == len(reference.assignments)
    for a, b in zip(new.assignments, reference.assignments, strict=True):
        for key in ("log_assignment", "log_unmatched0", "log_unmatched1", "matchability0",
                    "matchability1"):
            torch.testing.assert_close(getattr(a, key), getattr(b, key), rtol=rtol, atol=atol)


UNEQUAL = [(3, 4), (0, 2), (5, 0), (1, 7), (6, 1), (9, 8)]
VARIANTS = {"images": TINY, "geometry": GEOMETRY,
            "seag": GEOMETRY.updated(model={"self_layer": "seag"}),
            "no-positions": GEOMETRY.updated(model={"position_prior": False}),
            "no-self-layer": GEOMETRY.updated(model={"self_layer": "none",
                                                     "deep_supervision": False}),
            "no-cross": GEOMETRY.updated(model={"use_cross": False})}


def unequal_batch(config: MatcherConfig, seed: int = 30) -> Batch:
    images, shift = not config.model.geometry_only, config.model.position_prior
    return Batch.from_data_list([random_pair(n1, n2, seed + k, images, shift)
                                 for k, (n1, n2) in enumerate(UNEQUAL)])


@pytest.mark.parametrize("config", VARIANTS.values(), ids=VARIANTS.keys())
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_the_layers_on_the_union_node_set_equal_the_per_scan_layers(config, training):
    """One operator call per layer on both scans equals the per-scan calls, in both modes, on
    a batch of unequal pairs with scans of 0 and 1 node (scans of at most ``cross_k`` nodes:
    every cross node pair is an edge, as before there was ``cross_k``)."""
    torch.manual_seed(20)
    model = GraphMatcher(config).train(training)
    batch = unequal_batch(config)
    out = model(batch)
    reference = reference_forward(model, batch)
    assert_same_output(out, reference)
    if not training:
        assert torch.equal(model.assign(out, 0.0).matches0,
                           model.assign(reference, 0.0).matches0)
        return
    # The gradients agree too (in float64: some are sums that cancel to almost nothing, where
    # float32 leaves only rounding noise, different for every order of the sums).
    model.double()
    batch = batch.apply(lambda t: t.double() if t.is_floating_point() else t)
    grads = []
    for result in (model(batch), reference_forward(model, batch)):
        model.zero_grad()
        model.loss(batch, result)["total"].backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters()})
    for key, grad in grads[0].items():
        torch.testing.assert_close(grad, grads[1][key], rtol=1e-7, atol=1e-10, msg=key)


def test_the_cross_edges_join_the_nearest_aligned_nodes_of_the_same_pair():
    """cross_k = 2, by hand. Pair 0: earlier nodes at x = 0, 10, 20 mm, aligned 50 mm further
    (x = 50, 60, 70), later nodes at x = 48, 61, 90, 150; pair 1: two and two nodes, all
    joined. Union numbering: earlier nodes 0-2 (pair 0), 3-4 (pair 1), later nodes 5-8
    (pair 0), 9-10 (pair 1)."""
    model = GraphMatcher(GEOMETRY.updated(model={"cross_k": 2}))

    def line(*x):
        return torch.tensor([[v, 0.0, 0.0] for v in x])

    first = pair_graph(line(0, 10, 20), line(48, 61, 90, 150), [], shift=False)
    first["src"].shift = line(50, 50, 50)
    second = pair_graph(line(500, 510), line(505, 900), [], shift=False)
    second["src"].shift = torch.zeros(2, 3)
    batch = Batch.from_data_list([first, second])
    p0, p1 = model.positions(batch)
    q0, mask0 = to_dense_batch(p0, batch["src"].batch, batch_size=2)
    q1, mask1 = to_dense_batch(p1, batch["dst"].batch, batch_size=2)
    edges = model.cross_edges(q0, q1, mask0, mask1)
    sources = {t: edges[0, edges[1] == t].tolist() for t in range(11)}
    assert sources == {
        0: [5, 6], 1: [5, 6], 2: [6, 7],          # earlier ← the 2 nearest later nodes
        5: [0, 1], 6: [1, 2], 7: [1, 2], 8: [1, 2],   # later ← the 2 nearest earlier nodes
        3: [9, 10], 4: [9, 10], 9: [3, 4], 10: [3, 4]}   # pair 1: every pair, both ways
    assert edges.shape[1] == sum(len(v) for v in sources.values())
    # The aligned centres decide: by the raw centres later node 5 (x = 48) would take 1, 2.
    raw = to_dense_batch(batch["src"].pos, batch["src"].batch, batch_size=2)[0]
    edges = model.cross_edges(raw, q1, mask0, mask1)
    assert edges[0, edges[1] == 5].tolist() == [1, 2]


def test_cross_k_at_least_the_other_scan_joins_every_pair():
    torch.manual_seed(21)
    dense_model = GraphMatcher(GEOMETRY).eval()
    sparse_model = GraphMatcher(GEOMETRY.updated(model={"cross_k": 4})).eval()
    sparse_model.load_state_dict(dense_model.state_dict())
    small, large = random_pair(3, 4, 40, images=False), random_pair(9, 8, 41, images=False)
    batch = Batch.from_data_list([small, large])
    p0, p1 = sparse_model.positions(batch)
    q0, mask0 = to_dense_batch(p0, batch["src"].batch, batch_size=2)
    q1, mask1 = to_dense_batch(p1, batch["dst"].batch, batch_size=2)
    edges = sparse_model.cross_edges(q0, q1, mask0, mask1)
    # Pair 0 (3 × 4 nodes: union nodes 0-2 and 12-15): all 12 node pairs, both ways; pair 1:
    # each of its 9 + 8 nodes receives from 4 of the other scan.
    in_small = torch.isin(edges, torch.tensor([0, 1, 2, 12, 13, 14, 15]))
    assert torch.equal(in_small[0], in_small[1]) and int(in_small[0].sum()) == 24
    assert edges.shape[1] == 24 + 4 * (9 + 8)
    with torch.no_grad():
        out, alone = sparse_model(batch), dense_model(small)
        torch.testing.assert_close(out.score[0, :3, :4], alone.score[0], rtol=1e-5, atol=1e-6)
        assert (out.score[1] - dense_model(batch).score[1]).abs().max() > 1e-5   # sparse
        # cross_k at least every scan's size: the dense reference exactly.
        for k in (9, 1000):
            model = GraphMatcher(GEOMETRY.updated(model={"cross_k": k})).eval()
            model.load_state_dict(dense_model.state_dict())
            assert_same_output(model(batch), reference_forward(model, batch))


def check_permutation_and_translation(model: torch.nn.Module, data: HeteroData, node_type: str,
                                      perm_seed: int, offset: tuple[float, float, float]):
    """Reordering ``node_type``'s nodes (a random permutation) reorders the scores the same
    way; translating that scan by ``offset`` (shifts recomputed) leaves them unchanged."""
    perm = torch.randperm(data[node_type].num_nodes,
                          generator=torch.Generator().manual_seed(perm_seed))
    moved = permute(data, node_type, perm)
    shifted = data.clone()
    shifted[node_type].pos = data[node_type].pos + torch.tensor(offset)
    set_shift(shifted)
    with torch.no_grad():
        base, out, translated = model(data), model(moved), model(shifted)
    expected = base.score[0][perm] if node_type == "src" else base.score[0][:, perm]
    torch.testing.assert_close(out.score[0], expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(translated.score, base.score, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("node_type", ["src", "dst"])
def test_sparse_cross_edges_keep_permutation_equivariance_and_translation_invariance(
        node_type):
    torch.manual_seed(22)
    model = GraphMatcher(GEOMETRY.updated(model={"cross_k": 2})).eval()
    check_permutation_and_translation(model, random_pair(6, 7, 42, images=False), node_type,
                                      perm_seed=6, offset=(-40.0, 90.0, 25.0))


def test_cross_k_config_round_trip_and_default(tmp_path):
    assert preset("lite").model.cross_k == 32
    config = TINY.with_values({"model.cross_k": 5})
    config.to_yaml(tmp_path / "c.yaml")
    assert "  cross_k: 5\n" in (tmp_path / "c.yaml").read_text()
    assert MatcherConfig.from_yaml(tmp_path / "c.yaml") == config
    values = config.to_dict()
    del values["model"]["cross_k"]
    assert MatcherConfig.from_dict(values).model.cross_k == 32
    with pytest.raises(ValueError, match=r"cross_k must be >= 1, got 0"):
        TINY.with_values({"model.cross_k": 0})
    # A checkpoint written before cross_k existed loads with every node pair as a cross
    # edge, as it was trained.
    torch.manual_seed(23)
    model = GraphMatcher(TINY).eval()
    path = save_checkpoint(tmp_path / "old.ckpt", model, TINY)
    payload = torch.load(path, weights_only=True)
    del payload["config"]["model"]["cross_k"]
    torch.save(payload, path)
    loaded, loaded_config, _ = load_checkpoint(path)
    assert loaded_config.model.cross_k == ALL_PAIRS
    assert loaded_config == TINY.with_values({"model.cross_k": ALL_PAIRS})
    data = random_pair(4, 5, 43)
    with torch.no_grad():
        assert torch.equal(loaded(data).score, model(data).score)


def test_the_shipped_image_model_matches_as_before():
    """``lite-image`` on a synthetic pair of 12 × 14 nodes: the same scores and matches as the
    forward pass before the union-node-set layers and the chunked encoders."""
    path = SHIPPED_DIR / "lite-image.ckpt"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    model, config, _ = load_checkpoint(path)
    data = random_pair(12, 14, 44, crop=config.crops.size)
    with torch.no_grad():
        out, reference = model(data), reference_forward(model, data)
    assert_same_output(out, reference)
    for threshold in (None, 0.0):
        assert torch.equal(model.assign(out, threshold).matches0,
                           model.assign(reference, threshold).matches0)
    assert (model.match(data).matches0 >= 0).sum() >= 1


def test_the_frame_prior_sees_the_raw_distance_of_lone_nodes():
    """One node per scan: the alignment lays them onto each other wherever they are, so only
    the frame prior's raw distance tells a near partner from a far one; translating both
    scans together changes nothing."""
    torch.manual_seed(0)
    config = GEOMETRY.with_values({"model.frame_prior_mm": 100.0})
    net = GraphMatcher(config).eval()
    plain = GraphMatcher(GEOMETRY)
    assert net.heads[0].edge_dim == plain.heads[0].edge_dim + 1
    assert net.cross_layers[0].edge_dim == plain.cross_layers[0].edge_dim + 1

    def lone(offset):
        return pair_graph(torch.zeros(1, 3), torch.tensor([offset]), [[0, 0]])

    near, far = lone([0.0, 0.0, 10.0]), lone([0.0, 0.0, 250.0])
    with torch.no_grad():
        assert not torch.allclose(net(near).score, net(far).score)
        both = near.clone()
        for node_type in ("src", "dst"):
            both[node_type].pos = near[node_type].pos + torch.tensor([40.0, -70.0, 90.0])
        set_shift(both, config)
        torch.testing.assert_close(net(both).score, net(near).score, rtol=1e-5, atol=1e-6)
        # without the prior the two pairs are the same pair to the model
        torch.testing.assert_close(plain.eval()(near).score, plain(far).score)
    # the raw distance enters the head's features in units of frame_prior_mm
    raw = torch.tensor([[3.0, 4.0, 0.0]])
    features = net.pair_features(torch.zeros(1, 3), raw)
    torch.testing.assert_close(features[0, -1], torch.tensor(0.05))


def test_score_matchability_checkpoint_round_trip_and_old_files(tmp_path):
    assert preset("lite").model.score_matchability is False
    config = TINY.with_values({"model.score_matchability": True})
    torch.manual_seed(29)
    model = GraphMatcher(config).eval()
    assert all(h.score_matchability for h in model.heads)
    path = save_checkpoint(tmp_path / "m.ckpt", model, config)
    loaded, loaded_config, _ = load_checkpoint(path)
    assert loaded_config == config
    data = random_pair(4, 5, 47)
    with torch.no_grad():
        assert torch.equal(loaded(data).score, model(data).score)
    # A file written before the setting existed loads with matchability from the features.
    old = save_checkpoint(tmp_path / "old.ckpt", GraphMatcher(TINY).eval(), TINY)
    payload = torch.load(old, weights_only=True)
    del payload["config"]["model"]["score_matchability"]
    torch.save(payload, old)
    assert load_checkpoint(old)[1].model.score_matchability is False
