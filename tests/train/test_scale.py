"""Training at scale: ``lngraph train --workers`` fills the crop cache through
:func:`lngraph.data.cache.precompute_crops`, and (slow) the Lightning strategy flags run
distributed data-parallel training on two CPU processes (gloo backend)."""

import os
import subprocess
import sys

import pytest
import torch

import lngraph.train.datamodule as datamodule
from lngraph.cli.main import main
from lngraph.data.cache import default_cache_dir
from lngraph.models import load_checkpoint


def test_train_workers_fill_the_crop_cache_through_precompute(tmp_path, monkeypatch,
                                                              make_cohort):
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
    # one entry per scan, in the user's crop cache (a temporary XDG_CACHE_HOME here)
    assert len(list(default_cache_dir().glob("*.npz"))) == 6


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(tmp_path, make_cohort):
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
