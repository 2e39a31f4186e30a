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
CROP = 16
TINY = preset("lite").updated(model={"encoder2d_widths": (4, 8, 8),
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
    assert changed(method.config) == expected
    assert method.needs_images and method.learned


def test_rows_add_one_component_at_a_time():
    order = list(ROWS)
    for before, after in zip(order, order[1:], strict=False):
        diff = [k for k, a, b in zip(SWITCHES, ROWS[before], ROWS[after], strict=True) if a != b]
        assert len(diff) == 1, (before, after, diff)
    assert set(ABLATIONS) == set(ROWS)


def test_asymmetric_itself_is_the_lite_preset():
    assert REGISTRY["matcher"]().config == preset("lite")


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
