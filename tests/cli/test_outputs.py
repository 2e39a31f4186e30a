"""All-or-nothing output folders, safe file names, the crop cache location and the exit codes
of ``lngraph`` (docs/errors.md)."""

import errno
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from lngraph.cli import main as cli_main
from lngraph.data.cache import default_cache_dir
from lngraph.io.atomic import atomic_folder, safe_name, unique_name
from lngraph.io.errors import InputError

EXAMPLE = Path(__file__).resolve().parents[2] / "data" / "example_cohort"


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _siblings(folder: Path) -> list[str]:
    """Everything beside ``folder`` in its parent except ``folder`` itself (temporaries)."""
    return sorted(p.name for p in folder.parent.iterdir() if p.name != folder.name)


@pytest.fixture
def old_folder(tmp_path) -> Path:
    folder = tmp_path / "out"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("old a")
    (folder / "sub" / "b.txt").write_text("old b")
    return folder


# --- atomic_folder -------------------------------------------------------------------------

def test_atomic_folder_creates_the_folder_at_the_end(tmp_path):
    target = tmp_path / "deep" / "out"
    with atomic_folder(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".out.")
        (tmp / "x.txt").write_text("new")
        assert not target.exists()
    assert _tree(target) == {"x.txt": b"new"} and _siblings(target) == []


def test_atomic_folder_replaces_a_folder_with_overwrite(old_folder):
    with atomic_folder(old_folder, overwrite=True) as tmp:
        (tmp / "x.txt").write_text("new")
        assert (old_folder / "a.txt").read_text() == "old a"  # untouched until the end
    assert _tree(old_folder) == {"x.txt": b"new"}  # nothing of the old folder is left
    assert _siblings(old_folder) == []


def test_atomic_folder_refuses_a_non_empty_folder(old_folder):
    before = _tree(old_folder)
    with pytest.raises(InputError, match="already exists and is not empty; pass --overwrite"):
        with atomic_folder(old_folder):
            pytest.fail("the body must not run")
    assert _tree(old_folder) == before and _siblings(old_folder) == []


def test_atomic_folder_uses_an_empty_folder_and_refuses_a_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with atomic_folder(tmp_path / "empty") as tmp:
        (tmp / "x").write_text("1")
    assert _tree(tmp_path / "empty") == {"x": b"1"}
    (tmp_path / "file").write_text("f")
    with pytest.raises(InputError, match="file: exists and is not a folder"):
        with atomic_folder(tmp_path / "file", overwrite=True):
            pass
    assert (tmp_path / "file").read_text() == "f"


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt(), SystemExit(1)])
def test_atomic_folder_keeps_the_old_folder_when_the_body_fails(old_folder, error):
    before = _tree(old_folder)
    with pytest.raises(type(error)):
        with atomic_folder(old_folder, overwrite=True) as tmp:
            (tmp / "model.ckpt").write_text("half")
            raise error
    assert _tree(old_folder) == before and _siblings(old_folder) == []


def test_atomic_folder_leaves_no_folder_when_there_was_none(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_folder(tmp_path / "new") as tmp:
            (tmp / "x").write_text("half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_atomic_folder_replaces_the_target_of_a_link(old_folder, tmp_path):
    link = tmp_path / "latest"
    link.symlink_to(old_folder)
    with atomic_folder(link, overwrite=True) as tmp:
        (tmp / "x").write_text("new")
    assert link.is_symlink() and _tree(old_folder) == {"x": b"new"}


# --- safe names ----------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["..", ".", "../../etc/passwd", "/abs/path", "a/b", "a\\b",
                                  "nul\0byte", ".hidden", "", " ", "x" * 400, "ü-scan",
                                  "C:\\scan"])
def test_safe_name_stays_in_its_folder(tmp_path, text):
    name = safe_name(text)
    assert 0 < len(name) <= 96 and not name.startswith(".")
    assert "/" not in name and "\\" not in name and "\0" not in name
    path = tmp_path / f"{name}.mrk.json"
    assert path.resolve().parent == tmp_path.resolve()
    path.write_text("x")  # a valid file name here


def test_safe_name_keeps_plain_ids_and_never_merges_two():
    assert safe_name("P0001_T0") == "P0001_T0" and safe_name("case-1.2") == "case-1.2"
    ids = ["a/b", "a_b", "a b", "a\\b", "a_b_" + "0" * 8, "x" * 200, "x" * 201]
    assert len({safe_name(i) for i in ids}) == len(ids)
    assert safe_name("a/b").startswith("a_b_") and safe_name("a_b") == "a_b"


def test_unique_name_keeps_names_apart_up_to_case():
    used: set[str] = set()
    assert unique_name("S1", "S1", used) == "S1"
    other = unique_name("s1", "s1", used)
    assert other != "s1" and other.startswith("s1_")
    assert unique_name("S2", "S2", used) == "S2"


# --- the crop cache ------------------------------------------------------------------------

def test_the_default_cache_is_the_user_cache(monkeypatch, tmp_path, user_cache_dir):
    assert default_cache_dir() == user_cache_dir / "lngraph" / "crops"  # tests' own cache
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    if sys.platform.startswith("linux"):
        assert default_cache_dir() == tmp_path / ".cache" / "lngraph" / "crops"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec: absolute only
    assert "relative" not in str(default_cache_dir())


# --- exit codes ----------------------------------------------------------------------------

@pytest.fixture
def command(monkeypatch):
    """Run ``lngraph synth`` with its ``run`` replaced by the given function."""
    import lngraph.cli.synth as synth

    monkeypatch.setattr(cli_main, "COMMANDS", ("lngraph.cli.synth",))

    def run(func, *options):
        monkeypatch.setattr(synth, "run", func)
        return cli_main.main([*options, "synth", "out"])
    return run


def _raise(error):
    def func(args):
        raise error
    return func


def test_input_errors_exit_2_with_one_line(command, capsys):
    assert command(_raise(InputError("x.csv", "bad\nthing", line=3))) == 2
    err = capsys.readouterr().err
    assert err == "lngraph synth: error: x.csv, line 3: bad thing\n"
    assert command(_raise(cli_main.UsageError("give --a or --b"))) == 2
    assert capsys.readouterr().err == "lngraph synth: error: give --a or --b\n"


def test_debug_shows_the_traceback(command, capsys):
    assert command(_raise(InputError("x.csv", "bad")), "--debug") == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.endswith("lngraph synth: error: x.csv: bad\n")


def test_file_system_refusals_exit_2(command, capsys):
    error = PermissionError(errno.EACCES, "Permission denied", "/root/out")
    assert command(_raise(error)) == 2
    assert capsys.readouterr().err == "lngraph synth: error: /root/out: Permission denied\n"


def test_bugs_keep_their_traceback(command):
    with pytest.raises(ZeroDivisionError):
        command(_raise(ZeroDivisionError("a bug")))
    with pytest.raises(FileNotFoundError):  # not in USER_OS_ERRORS: may be a bug
        command(_raise(FileNotFoundError(errno.ENOENT, "gone", "x")))


def test_ctrl_c_exits_130(command, capsys):
    assert command(_raise(KeyboardInterrupt())) == 130
    assert capsys.readouterr().err == "lngraph synth: interrupted\n"


def test_ctrl_c_turned_into_an_exit_by_a_library_is_still_130(command, capsys):
    """Lightning catches KeyboardInterrupt and calls ``sys.exit(1)``."""
    # A real Ctrl-C as a user's shell delivers it: Python's own handler, SIGINT not blocked
    # (earlier tests' libraries may leave either changed in this process).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:
        _check_ctrl_c_exit(command, capsys)
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _check_ctrl_c_exit(command, capsys):
    def func(args):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            sys.exit(1)
    assert command(func) == 130
    assert capsys.readouterr().err == "lngraph synth: interrupted\n"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


# --- commands: refusal, replacement, interruption ------------------------------------------

def _run_cli(monkeypatch, *modules):
    monkeypatch.setattr(cli_main, "COMMANDS", modules)
    return cli_main.main


def test_train_refuses_a_used_run_folder_before_training(monkeypatch, old_folder, capsys):
    import lngraph.train as train

    monkeypatch.setattr(train, "fit_matcher", _raise(AssertionError("must not train")))
    run = _run_cli(monkeypatch, "lngraph.cli.train")
    before = _tree(old_folder)
    assert run(["train", str(EXAMPLE), "--out", str(old_folder), "--quiet"]) == 2
    assert f"{old_folder}: already exists and is not empty; pass --overwrite" in \
        capsys.readouterr().err
    assert _tree(old_folder) == before


def test_train_interrupted_keeps_the_old_run(monkeypatch, old_folder, capsys):
    """Ctrl-C during training with --overwrite: no new model.ckpt beside old logs, no
    temporary folder; exit 130."""
    import lngraph.train as train

    def fit(cohort, config, *, out_dir, **kwargs):
        (Path(out_dir) / "logs").mkdir(parents=True)
        (Path(out_dir) / "model.ckpt").write_text("new, half-trained")
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "fit_matcher", fit)
    run = _run_cli(monkeypatch, "lngraph.cli.train")
    before = _tree(old_folder)
    assert run(["train", str(EXAMPLE), "--out", str(old_folder), "--overwrite",
                "--quiet"]) == 130
    assert "lngraph train: interrupted" in capsys.readouterr().err
    assert _tree(old_folder) == before and _siblings(old_folder) == []


def test_train_refuses_an_output_folder_holding_the_cohort(monkeypatch, tmp_path, capsys):
    import shutil

    cohort = tmp_path / "work" / "cohort"
    shutil.copytree(EXAMPLE, cohort)
    run = _run_cli(monkeypatch, "lngraph.cli.train")
    assert run(["train", str(cohort), "--out", str(tmp_path / "work"), "--overwrite",
                "--quiet"]) == 2
    assert f"{tmp_path / 'work'}: holds the cohort ({cohort})" in capsys.readouterr().err
    assert (cohort / "nodes.csv").is_file()


def test_train_without_validation_says_so(monkeypatch, tmp_path, capsys):
    run = _run_cli(monkeypatch, "lngraph.cli.train")
    out = tmp_path / "run"
    assert run(["train", str(EXAMPLE), "--out", str(out), "--fold", "0", "--folds", "2",
                "--max-epochs", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "no validation patients: the model is the epoch with the lowest training loss" \
        in printed and "(validation)" not in printed
    assert f"logs:    {out / 'logs'}" in printed and ".tmp" not in printed
    assert _siblings(out) == []


def test_train_with_no_training_pair_is_an_input_error(monkeypatch, tmp_path, capsys):
    from lngraph.io.cohort import NodeTable, Scan, write_cohort

    scans = [Scan(f"P{k}", f"S{k}", "1", None, NodeTable.from_arrays([[0.0, 0, 0]], [10.0]))
             for k in range(3)]  # one scan per patient: no pair
    cohort = write_cohort(tmp_path / "single", scans)
    run = _run_cli(monkeypatch, "lngraph.cli.train")
    assert run(["train", str(cohort), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lngraph train: error: {cohort}: no consecutive scan pair with nodes")
    assert "Traceback" not in err and not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def geometry_model(tmp_path_factory):
    import torch

    from lngraph.models import build_matcher, preset, save_checkpoint

    torch.manual_seed(0)
    config = preset("lite").with_values({"model.geometry_only": True})
    return save_checkpoint(tmp_path_factory.mktemp("model") / "model.ckpt",
                           build_matcher(config), config)


def test_match_into_a_reused_folder_keeps_no_earlier_markups(monkeypatch, geometry_model,
                                                              tmp_path, capsys):
    run = _run_cli(monkeypatch, "lngraph.cli.match")
    out = tmp_path / "out"
    (out / "markups" / "OLD__PAIR").mkdir(parents=True)
    (out / "markups" / "OLD__PAIR" / "OLD.mrk.json").write_text("{}")
    args = ["match", "--model", str(geometry_model), str(EXAMPLE), "--out", str(out)]
    assert run(args) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert run([*args, "--overwrite"]) == 0
    assert not (out / "markups" / "OLD__PAIR").exists() and (out / "matches.csv").is_file()
    assert _siblings(out) == []


def test_match_refuses_to_replace_the_folder_of_its_model(monkeypatch, geometry_model,
                                                           tmp_path, capsys):
    run = _run_cli(monkeypatch, "lngraph.cli.match")
    folder = geometry_model.parent
    assert run(["match", "--model", str(geometry_model), str(EXAMPLE),
                "--out", str(folder), "--overwrite"]) == 2
    assert "holds the model" in capsys.readouterr().err and geometry_model.is_file()


def test_match_names_stay_inside_the_output_folder(geometry_model, tmp_path):
    import numpy as np

    from lngraph.cli.match import match_pairs
    from lngraph.io.cohort import Cohort, NodeTable, Scan
    from lngraph.models import load_checkpoint

    nodes = NodeTable.from_arrays(np.array([[0.0, 0, 0], [30, 0, 0]]), [10.0, 8.0])
    ids = ["../../escape", "/abs/olute", "S1", "s1", "x" * 300]
    scans = [Scan("P", scan_id, str(t), None, nodes) for t, scan_id in enumerate(ids)]
    cohort = Cohort(scans)
    model, _, _ = load_checkpoint(geometry_model)
    out = tmp_path / "deep" / "out"
    out.mkdir(parents=True)
    match_pairs(model, cohort.pairs("all"), out, figure=False, cache_dir=None,
                progress=False)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all(out.resolve() in p.resolve().parents for p in written)
    folders = [p.name for p in (out / "markups").iterdir()]
    assert len(folders) == len({f.casefold() for f in folders}) == len(cohort.pairs("all"))
    assert all(len(f) < 255 for f in folders)
    for folder in (out / "markups").iterdir():
        assert len(list(folder.iterdir())) == 2  # both scans, never one file over the other


def test_synth_refuses_an_existing_cohort_without_overwrite(monkeypatch, tmp_path, capsys):
    run = _run_cli(monkeypatch, "lngraph.cli.synth")
    out = tmp_path / "c"
    assert run(["synth", str(out), "--patients", "2", "--no-images"]) == 0
    before = _tree(out)
    assert run(["synth", str(out), "--patients", "1", "--no-images"]) == 2
    assert "pass --overwrite" in capsys.readouterr().err and _tree(out) == before
    assert run(["synth", str(out), "--patients", "1", "--no-images", "--overwrite"]) == 0
    assert json.loads((out / "synth.json").read_text())["patients"] == 1
    assert _siblings(out) == []


def test_synth_interrupted_keeps_the_old_cohort(monkeypatch, tmp_path, capsys):
    import lngraph.synth.cohort as synth_cohort

    run = _run_cli(monkeypatch, "lngraph.cli.synth")
    out = tmp_path / "c"
    assert run(["synth", str(out), "--patients", "2", "--no-images"]) == 0
    before = _tree(out)
    real = synth_cohort._make_patient

    def make(job):
        if job[0] == 1:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(synth_cohort, "_make_patient", make)
    assert run(["synth", str(out), "--patients", "3", "--seed", "1", "--no-images",
                "--overwrite"]) == 130
    assert _tree(out) == before and _siblings(out) == []


def test_bench_refuses_a_used_folder(monkeypatch, old_folder, capsys):
    run = _run_cli(monkeypatch, "lngraph.cli.bench")
    assert run(["bench", str(EXAMPLE), "--methods", "nearest", "--folds", "2", "--out",
                str(old_folder), "--quiet"]) == 2
    assert "pass --overwrite" in capsys.readouterr().err


def test_bench_bad_yaml_in_set_is_a_usage_error(monkeypatch, tmp_path, capsys):
    run = _run_cli(monkeypatch, "lngraph.cli.bench")
    assert run(["bench", str(EXAMPLE), "--set", "nearest.gate_mm=[1", "--out",
                str(tmp_path / "b")]) == 2
    assert "lngraph bench: error: --set nearest.gate_mm: cannot read '[1'" in \
        capsys.readouterr().err


def test_demo_refuses_a_foreign_folder(monkeypatch, old_folder, capsys):
    run = _run_cli(monkeypatch, "lngraph.cli.demo")
    assert run(["demo", "--out", str(old_folder), "--patients", "3"]) == 2
    assert "pass --overwrite" in capsys.readouterr().err


def test_demo_output_is_recognised(tmp_path):
    from lngraph.cli.demo import is_demo_output

    demo = tmp_path / "demo"
    (demo / "cohort").mkdir(parents=True)
    (demo / "cohort" / "synth.json").write_text("{}")
    (demo / "metrics.json").write_text("{}")
    assert is_demo_output(demo)
    (demo / "thesis.tex").write_text("mine")
    assert not is_demo_output(demo) and not is_demo_output(tmp_path / "absent")


def test_evaluate_refuses_a_folder_as_out(monkeypatch, tmp_path, capsys):
    run = _run_cli(monkeypatch, "lngraph.cli.evaluate")
    assert run(["evaluate", "--predictions", str(tmp_path / "m.csv"), str(EXAMPLE),
                "--out", str(tmp_path)]) == 2
    assert f"{tmp_path}: is a folder; --out names the file to write" in capsys.readouterr().err


def test_tune_storage_folder_that_cannot_be_made(monkeypatch, tmp_path, capsys):
    run = _run_cli(monkeypatch, "lngraph.cli.tune")
    (tmp_path / "file").write_text("x")
    assert run(["tune", str(EXAMPLE), "--trials", "1", "--out", str(tmp_path / "t"),
                "--storage", f"sqlite:///{tmp_path / 'file' / 'study.db'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lngraph tune: error: --storage: cannot create the folder of")
    assert "Traceback" not in err
    assert run(["tune", str(EXAMPLE), "--trials", "1", "--out", str(tmp_path / "file")]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
