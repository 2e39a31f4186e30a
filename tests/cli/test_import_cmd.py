"""``lngraph import nih|slicer|dls`` run in-process on small inputs and the real data."""

import json
from pathlib import Path

import numpy as np
import pytest

from lngraph.cli.main import main
from lngraph.io.cohort import read_cohort
from lngraph.io.slicer import read_markups

PROJECT_DATA = Path(__file__).resolve().parents[2] / "data"
TEST_DATA = Path(__file__).resolve().parents[1] / "data"


def test_help_lists_the_formats(capsys):
    with pytest.raises(SystemExit) as info:
        main(["import", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for word in ("nih", "slicer", "dls", "LPS"):
        assert word in out


@pytest.mark.parametrize("fmt", ["nih", "slicer", "dls"])
def test_each_format_has_help(capsys, fmt):
    with pytest.raises(SystemExit):
        main(["import", fmt, "--help"])
    assert "example:" in capsys.readouterr().out


def test_slicer_example_markups(tmp_path, capsys):
    out = tmp_path / "cohort"
    assert main(["import", "slicer", str(PROJECT_DATA / "example_markups"), str(out)]) == 0
    assert "patients 1, scans 2, nodes 8" in capsys.readouterr().out
    cohort = read_cohort(out)
    (pair,) = cohort.pairs()
    assert (pair.src.scan_id, pair.dst.scan_id) == ("case01_1", "case01_2")
    np.testing.assert_array_equal(pair.gt_matches(), [[0, 0], [1, 1], [3, 2]])
    np.testing.assert_array_equal(pair.gt_disappeared(), [2])
    np.testing.assert_array_equal(pair.gt_new(), [3])
    np.testing.assert_allclose(pair.dst.nodes.pos[0], [-29.0, 16.5, -404.5])  # RAS file → LPS


def test_slicer_single_file_with_default_size_and_images(tmp_path):
    src = tmp_path / "case9_2021-03-04.mrk.json"
    src.write_text((TEST_DATA / "lymph_nodes_ras.mrk.json").read_text(encoding="utf-8"))
    images = tmp_path / "images"
    images.mkdir()
    (images / "case9_2021-03-04.nii.gz").write_bytes(b"")
    out = tmp_path / "cohort"
    assert main(["import", "slicer", str(src), str(out), "--default-short-axis", "7.5",
                 "--images", str(images)]) == 0
    assert "../images/case9_2021-03-04.nii.gz" in (out / "scans.csv").read_text(encoding="utf-8")
    scan = read_cohort(out).scans["case9_2021-03-04"]
    np.testing.assert_array_equal(scan.nodes.short_axis_mm, [8.5, 7.5, 7.5])
    assert scan.timepoint == "2021-03-04"


def test_slicer_without_default_size_fails_cleanly(tmp_path, capsys):
    src = tmp_path / "case9_1.mrk.json"
    src.write_text((TEST_DATA / "lymph_nodes_lps.mrk.json").read_text(encoding="utf-8"))
    assert main(["import", "slicer", str(src), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lngraph import: error: {src} (markup 1, control point 2 'LN-2'): "
                          "no short axis")
    assert not (tmp_path / "out").exists()


def test_slicer_without_coordinate_system_fails_cleanly(tmp_path, capsys):
    document = json.loads((TEST_DATA / "lymph_nodes_lps.mrk.json").read_text(encoding="utf-8"))
    del document["markups"][0]["coordinateSystem"]
    src = tmp_path / "case9_1.mrk.json"
    src.write_text(json.dumps(document))
    assert main(["import", "slicer", str(src), str(tmp_path / "out")]) == 2
    assert f"{src} (markup 1): no coordinateSystem" in capsys.readouterr().err


def test_refuses_to_overwrite_without_flag(tmp_path, capsys):
    src, out = str(PROJECT_DATA / "example_markups"), tmp_path / "cohort"
    assert main(["import", "slicer", src, str(out)]) == 0
    (out / "notes.txt").write_text("mine")
    assert main(["import", "slicer", src, str(out)]) == 2
    assert f"{out}: already exists and is not empty; pass --overwrite" in capsys.readouterr().err
    assert (out / "notes.txt").exists()
    assert main(["import", "slicer", src, str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["nodes.csv", "scans.csv"]  # replaced whole
    assert [p.name for p in tmp_path.iterdir()] == ["cohort"]  # no temporary folder left


def test_refuses_images_inside_the_output_folder(tmp_path, capsys):
    src = tmp_path / "case9_1.mrk.json"
    src.write_text((TEST_DATA / "lymph_nodes_ras.mrk.json").read_text(encoding="utf-8"))
    out = tmp_path / "cohort"
    (out / "images").mkdir(parents=True)
    (out / "images" / "case9_1.nii.gz").write_bytes(b"")
    assert main(["import", "slicer", str(src), str(out), "--default-short-axis", "7",
                 "--images", str(out / "images"), "--overwrite"]) == 2
    assert f"{out}: holds --images ({out / 'images'})" in capsys.readouterr().err
    assert (out / "images" / "case9_1.nii.gz").exists()


def test_rejects_a_non_positive_size_option(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["import", "nih", str(tmp_path), str(tmp_path / "o"), "--unmeasured-size", "0"])
    assert info.value.code == 2
    assert "must be a positive number of mm" in capsys.readouterr().err


def test_nih_small_collection_with_warning(tmp_path, capsys):
    case = tmp_path / "src" / "MED_LYMPH_042"
    case.mkdir(parents=True)
    (case / "MED_LYMPH_042_lymphnodes_physicalPoints.txt").write_text("1 2 3\n4 5 6\n")
    (case / "MED_LYMPH_042_lymphnodes_sizes.txt").write_text("0\n12\n")
    out = tmp_path / "cohort"
    assert main(["import", "nih", str(tmp_path / "src"), str(out),
                 "--unmeasured-size", "9"]) == 0
    captured = capsys.readouterr()
    assert "lngraph import: warning:" in captured.err and "line 1: size 0" in captured.err
    scan = read_cohort(out).scans["MED_LYMPH_042"]
    np.testing.assert_array_equal(scan.nodes.short_axis_mm, [9, 12])


def test_dls_small_file(tmp_path):
    record = {"source": "000007_01_01_001-005.nii.gz", "target": "000007_02_01_003-009.nii.gz",
              "source center": [10, 20, 1], "target center": [12, 18, 2],
              "source spacing": [0.5, 0.5, 5], "target spacing": [0.5, 0.5, 5],
              "source recist diameter": [12, 8], "target recist diameter": [10, 6]}
    src = tmp_path / "pairs.json"
    src.write_text(json.dumps({"0001": record}))
    assert main(["import", "dls", str(src), str(tmp_path / "cohort")]) == 0
    cohort = read_cohort(tmp_path / "cohort")
    (pair,) = cohort.pairs()
    np.testing.assert_array_equal(pair.gt_matches(), [[0, 0]])
    np.testing.assert_allclose(pair.src.nodes.pos, [[5, 10, 10]])


def test_written_markups_import_back(tmp_path):
    """A cohort written as Slicer files (as a result would be) imports to the same nodes."""
    from lngraph.io.slicer import write_scan_markups

    cohort = read_cohort(PROJECT_DATA / "example_cohort")
    write_scan_markups(tmp_path / "markups", cohort.scans.values())
    assert main(["import", "slicer", str(tmp_path / "markups"), str(tmp_path / "back")]) == 0
    back = read_cohort(tmp_path / "back")
    for scan in cohort.scans.values():
        other = back.scans[f"{scan.patient_id}_{scan.timepoint}"].nodes
        np.testing.assert_allclose(other.pos, scan.nodes.pos)
        assert list(other.track_id) == list(scan.nodes.track_id)
    assert read_markups(tmp_path / "markups" / "P01_1.mrk.json").node_id.tolist() == [
        "n1", "n2", "n3", "n4", "n5"]


def test_real_nih_collection(shared_data, tmp_path, capsys):
    out = tmp_path / "nih"
    assert main(["import", "nih", str(shared_data / "nih_ct_lymph_nodes"), str(out)]) == 0
    assert "patients 176, scans 176, nodes 983" in capsys.readouterr().out
    assert repr(read_cohort(out)) == "Cohort(patients=176, scans=176, nodes=983)"


def test_real_dls_pairs(shared_data, tmp_path, capsys):
    out = tmp_path / "dls"
    assert main(["import", "dls", str(shared_data / "dls" / "valid.json"), str(out)]) == 0
    cohort = read_cohort(out)
    assert len(cohort.patients) == 105
    assert sum(len(p.gt_matches()) for p in cohort.pairs("all")) >= 453
