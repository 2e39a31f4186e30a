"""Training at scale: ``lngraph train --workers`` fills the crop cache through
:func:`lngraph.data.cache.precompute_crops`, and (slow) the Lightning strategy flags run
distributed data-parallel training on two CPU processes (gloo backend)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
import torch

import lngraph.train.datamodule as datamodule
from lngraph.cli.main import main
from lngraph.io import write_cohort, write_image
from lngraph.io.cohort import NodeTable, Scan
from lngraph.models import load_checkpoint


def make_cohort(path, patients=3, images=False, seed=0):
    """Per patient two scans of four nodes (one disappears, one is new); with ``images`` each
    scan gets a 40×40×30 noise volume of 2 mm voxels that holds every node."""
    rng = np.random.default_rng(seed)
    scans = []
    for p in range(patients):
        pos = rng.uniform(-15, 15, (4, 3))
        tracks = np.array([f"t{p}_{k}" for k in range(4)], object)
        later = np.vstack([pos[:3] + rng.normal(0, 2, (3, 3)), rng.uniform(-15, 15, (1, 3))])
        for scan_id, t, centres, track in ((f"p{p}a", "0", pos, tracks),
                                           (f"p{p}b", "1", later,
                                            np.append(tracks[:3], f"t{p}_new").astype(object))):
            image = None
            if images:
                volume = sitk.GetImageFromArray(
                    rng.normal(40, 80, (30, 40, 40)).astype(np.int16))
                volume.SetSpacing((2.0, 2.0, 2.0))
                volume.SetOrigin((-39.0, -39.0, -29.0))
                image = write_image(volume, path / "images" / f"{scan_id}.nrrd")
            scans.append(Scan(f"p{p}", scan_id, t, image, NodeTable.from_arrays(
                centres, np.full(4, 8.0), track_id=track)))
    return write_cohort(path, scans)


def test_train_workers_fill_the_crop_cache_through_precompute(tmp_path, monkeypatch):
    cohort = make_cohort(tmp_path / "cohort", images=True)
    calls = []

    def spy(cohort, params, **kwargs):
        calls.append(kwargs)
        return precompute(cohort, params, **{**kwargs, "workers": 1})  # keep the test light

    precompute = datamodule.precompute_crops
    monkeypatch.setattr(datamodule, "precompute_crops", spy)
    torch.set_num_threads(1)
    code = main(["train", str(cohort), "--out", str(tmp_path / "run"), "--workers", "3",
                 "--max-epochs", "1", "--quiet"])
    assert code == 0
    assert [(c["workers"], c["progress"]) for c in calls] == [(3, False)]
    assert len(list((cohort / ".lngraph_cache").glob("*.npz"))) == 6  # one entry per scan


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(tmp_path):
    cohort = make_cohort(tmp_path / "cohort", patients=5)
    run = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "lngraph", "train", str(cohort), "--out", str(run),
         "--max-epochs", "1", "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp",
         "--num-nodes", "1", "--quiet"],
        capture_output=True, text=True, timeout=900,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    model, config, extra = load_checkpoint(run / "model.ckpt")
    assert config.model.geometry_only and extra["epochs"] == 1
    assert 0.0 <= extra["val_metrics"]["score"] <= 2.0
    assert (run / "logs" / "version_0" / "metrics.csv").is_file()
