"""Tests of lngraph.tune and ``lngraph tune``: the search space, the pruning callback, storages,
and (slow) two worker processes on one study, interruption and resuming, the best config
training again."""

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
import torch

from lngraph.cli.main import main
from lngraph.io import write_cohort
from lngraph.io.cohort import NodeTable, Scan, read_cohort
from lngraph.models.config import MatcherConfig, preset
from lngraph.tune.objective import PruningCallback, TuneObjective, config_of
from lngraph.tune.search_space import (
    APPEARANCE,
    ASYMMETRIC,
    COMMON,
    FUSION,
    GEOMETRY,
    GRAPH,
    NO_SCB,
    POSITION,
    SCB,
    SEAG,
    sample_config,
    scale_widths,
    search_space,
)
from lngraph.tune.study import (
    display_url,
    finished_trials,
    open_storage,
    open_study,
    optimize,
    write_report,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "tune.md"
GEOMETRY_BASE = preset("lite").with_values({"model.geometry_only": True})
#: The old fused asymmetric matcher, geometry-only.
ASYMMETRIC_BASE = GEOMETRY_BASE.with_values({"model.architecture": "asymmetric",
                                             "model.seag_learn_q": False})
optuna.logging.set_verbosity(optuna.logging.WARNING)


def make_cohort(path: Path, patients: int = 6, seed: int = 0) -> Path:
    """Geometry-only cohort: per patient two scans of 6 nodes; one node disappears, one is new,
    the rest move by a shared shift plus 2 mm jitter."""
    rng = np.random.default_rng(seed)
    scans = []
    for p in range(patients):
        pos = rng.uniform(-60, 60, (6, 3))
        size = rng.uniform(8, 16, 6)
        tracks = np.array([f"t{p}_{k}" for k in range(6)], object)
        later = pos[:5] + rng.normal(0, 10, 3) + rng.normal(0, 2, (5, 3))
        scans.append(Scan(f"p{p}", f"p{p}a", "0", None,
                          NodeTable.from_arrays(pos, size, track_id=tracks)))
        scans.append(Scan(f"p{p}", f"p{p}b", "1", None, NodeTable.from_arrays(
            np.vstack([later, rng.uniform(-60, 60, (1, 3))]), np.append(size[:5], 10.0),
            track_id=np.append(tracks[:5], f"t{p}_new").astype(object))))
    return write_cohort(path, scans)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# search space ---------------------------------------------------------------------------------
def _ask(base: MatcherConfig, seed: int = 0, n: int = 20):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(n):
        trial = study.ask()
        yield trial, sample_config(trial, base)


@pytest.mark.parametrize("base", [GEOMETRY_BASE, ASYMMETRIC_BASE],
                         ids=["graph", "asymmetric"])
def test_geometry_space_samples_only_what_the_model_uses(base):
    space = search_space(base)
    if base.model.architecture == "graph":      # no SEAG, no fused score
        assert set(space) == set(COMMON) | set(GRAPH) | set(GEOMETRY) | set(POSITION)
    else:                                       # threshold calibrated
        assert set(space) == (set(COMMON) | set(ASYMMETRIC) | set(SEAG) | set(GEOMETRY)
                              | set(POSITION) | set(FUSION))
    assert set(search_space(base.with_values(
        {"protocol.calibrate_threshold": False}))) == set(space) | set(NO_SCB)
    for trial, config in _ask(base):
        assert set(trial.params) == set(space)
        values = config.flat()
        for name, value in trial.params.items():
            assert space[name]._contains(space[name].to_internal_repr(value))
            assert values[name] == value
        # fields outside the space keep the base values
        assert {k: v for k, v in values.items() if k not in space} == {
            k: v for k, v in base.flat().items() if k not in space}


def test_the_graph_space_follows_the_graph_matchers_switches():
    assert not set(search_space(GEOMETRY_BASE)) & (set(ASYMMETRIC) | set(SEAG) | set(FUSION)
                                                   | set(SCB))
    # SEAG as the intra-scan layer brings SEAG's parameters
    seag = GEOMETRY_BASE.with_values({"model.self_layer": "seag"})
    assert set(search_space(seag)) == set(search_space(GEOMETRY_BASE)) | set(SEAG)
    # without positions, no alignment setting; SCB is the asymmetric matcher's only
    assert set(search_space(GEOMETRY_BASE.with_values({"model.position_prior": False}))) == (
        set(search_space(GEOMETRY_BASE)) - set(POSITION))
    image = preset("lite")
    assert set(search_space(image.with_values({"model.use_scb": True}))) == set(
        search_space(image))
    # every sampled graph config is valid: each heads choice divides each feature_dim choice
    for trial, config in _ask(image, n=30):
        assert config.model.feature_dim % config.model.heads == 0
        assert 1 <= config.model.layers <= 6 and config.optim.schedule in ("constant", "cosine")
        assert 0 <= config.optim.augment_drop <= 0.3
        assert "model.sigma_init" not in trial.params


def test_appearance_space_scales_widths_and_conditions_radius_factor():
    # the asymmetric matcher with SCB
    base = preset("lite").with_values({"model.use_scb": True,
                                       "model.architecture": "asymmetric"})
    asymmetric = set(COMMON) | set(ASYMMETRIC) | set(SEAG) | set(APPEARANCE)
    assert set(search_space(base)) == (asymmetric | set(SCB) | set(POSITION) | set(FUSION)
                                       ) - {"model.scb_threshold"}    # calibrated in lite
    uncalibrated = base.with_values({"protocol.calibrate_threshold": False})
    assert "model.scb_threshold" in search_space(uncalibrated)
    assert set(search_space(uncalibrated.with_values({"model.use_scb": False}))) == (
        asymmetric | set(NO_SCB) | set(POSITION) | set(FUSION))
    # a threshold chosen on validation is not searched; no prior, no fusion terms
    assert set(search_space(base.with_values({"model.use_scb": False,
                                              "model.position_prior": False}))) == asymmetric
    # the graph matcher of lite
    assert set(search_space(preset("lite"))) == (set(COMMON) | set(GRAPH) | set(APPEARANCE)
                                                 | set(POSITION))
    modes = set()
    for trial, config in _ask(base, n=30):
        modes.add(config.crops.mode)
        assert ("crops.radius_factor" in trial.params) == (config.crops.mode == "radius")
        if config.crops.mode == "fixed":
            assert config.crops.radius_factor == base.crops.radius_factor
        m = trial.params["width_multiplier"]
        assert config.model.encoder2d_widths == scale_widths(base.model.encoder2d_widths, m)
        assert config.model.encoder3d_widths == scale_widths(base.model.encoder3d_widths, m)
        assert "width_multiplier" not in config.flat()
    assert modes == {"fixed", "radius"}
    assert scale_widths((8, 16, 32), 0.5) == (4, 8, 16)
    assert scale_widths((1, 3), 0.5) == (1, 2)


def test_fixed_trial_rebuilds_the_sampled_config():
    for base in (GEOMETRY_BASE, preset("lite"), preset("paper")):
        for trial, config in _ask(base, seed=3, n=5):
            assert sample_config(optuna.trial.FixedTrial(trial.params), base) == config
            assert MatcherConfig.from_dict(config.to_dict()) == config


def test_docs_list_every_searched_parameter():
    if not DOCS.is_file():
        pytest.skip(f"{DOCS} not found")
    text = DOCS.read_text(encoding="utf-8")
    for name in {**COMMON, **GRAPH, **ASYMMETRIC, **SEAG, **GEOMETRY, **APPEARANCE, **SCB,
                 **NO_SCB, **POSITION, **FUSION}:
        assert f"`{name}`" in text, name


# pruning callback -----------------------------------------------------------------------------
def _trainer(epoch: int, score: float | None, sanity: bool = False):
    metrics = {} if score is None else {"val_score": torch.tensor(score)}
    return SimpleNamespace(current_epoch=epoch, callback_metrics=metrics, sanity_checking=sanity)


def test_pruning_callback_reports_each_epoch_and_prunes_below_threshold():
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.ThresholdPruner(lower=0.5))
    trial = study.ask()
    callback = PruningCallback(trial)
    callback.on_validation_end(_trainer(0, 0.9, sanity=True), None)  # sanity check: ignored
    callback.on_validation_end(_trainer(0, None), None)  # nothing logged: ignored
    callback.on_validation_end(_trainer(0, 0.8), None)
    callback.on_validation_end(_trainer(1, 0.7), None)
    with pytest.raises(optuna.TrialPruned, match=r"after epoch 2: val_score = 0\.2000"):
        callback.on_validation_end(_trainer(2, 0.2), None)
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    assert study.trials[0].intermediate_values == pytest.approx({0: 0.8, 1: 0.7, 2: 0.2})


def test_pruning_stops_a_real_training_run(tmp_path):
    from lngraph.train import fit_matcher

    cohort = read_cohort(make_cohort(tmp_path / "cohort", patients=3))
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.ThresholdPruner(lower=2.5))

    def objective(trial):
        fit_matcher(cohort, GEOMETRY_BASE, train_patients=["p0", "p1"], val_patients=["p2"],
                    out_dir=tmp_path / "run", max_epochs=3, progress=False,
                    accelerator="cpu", callbacks=[PruningCallback(trial)])
        return 0.0

    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert list(trial.intermediate_values) == [0]  # pruned after the first epoch
    assert 0.0 <= trial.intermediate_values[0] <= 2.0


# storages and studies -------------------------------------------------------------------------
def test_storage_urls(tmp_path):
    from optuna.storages import JournalStorage, RDBStorage

    assert isinstance(open_storage(f"journal:{tmp_path / 'a' / 'study.log'}"), JournalStorage)
    assert isinstance(open_storage(f"sqlite:///{tmp_path / 'b' / 'study.db'}"), RDBStorage)
    assert (tmp_path / "b" / "study.db").is_file()
    with pytest.raises(ValueError, match="is not a storage URL; use sqlite:///FILE"):
        open_storage(str(tmp_path / "study.db"))
    secret = "postgresql://me:hunter2@localhost:1/db"
    assert "hunter2" not in display_url(secret) and "me:***@localhost" in display_url(secret)
    with pytest.raises(ValueError, match="cannot open storage") as error:
        open_storage(secret)
    assert "hunter2" not in str(error.value)


def _objective(tmp_path, cohort, base=GEOMETRY_BASE, val=("p2",)):
    return TuneObjective(cohort, base, ("p0", "p1"), val, tmp_path / "out", max_epochs=1)


def test_study_refuses_to_resume_with_other_settings(tmp_path):
    cohort = read_cohort(make_cohort(tmp_path / "cohort", patients=4))
    url = f"journal:{tmp_path / 'study.log'}"
    open_study(open_storage(url), "s", _objective(tmp_path, cohort))
    open_study(open_storage(url), "s", _objective(tmp_path, cohort))  # same settings: fine
    other = _objective(tmp_path, cohort,
                       base=GEOMETRY_BASE.with_values({"optim.batch_size": 2}))
    with pytest.raises(ValueError,
                       match=r"different base_config \(optim\.batch_size: 4 there, 2 now\)"):
        open_study(open_storage(url), "s", other)
    with pytest.raises(ValueError, match="different val_patients"):
        open_study(open_storage(url), "s", _objective(tmp_path, cohort, val=("p3",)))
    with pytest.raises(ValueError, match="tuning needs validation patients"):
        _objective(tmp_path, cohort, val=())
    # an image config on a cohort without images becomes geometry-only, as training would
    assert _objective(tmp_path, cohort, base=preset("lite")).base == GEOMETRY_BASE


def test_cli_reports_a_bad_storage_cleanly(tmp_path, capsys):
    cohort = make_cohort(tmp_path / "cohort", patients=3)
    code = main(["tune", str(cohort), "--trials", "1", "--out", str(tmp_path / "out"),
                 "--storage", "study.db"])
    assert code == 2
    assert "lngraph tune: error: --storage: 'study.db' is not a storage URL" in \
        capsys.readouterr().err


def test_report_of_a_study_without_complete_trials(tmp_path):
    study = optuna.create_study(direction="maximize")
    study.tell(study.ask(), state=optuna.trial.TrialState.PRUNED)
    assert set(write_report(study, tmp_path)) == {"trials"}
    assert (tmp_path / "trials.csv").read_text(encoding="utf-8").startswith("number,state,value")


# small, one-sided and empty cohorts -----------------------------------------------------------
def _write(path: Path, nodes: dict[str, list[list[str]]]) -> Path:
    """A geometry-only cohort folder: ``{patient: [track ids of each scan]}``."""
    scans = []
    for patient, per_scan in nodes.items():
        for t, tracks in enumerate(per_scan):
            pos = np.arange(3 * len(tracks), dtype=float).reshape(-1, 3) * 7.0
            scans.append(Scan(patient, f"{patient}_{t}", str(t), None, NodeTable.from_arrays(
                pos, np.full(len(tracks), 8.0), track_id=np.array(tracks, object))))
    return write_cohort(path, scans)


def test_objective_refuses_a_split_without_nodes_or_validation_pairs(tmp_path):
    empty = read_cohort(_write(tmp_path / "empty", {f"p{k}": [[], []] for k in range(3)}))
    with pytest.raises(ValueError, match=r"no training pair with nodes among the training "
                                         r"patients: the scans of the 2 training patient\(s\) "
                                         r"\(p0, p1\) have no annotated node"):
        TuneObjective(empty, GEOMETRY_BASE, ("p0", "p1"), ("p2",), tmp_path / "out")
    lonely = read_cohort(_write(tmp_path / "lonely", {"p0": [["a", "b"], ["a", "c"]],
                                                      "p1": [["a", "b"], ["b"]],
                                                      "p2": [["a", "b"]]}))
    with pytest.raises(ValueError, match=r"tuning needs validation pairs with nodes .*: no "
                                         r"validation pair: the 1 validation patient\(s\) "
                                         r"\(p2\) have one scan each"):
        TuneObjective(lonely, GEOMETRY_BASE, ("p0", "p1"), ("p2",), tmp_path / "out")
    with pytest.raises(ValueError, match="are both training and validation"):
        TuneObjective(lonely, GEOMETRY_BASE, ("p0", "p1"), ("p1",), tmp_path / "out")
    code = main(["tune", str(tmp_path / "empty"), "--trials", "1", "--out",
                 str(tmp_path / "cli")])
    assert code == 2    # the CLI reports the ValueError as an input error, no traceback


@pytest.mark.parametrize("base", [GEOMETRY_BASE, ASYMMETRIC_BASE],
                         ids=["graph", "asymmetric"])
def test_one_sided_validation_completes_the_trial(tmp_path, base):
    from lngraph.train.calibrate import CalibrationWarning

    cohort = read_cohort(_write(tmp_path / "cohort", {
        "p0": [["a", "b", "c"], ["a", "b", "d"]], "p1": [["a", "b"], ["a", "c"]],
        "p2": [["a"], ["a"]]}))     # validation: one node that persists
    objective = TuneObjective(cohort, base, ("p0", "p1"), ("p2",), tmp_path / "out",
                              max_epochs=1)
    study = optuna.create_study(direction="maximize")
    with pytest.warns(CalibrationWarning):
        study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    # only the asymmetric matcher has fusion weights to calibrate; one-sided validation pairs
    # fit neither the threshold nor the confidence map
    assert set(trial.user_attrs["calibration_skipped"]) == (
        {"fusion", "threshold", "confidence"} if base is ASYMMETRIC_BASE
        else {"threshold", "confidence"})


def test_a_trial_whose_training_fails_is_recorded_and_the_study_goes_on(tmp_path, monkeypatch):
    import lngraph.train

    calls = []

    def diverges(*args, **kwargs):
        calls.append(kwargs["out_dir"])
        raise ValueError("training diverged: the best epoch (0) has non-finite weights")

    monkeypatch.setattr(lngraph.train, "fit_matcher", diverges)
    cohort = read_cohort(make_cohort(tmp_path / "cohort", patients=3))
    url = f"journal:{tmp_path / 'study.log'}"
    optimize(url, "s", _objective(tmp_path, cohort), trials=2)
    study = _load(url)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] * 2
    assert study.trials[0].user_attrs["error"].startswith("training diverged")
    assert len(calls) == 2 and finished_trials(study) == 0


@pytest.mark.slow
def test_tune_on_a_small_easy_synthetic_cohort(tmp_path):
    from lngraph.synth import generate_cohort

    cohort = generate_cohort(tmp_path / "cohort", 6, 0, preset="easy", images=False,
                             progress=False)
    code = main(["tune", str(cohort), "--trials", "2", "--max-epochs", "2", "--out",
                 str(tmp_path / "out")])
    assert code == 0
    study = _load(f"sqlite:///{tmp_path / 'out' / 'study.db'}", name="lngraph")
    assert finished_trials(study) == 2


# end to end -----------------------------------------------------------------------------------
def _tune(cohort, out, url, trials, *extra, **popen):
    return subprocess.Popen(
        [sys.executable, "-m", "lngraph", "tune", str(cohort), "--trials", str(trials),
         "--out", str(out), "--storage", url, "--study-name", "s", "--max-epochs", "2", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"}, **popen)


def _load(url, name="s"):
    return optuna.load_study(study_name=name, storage=open_storage(url))


@pytest.mark.slow
def test_two_worker_processes_share_one_study(tmp_path):
    cohort = make_cohort(tmp_path / "cohort")
    url = f"journal:{tmp_path / 'study.log'}"
    workers = [_tune(cohort, tmp_path / f"out{k}", url, 4, "--seed", str(k)) for k in range(2)]
    for worker in workers:
        output = worker.communicate(timeout=600)[0]
        assert worker.returncode == 0, output
    study = _load(url)
    assert 4 <= finished_trials(study) <= 5  # the budget, plus at most one trial in flight
    ran_by = {t.user_attrs["worker"] for t in study.trials}
    assert len(ran_by) == 2  # both processes contributed trials
    for k in range(2):  # each worker wrote the report of the shared study
        best = MatcherConfig.from_yaml(tmp_path / f"out{k}" / "best_config.yaml")
        assert best == replace(config_of(study.best_trial), name=best.name)
        assert {p.name for p in (tmp_path / f"out{k}").glob("*.png")} == {
            "history.png", "intermediate.png", "importance.png"}
    # --n-jobs: two worker processes of one command extend the same study
    extra = _tune(cohort, tmp_path / "out2", url, 6, "--n-jobs", "2")
    output = extra.communicate(timeout=600)[0]
    assert extra.returncode == 0, output
    assert 6 <= finished_trials(_load(url)) <= 7


@pytest.mark.slow
def test_interrupted_study_resumes_and_its_best_config_trains(tmp_path):
    cohort = make_cohort(tmp_path / "cohort")
    out = tmp_path / "out"
    url = f"sqlite:///{tmp_path / 'study.db'}"
    run = _tune(cohort, out, url, 50, "--seed", "0", start_new_session=True)
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        time.sleep(2)
        if (tmp_path / "study.db").is_file():
            try:
                if finished_trials(_load(url)) >= 1:
                    break
            except KeyError:  # the study is not created yet
                continue
    os.killpg(run.pid, signal.SIGINT)  # Ctrl-C
    output = run.communicate(timeout=300)[0]
    assert run.returncode == 130, output
    assert "interrupted: rerun the same command to resume" in output
    done = finished_trials(_load(url))
    assert 1 <= done < 50
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in _load(url).trials)

    resumed = _tune(cohort, out, url, done + 1, "--seed", "0")
    output = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, output
    assert re.search(rf"{done} of {done + 1} trials finished", output)
    assert finished_trials(_load(url)) == done + 1

    best = MatcherConfig.from_yaml(out / "best_config.yaml")
    assert best.model.geometry_only and best.optim.max_epochs == GEOMETRY_BASE.optim.max_epochs
    code = main(["train", str(cohort), "--config", str(out / "best_config.yaml"),
                 "--out", str(tmp_path / "run"), "--max-epochs", "1", "--quiet"])
    assert code == 0
    assert MatcherConfig.from_yaml(tmp_path / "run" / "config.yaml") == best
