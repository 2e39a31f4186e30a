"""lngraph checkpoints: identical outputs after a round trip, clear errors for bad files."""

import numpy as np
import pytest
import torch

from lngraph import __version__
from lngraph.data.geometry import pair_shifts
from lngraph.data.graph import pair_to_heterodata
from lngraph.io.errors import InputError
from lngraph.models import (
    AsymmetricMatcher,
    GraphMatcher,
    alignment_params,
    build_matcher,
    preset,
    to_predictions,
)
from lngraph.models.checkpoint import (
    ALL_PAIRS,
    FORMAT,
    FORMAT_VERSION,
    load_checkpoint,
    save_checkpoint,
)

CROP = 16
#: The asymmetric matcher (SEAG with its learnable Q, position prior on: fusion weights).
TINY = preset("lite").updated(model={"architecture": "asymmetric",
                                      "encoder2d_widths": (4, 8, 8),
                                      "encoder3d_widths": (4, 8, 8), "feature_dim": 16,
                                      "scb_hidden": 8},
                               crops={"size": CROP})
#: The graph matcher at the same sizes (the lite default architecture).
TINY_GRAPH = TINY.with_values({"model.architecture": "graph", "model.layers": 2})
#: Fields that configs of checkpoint formats 2 and 3 did not have, by section.
NEW_IN_4 = {"model": ("architecture", "layers", "heads", "self_layer", "use_cross",
                      "deep_supervision", "seag_learn_q", "score_temperature", "score_bias"),
            "loss": ("weight_assignment",),
            "optim": ("augment_drop", "augment_rotation_deg", "augment_scale",
                      "augment_jitter_mm", "schedule"),
            "protocol": ("calibrate_confidence",)}
#: How formats 2 and 3 trained, whatever the lite defaults are now: no geometric augmentation,
#: a constant learning rate.
BEFORE_4_OPTIM = {"augment_drop": 0.0, "augment_rotation_deg": 0.0, "augment_scale": 0.0,
                  "augment_jitter_mm": 0.0, "schedule": "constant"}


def crops(n, gen):
    return (torch.rand(n, CROP, CROP, CROP, generator=gen).numpy(),
            torch.rand(n, 9, CROP, CROP, generator=gen).numpy())


def predictions_equal(model, loaded, graph):
    """Both models give the same matches and scores at the config's threshold and at 0."""
    for threshold in (None, 0.0):
        p, q = model.match(graph, threshold), loaded.match(graph, threshold)
        assert torch.equal(p.matches0, q.matches0) and torch.equal(p.scores0, q.scores0)
        (p,), (q,) = to_predictions(p), to_predictions(q)
        assert np.array_equal(p.matches, q.matches) and np.array_equal(p.scores, q.scores)


@pytest.fixture
def image_graph(geometry_cohort):
    """The first pair with random crops and the alignment shifts of TINY (the same alignment
    settings as every config here)."""
    gen = torch.Generator().manual_seed(0)
    pair = geometry_cohort.pairs()[0]
    shifts = pair_shifts(pair.src.nodes.pos, pair.dst.nodes.pos, alignment_params(TINY))
    return pair_to_heterodata(pair, crops(len(pair.src.nodes), gen),
                              crops(len(pair.dst.nodes), gen), shifts)


@pytest.mark.parametrize("architecture", ["asymmetric", "graph"])
@pytest.mark.parametrize("geometry_only", [False, True])
def test_round_trip_gives_identical_outputs(tmp_path, image_graph, geometry_only, architecture):
    base = TINY if architecture == "asymmetric" else TINY_GRAPH
    config = base.with_values({"model.geometry_only": geometry_only, "protocol.seed": 5})
    assert alignment_params(config) == alignment_params(TINY)    # image_graph's shifts fit
    torch.manual_seed(1)
    model = build_matcher(config).eval()
    assert type(model) is (AsymmetricMatcher if architecture == "asymmetric" else GraphMatcher)
    extra = {"val_metrics": {"f1": np.float64(0.5), "nlr": float("nan")},
             "train_patients": ("P1", "P2"), "epochs": np.int64(3)}
    path = save_checkpoint(tmp_path / "run" / "model.ckpt", model, config, extra)
    loaded, loaded_config, loaded_extra = load_checkpoint(path)
    assert loaded_config == config
    assert type(loaded) is type(model) and not loaded.training
    assert loaded_extra["train_patients"] == ["P1", "P2"] and loaded_extra["epochs"] == 3
    assert loaded_extra["val_metrics"]["f1"] == 0.5
    assert np.isnan(loaded_extra["val_metrics"]["nlr"])
    with torch.no_grad():
        before, after = model(image_graph), loaded(image_graph)
    assert torch.equal(before.score, after.score)
    if architecture == "asymmetric":
        assert torch.equal(before.similarity, after.similarity)
        assert torch.equal(before.match_logits, after.match_logits)
        assert torch.equal(before.scb_logits, after.scb_logits)
    else:
        assert len(before.assignments) == len(after.assignments) == 1   # the deciding head
        with torch.no_grad():   # training mode: every head of the deep supervision
            before, after = model.train()(image_graph), loaded.train()(image_graph)
        model.eval(), loaded.eval()
        assert len(before.assignments) == len(after.assignments) == 2
        for a, b in zip(before.assignments, after.assignments, strict=True):
            assert torch.equal(a.log_assignment, b.log_assignment)
    predictions_equal(model, loaded, image_graph)
    assert not list(tmp_path.joinpath("run").glob(".*")), "a temporary file was left behind"


def test_the_architecture_must_match_the_weights(tmp_path):
    path = save_checkpoint(tmp_path / "m.ckpt", AsymmetricMatcher(TINY), TINY)
    payload = torch.load(path, weights_only=True)
    payload["config"]["model"]["architecture"] = "graph"
    torch.save(payload, path)
    with pytest.raises(InputError, match="the weights do not fit the model"):
        load_checkpoint(path)


def test_loads_with_weights_only(tmp_path):
    path = save_checkpoint(tmp_path / "m.ckpt", AsymmetricMatcher(TINY), TINY)
    payload = torch.load(path, weights_only=True)
    assert payload["format_version"] == FORMAT_VERSION == 4
    assert payload["config"] == TINY.to_dict()
    assert payload["config"]["model"]["feature_dim"] == 16


def test_extra_must_be_plain_data(tmp_path):
    with pytest.raises(TypeError, match=r"extra\['bad'\]: object cannot be stored"):
        save_checkpoint(tmp_path / "m.ckpt", AsymmetricMatcher(TINY), TINY, {"bad": object()})
    assert not (tmp_path / "m.ckpt").exists()


def test_other_format_version_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "m.ckpt", AsymmetricMatcher(TINY), TINY)
    payload = torch.load(path, weights_only=True)
    for version in (FORMAT_VERSION + 1, 1, None):
        payload["format_version"] = version
        torch.save(payload, path)
        with pytest.raises(InputError) as err:
            load_checkpoint(path)
        assert str(err.value).startswith(f"{path}: checkpoint format version {version!r}")
        assert f"reads version {FORMAT_VERSION}" in str(err.value)


def test_corrupt_file_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "m.ckpt", AsymmetricMatcher(TINY), TINY)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="not a readable lngraph checkpoint"):
        load_checkpoint(path)
    path.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(InputError, match=r"m\.ckpt: not a readable lngraph checkpoint"):
        load_checkpoint(path)


def test_other_torch_file_is_refused(tmp_path):
    path = tmp_path / "tensor.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(InputError, match=r"tensor\.pt: not an lngraph checkpoint"):
        load_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nope\.ckpt: checkpoint not found"):
        load_checkpoint(tmp_path / "nope.ckpt")


def test_weights_that_do_not_fit_the_config(tmp_path):
    path = save_checkpoint(tmp_path / "m.ckpt", AsymmetricMatcher(TINY), TINY)
    payload = torch.load(path, weights_only=True)
    payload["config"]["model"]["feature_dim"] = 32
    torch.save(payload, path)
    with pytest.raises(InputError, match="the weights do not fit the model"):
        load_checkpoint(path)
    payload["config"] = {"model": {"feature_dim": "wide"}}
    torch.save(payload, path)
    with pytest.raises(InputError, match=r"invalid config in the checkpoint: "
                                         r"model\.feature_dim must be int"):
        load_checkpoint(path)


#: The flat config of checkpoint format 2 (the ``lite`` values of that version, with TINY's
#: sizes and a temperature that was shared by the losses, the matching logits and SCB).
V2_CONFIG = {
    "name": "lite", "crop_mode": "radius", "crop_size": CROP,
    "crop_spacing_mm": [0.7, 0.7, 2.0], "crop_radius_factor": 2.5, "crop_min_fov_mm": 16.0,
    "hu_window": [-160.0, 240.0], "encoder2d_block": "basic", "encoder2d_layers": [1, 1, 1],
    "encoder2d_widths": [4, 8, 8], "encoder2d_stem_stride": 2, "encoder3d_block": "basic",
    "encoder3d_layers": [1, 1, 1], "encoder3d_widths": [4, 8, 8], "encoder3d_stem_stride": 2,
    "feature_dim": 16, "token_grid": 2, "use_seag": True, "length_scale_mm": 20.0,
    "learn_length_scale": False, "sigma_init": 8.0, "use_scb": True, "scb_hidden": 8,
    "scb_threshold": 0.4, "scb_reassign": False, "similarity_threshold": 0.5,
    "calibrate_threshold": True, "position_prior": True, "position_gate_mm": 15.0,
    "position_local_mm": 30.0, "size_prior": True, "encoder_similarity": True,
    "calibrate_fusion": False, "position_prior_lr": 0.002, "geometry_only": False,
    "geometry_k": 8, "geometry_hidden": 64, "geometry_distance_mm": 50.0, "temperature": 0.2,
    "weight_se": 1.0, "weight_te": 0.5, "weight_seag": 1.0, "weight_scb": 1.0,
    "augment_intensity": 0.1, "augment_noise": 0.02, "augment_flip": True, "lr": 0.003,
    "weight_decay": 0.0001, "batch_size": 2, "max_epochs": 7, "patience": 5, "folds": 5,
    "val_fraction": 0.25, "seed": 3,
}


def test_format_2_file_is_migrated(tmp_path, image_graph):
    # a format-2 file holds the asymmetric matcher with the parameter-free SEAG
    expected = preset("lite").updated(
        crops={"size": CROP},
        model={"architecture": "asymmetric", "seag_learn_q": False,
               "encoder2d_widths": (4, 8, 8), "encoder3d_widths": (4, 8, 8), "feature_dim": 16,
               "use_scb": True, "scb_hidden": 8, "scb_threshold": 0.4,
               "similarity_temperature": 0.2, "scb_temperature": 0.2,
               "position_rigid": False, "position_search": False,
               "cross_edge_values": False, "cross_k": ALL_PAIRS},
        loss={"temperature": 0.2, "weight_te": 0.5},
        optim={"fusion_lr": 0.002, "lr": 0.003, "batch_size": 2, "max_epochs": 7,
               "patience": 5, **BEFORE_4_OPTIM},
        protocol={"calibrate_fusion": False, "val_fraction": 0.25, "seed": 3})
    torch.manual_seed(2)
    model = AsymmetricMatcher(expected).eval()
    path = tmp_path / "v2.ckpt"
    torch.save({"format": FORMAT, "format_version": 2, "lngraph_version": __version__,
                "config": dict(V2_CONFIG),
                "state_dict": {k: v.clone() for k, v in model.state_dict().items()},
                "extra": {"seed": 3}}, path)
    loaded, config, extra = load_checkpoint(path)
    assert config == expected and extra == {"seed": 3}
    assert type(loaded) is AsymmetricMatcher and not loaded.seag.learn_q
    # the translation alignment it was trained with
    assert alignment_params(config) == alignment_params(
        TINY.with_values({"model.position_rigid": False}))
    assert loaded.scb.temperature == 0.2
    with torch.no_grad():
        before, after = model(image_graph), loaded(image_graph)
    assert torch.equal(before.match_logits, after.match_logits)
    assert torch.equal(before.scb_logits, after.scb_logits)
    predictions_equal(model, loaded, image_graph)
    resaved = save_checkpoint(tmp_path / "v4.ckpt", loaded, config)
    assert torch.load(resaved, weights_only=True)["format_version"] == 4
    assert torch.load(resaved, weights_only=True)["config"] == expected.to_dict()
    assert load_checkpoint(resaved)[1] == expected


def _format_3_payload(model, config) -> dict:
    """What lngraph wrote in format 3: the sectioned config without the fields of format 4."""
    values = config.to_dict()
    for section, keys in NEW_IN_4.items():
        for key in keys:
            del values[section][key]
    return {"format": FORMAT, "format_version": 3, "lngraph_version": "0.1.0",
            "config": values, "state_dict": {k: v.clone() for k, v in model.state_dict().items()},
            "extra": {"seed": 4}}


# 18 is not a multiple of the graph matcher's heads: a format-3 file is read as the asymmetric
# matcher it holds, never checked as a graph matcher
@pytest.mark.parametrize("feature_dim", [16, 18])
def test_format_3_file_is_the_asymmetric_matcher_without_learnable_q(tmp_path, image_graph,
                                                                     feature_dim):
    expected = TINY.with_values({"model.seag_learn_q": False, "model.use_scb": True,
                                 "model.feature_dim": feature_dim,
                                 **{f"optim.{k}": v for k, v in BEFORE_4_OPTIM.items()}})
    torch.manual_seed(3)
    model = AsymmetricMatcher(expected).eval()
    path = tmp_path / "v3.ckpt"
    torch.save(_format_3_payload(model, expected), path)
    loaded, config, extra = load_checkpoint(path)
    assert config == expected and extra == {"seed": 4}
    assert (config.model.architecture, config.model.seag_learn_q) == ("asymmetric", False)
    # trained without the geometric augmentation and schedule that format 4 added
    assert (config.optim.augment_drop, config.optim.augment_rotation_deg,
            config.optim.augment_jitter_mm, config.optim.schedule) == (0.0, 0.0, 0.0, "constant")
    assert type(loaded) is AsymmetricMatcher and not loaded.seag.learn_q
    with torch.no_grad():
        before, after = model(image_graph), loaded(image_graph)
    assert torch.equal(before.match_logits, after.match_logits)
    assert torch.equal(before.scb_logits, after.scb_logits)
    predictions_equal(model, loaded, image_graph)


def test_format_3_file_with_learnable_q_weights_is_refused(tmp_path):
    # format 3 had no learnable Q: such weights do not fit the model the file implies
    model = AsymmetricMatcher(TINY)
    assert model.seag.learn_q
    path = tmp_path / "v3.ckpt"
    torch.save(_format_3_payload(model, TINY), path)
    with pytest.raises(InputError, match=r"the weights do not fit the model"):
        load_checkpoint(path)


def test_format_2_file_with_a_bad_config_is_refused(tmp_path):
    model = AsymmetricMatcher(TINY)
    path = tmp_path / "v2.ckpt"
    for config, problem in (({**V2_CONFIG, "wide": True}, "unknown key.* wide"),
                            ({**V2_CONFIG, "feature_dim": 0},
                             r"model\.feature_dim must be >= 1")):
        torch.save({"format": FORMAT, "format_version": 2, "lngraph_version": "0.1.0",
                    "config": config, "state_dict": model.state_dict(), "extra": {}}, path)
        with pytest.raises(InputError, match=f"invalid config in the checkpoint: {problem}"):
            load_checkpoint(path)


def _first_weight(model) -> str:
    """The name of the model's first floating-point parameter (an encoder weight)."""
    return next(name for name, p in model.named_parameters() if p.is_floating_point())


@pytest.mark.parametrize("case", ["nan_weight", "inf_fusion_weight"])
def test_non_finite_weights_are_refused(tmp_path, case):
    model = AsymmetricMatcher(TINY)
    path = save_checkpoint(tmp_path / "m.ckpt", model, TINY)
    payload = torch.load(path, weights_only=True)
    name = _first_weight(model) if case == "nan_weight" else "fusion_weight"
    payload["state_dict"][name].view(-1)[0] = float("nan") if case == "nan_weight" else float("inf")
    torch.save(payload, path)
    kind = "1 NaN" if case == "nan_weight" else "1 infinite"
    with pytest.raises(InputError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert message.startswith(f"{path}: non-finite weights in {name!r} ({kind} of ")
    assert "retrain" in message
    # and nothing of the kind is ever written
    with torch.no_grad():
        dict(model.named_parameters())[name].view(-1)[0] = float("nan")
    with pytest.raises(ValueError, match=rf"cannot save .*bad\.ckpt: non-finite weights in "
                                         rf"{name!r} \(1 NaN"):
        save_checkpoint(tmp_path / "bad.ckpt", model, TINY)
    assert not (tmp_path / "bad.ckpt").exists()


@pytest.mark.parametrize(("key", "value"), [("similarity_threshold", float("nan")),
                                            ("scb_threshold", float("nan")),
                                            ("similarity_threshold", float("inf")),
                                            ("scb_threshold", 1.5),
                                            ("similarity_threshold", -0.1)])
def test_bad_decision_threshold_is_refused(tmp_path, key, value):
    path = save_checkpoint(tmp_path / "m.ckpt", AsymmetricMatcher(TINY), TINY)
    payload = torch.load(path, weights_only=True)
    payload["config"]["model"][key] = value
    torch.save(payload, path)
    with pytest.raises(InputError, match=rf"m\.ckpt: invalid config in the checkpoint: .*"
                                         rf"{key} must be in \[0, 1\], got {value}"):
        load_checkpoint(path)


def test_numpy_strings_in_extra_are_stored_as_plain_strings(tmp_path):
    # patients drawn with numpy (np.str_) once made a file that weights_only loading refused
    model = build_matcher(TINY).eval()
    patients = list(np.random.default_rng(0).permutation(["P1", "P2", "P3"]))
    path = save_checkpoint(tmp_path / "m.ckpt", model, TINY,
                           extra={"val_patients": patients, "best": np.str_("P1")})
    _, _, extra = load_checkpoint(path)
    assert sorted(extra["val_patients"]) == ["P1", "P2", "P3"] and extra["best"] == "P1"
    assert all(type(p) is str for p in extra["val_patients"])


@pytest.mark.parametrize("key, old, new", [
    # before the rigid alignment: the translation alignment
    ("position_rigid", {"rigid": False, "rotation_search": False},
     {"rigid": True, "rotation_search": True}),
    # before the rotation search: the rigid alignment without it
    ("position_search", {"rigid": True, "rotation_search": False},
     {"rigid": True, "rotation_search": True}),
])
def test_a_file_from_before_an_alignment_setting_keeps_the_alignment_it_was_trained_with(
        tmp_path, key, old, new):
    model = build_matcher(TINY_GRAPH)
    save_checkpoint(tmp_path / "new.ckpt", model, TINY_GRAPH)
    payload = torch.load(tmp_path / "new.ckpt", weights_only=True)
    assert payload["config"]["model"][key] is True
    del payload["config"]["model"][key]
    torch.save(payload, tmp_path / "old.ckpt")
    for name, expected in (("old", old), ("new", new)):
        _, config, _ = load_checkpoint(tmp_path / f"{name}.ckpt")
        if name == "old":
            assert config == TINY_GRAPH.with_values({f"model.{key}": False})
        params = alignment_params(config)
        assert {"rigid": params.rigid, "rotation_search": params.rotation_search} == expected
