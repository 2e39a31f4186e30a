"""matches.csv: the row layout, atomic writing, round trips and every validation error."""

import numpy as np
import pandas as pd
import pytest

from lngraph.io import InputError, PairPrediction, read_matches, write_matches
from lngraph.io.cohort import Cohort, NodeTable, Scan
from lngraph.io.matches import MATCH_COLUMNS, prediction_frame

HEADER = ",".join(MATCH_COLUMNS)


def _scan(patient, scan_id, timepoint, node_ids):
    n = len(node_ids)
    nodes = NodeTable.from_arrays(np.arange(3 * n, dtype=float).reshape(n, 3), np.full(n, 8.0),
                                  node_id=node_ids, track_id=list(node_ids))
    return Scan(patient, scan_id, timepoint, None, nodes)


@pytest.fixture
def cohort():
    return Cohort([
        _scan("P", "s1", "1", ["a", "b", "c"]),
        _scan("P", "s2", "2", ["x", "y"]),
        _scan("P", "s3", "3", []),
        _scan("Q", "q1", "1", ["m"]),
        _scan("Q", "q2", "2", ["n", "o"]),
    ])


def test_prediction_frame_rows(cohort):
    pred = PairPrediction(3, 2, [[2, 0]], [0.75])
    frame = prediction_frame(cohort.pair("s1", "s2"), pred)
    assert list(frame.columns) == list(MATCH_COLUMNS)
    assert frame.values.tolist() == [
        ["s1", "a", "s2", "", "", "disappeared"],
        ["s1", "b", "s2", "", "", "disappeared"],
        ["s1", "c", "s2", "x", "0.75", "matched"],
        ["s1", "", "s2", "y", "", "new"],
    ]


def test_prediction_frame_rejects_wrong_size(cohort):
    with pytest.raises(ValueError, match="2 x 2 nodes but pair s1 -> s2 has 3 x 2"):
        prediction_frame(cohort.pair("s1", "s2"), PairPrediction(2, 2))


def test_round_trip_many_pairs(cohort, tmp_path):
    items = [
        (cohort.pair("s1", "s2"), PairPrediction(3, 2, [[1, 1], [0, 0]], [0.1 / 3, 0.9])),
        (cohort.pair("s1", "s3"), PairPrediction(3, 0)),
        (cohort.pair("q1", "q2"), PairPrediction(1, 2, [[0, 1]], [1.0])),
    ]
    path = write_matches(tmp_path / "out" / "matches.csv", items)
    got = read_matches(path, cohort)
    assert list(got) == [("s1", "s2"), ("s1", "s3"), ("q1", "q2")]
    for pair, pred in items:
        back = got[(pair.src.scan_id, pair.dst.scan_id)]
        assert (back.n_src, back.n_dst) == (pred.n_src, pred.n_dst)
        order = np.argsort(pred.matches[:, 0])
        np.testing.assert_array_equal(back.matches, pred.matches[order])
        np.testing.assert_array_equal(back.scores, pred.scores[order])  # exact floats
    assert sorted(p.name for p in path.parent.iterdir()) == ["matches.csv"]  # no temp left


def test_empty_file_round_trip(cohort, tmp_path):
    path = write_matches(tmp_path / "m.csv", [])
    assert path.read_text(encoding="utf-8").strip() == HEADER
    assert read_matches(path, cohort, allow_empty=True) == {}


def test_file_without_rows_is_refused_unless_allowed(cohort, tmp_path):
    path = write_matches(tmp_path / "m.csv", [])
    with pytest.raises(InputError) as info:
        read_matches(path, cohort)
    assert str(info.value).startswith(f"{path}: the file holds no predictions (a header but no "
                                      "rows); if that is intended, pass --allow-empty")
    path.write_text(f"{HEADER}\n\n\n")  # trailing blank lines are no rows either
    with pytest.raises(InputError, match="holds no predictions"):
        read_matches(path, cohort)
    assert read_matches(path, cohort, allow_empty=True) == {}


def test_pair_with_no_nodes_has_no_rows(cohort, tmp_path):
    empty = Cohort([_scan("R", "r1", "1", []), _scan("R", "r2", "2", [])])
    path = write_matches(tmp_path / "m.csv", [(empty.pair("r1", "r2"), PairPrediction(0, 0))])
    assert read_matches(path, empty, allow_empty=True) == {}
    with pytest.raises(InputError, match="holds no predictions"):
        read_matches(path, empty)


def test_failed_write_keeps_old_file(cohort, tmp_path):
    path = write_matches(tmp_path / "m.csv", [(cohort.pair("s1", "s3"), PairPrediction(3, 0))])
    before = path.read_text(encoding="utf-8")
    with pytest.raises(ValueError):
        write_matches(path, [(cohort.pair("s1", "s2"), PairPrediction(1, 1))])
    assert path.read_text(encoding="utf-8") == before


def test_empty_score_reads_as_nan_and_unmatched_score_is_ignored(cohort, tmp_path):
    path = tmp_path / "m.csv"
    path.write_text(f"{HEADER}\nq1,m,q2,n,,matched\nq1,,q2,o,0.2,new\n")
    pred = read_matches(path, cohort)[("q1", "q2")]
    np.testing.assert_array_equal(pred.matches, [[0, 0]])
    assert np.isnan(pred.scores[0])


def test_reads_columns_in_any_order_with_spaces(cohort, tmp_path):
    path = tmp_path / "m.csv"
    pd.DataFrame({"status": ["matched", "new"], "score": ["0.5", ""],
                  "dst_node": ["o", "n"], "dst_scan": ["q2", "q2"],
                  "src_node": ["m", ""], "src_scan": ["q1", "q1"]}).to_csv(path, index=False)
    pred = read_matches(path, cohort)[("q1", "q2")]
    np.testing.assert_array_equal(pred.matches, [[0, 1]])
    np.testing.assert_array_equal(pred.new, [0])


BAD_ROWS = [
    ("src_scan,src_node,dst_scan,dst_node,status\n", 1, "missing column(s) score"),
    ("q1,m,q9,n,1,matched\n", 2, "dst_scan 'q9' is not a scan of the cohort"),
    (",m,q2,n,1,matched\n", 2, "src_scan is empty"),
    ("q1,m,q2,n,1,matched\nq1,zz,q2,o,1,matched\n", 3, "src_node 'zz' is not a node of scan 'q1'"),
    ("q1,m,q2,n,1,matched\nq1,,q2,n,,new\n", 3,
     "dst_node 'n' of scan 'q2' is used twice for this pair (first on line 2)"),
    ("q1,m,q2,n,1,matched\nq1,m,q2,,,disappeared\n", 3, "src_node 'm' of scan 'q1' is used twice"),
    ("q1,m,q2,n,1,paired\n", 2, "status 'paired' is not one of matched, disappeared, new"),
    ("q1,m,q2,,1,matched\n", 2, "a matched row needs both src_node and dst_node"),
    ("q1,m,q2,n,,disappeared\n", 2, "a disappeared row needs a src_node and an empty dst_node"),
    ("q1,m,q2,n,,new\n", 2, "a new row needs a dst_node and an empty src_node"),
    ("q1,m,q2,n,high,matched\n", 2, "score is not a number: 'high'"),
    ("q1,m,q2,n,inf,matched\n", 2, "score is not finite"),
    ("s1,a,q2,n,1,matched\n", 2, "belong to different patients"),
    ("q2,n,q1,m,1,matched\n", 2, "src_scan 'q2' (timepoint 2) must be earlier than dst_scan 'q1'"),
    ("q1,m,q1,m,1,matched\n", 2, "must be earlier than"),
    ("q1,m,q2,n,1,matched\n\nq1,,q2,o,,new\n", 3, "blank row inside the table"),
    (f"{HEADER},status\nq1,m,q2,n,1,matched,new\n", 1, "column 'status' appears twice"),
    (f"{HEADER}, src_node\nq1,m,q2,n,1,matched,\n", 1, "column 'src_node' appears twice"),
]


@pytest.mark.parametrize(("body", "line", "problem"), BAD_ROWS)
def test_bad_rows(cohort, tmp_path, body, line, problem):
    path = tmp_path / "bad.csv"
    path.write_text(body if body.startswith("src_scan") else f"{HEADER}\n{body}")
    with pytest.raises(InputError) as info:
        read_matches(path, cohort)
    message = str(info.value)
    assert message.startswith(f"{path}, line {line}")
    assert problem in message


def test_node_without_row(cohort, tmp_path):
    path = tmp_path / "m.csv"
    path.write_text(f"{HEADER}\nq1,m,q2,n,1,matched\n")
    with pytest.raises(InputError, match=r"\(pair q1 -> q2\): node\(s\) 'o' of scan 'q2' have no "
                                         "row"):
        read_matches(path, cohort)


def test_missing_and_unreadable_file(cohort, tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_matches(tmp_path / "nope.csv", cohort)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InputError, match="not a readable CSV file"):
        read_matches(empty, cohort)
