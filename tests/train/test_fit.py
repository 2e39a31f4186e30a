"""A tiny geometry-only training run: loss goes down, held-out pairs beat chance, outputs."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from lngraph.io.errors import InputError
from lngraph.metrics import evaluate_predictions
from lngraph.models import load_checkpoint, predict_pairs, preset
from lngraph.train import fit_matcher, selection_score
from lngraph.train.calibrate import CalibrationWarning
from lngraph.train.datamodule import PairDataModule, config_for_cohort

GEOMETRY = preset("lite").with_values({"model.geometry_only": True, "optim.batch_size": 4,
                                        "optim.lr": 3e-3, "optim.patience": 20})
#: The same with the old fused asymmetric matcher (fusion weights to calibrate).
ASYMMETRIC = GEOMETRY.with_values({"model.architecture": "asymmetric",
                                   "model.seag_learn_q": False})
#: Architecture → geometry-only config.
CONFIGS = {"graph": GEOMETRY, "asymmetric": ASYMMETRIC}


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


@pytest.mark.parametrize("architecture", sorted(CONFIGS))
def test_without_validation_keeps_lowest_training_loss(geometry_cohort, tmp_path,
                                                       architecture):
    with warnings.catch_warnings():
        warnings.simplefilter("error", CalibrationWarning)   # no validation asked: no warning
        result = fit_matcher(geometry_cohort, CONFIGS[architecture],
                             train_patients=geometry_cohort.patients[:4], val_patients=[],
                             out_dir=tmp_path, max_epochs=1, progress=False)
    assert result.val_metrics == {} and result.epochs == 1 and result.checkpoint.is_file()
    assert result.validated is False
    # only the asymmetric matcher has fusion weights to calibrate
    expected = {"threshold": "no validation patients",
                "confidence": "no validation patients"}
    if architecture == "asymmetric":
        expected["fusion"] = "no validation patients"
    assert result.calibration_skipped == expected
    _, _, extra = load_checkpoint(result.checkpoint)
    assert extra["validated"] is False and extra["calibration_skipped"] == \
        result.calibration_skipped


def test_training_patients_without_nodes_are_refused_before_anything_runs(tmp_path):
    from lngraph.io import write_cohort
    from lngraph.io.cohort import Cohort, NodeTable, Scan, read_cohort

    scans = [Scan(f"p{p}", f"p{p}{t}", str(i), None, NodeTable.empty())
             for p in range(3) for i, t in enumerate("ab")]
    cohort = read_cohort(write_cohort(tmp_path / "cohort", scans))
    with pytest.raises(InputError) as err:
        fit_matcher(cohort, GEOMETRY, train_patients=["p0", "p1"], val_patients=["p2"],
                    out_dir=tmp_path / "run", progress=False)
    assert str(err.value) == (
        f"{tmp_path / 'cohort'}: no training pair with nodes among the training patients: the "
        "scans of the 2 training patient(s) (p0, p1) have no annotated node")
    assert not (tmp_path / "run").exists()
    with pytest.raises(InputError, match="have one scan each"):
        fit_matcher(Cohort(cohort.scans_of("p0")[:1]), GEOMETRY,
                    train_patients=["p0"], val_patients=[], out_dir=tmp_path / "run",
                    progress=False)


#: Architecture → a one-number weight of its matcher.
SCALAR_WEIGHT = {"asymmetric": "fusion_bias", "graph": "heads.2.matchability.bias"}


@pytest.mark.parametrize("architecture", sorted(CONFIGS))
def test_a_diverged_training_writes_no_checkpoint(geometry_cohort, tmp_path, monkeypatch,
                                                  architecture):
    import lngraph.train.fit as fit

    name = SCALAR_WEIGHT[architecture]

    def diverged(path):
        state = best_state(path)
        state[name] = torch.full_like(state[name], float("nan"))
        return state

    best_state = fit._best_state
    monkeypatch.setattr(fit, "_best_state", diverged)
    with pytest.raises(ValueError, match=rf"training diverged: the best epoch \(0\) has "
                                         rf"non-finite weights in '{name}' \(1 NaN"):
        fit_matcher(geometry_cohort, CONFIGS[architecture],
                    train_patients=geometry_cohort.patients[:4],
                    val_patients=[], out_dir=tmp_path, max_epochs=1, progress=False)
    assert not (tmp_path / "model.ckpt").exists()


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


# reproducibility ------------------------------------------------------------------------------
#: Architecture → a config that learns over several epochs (no position prior to lean on) and
#: stops early. The graph matcher trains with lite's geometric augmentation and cosine
#: schedule; its assignment probabilities start small, so a low threshold lets the first
#: epochs keep pairs (and improve). The asymmetric matcher trains as Table 1 does: no
#: geometric augmentation, a constant learning rate.
REPRODUCIBLE = {
    "graph": GEOMETRY.with_values({"model.position_prior": False, "optim.batch_size": 1,
                                   "optim.patience": 3, "model.similarity_threshold": 0.1}),
    "asymmetric": ASYMMETRIC.with_values({"model.position_prior": False,
                                          "optim.batch_size": 2, "optim.patience": 2,
                                          "optim.augment_drop": 0.0,
                                          "optim.augment_rotation_deg": 0.0,
                                          "optim.augment_jitter_mm": 0.0,
                                          "optim.schedule": "constant"}),
}


def _same(a, b) -> bool:
    """Equal, NaN equal to NaN (metrics of classes without ground truth are NaN)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return True
    return a == b


def assert_same_run(first, second):
    """Two :class:`FitResult` of one cohort, config and seed are the same run: bitwise-equal
    weights, the same epochs, metrics, stored extra and per-epoch logs."""
    assert (first.epochs, first.best_epoch) == (second.epochs, second.best_epoch)
    assert _same(first.val_metrics, second.val_metrics)
    a, config_a, extra_a = load_checkpoint(first.checkpoint)
    b, config_b, extra_b = load_checkpoint(second.checkpoint)
    assert config_a == config_b
    assert _same({k: v for k, v in extra_a.items() if k != "cohort"},
                 {k: v for k, v in extra_b.items() if k != "cohort"})
    state_a, state_b = a.state_dict(), b.state_dict()
    assert list(state_a) == list(state_b)
    for name in state_a:
        assert torch.equal(state_a[name], state_b[name]), name
    log_a = pd.read_csv(first.log_dir / "metrics.csv")
    log_b = pd.read_csv(second.log_dir / "metrics.csv")
    pd.testing.assert_frame_equal(log_a, log_b, check_exact=True)


class _DrawsRandomNumbers(Callback):
    """Consumes the global generators at every training batch, as any other code may."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        torch.rand(3)
        np.random.rand(3)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("architecture", sorted(REPRODUCIBLE))
def test_same_seed_same_run_with_early_stopping(geometry_cohort, tmp_path, one_thread,
                                                architecture):
    patients = geometry_cohort.patients
    runs = []
    for name, callbacks in (("a", []), ("b", [_DrawsRandomNumbers()])):
        torch.manual_seed(len(runs) + 5)        # the global generators' state does not matter
        runs.append(fit_matcher(geometry_cohort, REPRODUCIBLE[architecture],
                                train_patients=patients[:6],
                                val_patients=patients[6:8], out_dir=tmp_path / name,
                                max_epochs=15, seed=3, progress=False, callbacks=callbacks))
    first, second = runs
    assert 1 <= first.best_epoch and first.epochs < 15     # several epochs, stopped early
    assert_same_run(first, second)


def test_augmented_image_training_is_reproducible(tmp_path, one_thread, make_cohort):
    from lngraph.io.cohort import read_cohort

    cohort = read_cohort(make_cohort(tmp_path / "cohort", patients=4, images=True))
    config = preset("lite").updated(
        model={"encoder2d_widths": (4, 8, 8), "encoder3d_widths": (4, 8, 8),
               "feature_dim": 16, "scb_hidden": 8},
        crops={"size": 16},
        optim={"batch_size": 2, "patience": 1, "augment_flip": True,
               "augment_intensity": 0.1, "augment_noise": 0.02, "augment_drop": 0.2,
               "augment_rotation_deg": 10.0, "augment_scale": 0.05, "augment_jitter_mm": 1.0,
               "schedule": "cosine"})
    runs = [fit_matcher(cohort, config, train_patients=cohort.patients[:3],
                        val_patients=cohort.patients[3:], out_dir=tmp_path / name,
                        max_epochs=3, seed=1, progress=False, callbacks=callbacks)
            for name, callbacks in (("a", []), ("b", [_DrawsRandomNumbers()]))]
    assert_same_run(*runs)
    other = fit_matcher(cohort, config, train_patients=cohort.patients[:3],
                        val_patients=cohort.patients[3:], out_dir=tmp_path / "c",
                        max_epochs=1, seed=2, progress=False)
    state, reference = (load_checkpoint(r.checkpoint)[0].state_dict() for r in (other, runs[0]))
    assert not all(torch.equal(state[k], reference[k]) for k in state)   # the seed matters


def test_augmentation_depends_on_seed_epoch_and_batch_only():
    from torch_geometric.data import HeteroData

    from lngraph.data.views import nine_views
    from lngraph.train.datamodule import augment_crops, augment_generator, flip_crops

    cube = torch.rand(5, 1, 6, 6, 6, generator=torch.Generator().manual_seed(0))

    def augmented(seed, epoch, batch):
        data = HeteroData()
        for node_type in ("src", "dst"):
            data[node_type].cube = cube.clone()
            data[node_type].views = nine_views(cube)
        generator = augment_generator(seed, epoch, batch)
        torch.manual_seed(seed + 100 * epoch + batch + 7)  # the global generator is not used
        return augment_crops(flip_crops(data, generator), 0.1, 0.02, generator)["dst"].cube

    reference = augmented(0, 1, 2)
    torch.rand(10)
    assert torch.equal(augmented(0, 1, 2), reference)
    for other in ((1, 1, 2), (0, 2, 2), (0, 1, 3)):
        assert not torch.equal(augmented(*other), reference), other


_RUN = """
import sys, torch
torch.set_num_threads(1)
from lngraph.io.cohort import read_cohort
from lngraph.models import MatcherConfig
from lngraph.train import fit_matcher
cohort = read_cohort(sys.argv[1])
config = MatcherConfig.from_yaml(sys.argv[2])
fit_matcher(cohort, config, train_patients=cohort.patients[:4], val_patients=cohort.patients[4:],
            out_dir=sys.argv[3], max_epochs=6, seed=4, progress=False)
"""


@pytest.mark.slow
def test_same_run_in_two_processes(tmp_path, make_cohort):
    """Separate processes (other hash seeds, fresh generators, image crops read from the cache
    the first one filled) give the same run."""
    import os
    import subprocess
    import sys

    cohort = make_cohort(tmp_path / "cohort", patients=6, images=True)
    config = preset("lite").updated(
        model={"encoder2d_widths": (4, 8, 8), "encoder3d_widths": (4, 8, 8), "feature_dim": 16,
               "scb_hidden": 8}, crops={"size": 16}, optim={"batch_size": 2, "patience": 2})
    config.to_yaml(tmp_path / "config.yaml")
    for name, hash_seed in (("a", "1"), ("b", "2")):
        subprocess.run([sys.executable, "-c", _RUN, str(cohort), str(tmp_path / "config.yaml"),
                        str(tmp_path / name)], check=True, timeout=600,
                       env={**os.environ, "PYTHONHASHSEED": hash_seed})
    (a, _, extra_a), (b, _, extra_b) = (load_checkpoint(tmp_path / n / "model.ckpt")
                                        for n in "ab")
    assert _same(extra_a, extra_b)
    for name, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[name]), name


def test_init_from_starts_at_the_checkpoints_weights(trained, geometry_cohort, tmp_path):
    result, _ = trained
    start, _, _ = load_checkpoint(result.checkpoint)
    seen = {}

    class FirstWeights(Callback):
        def on_train_start(self, trainer, module):
            seen.update({k: v.detach().clone() for k, v in module.model.state_dict().items()})

    patients = geometry_cohort.patients
    fit_matcher(geometry_cohort, GEOMETRY, train_patients=patients[:4],
                val_patients=patients[16:18], out_dir=tmp_path / "tuned", max_epochs=1,
                seed=1, progress=False, init_from=result.checkpoint,
                callbacks=[FirstWeights()])
    for name, value in start.state_dict().items():
        torch.testing.assert_close(seen[name], value, rtol=0, atol=0)


def test_init_from_a_checkpoint_of_another_model_is_refused(trained, geometry_cohort,
                                                            tmp_path):
    result, _ = trained
    patients = geometry_cohort.patients
    with pytest.raises(InputError, match="do not fit"):
        fit_matcher(geometry_cohort, GEOMETRY.with_values({"model.layers": 1}),
                    train_patients=patients[:4], val_patients=patients[16:18],
                    out_dir=tmp_path / "other", max_epochs=1, progress=False,
                    init_from=result.checkpoint)
