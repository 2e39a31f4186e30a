"""3D Slicer markups: LPS and RAS files, description rule, writer round trip, bad input."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from lngraph.io.cohort import NodeTable, Scan
from lngraph.io.errors import InputError
from lngraph.io.slicer import (
    format_description,
    parse_description,
    read_markups,
    read_markups_folder,
    scan_name,
    write_markups,
    write_scan_markups,
)

TEST_DATA = Path(__file__).resolve().parents[1] / "data"
LPS_FILE = TEST_DATA / "lymph_nodes_lps.mrk.json"
RAS_FILE = TEST_DATA / "lymph_nodes_ras.mrk.json"
EXPECTED_LPS = [[-14.5, 97.25, -366.5], [26.75, -92.5, -350.0], [11.0, 106.5, -362.25]]


@pytest.mark.parametrize("path", [LPS_FILE, RAS_FILE])
def test_reads_both_coordinate_systems_into_lps(path):
    nodes = read_markups(path, default_short_axis_mm=10.0)
    np.testing.assert_allclose(nodes.pos, EXPECTED_LPS, atol=1e-12)
    assert list(nodes.node_id) == ["LN-1", "LN-2", "LN-3"]
    assert list(nodes.track_id) == ["T1", "T2", None]
    np.testing.assert_array_equal(nodes.short_axis_mm, [8.5, 10.0, 10.0])
    np.testing.assert_array_equal(nodes.long_axis_mm, [12.25, np.nan, np.nan])


def test_missing_short_axis_without_default_is_an_error():
    with pytest.raises(InputError) as info:
        read_markups(LPS_FILE)
    assert str(info.value) == (
        f"{LPS_FILE} (markup 1, control point 2 'LN-2'): no short axis: add 'short=<mm>' to the "
        "control point description or give a default short axis")


@pytest.mark.parametrize(("text", "expected"), [
    ("", (None, np.nan, np.nan)),
    ("  LN 7 ", ("LN 7", np.nan, np.nan)),
    ("track=LN7; short=8.5; long=12", ("LN7", 8.5, 12.0)),
    ("short=8;", (None, 8.0, np.nan)),
    (" long = 20 ; track = A ", ("A", np.nan, 20.0)),
])
def test_parse_description(text, expected):
    track, short, long_ = parse_description(text, "f.mrk.json", "p")
    assert track == expected[0]
    np.testing.assert_array_equal([short, long_], expected[1:])


@pytest.mark.parametrize(("text", "problem"), [
    ("track=A; size=3", "description item 'size=3' is not one of track=…, short=…, long=…"),
    ("short=1; short=2", "description item 'short=2' is not one of"),
    ("short=abc", "short='abc' in the description is not a positive number of mm"),
    ("long=-4", "long='-4' in the description is not a positive number of mm"),
])
def test_bad_description(text, problem):
    with pytest.raises(InputError, match="^f.mrk.json \\(point 3\\): " + problem.replace(
            "(", "\\(").replace(")", "\\)")):
        parse_description(text, "f.mrk.json", "point 3")


def test_format_description_reads_back():
    for args in [("T9", 8.5, 12.125), (None, 7.0, np.nan), ("x y", 1e-3, 3.0)]:
        track, short, long_ = parse_description(format_description(*args), "f", "p")
        assert track == args[0]
        np.testing.assert_allclose([short, long_], args[1:])
    assert format_description("T1", 8.5, np.nan) == "track=T1; short=8.5"
    with pytest.raises(ValueError, match="must not contain"):
        format_description("a;b", 1.0, np.nan)


def _nodes():
    return NodeTable.from_arrays(
        pos=[[1.5, -2.25, 3.0], [-40.125, 10.0, -200.5], [0.0, 0.0, 0.0]],
        short_axis_mm=[8.0, 12.5, 6.0], long_axis_mm=[10.0, np.nan, 9.5],
        node_id=["a", "b 2", "c"], track_id=np.array(["T1", None, "T3"], dtype=object))


def test_write_read_round_trip(tmp_path):
    path = write_markups(tmp_path / "case_1.mrk.json", _nodes(), name="case_1")
    back = read_markups(path)
    original = _nodes()
    np.testing.assert_allclose(back.pos, original.pos, atol=1e-12)
    np.testing.assert_allclose(back.short_axis_mm, original.short_axis_mm)
    np.testing.assert_array_equal(back.long_axis_mm, original.long_axis_mm)
    assert list(back.node_id) == list(original.node_id)
    assert list(back.track_id) == list(original.track_id)
    assert [p.name for p in tmp_path.iterdir()] == ["case_1.mrk.json"]  # no temp file left


def test_written_file_is_a_slicer_lps_point_list(tmp_path):
    path = write_markups(tmp_path / "s.mrk.json", _nodes(), name="s")
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["@schema"].endswith("markups-schema-v1.0.3.json#")
    (markup,) = document["markups"]
    assert (markup["type"], markup["coordinateSystem"], markup["coordinateUnits"]) == (
        "Fiducial", "LPS", "mm")
    assert markup["name"] == "s"
    point = markup["controlPoints"][0]
    assert point == {"id": "1", "label": "a", "description": "track=T1; short=8; long=10",
                     "position": [1.5, -2.25, 3.0], "positionStatus": "defined"}


def test_writes_an_empty_point_list(tmp_path):
    path = write_markups(tmp_path / "empty.mrk.json", NodeTable.empty())
    assert len(read_markups(path)) == 0


def _document():
    return json.loads(LPS_FILE.read_text(encoding="utf-8"))


def _read(tmp_path, document, **kwargs):
    path = tmp_path / "p_1.mrk.json"
    path.write_text(json.dumps(document))
    return path, read_markups(path, **kwargs)


def test_skips_other_markup_types_and_unplaced_points(tmp_path):
    document = _document()
    line = {"type": "Line", "coordinateSystem": "RAS",
            "controlPoints": [{"label": "L-1", "position": [0, 0, 0]}]}
    document["markups"].insert(0, line)
    document["markups"][1]["controlPoints"][2]["positionStatus"] = "undefined"
    _, nodes = _read(tmp_path, document, default_short_axis_mm=5.0)
    assert list(nodes.node_id) == ["LN-1", "LN-2"]


def test_several_point_lists_are_merged(tmp_path):
    document = _document()
    second = copy.deepcopy(document["markups"][0])
    second["coordinateSystem"] = "RAS"
    second["controlPoints"] = [{"label": "X", "description": "short=4", "position": [1, 2, 3]}]
    document["markups"].append(second)
    _, nodes = _read(tmp_path, document, default_short_axis_mm=5.0)
    assert list(nodes.node_id) == ["LN-1", "LN-2", "LN-3", "X"]
    np.testing.assert_array_equal(nodes.pos[3], [-1, -2, 3])


def test_micrometre_units(tmp_path):
    document = _document()
    document["markups"][0]["coordinateUnits"] = ["um", "UCUM", "micrometer"]
    _, nodes = _read(tmp_path, document, default_short_axis_mm=5.0)
    np.testing.assert_allclose(nodes.pos, np.asarray(EXPECTED_LPS) * 1e-3)


def _bad(tmp_path, document, **kwargs) -> str:
    with pytest.raises(InputError) as info:
        _read(tmp_path, document, default_short_axis_mm=5.0, **kwargs)
    return str(info.value)


def test_missing_coordinate_system(tmp_path):
    document = _document()
    del document["markups"][0]["coordinateSystem"]
    assert _bad(tmp_path, document) == (
        f"{tmp_path / 'p_1.mrk.json'} (markup 1): no coordinateSystem: state \"LPS\" or \"RAS\" "
        "(lngraph does not guess the frame)")


@pytest.mark.parametrize(("edit", "problem"), [
    (lambda m: m.update(coordinateSystem="IJK"),
     "(markup 1): coordinateSystem must be \"LPS\" or \"RAS\", got 'IJK'"),
    (lambda m: m.update(coordinateUnits="cm"),
     "(markup 1): coordinateUnits must be \"mm\" or \"um\", got 'cm'"),
    (lambda m: m["controlPoints"][1].update(label="LN-1"),
     "(markup 1, control point 2 'LN-1'): duplicate label 'LN-1' (first at markup 1, control "
     "point 1 'LN-1')"),
    (lambda m: m["controlPoints"][1].update(label=" "),
     "(markup 1, control point 2): empty label (the label is the node_id)"),
    (lambda m: m["controlPoints"][2].update(description="T1"),
     "(markup 1, control point 3 'LN-3'): track 'T1' appears twice (first at markup 1, control "
     "point 1 'LN-1'); a lymph node occurs at most once per scan"),
    (lambda m: m["controlPoints"][0].update(position=[1.0, None, 2.0]),
     "(markup 1, control point 1 'LN-1'): position must be three finite numbers, got "
     "[1.0, None, 2.0]"),
    (lambda m: m["controlPoints"][0].update(position=[1.0, 2.0]),
     "(markup 1, control point 1 'LN-1'): position must be three finite numbers"),
    (lambda m: m.update(type="Line"), ": no point list (markup of type 'Fiducial') in the file"),
])
def test_bad_markups(tmp_path, edit, problem):
    document = _document()
    edit(document["markups"][0])
    assert _bad(tmp_path, document).startswith(f"{tmp_path / 'p_1.mrk.json'} {problem}".replace(
        " :", ":"))


def test_not_json_or_not_markups(tmp_path):
    path = tmp_path / "x_1.mrk.json"
    path.write_text('{"markups": [\n  {"type": }\n]}')
    with pytest.raises(InputError, match=r"x_1\.mrk\.json, line 2: not valid JSON"):
        read_markups(path)
    path.write_text('{"points": []}')
    with pytest.raises(InputError, match="not a Slicer markups file: no 'markups' list"):
        read_markups(path)
    with pytest.raises(InputError, match="file not found"):
        read_markups(tmp_path / "missing.mrk.json")


@pytest.mark.parametrize(("name", "expected"), [
    ("case07_3.mrk.json", ("case07", "3", "case07_3")),
    ("ABD_LYMPH_001_2021-03-04.mrk.json", ("ABD_LYMPH_001", "2021-03-04",
                                           "ABD_LYMPH_001_2021-03-04")),
])
def test_scan_name(name, expected):
    assert scan_name(name) == expected


@pytest.mark.parametrize("name", ["case07.mrk.json", "_3.mrk.json", "case07_.mrk.json",
                                  "case07_3.json"])
def test_bad_scan_name(name):
    with pytest.raises(InputError, match=name.replace(".", r"\.")):
        scan_name(name)


def test_folder_round_trip_with_images(tmp_path):
    scans = [Scan("p1", "whatever", "1", None, _nodes()),
             Scan("p1", "later", "2", None, _nodes().take([0, 2]))]
    paths = write_scan_markups(tmp_path / "markups", scans)
    assert [p.name for p in paths] == ["p1_1.mrk.json", "p1_2.mrk.json"]
    images = tmp_path / "images"
    images.mkdir()
    (images / "p1_1.nrrd").write_bytes(b"")
    (images / "p1_2").mkdir()  # a DICOM series folder
    back = read_markups_folder(tmp_path / "markups", images=images)
    assert [(s.patient_id, s.scan_id, s.timepoint) for s in back] == [
        ("p1", "p1_1", "1"), ("p1", "p1_2", "2")]
    assert [s.image for s in back] == [images / "p1_1.nrrd", images / "p1_2"]
    assert list(back[1].nodes.node_id) == ["a", "c"]


def test_folder_errors(tmp_path):
    with pytest.raises(InputError, match="no \\*.mrk.json files in the folder"):
        read_markups_folder(tmp_path)
    write_scan_markups(tmp_path, [Scan("p", "s", "1", None, _nodes())])
    (tmp_path / "images").mkdir()
    with pytest.raises(InputError, match="no image for scan p_1: expected p_1.nii.gz"):
        read_markups_folder(tmp_path, images=tmp_path / "images")
    with pytest.raises(InputError, match="image folder not found"):
        read_markups_folder(tmp_path, images=tmp_path / "nope")
    assert len(read_markups_folder(tmp_path / "p_1.mrk.json")) == 1
