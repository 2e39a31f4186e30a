"""NIH/TCIA CT Lymph Nodes annotation folders (hand-made cases and the real collection) and the
abdominal layouts derived from them that ship with the package."""

import warnings

import numpy as np
import pytest

from lngraph.io.errors import InputError
from lngraph.io.nih import read_mps, read_nih, read_nih_case, read_nih_sizes, read_point_list
from lngraph.synth.nodes import (
    NIH_LAYOUTS_CSV,
    format_nih_layouts,
    packaged_nih_cases,
    read_nih_cases,
    read_nih_layouts,
)

MPS = """<?xml version="1.0" encoding="ISO-8859-1"?>
<point_set_file>
  <file_version>0.1</file_version>
  <point_set>
    <time_series>
      <time_series_id>0</time_series_id>
{points}
    </time_series>
  </point_set>
</point_set_file>
"""
POINT = """      <point>
        <id>{id}</id>
        <specification>0</specification>
        <x>{x}</x>
        <y>{y}</y>
        <z>{z}</z>
      </point>"""


def _mps(points) -> str:
    return MPS.format(points="\n".join(POINT.format(id=k, x=x, y=y, z=z)
                                       for k, (x, y, z) in enumerate(points)))


def _case(root, name, points, sizes):
    folder = root / name
    folder.mkdir(parents=True)
    (folder / f"{name}_lymphnodes_physicalPoints.txt").write_text(
        "".join(f"{x} {y} {z}\n" for x, y, z in points))
    (folder / f"{name}_lymphnodes_physicalPoints.mps").write_text(_mps(points))
    (folder / f"{name}_lymphnodes_sizes.txt").write_text(sizes)
    return folder


ABD = [(-10.5, 90.25, -300.0), (12.0, 101.5, -296.5), (30.75, 120.0, -250.0)]
MED = [(-40.0, 140.5, 90.0)]


@pytest.fixture
def collection(tmp_path):
    _case(tmp_path, "ABD_LYMPH_002", ABD, "8.5 11.25\n10 13.5\n12.75 17\n")
    _case(tmp_path, "MED_LYMPH_001", MED, "11.5\n")
    return tmp_path


def test_reads_every_case_as_one_scan(collection):
    scans = read_nih(collection)
    assert [s.scan_id for s in scans] == ["ABD_LYMPH_002", "MED_LYMPH_001"]
    abd, med = scans
    assert (abd.patient_id, abd.timepoint, abd.image) == ("ABD_LYMPH_002", "0", None)
    np.testing.assert_array_equal(abd.nodes.pos, ABD)
    np.testing.assert_array_equal(abd.nodes.short_axis_mm, [8.5, 10, 12.75])
    np.testing.assert_array_equal(abd.nodes.long_axis_mm, [11.25, 13.5, 17])
    assert list(abd.nodes.node_id) == ["0", "1", "2"]
    assert list(abd.nodes.track_id) == [None, None, None]
    np.testing.assert_array_equal(med.nodes.short_axis_mm, [11.5])
    np.testing.assert_array_equal(med.nodes.long_axis_mm, [np.nan])
    np.testing.assert_array_equal(med.nodes.radius_mm, [5.75])


def test_one_case_folder_is_accepted_directly(collection):
    (scan,) = read_nih(collection / "MED_LYMPH_001")
    assert scan.scan_id == "MED_LYMPH_001"


def test_mps_points_equal_txt_points(collection):
    for txt, mps in zip(read_nih(collection), read_nih(collection, points="mps"), strict=True):
        np.testing.assert_array_equal(txt.nodes.pos, mps.nodes.pos)


def test_unmeasured_size_gets_the_default_with_a_warning(tmp_path):
    folder = _case(tmp_path, "MED_LYMPH_009", MED + [(1.0, 2.0, 3.0)], "0\n9.5\n")
    sizes = folder / "MED_LYMPH_009_lymphnodes_sizes.txt"
    with pytest.warns(UserWarning, match=f"{sizes}, line 1: size 0 means not measured; using "
                      "a short axis of 10 mm"):
        scan = read_nih_case(folder)
    np.testing.assert_array_equal(scan.nodes.short_axis_mm, [10.0, 9.5])
    with pytest.raises(InputError, match=r"sizes\.txt, line 1: size 0 \(not measured\)"):
        read_nih_case(folder, unmeasured_size_mm=None)


def test_swapped_short_and_long_are_sorted_with_a_warning(tmp_path):
    path = tmp_path / "x_lymphnodes_sizes.txt"
    path.write_text("8 10\n11.06 9.6\n")
    with pytest.warns(UserWarning, match="line 2: first size 11.06 exceeds second 9.6; read as "
                      "short 9.6, long 11.06"):
        short, long_ = read_nih_sizes(path)
    np.testing.assert_array_equal(short, [8, 9.6])
    np.testing.assert_array_equal(long_, [10, 11.06])


def test_blank_lines_are_skipped(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("1 2 3\n\n4 5 6\n\n")
    np.testing.assert_array_equal(read_point_list(path), [[1, 2, 3], [4, 5, 6]])


@pytest.mark.parametrize(("text", "problem"), [
    ("1 2 3\n4 5\n", "line 2: expected three numbers 'x y z', got 2 field(s): '4 5'"),
    ("1 2 3\n4 x 6\n", "line 2: not a number: 'x'"),
    ("nan 2 3\n", "line 1: not a finite number: 'nan'"),
])
def test_bad_points(tmp_path, text, problem):
    path = tmp_path / "p.txt"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        read_point_list(path)
    assert str(info.value) == f"{path}, {problem}"


@pytest.mark.parametrize(("text", "problem"), [
    ("1 2 3\n", "line 1: expected 'short' or 'short long' (mm), got 3 fields: '1 2 3'"),
    ("4\n-1\n", "line 2: sizes must not be negative, got '-1'"),
])
def test_bad_sizes(tmp_path, text, problem):
    path = tmp_path / "s.txt"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        read_nih_sizes(path)
    assert str(info.value) == f"{path}, {problem}"


def test_size_rows_must_match_points(tmp_path):
    folder = _case(tmp_path, "ABD_LYMPH_003", ABD, "8 10\n9 11\n")
    with pytest.raises(InputError, match=r"ABD_LYMPH_003_lymphnodes_sizes\.txt: 2 size rows for "
                       r"3 points in ABD_LYMPH_003_lymphnodes_physicalPoints\.txt"):
        read_nih_case(folder)


def test_missing_sizes_file(tmp_path):
    folder = _case(tmp_path, "ABD_LYMPH_004", ABD, "")
    (folder / "ABD_LYMPH_004_lymphnodes_sizes.txt").unlink()
    with pytest.raises(InputError, match=r"ABD_LYMPH_004_lymphnodes_sizes\.txt: file not found"):
        read_nih_case(folder)


def test_not_a_collection(tmp_path):
    with pytest.raises(InputError, match="no NIH CT Lymph Nodes case folders"):
        read_nih(tmp_path)
    with pytest.raises(InputError, match="folder not found"):
        read_nih(tmp_path / "missing")


def test_mps_errors(tmp_path):
    path = tmp_path / "p.mps"
    path.write_text("<point_set_file>\n<point_set>\n</point_set_file>\n")
    with pytest.raises(InputError, match=r"p\.mps, line 3: not valid XML"):
        read_mps(path)
    path.write_text(_mps([(1, 2, 3)]).replace("<y>2</y>", "<y>two</y>"))
    with pytest.raises(InputError, match=r"p\.mps \(point 0\): not a number: 'two'"):
        read_mps(path)
    path.write_text(_mps([(1, 2, 3)]).replace("<z>3</z>", ""))
    with pytest.raises(InputError, match=r"\(point 0\): a point needs <x>, <y> and <z>"):
        read_mps(path)
    series = "<time_series><time_series_id>1</time_series_id></time_series>\n  </point_set>"
    path.write_text(_mps([(1, 2, 3)]).replace("</point_set>", series, 1))
    with pytest.raises(InputError, match="holds 2 time steps"):
        read_mps(path)
    path.write_text(_mps([(1, 2, 3)]).replace("<time_series_id>0</time_series_id>",
                                              "<time_series_id>0</time_series_id><Geometry3D/>"))
    with pytest.raises(InputError, match="carries a Geometry3D transform"):
        read_mps(path)


# ---- the real collection (../shared/data) ----

def _real(shared_data, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return read_nih(shared_data / "nih_ct_lymph_nodes", **kwargs)


def test_real_collection_counts(shared_data):
    scans = _real(shared_data)
    assert len(scans) == 176
    abd = [s for s in scans if s.scan_id.startswith("ABD_")]
    med = [s for s in scans if s.scan_id.startswith("MED_")]
    assert (len(abd), len(med)) == (86, 90)
    assert sum(len(s.nodes) for s in abd) == 595
    assert sum(len(s.nodes) for s in med) == 388
    assert all(np.isfinite(s.nodes.long_axis_mm).all() for s in abd)
    assert all(np.isnan(s.nodes.long_axis_mm).all() for s in med)
    assert all((s.nodes.short_axis_mm > 0).all() for s in scans)


def test_real_mps_points_equal_txt_points(shared_data):
    txt, mps = _real(shared_data), _real(shared_data, points="mps")
    assert [s.scan_id for s in txt] == [s.scan_id for s in mps]
    for a, b in zip(txt, mps, strict=True):
        np.testing.assert_array_equal(a.nodes.pos, b.nodes.pos)


def test_real_physical_points_are_lps(shared_data):
    """x grows with voxel i and y with j in every case: LPS for axial CT (RAS would shrink)."""
    root = shared_data / "nih_ct_lymph_nodes"
    for scan in _real(shared_data):
        index = read_point_list(root / scan.scan_id / f"{scan.scan_id}_lymphnodes_indices.txt")
        d_index = index[:, None] - index[None]
        d_world = scan.nodes.pos[:, None] - scan.nodes.pos[None]
        moved = d_index != 0
        assert (np.sign(d_world[moved]) == np.sign(d_index[moved])).all(), scan.scan_id


# ---- the abdominal layouts shipped with the package (lngraph/synth/data) ----

def test_packaged_layouts_hold_the_86_abdominal_cases():
    cases = read_nih_cases()
    assert [c.name for c in cases] == [f"ABD_LYMPH_{k:03d}" for k in range(1, 87)]
    assert sum(len(c.pos) for c in cases) == 595
    for c in cases:
        assert c.pos.shape == (len(c.short_mm), 3) and len(c.long_mm) == len(c.short_mm)
        assert np.all(c.short_mm > 0) and np.all(c.long_mm >= c.short_mm)
    assert (NIH_LAYOUTS_CSV.parent / "NOTICE").is_file()


def test_packaged_layouts_round_trip():
    cases = packaged_nih_cases()
    assert format_nih_layouts(cases).encode("utf-8") == NIH_LAYOUTS_CSV.read_bytes()


def test_packaged_layouts_equal_the_real_annotations(shared_data):
    real = read_nih_cases(shared_data / "nih_ct_lymph_nodes")
    packaged = packaged_nih_cases()
    assert [c.name for c in packaged] == [c.name for c in real]
    for a, b in zip(packaged, real, strict=True):
        np.testing.assert_array_equal(a.pos, b.pos)
        np.testing.assert_array_equal(a.short_mm, b.short_mm)
        np.testing.assert_array_equal(a.long_mm, b.long_mm)
    # benchmarks/nih_layouts.py writes exactly format_nih_layouts(real): byte-identical
    assert format_nih_layouts(real).encode("utf-8") == NIH_LAYOUTS_CSV.read_bytes()


def test_layouts_table_from_a_hand_made_collection(collection, tmp_path):
    (case,) = read_nih_cases(collection)  # the ABD case only
    path = tmp_path / "layouts.csv"
    path.write_text(format_nih_layouts([case]))
    assert path.read_text().splitlines()[:2] == [
        "case,node,x_mm,y_mm,z_mm,short_mm,long_mm", "ABD_LYMPH_002,0,-10.5,90.25,-300.0,8.5,11.25"]
    (back,) = read_nih_layouts(path)
    assert back.name == "ABD_LYMPH_002"
    np.testing.assert_array_equal(back.pos, ABD)
    np.testing.assert_array_equal(back.long_mm, [11.25, 13.5, 17])


HEADER = "case,node,x_mm,y_mm,z_mm,short_mm,long_mm\n"


@pytest.mark.parametrize(("text", "problem"), [
    ("case,node,x,y,z\n",
     "line 1: expected the header 'case,node,x_mm,y_mm,z_mm,short_mm,long_mm'"),
    (HEADER, "holds no node"),
    (HEADER + "A,0,1,2,3,8\n", "line 2: expected 7 fields, got 6"),
    (HEADER + "A,0,1,two,3,8,10\n", "line 2: not a number among '1,two,3,8,10'"),
    (HEADER + "A,0,1,2,3,8,10\nA,2,1,2,3,8,10\n",
     "line 3: node '2' of case A: expected 1 (nodes numbered 0, 1, … in order)"),
    (HEADER + "A,0,1,2,3,8,10\nB,0,1,2,3,8,10\nA,1,1,2,3,8,10\n",
     "line 4: case A continues after other cases; its rows must be consecutive"),
    (HEADER + "A,0,1,2,3,12,10\n", "line 2: long_axis_mm 10 is smaller than short_axis_mm 12"),
    (HEADER + "A,0,1,2,3,8,nan\n", "line 2: long_mm is not a finite number"),
    (HEADER + "A,0,1,2,inf,8,10\n", "line 2: z is not a finite number"),
    (HEADER + ",0,1,2,3,8,10\n", "line 2: empty case name"),
])
def test_bad_layouts_table(tmp_path, text, problem):
    path = tmp_path / "layouts.csv"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        read_nih_layouts(path)
    where = f"{path}, " if problem.startswith("line") else f"{path}: "
    assert str(info.value).startswith(where + problem)


def test_missing_layouts_table(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_nih_layouts(tmp_path / "absent.csv")
