"""The cohort folder contract: read/write round trip, pairs, ground truth, and bad input."""

import numpy as np
import pytest

from lngraph.io.cohort import (
    NODE_COLUMNS,
    SCAN_COLUMNS,
    Cohort,
    NodeTable,
    Scan,
    read_cohort,
    write_cohort,
)
from lngraph.io.errors import InputError

SCANS = """patient_id,scan_id,timepoint,image
p1,p1_t2,2,
p1,p1_t1,1,
p1,p1_t10,10,
p2,p2_a,2021-03-04,
p2,p2_b,2020-12-31,
"""

NODES = """scan_id,node_id,x,y,z,short_axis_mm,long_axis_mm,track_id
p1_t1,a,0,0,0,10,14,T1
p1_t1,b,30,0,0,8,,T2
p1_t1,c,0,40,0,6,9,T3
p1_t2,a,1,1,1,11,15,T1
p1_t2,d,31,1,1,8,10,T2
p1_t2,e,60,0,0,5,,T4
p1_t10,f,2,2,2,12,16,T1
p2_b,x,-10.5,20.25,-300.125,7,9,
p2_a,y,-11,21,-301,7,9,
"""


def _folder(tmp_path, scans=SCANS, nodes=NODES):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "scans.csv").write_text(scans)
    (tmp_path / "nodes.csv").write_text(nodes)
    return tmp_path


@pytest.fixture
def cohort(tmp_path):
    return read_cohort(_folder(tmp_path))


def _error(tmp_path, scans=SCANS, nodes=NODES) -> str:
    with pytest.raises(InputError) as info:
        read_cohort(_folder(tmp_path, scans, nodes))
    return str(info.value)


def test_reads_tables_into_scans_and_nodes(cohort):
    assert repr(cohort) == "Cohort(patients=2, scans=5, nodes=9)"
    assert cohort.patients == ["p1", "p2"]
    nodes = cohort.scans["p1_t1"].nodes
    np.testing.assert_array_equal(nodes.node_id, ["a", "b", "c"])
    np.testing.assert_array_equal(nodes.pos, [[0, 0, 0], [30, 0, 0], [0, 40, 0]])
    np.testing.assert_array_equal(nodes.short_axis_mm, [10, 8, 6])
    np.testing.assert_array_equal(nodes.long_axis_mm, [14, np.nan, 9])
    np.testing.assert_array_equal(nodes.radius_mm, [7, 4, 4.5])  # long/2, else short/2
    assert list(nodes.track_id) == ["T1", "T2", "T3"]
    assert list(cohort.scans["p2_a"].nodes.track_id) == [None]


def test_integer_timepoints_sort_numerically_and_iso_dates_chronologically(cohort):
    assert [s.scan_id for s in cohort.scans_of("p1")] == ["p1_t1", "p1_t2", "p1_t10"]
    assert [s.scan_id for s in cohort.scans_of("p2")] == ["p2_b", "p2_a"]


def test_consecutive_and_all_pairs(cohort):
    consecutive = [(p.src.scan_id, p.dst.scan_id) for p in cohort.pairs()]
    assert consecutive == [("p1_t1", "p1_t2"), ("p1_t2", "p1_t10"), ("p2_b", "p2_a")]
    every = [(p.src.scan_id, p.dst.scan_id) for p in cohort.pairs("all", patients=["p1"])]
    assert every == [("p1_t1", "p1_t2"), ("p1_t1", "p1_t10"), ("p1_t2", "p1_t10")]
    with pytest.raises(ValueError, match="consecutive"):
        cohort.pairs("random")


def test_ground_truth_from_track_id(cohort):
    pair = cohort.pair("p1_t1", "p1_t2")
    assert pair.patient_id == "p1"
    assert pair.has_ground_truth
    np.testing.assert_array_equal(pair.gt_matches(), [[0, 0], [1, 1]])
    np.testing.assert_array_equal(pair.gt_disappeared(), [2])  # c (T3) is not in t2
    np.testing.assert_array_equal(pair.gt_new(), [2])  # e (T4) is new in t2
    skip = cohort.pair("p1_t1", "p1_t10")
    np.testing.assert_array_equal(skip.gt_matches(), [[0, 0]])
    np.testing.assert_array_equal(skip.gt_disappeared(), [1, 2])
    assert skip.gt_new().shape == (0,)


def test_unknown_tracks_give_no_ground_truth(cohort):
    (pair,) = cohort.pairs(patients=["p2"])
    assert not pair.has_ground_truth
    assert pair.gt_matches().shape == (0, 2)
    assert pair.gt_disappeared().shape == (0,) and pair.gt_new().shape == (0,)


def test_geometry_only_cohort_is_valid(cohort):
    assert not cohort.has_images
    assert all(s.image is None for s in cohort.scans.values())


def test_write_read_round_trip(cohort, tmp_path):
    out = write_cohort(tmp_path / "copy", cohort)
    back = read_cohort(out)
    assert repr(back) == repr(cohort)
    for scan_id, scan in cohort.scans.items():
        other = back.scans[scan_id]
        assert (other.patient_id, other.timepoint, other.image) == (
            scan.patient_id, scan.timepoint, scan.image)
        for name in ("pos", "short_axis_mm", "long_axis_mm"):
            np.testing.assert_array_equal(getattr(other.nodes, name), getattr(scan.nodes, name))
        assert list(other.nodes.node_id) == list(scan.nodes.node_id)
        assert list(other.nodes.track_id) == list(scan.nodes.track_id)
    header = (out / "nodes.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header == ",".join(NODE_COLUMNS)
    assert (out / "scans.csv").read_text(encoding="utf-8").splitlines()[0] == ",".join(SCAN_COLUMNS)
    assert sorted(p.name for p in out.iterdir()) == ["nodes.csv", "scans.csv"]  # no temp files


def test_write_stores_image_paths_relative_to_the_folder(tmp_path):
    image = tmp_path / "images" / "s1.nrrd"
    image.parent.mkdir()
    image.write_bytes(b"")
    nodes = NodeTable.from_arrays([[1.0, 2.0, 3.0]], [5.0], track_id=["T"])
    out = write_cohort(tmp_path / "cohort", [Scan("p", "s1", "0", image, nodes)])
    assert "../images/s1.nrrd" in (out / "scans.csv").read_text(encoding="utf-8")
    back = read_cohort(out)
    assert back.scans["s1"].image == image.resolve()
    assert back.has_images


def test_write_rejects_an_invalid_cohort_before_writing(tmp_path):
    scans = [Scan("p", "a", "1", None), Scan("p", "b", "1", None)]
    with pytest.raises(InputError, match="patient p: two scans share a timepoint"):
        write_cohort(tmp_path / "out", scans)
    assert not (tmp_path / "out" / "scans.csv").exists()


def test_nodes_of_a_scan_without_rows_are_empty(tmp_path):
    scans = SCANS + "p3,p3_only,1,\n"
    cohort = read_cohort(_folder(tmp_path, scans=scans))
    assert len(cohort.scans["p3_only"].nodes) == 0
    assert cohort.pairs(patients=["p3"]) == []


def test_trailing_blank_lines_are_ignored(tmp_path):
    cohort = read_cohort(_folder(tmp_path, nodes=NODES + "\n\n"))
    assert repr(cohort) == "Cohort(patients=2, scans=5, nodes=9)"


# ---- bad input: every message names the file, the line and the problem ----

def test_missing_folder(tmp_path):
    with pytest.raises(InputError, match="cohort folder not found"):
        read_cohort(tmp_path / "nope")


def test_missing_nodes_file(tmp_path):
    _folder(tmp_path)
    (tmp_path / "nodes.csv").unlink()
    with pytest.raises(InputError, match=r"nodes\.csv: file not found"):
        read_cohort(tmp_path)


@pytest.mark.parametrize("column", ["x", "track_id"])
def test_missing_column(tmp_path, column):
    header, *rest = NODES.splitlines()
    index = header.split(",").index(column)
    drop = "\n".join(",".join(f for k, f in enumerate(line.split(",")) if k != index)
                     for line in [header, *rest])
    message = _error(tmp_path, nodes=drop + "\n")
    assert f"{tmp_path / 'nodes.csv'}, line 1: missing column(s) {column}; expected" in message


def test_missing_scan_column(tmp_path):
    scans = SCANS.replace("timepoint", "date")
    message = _error(tmp_path, scans=scans)
    assert f"{tmp_path / 'scans.csv'}, line 1: missing column(s) timepoint" in message


@pytest.mark.parametrize(("bad", "problem"), [
    ("nan", "z is not a finite number: 'nan'"),
    ("NaN", "z is not a finite number: 'NaN'"),
    ("inf", "z is not a finite number: 'inf'"),
    ("abc", "z is not a finite number: 'abc'"),
    ("", "z is empty"),
])
def test_bad_coordinate(tmp_path, bad, problem):
    nodes = NODES.replace("p1_t2,d,31,1,1,", f"p1_t2,d,31,1,{bad},")
    message = _error(tmp_path, nodes=nodes)
    assert message == f"{tmp_path / 'nodes.csv'}, line 6 (node d of scan p1_t2): {problem}"


def test_non_positive_size(tmp_path):
    nodes = NODES.replace("p1_t1,b,30,0,0,8,", "p1_t1,b,30,0,0,-8,")
    message = _error(tmp_path, nodes=nodes)
    assert message == (f"{tmp_path / 'nodes.csv'}, line 3 (node b of scan p1_t1): "
                       "short_axis_mm must be positive, got -8")


def test_duplicate_node_id_in_a_scan(tmp_path):
    nodes = NODES.replace("p1_t2,d,", "p1_t2,a,")
    message = _error(tmp_path, nodes=nodes)
    assert message == (f"{tmp_path / 'nodes.csv'}, line 6: duplicate node_id 'a' in scan "
                       "'p1_t2' (first on line 5)")


def test_same_node_id_in_two_scans_is_fine(cohort):
    assert "a" in cohort.scans["p1_t1"].nodes.node_id
    assert "a" in cohort.scans["p1_t2"].nodes.node_id


def test_track_id_twice_in_one_scan(tmp_path):
    nodes = NODES.replace("p1_t2,e,60,0,0,5,,T4", "p1_t2,e,60,0,0,5,,T1")
    message = _error(tmp_path, nodes=nodes)
    assert message.startswith(f"{tmp_path / 'nodes.csv'}, line 7 (node e): track_id 'T1' "
                              "appears twice in scan 'p1_t2' (first on line 5)")


def test_unknown_scan_id_in_nodes(tmp_path):
    nodes = NODES + "p9_t1,z,0,0,0,5,,\n"
    message = _error(tmp_path, nodes=nodes)
    assert message == (f"{tmp_path / 'nodes.csv'}, line 11 (node z): scan_id 'p9_t1' is not "
                       "in scans.csv")


def test_missing_image_file(tmp_path):
    scans = SCANS.replace("p1,p1_t1,1,", "p1,p1_t1,1,images/p1_t1.nii.gz")
    message = _error(tmp_path, scans=scans)
    assert message.startswith(f"{tmp_path / 'scans.csv'}, line 3 (scan p1_t1): image "
                              "'images/p1_t1.nii.gz' not found")


def test_missing_image_can_be_tolerated(tmp_path):
    scans = SCANS.replace("p1,p1_t1,1,", "p1,p1_t1,1,images/p1_t1.nii.gz")
    cohort = read_cohort(_folder(tmp_path, scans=scans), check_images=False)
    assert cohort.scans["p1_t1"].image == (tmp_path / "images/p1_t1.nii.gz").resolve()


def test_duplicate_scan_id(tmp_path):
    message = _error(tmp_path, scans=SCANS + "p3,p1_t1,1,\n")
    assert message == (f"{tmp_path / 'scans.csv'}, line 7: duplicate scan_id 'p1_t1' (first on "
                       "line 3)")


def test_empty_required_scan_field(tmp_path):
    message = _error(tmp_path, scans=SCANS.replace("p2,p2_a,2021-03-04,", "p2,p2_a,,"))
    assert message == f"{tmp_path / 'scans.csv'}, line 5: timepoint is empty"


def test_mixed_timepoint_kinds(tmp_path):
    message = _error(tmp_path, scans=SCANS.replace("p1,p1_t10,10,", "p1,p1_t10,2021-01-01,"))
    assert message.startswith(f"{tmp_path / 'scans.csv'}: patient p1: timepoints")
    assert "neither all integers nor all ISO dates" in message


def test_two_scans_at_one_timepoint(tmp_path):
    message = _error(tmp_path, scans=SCANS.replace("p1,p1_t10,10,", "p1,p1_t10,2,"))
    assert message == (f"{tmp_path / 'scans.csv'}: patient p1: two scans share a timepoint "
                       "(2, 1, 2)")


def test_blank_row_inside_a_table(tmp_path):
    lines = NODES.splitlines()
    message = _error(tmp_path, nodes="\n".join([*lines[:3], "", *lines[3:]]) + "\n")
    assert message == f"{tmp_path / 'nodes.csv'}, line 4: blank row inside the table"


def test_cohort_of_scans_in_memory_needs_no_files():
    nodes = NodeTable.from_arrays(np.zeros((2, 3)), [5.0, 6.0])
    cohort = Cohort([Scan("p", "b", "2", None, nodes), Scan("p", "a", "1", None)])
    assert [s.scan_id for s in cohort.scans_of("p")] == ["a", "b"]
    assert list(cohort.scans["b"].nodes.node_id) == ["0", "1"]
