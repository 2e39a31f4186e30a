"""The reported confidence: a monotone map of the decision score, applied after the decision,
stored in the checkpoint's config (``model.score_temperature``, ``model.score_bias``)."""

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from lngraph import __version__
from lngraph.io.errors import InputError
from lngraph.matching.batched import BatchedMatches
from lngraph.metrics.calibration import temperature_scale
from lngraph.models import (
    AsymmetricMatcher,
    build_matcher,
    load_checkpoint,
    preset,
    save_checkpoint,
    to_predictions,
)
from lngraph.models.asymmetric_matcher import confident_matches
from lngraph.models.checkpoint import FORMAT

from .test_graph_matcher import GEOMETRY, random_pair

#: Graph and asymmetric geometry-only matchers, small and untrained.
CONFIGS = {"graph": GEOMETRY,
           "asymmetric": GEOMETRY.updated(model={"architecture": "asymmetric",
                                                 "seag_learn_q": False})}
SCALED = {"model.score_temperature": 0.4, "model.score_bias": 1.5}


def batch():
    return Batch.from_data_list([random_pair(6, 5, 21, images=False),
                                 random_pair(4, 7, 22, images=False),
                                 random_pair(3, 3, 23, images=False)])


def test_the_default_map_is_the_identity():
    c = preset("lite").model
    assert (c.score_temperature, c.score_bias) == (1.0, 0.0)
    m = BatchedMatches(torch.tensor([[1, -1]]), torch.tensor([[-1, 0]]),
                       torch.tensor([[0.3, 0.0]], dtype=torch.float64),
                       torch.ones(1, 2, dtype=torch.bool), torch.ones(1, 2, dtype=torch.bool))
    assert confident_matches(m, preset("lite")) is m
    scaled = confident_matches(m, preset("lite").with_values(SCALED))
    assert scaled.matches0 is m.matches0 and scaled.scores0[0, 1] == 0   # unmatched stay 0
    assert scaled.scores0[0, 0].item() == pytest.approx(float(temperature_scale(0.3, 0.4, 1.5)))


@pytest.mark.parametrize("architecture", sorted(CONFIGS))
@pytest.mark.parametrize("threshold", [None, 0.0, 0.02])
def test_calibration_changes_the_scores_never_the_decisions(architecture, threshold):
    torch.manual_seed(5)
    model = build_matcher(CONFIGS[architecture]).eval()
    data = batch()
    raw = model.match(data, threshold)
    assert torch.equal(model.match(data, threshold, calibrated=False).scores0, raw.scores0)
    model.config = model.config.with_values(SCALED)
    for calibrated in (model.match(data, threshold), model.match(data, threshold,
                                                                  calibrated=True)):
        assert torch.equal(calibrated.matches0, raw.matches0)
        assert torch.equal(calibrated.matches1, raw.matches1)
        for a, b in zip(to_predictions(calibrated), to_predictions(raw), strict=True):
            np.testing.assert_array_equal(a.matches, b.matches)
            np.testing.assert_allclose(a.scores, temperature_scale(b.scores, 0.4, 1.5),
                                       rtol=1e-12, atol=1e-15)
    uncalibrated = model.match(data, threshold, calibrated=False)
    assert torch.equal(uncalibrated.scores0, raw.scores0)


@pytest.mark.parametrize("architecture", sorted(CONFIGS))
def test_checkpoint_round_trip_keeps_the_map(tmp_path, architecture):
    torch.manual_seed(8)
    config = CONFIGS[architecture].with_values(SCALED)
    model = build_matcher(config).eval()
    loaded, loaded_config, _ = load_checkpoint(save_checkpoint(tmp_path / "m.ckpt", model,
                                                               config))
    assert (loaded_config.model.score_temperature, loaded_config.model.score_bias) == (0.4, 1.5)
    assert loaded.config == loaded_config
    data = batch()
    a, b = model.match(data), loaded.match(data)
    assert torch.equal(a.matches0, b.matches0) and torch.equal(a.scores0, b.scores0)


@pytest.mark.parametrize("version", [3, 4])
def test_older_checkpoints_load_with_temperature_one(tmp_path, version):
    config = CONFIGS["asymmetric"]
    torch.manual_seed(9)
    model = AsymmetricMatcher(config).eval()
    values = config.to_dict()
    del values["model"]["score_temperature"], values["model"]["score_bias"]
    del values["protocol"]["calibrate_confidence"]
    if version == 3:    # format 3 lacked every field of format 4 too
        for key in ("architecture", "seag_learn_q", "layers", "heads", "self_layer",
                    "use_cross", "deep_supervision"):
            del values["model"][key]
        del values["loss"]["weight_assignment"]
    path = tmp_path / f"v{version}.ckpt"
    torch.save({"format": FORMAT, "format_version": version, "lngraph_version": __version__,
                "config": values, "state_dict": model.state_dict(), "extra": {}}, path)
    loaded, loaded_config, _ = load_checkpoint(path)
    assert (loaded_config.model.score_temperature, loaded_config.model.score_bias) == (1.0, 0.0)
    assert loaded_config.protocol.calibrate_confidence is True
    data = batch()
    assert torch.equal(loaded.match(data).scores0, model.match(data, calibrated=False).scores0)


@pytest.mark.parametrize(("key", "value"), [("score_temperature", 0.0),
                                            ("score_temperature", float("nan")),
                                            ("score_temperature", float("inf")),
                                            ("score_bias", float("nan"))])
def test_an_invalid_map_is_refused(tmp_path, key, value):
    with pytest.raises(ValueError, match=key):
        preset("lite").with_values({f"model.{key}": value})
    model = build_matcher(GEOMETRY).eval()
    path = save_checkpoint(tmp_path / "m.ckpt", model, GEOMETRY)
    payload = torch.load(path, weights_only=True)
    payload["config"]["model"][key] = value
    torch.save(payload, path)
    with pytest.raises(InputError, match=f"invalid config in the checkpoint: .*model.{key}"):
        load_checkpoint(path)
