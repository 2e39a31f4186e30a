"""lngraph checkpoints: identical outputs after a round trip, clear errors for bad files."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from lngraph.data.graph import pair_to_heterodata
from lngraph.io.errors import InputError
from lngraph.models import AsymmetricMatcher, preset
from lngraph.train.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint

CROP = 16
TINY = replace(preset("lite"), encoder2d_widths=(4, 8, 8), encoder3d_widths=(4, 8, 8),
               feature_dim=16, scb_hidden=8, crop_size=CROP)


def crops(n, gen):
    return (torch.rand(n, CROP, CROP, CROP, generator=gen).numpy(),
            torch.rand(n, 9, CROP, CROP, generator=gen).numpy())


@pytest.fixture
def image_graph(geometry_cohort):
    gen = torch.Generator().manual_seed(0)
    pair = geometry_cohort.pairs()[0]
    return pair_to_heterodata(pair, crops(len(pair.src.nodes), gen),
                              crops(len(pair.dst.nodes), gen))


@pytest.mark.parametrize("geometry_only", [False, True])
def test_round_trip_gives_identical_outputs(tmp_path, image_graph, geometry_only):
    config = replace(TINY, geometry_only=geometry_only, seed=5)
    torch.manual_seed(1)
    model = AsymmetricMatcher(config).eval()
    extra = {"val_metrics": {"f1": np.float64(0.5), "nlr": float("nan")},
             "train_patients": ("P1", "P2"), "epochs": np.int64(3)}
    path = save_checkpoint(tmp_path / "run" / "model.ckpt", model, config, extra)
    loaded, loaded_config, loaded_extra = load_checkpoint(path)
    assert loaded_config == config
    assert not loaded.training
    assert loaded_extra["train_patients"] == ["P1", "P2"] and loaded_extra["epochs"] == 3
    assert loaded_extra["val_metrics"]["f1"] == 0.5
    assert np.isnan(loaded_extra["val_metrics"]["nlr"])
    with torch.no_grad():
        before, after = model(image_graph), loaded(image_graph)
    assert torch.equal(before.similarity, after.similarity)
    assert torch.equal(before.scb_logits, after.scb_logits)
    p, q = model.predict_pair(image_graph), loaded.predict_pair(image_graph)
    assert np.array_equal(p.matches, q.matches) and np.array_equal(p.scores, q.scores)
    assert not list(tmp_path.joinpath("run").glob(".*")), "a temporary file was left behind"


def test_loads_with_weights_only(tmp_path):
    path = save_checkpoint(tmp_path / "m.ckpt", AsymmetricMatcher(TINY), TINY)
    payload = torch.load(path, weights_only=True)
    assert payload["format_version"] == FORMAT_VERSION
    assert payload["config"]["name"] == "lite"


def test_extra_must_be_plain_data(tmp_path):
    with pytest.raises(TypeError, match=r"extra\['bad'\]: object cannot be stored"):
        save_checkpoint(tmp_path / "m.ckpt", AsymmetricMatcher(TINY), TINY, {"bad": object()})
    assert not (tmp_path / "m.ckpt").exists()


def test_other_format_version_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "m.ckpt", AsymmetricMatcher(TINY), TINY)
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, path)
    with pytest.raises(InputError) as err:
        load_checkpoint(path)
    assert str(err.value).startswith(f"{path}: checkpoint format version {FORMAT_VERSION + 1}")
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
    payload["config"]["feature_dim"] = 32
    torch.save(payload, path)
    with pytest.raises(InputError, match="the weights do not fit the model"):
        load_checkpoint(path)
    payload["config"] = {"feature_dim": "wide"}
    torch.save(payload, path)
    with pytest.raises(InputError, match="invalid config in the checkpoint"):
        load_checkpoint(path)
