"""Ctrl-C (SIGINT) in the middle of ``lngraph train`` and ``lngraph synth``, in a real process:
the output folder is the old one, untouched, and no temporary folder is left behind.

The training ones take half a minute (most of it importing Lightning) and are marked slow;
the in-process variants, which raise ``KeyboardInterrupt`` inside the output folder, are in
``test_outputs.py`` and always run.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lngraph.io.cohort import read_cohort

EXAMPLE = Path(__file__).resolve().parents[2] / "data" / "example_cohort"
#: Python ignores SIGINT in a child started with SIGINT ignored (e.g. from a background job):
#: restore the usual handler, then run the command line.
LNGRAPH = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
           "from lngraph.cli.main import main; sys.exit(main(sys.argv[1:]))")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _interrupt_when(args: list[str], ready, timeout: float = 120) -> subprocess.CompletedProcess:
    """Start ``lngraph ARGS``, send SIGINT once ``ready()`` is true, return the result."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", LNGRAPH, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"ended before it was interrupted ({proc.returncode}):\n{err}")
            if time.monotonic() > deadline:
                pytest.fail("never got ready to be interrupted")
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}.")]


@pytest.mark.slow
def test_ctrl_c_during_training_keeps_the_old_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.ckpt").write_text("the old model")
    (run / "logs").mkdir()
    (run / "logs" / "metrics.csv").write_text("old logs")
    before = _tree(run)

    def training() -> bool:  # an epoch is done in the temporary run folder
        return any((t / "lightning" / "best.ckpt").is_file() for t in _temporaries(run))

    result = _interrupt_when(
        ["train", str(EXAMPLE), "--out", str(run), "--overwrite", "--quiet",
         "--accelerator", "cpu", "--max-epochs", "100000", "--set", "optim.patience=100000"],
        training)
    assert result.returncode == 130, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "lngraph train: interrupted"
    assert "Traceback" not in result.stderr
    assert _tree(run) == before and _temporaries(run) == []


@pytest.mark.slow
def test_ctrl_c_during_training_into_a_new_folder_leaves_nothing(tmp_path):
    run = tmp_path / "run"

    def training() -> bool:
        return any((t / "lightning" / "best.ckpt").is_file() for t in _temporaries(run))

    result = _interrupt_when(
        ["train", str(EXAMPLE), "--out", str(run), "--quiet", "--accelerator", "cpu",
         "--max-epochs", "100000", "--set", "optim.patience=100000"], training)
    assert result.returncode == 130, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_during_synth_keeps_the_old_cohort(tmp_path):
    from lngraph.synth import generate_cohort

    cohort = generate_cohort(tmp_path / "cohort", 2, seed=4, images=False, progress=False)
    (cohort / "notes.txt").write_text("kept")
    before = _tree(cohort)

    def rendering() -> bool:  # a first patient's images are written
        return any((t / "images").is_dir() and any((t / "images").iterdir())
                   for t in _temporaries(cohort))

    result = _interrupt_when(["synth", str(cohort), "--patients", "40", "--overwrite"],
                             rendering)
    assert result.returncode == 130, result.stderr
    assert "lngraph synth: interrupted" in result.stderr and "Traceback" not in result.stderr
    assert _tree(cohort) == before and _temporaries(cohort) == []
    assert read_cohort(cohort).patients == ["P0001", "P0002"]
    shutil.rmtree(cohort)
