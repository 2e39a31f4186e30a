"""The graph-matcher ensemble: mean probability, inference rule, loss, invariances, checkpoint."""

import pytest
import torch
from torch_geometric.data import Batch

from lngraph.matching.batched import batched_assignment
from lngraph.models import (
    GraphMatcher,
    GraphMatcherEnsemble,
    build_matcher,
    load_checkpoint,
    preset,
    save_checkpoint,
)
from lngraph.models.asymmetric_matcher import confident_matches

from .test_graph_matcher import (
    GEOMETRY,
    TINY,
    check_gradients,
    check_permutation_and_translation,
    random_pair,
)

ENSEMBLE = GEOMETRY.with_values({"model.ensemble": 3, "model.similarity_threshold": 0.3,
                                 "model.score_temperature": 2.0, "model.score_bias": 0.5})


@pytest.fixture(scope="module")
def ensemble():
    torch.manual_seed(0)
    return GraphMatcherEnsemble(ENSEMBLE).eval()


def test_build_matcher_builds_the_ensemble_from_the_config():
    model = build_matcher(ENSEMBLE)
    assert type(model) is GraphMatcherEnsemble and len(model.members) == 3
    assert repr(model) == "GraphMatcherEnsemble(3 x GraphMatcher)"
    assert all(type(m) is GraphMatcher and m.config.model.ensemble == 1 for m in model.members)
    assert model.members[0].config == ENSEMBLE.with_values({"model.ensemble": 1})
    # each member starts from its own weights
    first, second = (m.heads[0].matchability.weight for m in model.members[:2])
    assert not torch.equal(first, second)
    assert type(build_matcher(GEOMETRY)) is GraphMatcher       # ensemble 1: one matcher


def test_ensemble_settings_are_checked():
    with pytest.raises(ValueError, match="ensemble must be >= 1, got 0"):
        TINY.with_values({"model.ensemble": 0})
    with pytest.raises(ValueError, match="ensemble must be 1 for the 'asymmetric'"):
        preset("paper").with_values({"model.ensemble": 2})
    with pytest.raises(ValueError, match="model.ensemble >= 2"):
        GraphMatcherEnsemble(GEOMETRY)


def test_the_score_is_the_members_mean_probability(ensemble):
    batch = Batch.from_data_list([random_pair(4, 5, 1, images=False),
                                  random_pair(3, 3, 2, images=False)])
    with torch.no_grad():
        out = ensemble(batch)
        members = [m(batch) for m in ensemble.members]
    expected = (members[0].score + members[1].score + members[2].score) / 3
    torch.testing.assert_close(out.score, expected, rtol=0, atol=1e-7)
    assert out.score.shape == (2, 4, 5) and not out.score[1, 3:].any()    # padding stays 0
    assert torch.equal(out.src_mask, members[0].src_mask)
    for own, again in zip(out.members, members, strict=True):
        assert torch.equal(own.score, again.score)


def test_match_applies_the_ensemble_threshold_and_confidence_to_the_mean(ensemble):
    data = random_pair(6, 5, 3, images=False)
    with torch.no_grad():
        score = ensemble(data).score
    expected = confident_matches(batched_assignment(score, threshold=0.3), ENSEMBLE)
    got = ensemble.match(data)
    assert got.matches0.tolist() == expected.matches0.tolist()
    torch.testing.assert_close(got.scores0, expected.scores0)
    raw = ensemble.match(data, 0.0, calibrated=False)
    kept = raw.matches0[0] >= 0
    torch.testing.assert_close(raw.scores0[0][kept],
                               score[0, kept.nonzero()[:, 0], raw.matches0[0][kept]].double())
    assert ensemble.match(data, 1.0).matches0.eq(-1).all()


def test_each_member_gets_the_gradient_of_its_own_loss():
    """``total`` is the sum of the members' totals, so each member's gradient is what its own
    loss gives it alone; the logged terms are the members' means."""
    torch.manual_seed(1)
    model = GraphMatcherEnsemble(ENSEMBLE).train()
    batch = Batch.from_data_list([random_pair(4, 5, 7, images=False),
                                  random_pair(3, 3, 8, images=False)])
    out = model(batch)
    losses = model.loss(batch, out)
    each = [m.loss(batch, o) for m, o in zip(model.members, out.members, strict=True)]
    for key in ("se", "te", "assignment"):
        torch.testing.assert_close(losses[key], sum(e[key] for e in each) / 3)
    torch.testing.assert_close(losses["total"], sum(e["total"] for e in each))
    losses["total"].backward()
    for member in model.members:
        check_gradients(member)
    alone = model.members[1]
    weight = alone.heads[0].matchability.weight
    together = weight.grad.clone()
    alone.zero_grad()
    alone.loss(batch, alone(batch))["total"].backward()
    torch.testing.assert_close(together, weight.grad)


@pytest.mark.parametrize("node_type", ["src", "dst"])
def test_permuting_or_translating_a_scan(ensemble, node_type):
    check_permutation_and_translation(ensemble, random_pair(5, 6, 4, images=False), node_type,
                                      perm_seed=5, offset=(80.0, -20.0, 150.0))


def test_checkpoint_round_trip(tmp_path, ensemble):
    data = random_pair(4, 5, 14, images=False)
    path = save_checkpoint(tmp_path / "model.ckpt", ensemble, ENSEMBLE)
    loaded, config, _ = load_checkpoint(path)
    assert type(loaded) is GraphMatcherEnsemble and config == ENSEMBLE
    assert any(k.startswith("members.2.") for k in torch.load(path, weights_only=True)
               ["state_dict"])
    with torch.no_grad():
        assert torch.equal(loaded(data).score, ensemble(data).score)
    assert loaded.match(data).matches0.tolist() == ensemble.match(data).matches0.tolist()
