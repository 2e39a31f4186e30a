"""Track metrics (IDF1, ID switches, fragmentations, pairwise) and the tracks.csv reader."""

import math

import numpy as np
import pytest

from lngraph.io.cohort import Cohort, NodeTable, Scan
from lngraph.io.errors import InputError
from lngraph.metrics.tracking import (
    evaluate_tracks,
    patient_track_counts,
    read_tracks,
    write_tracks,
)


def _scan(patient, t, tracks):
    """A scan of ``patient`` at timepoint ``t`` whose nodes ``n0, n1, …`` have ground-truth
    ``tracks`` (``None`` = unknown)."""
    n = len(tracks)
    return Scan(patient, f"{patient}_{t}", str(t), None, NodeTable.from_arrays(
        np.arange(3 * n, dtype=float).reshape(n, 3), np.full(n, 8.0),
        node_id=[f"n{k}" for k in range(n)], track_id=list(tracks)))


@pytest.fixture
def cohort():
    """P1: L1 in all four scans; L2 skips scan 2; L3 is new in scan 2.
    P2: M in three scans."""
    return Cohort([
        _scan("P1", 0, ["L1", "L2"]), _scan("P1", 1, ["L1", "L2"]),
        _scan("P1", 2, ["L1", "L3"]), _scan("P1", 3, ["L1", "L2", "L3"]),
        _scan("P2", 0, ["M"]), _scan("P2", 1, ["M"]), _scan("P2", 2, ["M"]),
    ])


#: Predicted tracks: L1 cut in two (X, Y); L2 and L3's first node merged into Z, L3's
#: second alone (W); M goes A, B, back to A.
PREDICTED = {
    "P1_0": ["X", "Z"], "P1_1": ["X", "Z"], "P1_2": ["Y", "Z"], "P1_3": ["Y", "Z", "W"],
    "P2_0": ["A"], "P2_1": ["B"], "P2_2": ["A"],
}


def test_hand_computed_patient(cohort):
    c = patient_track_counts(cohort.scans_of("P1"), PREDICTED)
    # overlaps: L1 {X: 2, Y: 2}, L2 {Z: 3}, L3 {Z: 1, W: 1}; best identity map
    # L1-X (or Y), L2-Z, L3-W: IDTP = 2 + 3 + 1 = 6 of 9 nodes
    assert (c.n_nodes, c.n_gt_tracks, c.n_pred_tracks) == (9, 3, 4)
    assert (c.idtp, c.idfp, c.idfn) == (6, 3, 3)
    # L1: X X | Y Y -> 1 switch, 2 pieces; L2: Z Z . Z -> 0; L3: Z | W -> 1 switch, 2 pieces
    assert (c.id_switches, c.fragmentations, c.merges) == (2, 2, 1)
    # node pairs: GT 6 + 3 + 1 = 10, predicted X 1 + Y 1 + Z 6 = 8, correct 1 + 1 + 3 = 5
    assert (c.n_gt_matches, c.n_pred_matches, c.n_correct_matches) == (10, 8, 5)


def test_a_return_to_an_earlier_track_is_two_switches_and_one_fragment(cohort):
    c = patient_track_counts(cohort.scans_of("P2"), PREDICTED)
    assert (c.id_switches, c.fragmentations, c.merges) == (2, 1, 0)
    assert (c.idtp, c.n_pred_matches, c.n_correct_matches, c.n_gt_matches) == (2, 1, 1, 3)


def test_cohort_metrics_pool_the_patients(cohort):
    m = evaluate_tracks(cohort, PREDICTED)
    total = m["cohort"]
    assert total["idf1"] == pytest.approx(2 * 8 / (2 * 8 + 4 + 4))
    assert total["idp"] == total["idr"] == pytest.approx(8 / 12)
    assert (total["id_switches"], total["fragmentations"], total["merges"]) == (4, 3, 1)
    assert total["id_switches_per_100"] == pytest.approx(100.0)       # 4 per 4 GT tracks
    assert total["precision"] == pytest.approx(6 / 9)
    assert total["recall"] == pytest.approx(6 / 13)
    assert total["f1"] == pytest.approx(12 / 22)
    assert m["patients"]["P1"]["idf1"] == pytest.approx(12 / 18)
    assert m["patients"]["P2"]["f1"] == pytest.approx(2 / 4)


def test_perfect_tracks_and_unknown_ground_truth():
    cohort = Cohort([_scan("P", 0, ["a", "b"]), _scan("P", 1, ["b", None])])
    m = evaluate_tracks(cohort, {"P_0": ["1", "2"], "P_1": ["2", "1"]})["cohort"]
    # the unknown node is not judged, so its (wrong) link costs nothing
    assert (m["idf1"], m["id_switches"], m["fragmentations"], m["f1"]) == (1.0, 0, 0, 1.0)
    assert m["n_nodes"] == 3
    lone = evaluate_tracks(cohort, {"P_0": ["1", "2"], "P_1": ["3", "4"]})["cohort"]
    assert math.isnan(lone["precision"]) and lone["recall"] == 0.0


def test_round_trip(cohort, tmp_path):
    path = write_tracks(tmp_path / "tracks.csv", list(cohort.scans.values()), PREDICTED)
    assert path.read_text().splitlines()[:2] == ["patient_id,scan_id,node_id,track_id",
                                                 "P1,P1_0,n0,X"]
    back = read_tracks(path, cohort)
    assert {k: list(v) for k, v in back.items()} == PREDICTED


def _write(tmp_path, rows):
    path = tmp_path / "tracks.csv"
    path.write_text("\n".join(["patient_id,scan_id,node_id,track_id", *rows]) + "\n")
    return path


P2_ROWS = ["P2,P2_0,n0,A", "P2,P2_1,n0,B", "P2,P2_2,n0,A"]


@pytest.mark.parametrize(("rows", "line", "problem"), [
    (["P2,P2_9,n0,A"], 2, "scan_id 'P2_9' is not a scan"),
    (["P2,P2_0,n7,A"], 2, "node_id 'n7' is not a node of scan 'P2_0'"),
    (["P1,P2_0,n0,A"], 2, "belongs to patient 'P2'"),
    ([*P2_ROWS, "P2,P2_0,n0,C"], 5, r"listed twice \(first on line 2\)"),
    (["P1,P1_0,n0,T", "P1,P1_0,n1,T"], 3, "holds two nodes of scan 'P1_0'"),
    (["P2,P2_0,n0,"], 2, "track_id is empty"),
])
def test_reader_names_file_line_and_problem(cohort, tmp_path, rows, line, problem):
    with pytest.raises(InputError, match=problem) as info:
        read_tracks(_write(tmp_path, rows), cohort)
    assert info.value.line == line and info.value.path.endswith("tracks.csv")


def test_reader_wants_every_node_of_a_listed_patient(cohort, tmp_path):
    with pytest.raises(InputError, match=r"'n0' of scan 'P2_2' have no row"):
        read_tracks(_write(tmp_path, P2_ROWS[:2]), cohort)
    with pytest.raises(InputError, match="no tracks"):
        read_tracks(_write(tmp_path, []), cohort)
    with pytest.raises(InputError, match="missing column"):
        (tmp_path / "bad.csv").write_text("scan_id,node_id,track_id\nP2_0,n0,A\n")
        read_tracks(tmp_path / "bad.csv", cohort)
    # a patient absent from the file is not scored
    only = read_tracks(_write(tmp_path, P2_ROWS), cohort)
    assert sorted(only) == ["P2_0", "P2_1", "P2_2"]
    assert evaluate_tracks(cohort, only)["cohort"]["n_patients"] == 1
