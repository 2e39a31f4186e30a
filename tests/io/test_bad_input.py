"""Bad input in the I/O layer: one clear InputError naming the file (and line or node), never a
silent wrong result or a traceback from deep inside ITK, pandas or numpy.

Images: truncated or corrupt voxel data, non-finite voxels. Node tables: long < short,
coordinates and sizes out of range, a column named twice (cohort, NIH, Slicer and DLS readers).
Empty predictions are covered in test_matches.py and tests/cli/test_evaluate.py.
"""

import gzip
import json
import re

import numpy as np
import pytest
import SimpleITK as sitk

from lngraph.io import InputError, read_image
from lngraph.io.cohort import MAX_ABS_MM, NodeTable, read_cohort
from lngraph.io.dls import read_dls
from lngraph.io.image import _NonFinite, image_geometry
from lngraph.io.nih import read_mps, read_nih_sizes, read_point_list
from lngraph.io.slicer import read_markups, write_markups

VOXELS = np.random.default_rng(0).integers(-1000, 1000, size=(20, 30, 40)).astype(np.int16)


def _write(path, array=VOXELS, compress=True):
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path), useCompression=compress)
    return path


def _cut(path, keep):
    path.write_bytes(path.read_bytes()[:keep])
    return path


def _message(fn, path) -> str:
    with pytest.raises(InputError) as info:
        fn(path)
    return str(info.value)


# ---- images: truncated or corrupt voxel data ----

@pytest.mark.parametrize(("suffix", "keep", "problem"), [
    (".nii.gz", "half", r"the gzip stream is cut short \(no end-of-stream marker after \d+ "
                        r"decompressed bytes; the header describes 48352\)"),
    (".nii.gz", 200, r"the gzip stream is cut short"),
    (".nii.gz", -4, r"the gzip stream is cut short \(no end-of-stream marker after 48352 "),
    (".nrrd", "half", r"the gzip stream is cut short .*the header describes 48000\)"),
    (".mha", "half", r"the zlib stream is cut short .*the header describes 48000\)"),
])
def test_truncated_compressed_image(tmp_path, suffix, keep, problem):
    """ITK fills a cut .nii.gz with zeros without a word; lngraph refuses it (and a cut NRRD
    or MHA with a message a user can act on)."""
    path = _write(tmp_path / f"scan{suffix}")
    size = path.stat().st_size
    _cut(path, size // 2 if keep == "half" else keep % size)
    for fn in (read_image, image_geometry):
        message = _message(fn, path)
        assert message.startswith(f"{path}: truncated or corrupt image: ")
        assert re.search(problem, message), message


@pytest.mark.parametrize("suffix", [".nii", ".nrrd", ".mha"])
def test_truncated_raw_image(tmp_path, suffix):
    path = _cut(_write(tmp_path / f"scan{suffix}", compress=False), -10)
    for fn in (read_image, image_geometry):
        assert _message(fn, path) == (f"{path}: truncated or corrupt image: the file ends after "
                                      "47990 of the 48000 bytes of voxel data the header "
                                      "describes")


@pytest.mark.parametrize(("suffix", "kind"), [(".nrrd", "gzip"), (".mha", "zlib")])
def test_corrupt_compressed_voxels(tmp_path, suffix, kind):
    """A damaged byte in the middle: the stream's checksum fails. ``image_geometry`` only
    checks completeness (module docstring), so it still answers."""
    path = _write(tmp_path / f"scan{suffix}")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    message = _message(read_image, path)
    assert message.startswith(f"{path}: truncated or corrupt image: the {kind}-compressed voxel "
                              "data are damaged (Error -3 while decompressing data")
    assert image_geometry(path).size == (40, 30, 20)


def test_corrupt_nifti_gz(tmp_path):
    """ITK does not even recognise a .nii.gz whose gzip check fails; say why."""
    path = _write(tmp_path / "scan.nii.gz")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    for fn in (read_image, image_geometry):
        assert _message(fn, path).startswith(f"{path}: truncated or corrupt image: the "
                                             "gzip-compressed file is damaged (Error -3 ")


def test_detached_data_files_are_checked(tmp_path):
    pair = _write(tmp_path / "pair.hdr", compress=False)
    _cut(tmp_path / "pair.img", 30000)
    assert _message(read_image, pair) == (
        f"{pair}: truncated or corrupt image (data file pair.img): the file ends after 30000 of "
        "the 48000 bytes of voxel data the header describes")
    nhdr = _write(tmp_path / "scan.nhdr")
    data = tmp_path / "scan.raw.gz"
    _cut(data, data.stat().st_size // 2)
    assert _message(read_image, nhdr).startswith(
        f"{nhdr}: truncated or corrupt image (data file scan.raw.gz): the gzip stream is cut "
        "short")
    mhd = _write(tmp_path / "meta.mhd")
    _cut(tmp_path / "meta.zraw", 1000)
    assert _message(image_geometry, mhd).startswith(
        f"{mhd}: truncated or corrupt image (data file meta.zraw): the zlib stream is cut short")


def test_unusual_but_complete_gzip_files_are_read(tmp_path):
    """Concatenated gzip members and bytes after the stream: zlib's gzread (ITK) reads them,
    so the check must too."""
    path = _write(tmp_path / "scan.nii.gz")
    raw = gzip.decompress(path.read_bytes())
    (tmp_path / "multi.nii.gz").write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))
    (tmp_path / "tail.nii.gz").write_bytes(path.read_bytes() + b"\0" * 7)
    for name in ("scan.nii.gz", "multi.nii.gz", "tail.nii.gz"):
        np.testing.assert_array_equal(sitk.GetArrayFromImage(read_image(tmp_path / name)),
                                      VOXELS)
        assert image_geometry(tmp_path / name).size == (40, 30, 20)


# ---- images: non-finite voxels ----

@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_voxels(tmp_path, suffix, dtype):
    """NaN and ±inf are refused with their count (ITK's NIfTI reader would turn them into 0)."""
    array = VOXELS.astype(dtype)
    array[3, 4, 5], array[0, 0, 0], array[-1, -1, -1] = np.nan, np.inf, -np.inf
    path = _write(tmp_path / f"scan{suffix}", array)
    assert _message(read_image, path) == (f"{path}: 3 of 24000 voxels are not finite (NaN or "
                                          "infinite); replace them (e.g. by the background "
                                          "value) first")
    assert image_geometry(path).size == (40, 30, 20)  # the header alone is fine
    path = _write(tmp_path / f"fine{suffix}", VOXELS.astype(dtype))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_image(path)), VOXELS)


def test_non_finite_count_across_pieces():
    values = np.array([1.0, np.nan, 2.0, np.inf, -np.inf, 3.0], "<f8")
    data = b"HEAD" + values.tobytes() + b"\xff" * 8  # header, voxels, then ignored bytes
    for cuts in ([], [1, 5, 13, 14, 30, 47], list(range(1, len(data)))):
        counter = _NonFinite(np.dtype("<f8"), 4, values.nbytes)
        for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
            counter(data[a:b])
        assert counter.count == 3 and counter.carry == b""


# ---- node tables: cohort nodes.csv, scans.csv ----

SCANS = "patient_id,scan_id,timepoint,image\np1,s1,1,\np1,s2,2,\n"
NODES = ("scan_id,node_id,x,y,z,short_axis_mm,long_axis_mm,track_id\n"
         "s1,a,0,0,0,10,14,T1\n"
         "s1,b,30,0,0,8,,T2\n"
         "s2,a,1,1,1,11,15,T1\n")


def _cohort_error(tmp_path, scans=SCANS, nodes=NODES) -> str:
    (tmp_path / "scans.csv").write_text(scans)
    (tmp_path / "nodes.csv").write_text(nodes)
    with pytest.raises(InputError) as info:
        read_cohort(tmp_path)
    return str(info.value)


def test_long_axis_smaller_than_short_axis(tmp_path):
    message = _cohort_error(tmp_path, nodes=NODES.replace("s2,a,1,1,1,11,15,", "s2,a,1,1,1,11,9,"))
    assert message == (f"{tmp_path / 'nodes.csv'}, line 4 (node a of scan s2): long_axis_mm 9 "
                       "is smaller than short_axis_mm 11 (the long axis is the larger diameter; "
                       "columns swapped?)")


@pytest.mark.parametrize("bad", ["1e308", "-1e308", "100000.5", "-2e5"])
def test_coordinate_out_of_range(tmp_path, bad):
    message = _cohort_error(tmp_path, nodes=NODES.replace("s1,b,30,0,0,", f"s1,b,30,{bad},0,"))
    assert message == (f"{tmp_path / 'nodes.csv'}, line 3 (node b of scan s1): y = {bad} is "
                       "outside the sane range ±100000 mm (not a world position in "
                       "millimetres)")


def test_coordinate_at_the_limit_is_fine(tmp_path):
    (tmp_path / "scans.csv").write_text(SCANS)
    (tmp_path / "nodes.csv").write_text(NODES.replace("s1,b,30,0,0,", "s1,b,-100000,1e5,0,"))
    np.testing.assert_array_equal(read_cohort(tmp_path).scans["s1"].nodes.pos[1],
                                  [-MAX_ABS_MM, MAX_ABS_MM, 0])


@pytest.mark.parametrize(("column", "old", "new"), [
    ("short_axis_mm", "0,0,0,10,14", "0,0,0,1e308,"),
    ("long_axis_mm", "0,0,0,10,14", "0,0,0,10,2e5"),
])
def test_size_out_of_range(tmp_path, column, old, new):
    message = _cohort_error(tmp_path, nodes=NODES.replace(old, new))
    value = new.split(",")[3 if column == "short_axis_mm" else 4]
    assert message == (f"{tmp_path / 'nodes.csv'}, line 2 (node a of scan s1): {column} = "
                       f"{value} is above the sane maximum of 100000 mm")


@pytest.mark.parametrize(("name", "header", "column"), [
    ("nodes.csv", "scan_id,node_id,x,y,z,short_axis_mm,long_axis_mm,track_id,x", "x"),
    ("nodes.csv", "scan_id,node_id,x,y,z,short_axis_mm,long_axis_mm,track_id, node_id",
     "node_id"),
    ("scans.csv", "patient_id,scan_id,timepoint,image,timepoint", "timepoint"),
])
def test_column_named_twice(tmp_path, name, header, column):
    """pandas would rename the second column to ``x.1`` and read the first silently."""
    tables = {"scans.csv": SCANS, "nodes.csv": NODES}
    lines = tables[name].splitlines()
    tables[name] = "\n".join([header, *(line + ",9" for line in lines[1:])]) + "\n"
    message = _cohort_error(tmp_path, scans=tables["scans.csv"], nodes=tables["nodes.csv"])
    assert message == f"{tmp_path / name}, line 1: column {column!r} appears twice in the header"


def test_empty_extra_column_names_are_not_duplicates(tmp_path):
    """Trailing commas (spreadsheet exports) give unnamed columns; they stay accepted."""
    (tmp_path / "scans.csv").write_text("\n".join(line + ",," for line in SCANS.splitlines()))
    (tmp_path / "nodes.csv").write_text(NODES)
    assert len(read_cohort(tmp_path)) == 2


# ---- node tables: the other readers ----

def test_nih_points_and_sizes_out_of_range(tmp_path):
    points = tmp_path / "c_lymphnodes_physicalPoints.txt"
    points.write_text("1 2 3\n4 1e308 6\n")
    assert _message(read_point_list, points) == (
        f"{points}, line 2: y = 1e+308 mm is outside the sane range ±100000 mm (not a world "
        "position in millimetres)")
    mps = tmp_path / "c.mps"
    mps.write_text("<point_set_file><point_set><time_series><point><id>0</id><x>1</x>"
                   "<y>2</y><z>-3e5</z></point></time_series></point_set></point_set_file>")
    assert _message(read_mps, mps) == (f"{mps} (point 0): z = -300000 mm is outside the sane "
                                       "range ±100000 mm (not a world position in millimetres)")
    sizes = tmp_path / "c_lymphnodes_sizes.txt"
    sizes.write_text("8 12\n9 1e308\n")
    assert _message(read_nih_sizes, sizes) == (
        f"{sizes}, line 2: long_axis_mm = 1e+308 mm is above the sane maximum of 100000 mm")


def _markups(tmp_path, description, position=(1.0, 2.0, 3.0)):
    path = write_markups(tmp_path / "s.mrk.json",
                         NodeTable.from_arrays([[0.0, 0.0, 0.0]], [5.0], node_id=["LN1"]))
    document = json.loads(path.read_text(encoding="utf-8"))
    point = document["markups"][0]["controlPoints"][0]
    point["description"], point["position"] = description, list(position)
    path.write_text(json.dumps(document))
    return path


def test_slicer_long_smaller_than_short_and_far_position(tmp_path):
    path = _markups(tmp_path, "short=9; long=6")
    assert _message(read_markups, path) == (
        f"{path} (markup 1, control point 1 'LN1'): long_axis_mm 6 is smaller than "
        "short_axis_mm 9 (the long axis is the larger diameter; columns swapped?)")
    path = _markups(tmp_path, "short=9", position=(1.0, 1e308, 3.0))
    assert _message(read_markups, path) == (
        f"{path} (markup 1, control point 1 'LN1'): position [1.0, 1e+308, 3.0]: y = 1e+308 mm "
        "is outside the sane range ±100000 mm (not a world position in millimetres)")


def test_dls_centre_out_of_range(tmp_path):
    record = {"source": "000001_01_01_010-020.nii.gz", "target": "000001_02_01_005-015.nii.gz",
              "source center": [1e308, 2.0, 3.0], "target center": [1.0, 2.0, 3.0],
              "source spacing": [0.5, 0.5, 2.0], "target spacing": [0.5, 0.5, 2.0],
              "source recist diameter": [10.0, 6.0], "target recist diameter": [8.0, 5.0]}
    path = tmp_path / "dls.json"
    path.write_text(json.dumps({"k1": record}))
    assert _message(read_dls, path) == (
        f"{path} (record k1): source: x = 5e+307 mm is outside the sane range ±100000 mm (not "
        "a world position in millimetres)")

