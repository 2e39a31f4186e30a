"""Follow-up series: ``generate_cohort(timepoints=…)`` and ``lngraph synth --timepoints``."""

import hashlib
import json

import numpy as np
import pytest

from lngraph.cli import main as cli_main
from lngraph.io.cohort import read_cohort
from lngraph.synth import generate_cohort
from lngraph.synth.cohort import parse_timepoints, simulate_series
from lngraph.synth.followup import transient_gaps
from lngraph.synth.phantom import simulate_patient
from lngraph.synth.presets import SynthPreset


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    return generate_cohort(tmp_path_factory.mktemp("series") / "c", 4, seed=3, timepoints=4,
                           images=False, progress=False)


def _presence(cohort, patient):
    """``{track_id: [present in scan t]}`` of a patient."""
    scans = cohort.scans_of(patient)
    tracks = sorted({t for s in scans for t in s.nodes.track_id})
    return {t: [t in set(s.nodes.track_id) for s in scans] for t in tracks}


def test_four_scans_per_patient_with_gaps_and_new_nodes(series):
    cohort = read_cohort(series)
    assert all(len(cohort.scans_of(p)) == 4 for p in cohort.patients)
    returning = new_later = 0
    for patient in cohort.patients:
        for track, present in _presence(cohort, patient).items():
            assert track.startswith(f"{patient}_")         # identities stay per patient
            seen = np.flatnonzero(present)
            returning += int(seen[-1] - seen[0] + 1 > len(seen))   # vanished, came back
            new_later += int(seen[0] > 0)
    assert returning >= 2 and new_later >= 2
    meta = json.loads((series / "synth.json").read_text())
    assert meta["timepoints"] == {"min": 4, "max": 4, "gap_probability": 0.04}


def test_the_same_seed_gives_the_same_series(series, tmp_path):
    again = generate_cohort(tmp_path / "c", 4, seed=3, timepoints="4-4", images=False,
                            progress=False)
    assert (again / "nodes.csv").read_bytes() == (series / "nodes.csv").read_bytes()


def test_a_range_is_drawn_per_patient(tmp_path):
    cohort = read_cohort(generate_cohort(tmp_path / "c", 6, seed=1, timepoints=(2, 5),
                                         images=False, progress=False))
    counts = [len(cohort.scans_of(p)) for p in cohort.patients]
    assert all(2 <= n <= 5 for n in counts) and len(set(counts)) > 1


def test_without_gaps_a_series_is_the_default_patient():
    """The series path shares every random stream with simulate_patient: with the number
    of scans it would draw and no gaps, it is the same patient."""
    for i, child in enumerate(np.random.SeedSequence(42).spawn(4)):
        base = simulate_patient(f"P{i}", child)
        again = np.random.SeedSequence(42).spawn(4)[i]
        series = simulate_series(f"P{i}", again, (base.n_scans, base.n_scans), gaps=False)
        assert series.dates == base.dates and series.render_entropy == base.render_entropy
        for a, b in zip(base.annotations, series.annotations, strict=True):
            np.testing.assert_array_equal(a.index, b.index)
            np.testing.assert_array_equal(a.pos, b.pos)


def test_gaps_only_touch_inner_scans_between_annotated_ones():
    sim = simulate_series("P", 5, (6, 6), gaps=False)
    gapped = transient_gaps(sim.timeline, SynthPreset(name="always", p_disappear=2.0),
                            np.random.default_rng(0))     # probability 1: every chance taken
    before, after = sim.timeline.annotated, gapped.annotated
    assert (after <= before).all()
    np.testing.assert_array_equal(after[[0, -1]], before[[0, -1]])
    removed = before & ~after
    assert removed.any()
    t, i = np.nonzero(removed)
    assert before[t - 1, i].all() and before[t + 1, i].all() and after[t - 1, i].all()


def test_default_cohorts_are_unchanged(tmp_path):
    """Byte-for-byte the cohort of before follow-up series existed (update the digest only
    when the default generator is meant to change)."""
    root = generate_cohort(tmp_path / "c", 2, seed=9, images=False, progress=False)
    digest = hashlib.sha256((root / "nodes.csv").read_bytes()).hexdigest()
    assert digest == "2f5c63272bd08e56c24f1ff3f62f37b2bc191742e032ea0a93226cd0e2734afc"
    assert "timepoints" not in json.loads((root / "synth.json").read_text())


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), (4, (4, 4)), ("3", (3, 3)), ("2-10", (2, 10)), ((3, 5), (3, 5)),
])
def test_parse_timepoints(value, expected):
    assert parse_timepoints(value) == expected


@pytest.mark.parametrize("value", ["1", "5-3", "x", "2-99", "3-"])
def test_parse_timepoints_rejects(value):
    with pytest.raises(ValueError, match="timepoints"):
        parse_timepoints(value)


def test_synth_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli_main, "COMMANDS", ("lngraph.cli.synth",))
    assert cli_main.main(["synth", str(tmp_path / "c"), "--patients", "1", "--seed", "2",
                          "--timepoints", "5", "--no-images"]) == 0
    assert len(read_cohort(tmp_path / "c")) == 5
    with pytest.raises(SystemExit):
        cli_main.main(["synth", str(tmp_path / "d"), "--timepoints", "1"])
    assert "timepoints must lie in 2..20" in capsys.readouterr().err
