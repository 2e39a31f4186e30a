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


@pytest.mark.parametrize("fmt", ["nih", "slicer", "dls", "seg"])
def test_each_format_has_help(capsys, fmt):
    with pytest.raises(SystemExit):
        main(["import", fmt, "--help"])
    out = capsys.readouterr().out
    assert "\nexample:\n" in out or "\nexamples:\n" in out


def test_seg_option_constants_match_the_library():
    from lngraph.cli import import_cmd
    from lngraph.io import seg

    assert import_cmd.LABEL_MODES == seg.LABEL_MODES
    assert import_cmd.DEFAULT_MIN_VOLUME_MM3 == seg.DEFAULT_MIN_VOLUME_MM3


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
    assert "--default-short-axis MM" in err
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


# ---- .fcsv, any file name, tables ----

FCSV = ("# Markups fiducial file version = 4.11\n# CoordinateSystem = {system}\n"
        "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID\n"
        "vtkMRMLMarkupsFiducialNode_0,{x},{y},-366.5,0,0,0,1,1,1,0,LN-1,track=T1; short=8.5,\n")


def test_slicer_fcsv_lps_and_ras_folder(tmp_path):
    src = tmp_path / "reads"
    src.mkdir()
    (src / "case3_1.fcsv").write_text(FCSV.format(system="LPS", x=-14.5, y=97.25))
    (src / "case3_2.fcsv").write_text(FCSV.format(system="RAS", x=14.5, y=-97.25))
    assert main(["import", "slicer", str(src), str(tmp_path / "out")]) == 0
    cohort = read_cohort(tmp_path / "out")
    (pair,) = cohort.pairs()
    np.testing.assert_array_equal(pair.src.nodes.pos, [[-14.5, 97.25, -366.5]])
    np.testing.assert_array_equal(pair.dst.nodes.pos, [[-14.5, 97.25, -366.5]])
    np.testing.assert_array_equal(pair.gt_matches(), [[0, 0]])


def test_slicer_any_file_name_with_patient_and_timepoint(tmp_path, capsys):
    src = tmp_path / "F.fcsv"
    src.write_text(FCSV.format(system="RAS", x=1, y=2))
    out = tmp_path / "out"
    assert main(["import", "slicer", str(src), str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{src}: file name must be PATIENT_TIMEPOINT.mrk.json or PATIENT_TIMEPOINT.fcsv" in err
    assert ("or name the scan with --patient P --timepoint T (one file) or --table FILE.csv "
            "(columns file,patient_id,timepoint[,image])") in err
    assert main(["import", "slicer", str(src), str(out), "--patient", "case 9",
                 "--timepoint", "3"]) == 0
    scan = read_cohort(out).scans["case 9_3"]
    assert (scan.patient_id, scan.timepoint) == ("case 9", "3")
    np.testing.assert_array_equal(scan.nodes.pos, [[-1, -2, -366.5]])


@pytest.mark.parametrize(("extra", "message"), [
    (["--patient", "p"], "give --patient and --timepoint together"),
    (["--table", "t.csv"], "give SRC or --table, not both"),
])
def test_slicer_usage_errors(tmp_path, capsys, extra, message):
    assert main(["import", "slicer", str(tmp_path), str(tmp_path / "out"), *extra]) == 2
    assert f"lngraph import: error: {message}" in capsys.readouterr().err


def test_slicer_needs_src_or_table(tmp_path, capsys):
    assert main(["import", "slicer", str(tmp_path / "out")]) == 2
    assert ("give SRC (a markups folder or file) and OUT, or --table FILE.csv and OUT"
            in capsys.readouterr().err)
    assert main(["import", "slicer", str(tmp_path / "out"), "--table", "t.csv", "--patient",
                 "p", "--timepoint", "1"]) == 2
    assert "with --table the table's patient_id and timepoint columns do" in (
        capsys.readouterr().err)


def test_slicer_table(tmp_path, capsys):
    reads = tmp_path / "reads"
    reads.mkdir()
    (reads / "baseline read.mrk.json").write_text(
        (TEST_DATA / "lymph_nodes_lps.mrk.json").read_text(encoding="utf-8"))
    (reads / "follow-up.fcsv").write_text(FCSV.format(system="RAS", x=14.5, y=-97.25))
    table = tmp_path / "reads.csv"
    table.write_text("file,patient_id,timepoint\nreads/baseline read.mrk.json,A,2021-01-02\n"
                     "reads/follow-up.fcsv,A,2021-07-30\n")
    out = tmp_path / "out"
    assert main(["import", "slicer", str(out), "--table", str(table),
                 "--default-short-axis", "6"]) == 0
    assert "patients 1, scans 2, nodes 4" in capsys.readouterr().out
    (pair,) = read_cohort(out).pairs()
    assert (pair.src.scan_id, pair.dst.scan_id) == ("A_2021-01-02", "A_2021-07-30")
    np.testing.assert_array_equal(pair.gt_matches(), [[0, 0]])


# ---- segmentation masks and DICOM folders with several series ----

UID_1, UID_2 = "1.2.826.0.1.3680043.2.1125.79.1", "1.2.826.0.1.3680043.2.1125.79.2"
SPACING = (0.75, 0.75, 2.0)


def _write_series(folder: Path, uid: str, depth: int, description: str | None = None) -> None:
    """``depth`` 12×12 axial CT slices of one series, ``SPACING`` apart, origin 0."""
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(depth):
        plane = sitk.Image([12, 12], sitk.sitkInt16)
        plane.SetSpacing(SPACING[:2])
        tags = {"0008|0016": "1.2.840.10008.5.1.4.1.1.2", "0008|0060": "CT",
                "0008|0018": f"{uid}.{k + 1}", "0020|000d": "1.2.826.0.1.3680043.2.1125.79.0",
                "0020|000e": uid, "0020|0013": str(k + 1),
                "0020|0032": f"0\\0\\{SPACING[2] * k}", "0020|0037": "1\\0\\0\\0\\1\\0",
                "0028|0030": f"{SPACING[1]}\\{SPACING[0]}"}
        if description:
            tags["0008|103e"] = description
        for tag, value in tags.items():
            plane.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{uid[-4:]}_{k:02d}.dcm"))
        writer.Execute(plane)


def _mask(path: Path, depth: int, labels: dict) -> None:
    """A label map on the grid of ``_write_series``: label → (k, j, i) slices of a box."""
    import SimpleITK as sitk

    from lngraph.io.image import write_image

    array = np.zeros((depth, 12, 12), np.uint8)
    for label, box in labels.items():
        array[box] = label
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING)
    write_image(image, path)


def test_seg_dicom_series_listed_then_chosen(tmp_path, capsys):
    from lngraph.io.image import read_image

    _write_series(tmp_path / "study", UID_1, 3, description="SCOUT")
    _write_series(tmp_path / "study", UID_2, 6, description="AX 2mm")
    _mask(tmp_path / "m1.nii.gz", 6, {3: np.s_[1:3, 2:6, 2:6], 8: np.s_[4, 8:10, 8:11]})
    _mask(tmp_path / "m2.nii.gz", 6, {3: np.s_[2:4, 3:6, 3:6]})
    table = tmp_path / "masks.csv"
    table.write_text("patient_id,timepoint,image,mask\nP,1,study,m1.nii.gz\n"
                     "P,2,study,m2.nii.gz\n")
    out = tmp_path / "out"
    assert main(["import", "seg", str(table), str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lngraph import: error: {table}, line 2 (scan P_1): image 'study': "
                          f"{tmp_path / 'study'}: the folder holds 2 DICOM series: ")
    assert f"{UID_1} ('SCOUT', 3 files)" in err and f"{UID_2} ('AX 2mm', 6 files)" in err
    assert "Choose one by writing the image path as FOLDER#SERIESUID, e.g. " in err
    assert not out.exists()

    table.write_text(f"patient_id,timepoint,image,mask\nP,1,study#{UID_2},m1.nii.gz\n"
                     f"P,2,study#{UID_2},m2.nii.gz\n")
    assert main(["import", "seg", str(table), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "patients 1, scans 2, nodes 2" in printed
    assert "masks read as instances (track_id = label)" in printed
    assert "dropped 1 node smaller than 10 mm³ (--min-volume)" in printed  # label 8: 6.75 mm³
    assert f"../study#{UID_2}" in (out / "scans.csv").read_text(encoding="utf-8")
    cohort = read_cohort(out, check_images=False)
    (pair,) = cohort.pairs()
    np.testing.assert_array_equal(pair.gt_matches(), [[0, 0]])
    np.testing.assert_allclose(pair.src.nodes.pos, [[3.5 * 0.75, 3.5 * 0.75, 1.5 * 2.0]])
    assert read_image(pair.src.image).GetSize() == (12, 12, 6)


def test_seg_mask_off_grid_fails_cleanly(tmp_path, capsys):
    _write_series(tmp_path / "ct", UID_1, 4)
    _mask(tmp_path / "m.nii.gz", 5, {1: np.s_[1:3, 2:6, 2:6]})
    table = tmp_path / "masks.csv"
    table.write_text("patient_id,timepoint,image,mask\nP,1,ct,m.nii.gz\n")
    assert main(["import", "seg", str(table), str(tmp_path / "out"), "--labels",
                 "components"]) == 2
    err = capsys.readouterr().err
    assert (f"{table}, line 2 (scan P_1): mask 'm.nii.gz': {tmp_path / 'm.nii.gz'}: the mask is "
            "not on the image's grid: size (12, 12, 5) vs the image's (12, 12, 4) voxels") in err
    assert not (tmp_path / "out").exists()


def test_seg_components_and_min_volume(tmp_path, capsys):
    _write_series(tmp_path / "ct", UID_1, 4)
    _mask(tmp_path / "m.nii.gz", 4, {1: np.s_[1:3, 2:6, 2:6], 2: np.s_[0, 9, 9]})
    table = tmp_path / "masks.csv"
    table.write_text("patient_id,timepoint,image,mask\nP,1,ct,m.nii.gz\n")
    out = tmp_path / "out"
    assert main(["import", "seg", str(table), str(out), "--labels", "components",
                 "--min-volume", "0"]) == 0
    assert "masks read as components" in capsys.readouterr().out
    nodes = read_cohort(out).scans["P_1"].nodes
    assert list(nodes.node_id) == ["1", "2"] and list(nodes.track_id) == [None, None]
    # numbered as met slice by slice: the speck (slice 0) first, then the 4 × 4 voxel box
    np.testing.assert_allclose(nodes.long_axis_mm, [0.75 * np.sqrt(2), 3.0 * np.sqrt(2)],
                               atol=1e-4)  # nodes.csv keeps 1e-4 mm
