"""A tiny geometry-only training run: loss goes down, held-out pairs beat chance, outputs."""

import numpy as np
import pandas as pd
import pytest

from lngraph.metrics import evaluate_predictions
from lngraph.models import load_checkpoint, predict_pairs, preset
from lngraph.train import fit_matcher, selection_score
from lngraph.train.datamodule import PairDataModule, config_for_cohort

GEOMETRY = preset("lite").with_values({"model.geometry_only": True, "optim.batch_size": 4,
                                        "optim.lr": 3e-3, "optim.patience": 20})


@pytest.fixture(scope="module")
def trained(geometry_cohort, tmp_path_factory):
    patients = geometry_cohort.patients
    out = tmp_path_factory.mktemp("run")
    result = fit_matcher(geometry_cohort, GEOMETRY, train_patients=patients[:16],
                         val_patients=patients[16:20], out_dir=out, max_epochs=8, seed=0,
                         progress=False)
    return result, patients[20:]


def test_training_lowers_the_loss(trained):
    result, _ = trained
    log = pd.read_csv(result.log_dir / "metrics.csv")
    train = log.dropna(subset=["train_total"]).sort_values("epoch")["train_total"].to_numpy()
    assert len(train) == 8
    assert train[-3:].mean() < 0.8 * train[0]
    assert {"val_f1", "val_precision", "val_recall", "val_nlr", "val_dlr",
            "val_score"} <= set(log.columns)


def test_held_out_pairs_beat_chance(trained, geometry_cohort):
    result, test_patients = trained
    model, config, extra = load_checkpoint(result.checkpoint)
    assert config.model.geometry_only and extra["train_patients"] == geometry_cohort.patients[:16]
    pairs = geometry_cohort.pairs(patients=test_patients)
    predictions = predict_pairs(model, pairs)
    metrics = evaluate_predictions(geometry_cohort, {
        (p.src.scan_id, p.dst.scan_id): q for p, q in zip(pairs, predictions, strict=True)},
        pairs)
    # a random one-to-one assignment of 6-10 nodes is right about once per pair: F1 ~ 0.12
    assert metrics["f1"] > 0.35


def test_fit_result(trained):
    result, _ = trained
    assert result.checkpoint.name == "model.ckpt" and result.checkpoint.is_file()
    assert 0 <= result.best_epoch < result.epochs <= 8
    assert result.train_seconds > 0 and result.pairs_per_second > 0
    m = result.val_metrics
    assert m["n_pairs"] == 4 and 0 <= m["f1"] <= 1
    assert m["score"] == pytest.approx(selection_score(m))
    assert (result.checkpoint.parent / "lightning" / "best.ckpt").is_file()


@pytest.mark.slow
def test_same_seed_same_model(trained, geometry_cohort, tmp_path):
    result, _ = trained
    patients = geometry_cohort.patients
    again = fit_matcher(geometry_cohort, GEOMETRY, train_patients=patients[:16],
                        val_patients=patients[16:20], out_dir=tmp_path, max_epochs=8, seed=0,
                        progress=False)
    a, _, _ = load_checkpoint(result.checkpoint)
    b, _, _ = load_checkpoint(again.checkpoint)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert np.array_equal(x.numpy(), y.numpy()), name


def test_without_validation_keeps_lowest_training_loss(geometry_cohort, tmp_path):
    result = fit_matcher(geometry_cohort, GEOMETRY, train_patients=geometry_cohort.patients[:4],
                         val_patients=[], out_dir=tmp_path, max_epochs=1, progress=False)
    assert result.val_metrics == {} and result.epochs == 1 and result.checkpoint.is_file()


def test_errors(geometry_cohort, tmp_path):
    patients = geometry_cohort.patients
    with pytest.raises(ValueError, match="both training and validation"):
        fit_matcher(geometry_cohort, GEOMETRY, train_patients=patients[:2],
                    val_patients=patients[1:3], out_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="not in the cohort"):
        fit_matcher(geometry_cohort, GEOMETRY, train_patients=["nobody"], val_patients=[],
                    out_dir=tmp_path, progress=False)


def test_cohort_without_images_gets_a_geometry_only_config(geometry_cohort):
    lite = preset("lite")
    assert config_for_cohort(lite, geometry_cohort).model.geometry_only
    assert config_for_cohort(GEOMETRY, geometry_cohort) is GEOMETRY
    with pytest.raises(ValueError, match="use a geometry-only config"):
        PairDataModule(geometry_cohort, lite, train_patients=geometry_cohort.patients[:2])


def test_augment_crops_changes_intensities_per_node_and_keeps_the_input():
    import torch
    from torch_geometric.data import HeteroData

    from lngraph.train.datamodule import augment_crops

    torch.manual_seed(0)
    data = HeteroData()
    for node_type in ("src", "dst"):
        data[node_type].cube = torch.full((3, 1, 4, 4, 4), 0.5)
        data[node_type].views = torch.full((3, 9, 4, 4), 0.5)
    original = data["src"].cube.clone()
    out = augment_crops(data.clone(), intensity=0.1, noise=0.0)
    cube, views = out["src"].cube, out["src"].views
    # One gain and offset per node: constant within a node, shared by its cube and views.
    assert torch.allclose(cube.amax((1, 2, 3, 4)), cube.amin((1, 2, 3, 4)))
    torch.testing.assert_close(views.mean((1, 2, 3)), cube.mean((1, 2, 3, 4)))
    assert cube[:, 0, 0, 0, 0].unique().numel() == 3
    assert torch.equal(data["src"].cube, original)
    noisy = augment_crops(data.clone(), intensity=0.0, noise=0.02)["dst"].cube
    assert 0.01 < (noisy - 0.5).std() < 0.03
    empty = HeteroData()
    empty["src"].pos = torch.zeros(2, 3)
    same = augment_crops(empty, 0.1, 0.02)                     # no crops: unchanged
    assert same is empty and "cube" not in same["src"] and same["src"].pos.abs().sum() == 0


def test_flip_crops_applies_one_symmetry_to_both_scans_and_recomputes_the_views():
    import torch
    from torch_geometric.data import HeteroData

    from lngraph.data.views import nine_views
    from lngraph.train.datamodule import flip_crops

    cube = torch.rand(3, 1, 6, 6, 6)
    seen = set()
    for seed in range(40):
        data = HeteroData()
        for node_type in ("src", "dst"):
            data[node_type].cube = cube.clone()
            data[node_type].views = nine_views(cube)
        out = flip_crops(data, torch.Generator().manual_seed(seed))
        src, dst = out["src"].cube, out["dst"].cube
        assert torch.equal(src, dst)   # the same symmetry for both scans
        torch.testing.assert_close(out["src"].views, nine_views(src))
        # A symmetry of the cube: same voxel values, rearranged.
        torch.testing.assert_close(src.flatten(1).sort(1).values, cube.flatten(1).sort(1).values)
        seen.add(src.numpy().tobytes())
    assert len(seen) > 8    # many of the 16 symmetries occur
    empty = HeteroData()
    empty["src"].pos = torch.ones(2, 3)
    same = flip_crops(empty)                                   # no crops: unchanged
    assert same is empty and "cube" not in same["src"] and "views" not in same["src"]
    assert torch.equal(same["src"].pos, torch.ones(2, 3))
