"""3D Slicer markups: LPS and RAS files, description rule, writer round trip, bad input."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from lngraph.io.cohort import NodeTable, Scan
from lngraph.io.errors import InputError
from lngraph.io.image import write_image
from lngraph.io.slicer import (
    format_description,
    parse_description,
    read_fcsv,
    read_markups,
    read_markups_folder,
    read_markups_table,
    read_points,
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
        "control point description, or give one for every such point with --default-short-axis "
        "MM")


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
    ("case07_3.fcsv", ("case07", "3", "case07_3")),
    ("ABD_LYMPH_001_2021-03-04.mrk.json", ("ABD_LYMPH_001", "2021-03-04",
                                           "ABD_LYMPH_001_2021-03-04")),
])
def test_scan_name(name, expected):
    assert scan_name(name) == expected


@pytest.mark.parametrize("name", ["case07.mrk.json", "_3.mrk.json", "case07_.mrk.json",
                                  "case07_3.json", "case07_baseline.fcsv"])
def test_bad_scan_name_names_the_flags_that_fix_it(name):
    with pytest.raises(InputError) as info:
        scan_name(name)
    message = str(info.value)
    assert message.startswith(f"{name}: file name must be PATIENT_TIMEPOINT.mrk.json or "
                              "PATIENT_TIMEPOINT.fcsv")
    assert message.endswith("or name the scan with --patient P --timepoint T (one file) or "
                            "--table FILE.csv (columns file,patient_id,timepoint[,image])")
    if "baseline" in name:
        assert "but the timepoint 'baseline' is neither an integer nor an ISO date" in message


def test_folder_round_trip_with_images(tmp_path):
    scans = [Scan("p1", "whatever", "1", None, _nodes()),
             Scan("p1", "later", "2", None, _nodes().take([0, 2]))]
    paths = write_scan_markups(tmp_path / "markups", scans)
    assert [p.name for p in paths] == ["p1_1.mrk.json", "p1_2.mrk.json"]
    images = tmp_path / "images"
    images.mkdir()
    (images / "p1_1.nrrd").write_bytes(b"")
    write_dicom_series(images / "p1_2", "1.2.826.0.1.3680043.2.1125.78.1")
    back = read_markups_folder(tmp_path / "markups", images=images)
    assert [(s.patient_id, s.scan_id, s.timepoint) for s in back] == [
        ("p1", "p1_1", "1"), ("p1", "p1_2", "2")]
    assert [s.image for s in back] == [images / "p1_1.nrrd", images / "p1_2"]
    assert list(back[1].nodes.node_id) == ["a", "c"]


def test_folder_errors(tmp_path):
    with pytest.raises(InputError, match=r"no \*\.mrk\.json or \*\.fcsv files in the folder"):
        read_markups_folder(tmp_path)
    write_scan_markups(tmp_path, [Scan("p", "s", "1", None, _nodes())])
    (tmp_path / "images").mkdir()
    with pytest.raises(InputError) as info:
        read_markups_folder(tmp_path, images=tmp_path / "images")
    assert str(info.value) == (
        f"{tmp_path / 'images'}: no image for scan p_1: expected p_1.nii.gz (or .nii, .nrrd, "
        ".nhdr, .mha, .mhd) or a DICOM folder p_1/ in the --images folder, or give the scan's "
        "image in the image column of a --table FILE.csv")
    with pytest.raises(InputError, match=r"nope: image folder \(--images\) not found"):
        read_markups_folder(tmp_path, images=tmp_path / "nope")
    (tmp_path / "images" / "p_1").mkdir()
    with pytest.raises(InputError, match=r"p_1: the folder holds no DICOM series"):
        read_markups_folder(tmp_path, images=tmp_path / "images")
    assert len(read_markups_folder(tmp_path / "p_1.mrk.json")) == 1


# ---- .fcsv ----

FCSV_HEADER = ("# Markups fiducial file version = 4.11\n# CoordinateSystem = {system}\n"
               "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID\n")
FCSV_ROWS = [("LN-1", "track=T1; short=8.5; long=12.25"), ("LN-2", "T2"), ("LN-3", "")]


def _fcsv(path, system: str, positions=EXPECTED_LPS, rows=FCSV_ROWS, header=FCSV_HEADER):
    """A .fcsv file of the three test points in ``system`` (``LPS``, ``RAS``, ``0``, ``1``)."""
    ras = system in ("RAS", "0")
    lines = [header.format(system=system)]
    for k, ((label, desc), p) in enumerate(zip(rows, positions, strict=True)):
        x, y, z = (-p[0], -p[1], p[2]) if ras else p
        lines.append(f"vtkMRMLMarkupsFiducialNode_{k},{x},{y},{z},0,0,0,1,1,1,0,{label},{desc},"
                     "vtkMRMLScalarVolumeNode1\n")
    path.write_text("".join(lines))
    return path


@pytest.mark.parametrize("system", ["LPS", "RAS", "1", "0"])
def test_fcsv_lps_and_ras_give_the_same_lps_centres(tmp_path, system):
    path = _fcsv(tmp_path / "p_1.fcsv", system)
    nodes = read_fcsv(path, default_short_axis_mm=10.0)
    np.testing.assert_allclose(nodes.pos, EXPECTED_LPS, atol=1e-12)
    assert list(nodes.node_id) == ["LN-1", "LN-2", "LN-3"]
    assert list(nodes.track_id) == ["T1", "T2", None]
    np.testing.assert_array_equal(nodes.short_axis_mm, [8.5, 10.0, 10.0])
    np.testing.assert_array_equal(nodes.long_axis_mm, [12.25, np.nan, np.nan])
    json_nodes = read_markups(LPS_FILE, default_short_axis_mm=10.0)
    np.testing.assert_array_equal(nodes.pos, json_nodes.pos)


def test_fcsv_quoted_fields_and_own_column_order(tmp_path):
    path = tmp_path / "p_1.fcsv"
    path.write_text('# CoordinateSystem = RAS\n# columns = label,desc,x,y,z\n'
                    '"LN, left","track=A; short=6",1.5,2,-3\n')
    nodes = read_fcsv(path)
    assert list(nodes.node_id) == ["LN, left"]
    assert list(nodes.track_id) == ["A"]
    np.testing.assert_array_equal(nodes.pos, [[-1.5, -2.0, -3.0]])


def test_fcsv_errors_name_the_line(tmp_path):
    path = _fcsv(tmp_path / "p_1.fcsv", "LPS")
    with pytest.raises(InputError) as info:
        read_fcsv(path)
    assert str(info.value) == (
        f"{path}, line 5 (label 'LN-2'): no short axis: add 'short=<mm>' to the control point "
        "description, or give one for every such point with --default-short-axis MM")
    path.write_text(path.read_text().replace("# CoordinateSystem = LPS\n", ""))
    with pytest.raises(InputError, match=r"p_1\.fcsv: no '# CoordinateSystem = LPS' \(or RAS\) "
                                         r"header line"):
        read_fcsv(path, default_short_axis_mm=5.0)
    bad = [
        (_fcsv(tmp_path / "a.fcsv", "IJK"), "a.fcsv, line 2: CoordinateSystem must be LPS or RAS"),
        (_fcsv(tmp_path / "b.fcsv", "LPS", positions=[[1, "nan", 3], [0, 0, 0], [1, 1, 1]]),
         "b.fcsv, line 4 (label 'LN-1'): position must be three finite numbers, got "
         "[1.0, 'nan', 3.0]"),
        (_fcsv(tmp_path / "c.fcsv", "LPS", rows=[("A", ""), ("A", ""), ("B", "")]),
         "c.fcsv, line 5 (label 'A'): duplicate label 'A' (first at line 4)"),
        (_fcsv(tmp_path / "d.fcsv", "LPS", rows=[("A", "T1"), ("B", "T1"), ("C", "")]),
         "d.fcsv, line 5 (label 'B'): track 'T1' appears twice (first at line 4)"),
        (_fcsv(tmp_path / "e.fcsv", "LPS", rows=[("A", "short=x"), ("B", ""), ("C", "")]),
         "e.fcsv, line 4 (label 'A'): short='x' in the description is not a positive number"),
    ]
    for file, problem in bad:
        with pytest.raises(InputError) as info:
            read_fcsv(file, default_short_axis_mm=5.0)
        assert str(info.value).startswith(str(tmp_path / problem)), str(info.value)


def test_read_points_tells_the_formats_apart(tmp_path):
    json_copy = tmp_path / "reads.txt"
    json_copy.write_text(LPS_FILE.read_text(encoding="utf-8"))
    fcsv_copy = _fcsv(tmp_path / "reads.csv", "RAS")
    for path in (json_copy, fcsv_copy, LPS_FILE):
        np.testing.assert_allclose(read_points(path, default_short_axis_mm=1.0).pos,
                                   EXPECTED_LPS, atol=1e-12)


def test_folder_with_both_formats(tmp_path):
    _fcsv(tmp_path / "p_2.fcsv", "RAS")
    (tmp_path / "p_1.mrk.json").write_text(RAS_FILE.read_text(encoding="utf-8"))
    (tmp_path / "notes.txt").write_text("ignored")
    scans = read_markups_folder(tmp_path, default_short_axis_mm=4.0)
    assert [(s.patient_id, s.timepoint, s.scan_id) for s in scans] == [
        ("p", "1", "p_1"), ("p", "2", "p_2")]
    np.testing.assert_allclose(scans[1].nodes.pos, scans[0].nodes.pos, atol=1e-12)


# ---- any file name: patient and timepoint given, or a table ----


def test_single_file_of_any_name_with_patient_and_timepoint(tmp_path):
    path = tmp_path / "F.mrk.json"
    path.write_text(LPS_FILE.read_text(encoding="utf-8"))
    (scan,) = read_markups_folder(path, default_short_axis_mm=3.0, patient_id="case 7",
                                  timepoint="2021-03-04")
    assert (scan.patient_id, scan.timepoint, scan.scan_id) == ("case 7", "2021-03-04",
                                                               "case 7_2021-03-04")
    np.testing.assert_allclose(scan.nodes.pos, EXPECTED_LPS)
    with pytest.raises(InputError, match="F.mrk.json: file name must be PATIENT_TIMEPOINT"):
        read_markups_folder(path)
    with pytest.raises(InputError, match=r"--patient/--timepoint: timepoint 'first' is neither"):
        read_markups_folder(path, patient_id="p", timepoint="first")
    with pytest.raises(InputError, match=r"--patient/--timepoint name the scan of one file, but "
                                         r"this is a folder; name the scan of each file with "
                                         r"--table FILE\.csv"):
        read_markups_folder(tmp_path, patient_id="p", timepoint="1")
    with pytest.raises(ValueError, match="both patient_id and timepoint"):
        read_markups_folder(path, patient_id="p")


def _table(tmp_path, text: str) -> Path:
    path = tmp_path / "reads.csv"
    path.write_text(text)
    return path


def test_table_names_files_of_any_name(tmp_path):
    (tmp_path / "reads").mkdir()
    (tmp_path / "reads" / "first read.mrk.json").write_text(RAS_FILE.read_text(encoding="utf-8"))
    _fcsv(tmp_path / "reads" / "second", "LPS")
    image = write_image(sitk.Image([4, 4, 4], sitk.sitkInt16), tmp_path / "ct.mha")
    table = _table(tmp_path, "file,patient_id,timepoint,image\n"
                             "reads/first read.mrk.json,P1,1,ct.mha\n"
                             f"{tmp_path / 'reads' / 'second'},P1,2,\n")
    scans = read_markups_table(table, default_short_axis_mm=5.0)
    assert [(s.patient_id, s.timepoint, s.scan_id, s.image) for s in scans] == [
        ("P1", "1", "P1_1", image), ("P1", "2", "P1_2", None)]
    for scan in scans:
        np.testing.assert_allclose(scan.nodes.pos, EXPECTED_LPS, atol=1e-12)


def test_table_with_scan_ids_and_images_folder(tmp_path):
    (tmp_path / "a.json").write_text(LPS_FILE.read_text(encoding="utf-8"))
    images = tmp_path / "images"
    images.mkdir()
    (images / "base.nii.gz").write_bytes(b"")
    table = _table(tmp_path, "scan_id,file,patient_id,timepoint\nbase,a.json,P,2020-01-02\n")
    (scan,) = read_markups_table(table, default_short_axis_mm=5.0, images=images)
    assert (scan.scan_id, scan.image) == ("base", images / "base.nii.gz")


@pytest.mark.parametrize(("text", "problem"), [
    ("file,patient_id\na.json,P\n", ", line 1: missing column(s) timepoint; expected file, "
     "patient_id, timepoint"),
    ("file,patient_id,timepoint,series_uid\na.json,P,1,x\n", ", line 1: unknown column(s) "
     "'series_uid'; the columns are file, patient_id, timepoint and optionally scan_id, image; a "
     "DICOM series is chosen in the image column as FOLDER#SERIESUID"),
    ("file,patient_id,timepoint\n", ": the table has no rows"),
    ("file,patient_id,timepoint\na.json,,1\n", ", line 2: patient_id is empty"),
    ("file,patient_id,timepoint\na.json,P,later\n", ", line 2: timepoint 'later' is neither an "
     "integer nor an ISO date (YYYY-MM-DD)"),
    ("file,patient_id,timepoint\na.json,P,1\na.json,P,1\n", ", line 3: scan_id 'P_1' appears "
     "twice (first on line 2)"),
    ("file,patient_id,timepoint,scan_id\na.json,P,1,x\na.json,P,1,y\n", ", line 3: patient 'P' "
     "has two rows at timepoint '1' (first on line 2)"),
    ("file,patient_id,timepoint\na.json,P,1\na.json,P,2021-01-01\n", ", line 3: patient 'P' "
     "mixes integer and date timepoints (1, 2021-01-01)"),
    ("file,patient_id,timepoint\nmissing.json,P,1\n", ", line 2 (scan P_1): file 'missing.json' "
     "not found"),
    ("file,patient_id,timepoint,image\na.json,P,1,nope.nii.gz\n", ", line 2 (scan P_1): image "
     "'nope.nii.gz': "),
])
def test_table_errors(tmp_path, text, problem):
    (tmp_path / "a.json").write_text(LPS_FILE.read_text(encoding="utf-8"))
    table = _table(tmp_path, text)
    with pytest.raises(InputError) as info:
        read_markups_table(table, default_short_axis_mm=5.0)
    assert str(info.value).startswith(f"{table}{problem}"), str(info.value)


def test_table_image_column_and_images_folder_conflict(tmp_path):
    table = _table(tmp_path, "file,patient_id,timepoint,image\na.json,P,1,\n")
    with pytest.raises(InputError, match=r"reads\.csv, line 1: the table has an image column "
                                         r"and --images was given too"):
        read_markups_table(table, images=tmp_path)


# ---- DICOM folders with several series ----

UID_1, UID_2 = "1.2.826.0.1.3680043.2.1125.78.1", "1.2.826.0.1.3680043.2.1125.78.2"


def write_dicom_series(folder: Path, uid: str, depth: int = 3) -> None:
    """``depth`` 4×4 CT slices of one series, 2 mm apart, with the tags a reader needs."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(depth):
        plane = sitk.Image([4, 4], sitk.sitkInt16)
        for tag, value in {"0008|0016": "1.2.840.10008.5.1.4.1.1.2", "0008|0060": "CT",
                           "0008|0018": f"{uid}.{k + 1}", "0020|000d": f"{uid}.0",
                           "0020|000e": uid, "0020|0013": str(k + 1),
                           "0020|0032": f"0\\0\\{2 * k}",
                           "0020|0037": "1\\0\\0\\0\\1\\0"}.items():
            plane.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{uid[-4:]}_{k}.dcm"))
        writer.Execute(plane)


def test_several_series_listed_and_chosen_in_the_table(tmp_path):
    write_dicom_series(tmp_path / "study", UID_1)
    write_dicom_series(tmp_path / "study", UID_2, depth=4)
    (tmp_path / "a.json").write_text(LPS_FILE.read_text(encoding="utf-8"))
    table = _table(tmp_path, "file,patient_id,timepoint,image\na.json,P,1,study\n")
    with pytest.raises(InputError) as info:
        read_markups_table(table, default_short_axis_mm=5.0)
    message = str(info.value)
    assert message.startswith(f"{table}, line 2 (scan P_1): image 'study': {tmp_path / 'study'}: "
                              "the folder holds 2 DICOM series: ")
    assert f"{UID_1} (no description, 3 files)" in message
    assert f"{UID_2} (no description, 4 files)" in message
    assert "Choose one by writing the image path as FOLDER#SERIESUID" in message
    table.write_text(f"file,patient_id,timepoint,image\na.json,P,1,study#{UID_2}\n")
    (scan,) = read_markups_table(table, default_short_axis_mm=5.0)
    assert scan.image == tmp_path / f"study#{UID_2}"


def test_several_series_in_images_folder_point_to_the_table(tmp_path):
    write_dicom_series(tmp_path / "images" / "p_1", UID_1)
    write_dicom_series(tmp_path / "images" / "p_1", UID_2)
    (tmp_path / "p_1.mrk.json").write_text(LPS_FILE.read_text(encoding="utf-8"))
    with pytest.raises(InputError) as info:
        read_markups_folder(tmp_path / "p_1.mrk.json", default_short_axis_mm=5.0,
                            images=tmp_path / "images")
    assert "holds 2 DICOM series" in str(info.value)
    assert ("Choose one by giving the scans' images in the image column of a --table FILE.csv, "
            "there as FOLDER#SERIESUID (--images takes the folder p_1/ whole)") in str(info.value)
