import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import HeteroData

from lngraph.baselines.base import REGISTRY
from lngraph.data.geometry import pair_shifts
from lngraph.models import AsymmetricMatcher, MatcherConfig, alignment_params, preset
from lngraph.train.ablations import ABLATIONS, AppearanceHungarian, GeometryOnly
from lngraph.train.method import MatcherMethod

SWITCHES = ("model.use_seag", "loss.weight_te", "loss.weight_se", "model.use_scb",
            "model.position_prior")
#: Table 1, one component added per row: (use_seag, weight_te, weight_se, use_scb,
#: position_prior).
ROWS = {"abl_appearance": (False, 0.0, 0.0, False, False),
        "abl_seag": (True, 0.0, 0.0, False, False), "abl_te": (True, 1.0, 0.0, False, False),
        "abl_se": (True, 1.0, 1.0, False, False), "abl_scb": (True, 1.0, 1.0, True, False)}
#: What every Table 1 row changes besides its switches: the paper's asymmetric matcher (SEAG
#: with its learnable Q, the lite default) with fixed thresholds (0.5, the lite defaults),
#: nothing calibrated, and the paper's training (no geometric augmentation, a constant
#: learning rate, lite's earlier patience of 5).
PAPER_CHANGES = {"model.architecture": "asymmetric", "protocol.calibrate_threshold": False,
                 "protocol.calibrate_fusion": False, "optim.augment_drop": 0.0,
                 "optim.augment_rotation_deg": 0.0, "optim.augment_jitter_mm": 0.0,
                 "optim.schedule": "constant", "optim.patience": 5}
#: The graph matcher's ablations: registered name → what it changes in the lite preset.
MATCHER_ROWS = {"matcher_geometry": {"model.geometry_only": True},
                "matcher_no_cross": {"model.use_cross": False},
                "matcher_no_position": {"model.position_prior": False},
                "matcher_no_self": {"model.self_layer": "none"},
                "matcher_seag": {"model.self_layer": "seag"}}
CROP = 16
TINY = preset("lite").updated(model={"architecture": "asymmetric",
                                      "encoder2d_widths": (4, 8, 8),
                                      "encoder3d_widths": (4, 8, 8), "feature_dim": 16,
                                      "scb_hidden": 8},
                               crops={"size": CROP})


def changed(config: MatcherConfig) -> dict:
    lite = preset("lite").flat()
    return {k: v for k, v in config.flat().items() if lite[k] != v}


@pytest.mark.parametrize("name", list(ROWS))
def test_each_row_sets_its_switches_and_nothing_else(name):
    method = REGISTRY[name]()
    assert isinstance(method, MatcherMethod)
    assert tuple(method.config.flat()[k] for k in SWITCHES) == ROWS[name]
    expected = {k: v for k, v in zip(SWITCHES, ROWS[name], strict=True)
                if preset("lite").flat()[k] != v}
    assert changed(method.config) == {**expected, **PAPER_CHANGES}
    m = method.config.model
    assert (m.architecture, m.seag_learn_q, m.similarity_threshold, m.scb_threshold) == (
        "asymmetric", True, 0.5, 0.5)
    assert not m.fuses_scores and m.scb_active == (name == "abl_scb")
    assert method.needs_images and method.learned


def test_rows_add_one_component_at_a_time():
    order = list(ROWS)
    for before, after in zip(order, order[1:], strict=False):
        diff = [k for k, a, b in zip(SWITCHES, ROWS[before], ROWS[after], strict=True) if a != b]
        assert len(diff) == 1, (before, after, diff)
    assert set(ABLATIONS) == set(ROWS)


def test_matcher_itself_is_the_lite_preset():
    assert REGISTRY["matcher"]().config == preset("lite")
    assert REGISTRY["matcher"]().config.model.architecture == "graph"


def test_paper_is_the_paper_preset():
    method = REGISTRY["paper"]()
    assert isinstance(method, MatcherMethod) and method.config == preset("paper")
    assert method.needs_images and method.learned


@pytest.mark.parametrize("name", list(MATCHER_ROWS))
def test_each_matcher_ablation_changes_one_thing_of_the_graph_matcher(name):
    method = REGISTRY[name]()
    assert isinstance(method, MatcherMethod)
    assert method.config.model.architecture == "graph"
    assert changed(method.config) == MATCHER_ROWS[name]
    assert method.needs_images == (name != "matcher_geometry") and method.learned
    assert method.config.model.feature_dim % method.config.model.heads == 0


def test_overrides_win_over_the_given_config_and_keep_the_rest():
    method = AppearanceHungarian(TINY.with_values({"model.use_seag": True,
                                                   "loss.weight_te": 0.5}), max_epochs=3)
    assert method.config.model.use_seag is False and method.config.loss.weight_te == 0.0
    assert method.config.model.feature_dim == 16 and method.max_epochs == 3


def test_geometry_variant_runs_without_images():
    method = GeometryOnly()
    assert method.config.model.geometry_only and not method.needs_images
    assert REGISTRY["matcher_geometry"] is GeometryOnly


def pair(images: bool, config: MatcherConfig, seed: int = 0) -> HeteroData:
    """A 4 × 5 pair graph with the alignment shifts ``config`` needs (as the graph builders
    add them)."""
    gen = torch.Generator().manual_seed(seed)
    data = HeteroData()
    for node_type, n in (("src", 4), ("dst", 5)):
        store = data[node_type]
        store.num_nodes = n
        store.pos = torch.randn(n, 3, generator=gen) * 20
        store.radius = torch.rand(n, generator=gen) * 5 + 3
        if images:
            store.cube = torch.rand(n, 1, CROP, CROP, CROP, generator=gen)
            store.views = torch.rand(n, 9, CROP, CROP, generator=gen)
        rows, cols = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        data[node_type, "intra", node_type].edge_index = torch.stack(
            [rows[rows != cols], cols[rows != cols]])
    data["src", "cross", "dst"].edge_label_index = torch.tensor([[0, 1], [0, 1]])
    align = alignment_params(config)
    if align is not None:
        data["src"].shift = torch.as_tensor(
            pair_shifts(data["src"].pos.numpy(), data["dst"].pos.numpy(), align),
            dtype=torch.float32)
    return data


@pytest.mark.parametrize("images", [True, False])
def test_without_seag_similarity_is_the_encoder_cosine(images):
    torch.manual_seed(0)
    config = TINY.updated(model={"use_seag": False, "use_scb": False,
                                 "geometry_only": not images})
    model = AsymmetricMatcher(config).eval()
    assert model.seag is None
    assert not any(name.startswith("seag.") for name, _ in model.named_parameters())
    data = pair(images, config)
    with torch.no_grad():
        out = model(data)
    expected = F.normalize(out.src.feature, dim=-1) @ F.normalize(out.dst.feature, dim=-1).T
    torch.testing.assert_close(out.similarity[0], expected)

    torch.manual_seed(0)
    with_seag = AsymmetricMatcher(config.with_values({"model.use_seag": True})).eval()
    with torch.no_grad():
        out = with_seag(data)
    expected = F.normalize(out.src.feature, dim=-1) @ F.normalize(out.dst.feature, dim=-1).T
    assert not torch.allclose(out.similarity[0], expected)


def test_use_seag_round_trips_through_yaml(tmp_path):
    config = preset("lite").with_values({"model.use_seag": False})
    config.to_yaml(tmp_path / "c.yaml")
    assert MatcherConfig.from_yaml(tmp_path / "c.yaml").model.use_seag is False
    with pytest.raises(ValueError, match=r"model\.use_seag must be bool"):
        MatcherConfig(model={"use_seag": "no"})
