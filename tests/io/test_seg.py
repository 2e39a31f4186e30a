"""Nodes from masks: centroids and RECIST axes on oblique anisotropic grids, instance labels as
tracks, the mask table, and bad masks."""

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from lngraph.io.cohort import read_cohort
from lngraph.io.errors import InputError
from lngraph.io.image import write_image
from lngraph.io.seg import (
    import_seg,
    nodes_from_mask,
    read_seg_table,
    recist_axes,
)

ROTATION = Rotation.from_euler("xyz", [12.0, -20.0, 33.0], degrees=True).as_matrix()
SPACING = (0.8, 0.9, 2.5)
ORIGIN = (-100.5, 20.25, 300.0)
VOXEL_DIAGONAL = float(np.hypot(*SPACING[:2]))


def _image(array: np.ndarray, direction=ROTATION) -> sitk.Image:
    """``array`` [k, j, i] on the oblique, anisotropic test grid."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING)
    image.SetDirection(tuple(np.asarray(direction).ravel()))
    image.SetOrigin(ORIGIN)
    return image


def _world(image: sitk.Image, index) -> np.ndarray:
    return np.array(image.TransformContinuousIndexToPhysicalPoint(tuple(map(float, index))))


def _box_axes(width: float, height: float) -> tuple[float, float]:
    """RECIST axes of a W × H rectangle: its diagonal, and the chord perpendicular to it."""
    w, h = max(width, height), min(width, height)
    diagonal = float(np.hypot(w, h))
    return diagonal, h * diagonal / w


def _two_boxes() -> np.ndarray:
    array = np.zeros((8, 20, 24), np.uint8)
    array[1:3, 3:6, 2:6] = 1      # k 1-2, j 3-5, i 2-5: 4 × 3 voxels in plane, 2 slices
    array[4:7, 10:15, 12:20] = 1  # 8 × 5 voxels in plane, 3 slices
    return array


@pytest.mark.parametrize("direction", [ROTATION, np.eye(3)])
def test_two_boxes_exact_centroids_axes_and_volumes(direction):
    image = _image(_two_boxes(), direction)
    found = nodes_from_mask(image, image, min_volume_mm3=0)
    assert found.mode == "components" and found.dropped == 0
    nodes = found.nodes
    assert list(nodes.node_id) == ["1", "2"]
    assert list(nodes.track_id) == [None, None]
    np.testing.assert_allclose(nodes.pos, [_world(image, (3.5, 4.0, 1.5)),
                                           _world(image, (15.5, 12.0, 5.0))], atol=1e-9)
    expected = [_box_axes(4 * 0.8, 3 * 0.9), _box_axes(8 * 0.8, 5 * 0.9)]
    np.testing.assert_allclose(nodes.long_axis_mm, [e[0] for e in expected], rtol=1e-12)
    np.testing.assert_allclose(nodes.short_axis_mm, [e[1] for e in expected], rtol=1e-12)
    voxel = np.prod(SPACING)
    np.testing.assert_allclose(found.volume_mm3, [24 * voxel, 120 * voxel], rtol=1e-12)


def _ellipsoid(shape, centre, semi_axes_mm, angle_deg: float) -> np.ndarray:
    """Voxels whose centre lies in an ellipsoid whose in-plane axes are turned by ``angle``."""
    k, j, i = np.indices(shape)
    x, y = (i - centre[0]) * SPACING[0], (j - centre[1]) * SPACING[1]
    z = (k - centre[2]) * SPACING[2]
    c, s = np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))
    a, b, depth = semi_axes_mm
    return ((x * c + y * s) / a) ** 2 + ((-x * s + y * c) / b) ** 2 + (z / depth) ** 2 <= 1


def test_ellipsoids_centroid_exact_and_axes_within_a_voxel():
    shape = (9, 40, 70)
    first = _ellipsoid(shape, (20, 20, 4), (10.0, 6.0, 5.0), 0.0)
    second = _ellipsoid(shape, (50, 20, 4), (12.0, 5.0, 7.5), 30.0)
    array = (first | second).astype(np.int16)
    image = _image(array)
    nodes = nodes_from_mask(image, image).nodes
    # components are numbered as met slice by slice: the deeper second ellipsoid comes first;
    # each ellipsoid is symmetric about its centre voxel, so its centroid is that voxel
    np.testing.assert_allclose(nodes.pos, [_world(image, (50, 20, 4)),
                                           _world(image, (20, 20, 4))], atol=1e-9)
    np.testing.assert_allclose(nodes.long_axis_mm, [24.0, 20.0], atol=VOXEL_DIAGONAL)
    np.testing.assert_allclose(nodes.short_axis_mm, [10.0, 12.0], atol=VOXEL_DIAGONAL)


def test_reads_files_and_a_nifti_mask_lies_on_the_same_grid(tmp_path):
    image = _image(_two_boxes())
    ct = write_image(sitk.Cast(image, sitk.sitkInt16) * 40 - 1000, tmp_path / "ct.nrrd")
    mask = write_image(image, tmp_path / "mask.nii.gz")  # stored in RAS, read back in LPS
    found = nodes_from_mask(ct, mask)
    np.testing.assert_allclose(found.nodes.pos[0], _world(image, (3.5, 4.0, 1.5)), atol=1e-4)


def test_single_voxel_axes():
    region = np.ones((1, 1, 1), bool)
    long_mm, short_mm = recist_axes(region, np.diag(SPACING[:2]))
    assert long_mm == pytest.approx(VOXEL_DIAGONAL)
    assert short_mm == pytest.approx(_box_axes(*SPACING[:2])[1])


def test_instance_labels_auto_and_components_choice():
    array = np.zeros((6, 12, 12), np.uint16)
    array[1:3, 2:5, 2:5] = 7
    array[1:3, 5:8, 2:5] = 3     # touches label 7: one component, two instances
    array[4, 9, 9] = 9           # one voxel: 1.8 mm³
    image = _image(array)
    found = nodes_from_mask(image, image)
    assert found.mode == "instances"
    assert list(found.nodes.node_id) == ["3", "7"] and list(found.nodes.track_id) == ["3", "7"]
    assert found.dropped == 1    # label 9, below 10 mm³
    merged = nodes_from_mask(image, image, labels="components", min_volume_mm3=0)
    assert list(merged.nodes.node_id) == ["1", "2"]
    np.testing.assert_allclose(merged.volume_mm3, [36 * np.prod(SPACING), np.prod(SPACING)])
    untracked = nodes_from_mask(None, image, labels="instances", tracks=False)
    assert list(untracked.nodes.track_id) == [None, None]


def test_components_are_26_connected():
    array = np.zeros((4, 6, 6), np.uint8)
    array[1, 1, 1] = array[2, 2, 2] = 1  # touching at a corner only
    image = _image(array)
    assert len(nodes_from_mask(image, image, min_volume_mm3=0).nodes) == 1


@pytest.mark.parametrize(("values", "problem"), [
    (np.float32([0, 0.5]), "the mask holds non-integer values (e.g. 0.5)"),
    (np.int16([0, -2]), "the mask holds negative values (down to -2)"),
])
def test_bad_mask_values(values, problem):
    array = np.zeros((3, 4, 4), values.dtype)
    array[1, 1, :2] = values
    with pytest.raises(InputError, match=r"^mask: " + problem.replace("(", r"\(").replace(
            ")", r"\)").replace(".", r"\.")):
        nodes_from_mask(None, _image(array))


def _scan_table(tmp_path, rows: list[str], header: str = "patient_id,timepoint,image,mask"):
    path = tmp_path / "masks.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _write_timepoints(tmp_path):
    """Patient P at timepoints 1 and 2: labels 1, 2 and a speck 9, then 2, 5 (label maps);
    patient Q: one box labelled 4 (``r1``: the same box and a speck, binary)."""
    images = tmp_path / "data"
    images.mkdir()
    first = np.zeros((6, 16, 16), np.uint8)
    first[1:3, 2:6, 2:6], first[1:3, 9:13, 9:13], first[5, 0, 15] = 1, 2, 9
    second = np.zeros((6, 16, 16), np.uint8)
    second[2:4, 3:7, 3:7], second[1:3, 9:12, 2:5] = 2, 5
    single = np.zeros((6, 16, 16), np.uint8)
    single[1:4, 4:9, 4:9] = 4
    binary = (single > 0).astype(np.uint8)
    binary[5, 15, 15] = 1
    for name, array in (("p1", first), ("p2", second), ("q1", single), ("r1", binary)):
        write_image(_image(np.zeros(array.shape, np.int16)), images / f"{name}_ct.nii.gz")
        write_image(_image(array), images / f"{name}_mask.nrrd")
    return images


def test_table_instance_labels_become_tracks(tmp_path):
    data = _write_timepoints(tmp_path)
    table = _scan_table(tmp_path, ["P,1,data/p1_ct.nii.gz,data/p1_mask.nrrd",
                                   f"P,2,{data / 'p2_ct.nii.gz'},data/p2_mask.nrrd",
                                   "Q,2020-05-01,,data/q1_mask.nrrd"])
    result = read_seg_table(table)
    assert result.mode == "instances" and result.dropped == 1   # P's speck, label 9
    p1, p2, q1 = result.scans
    assert (p1.scan_id, p1.image) == ("P_1", data / "p1_ct.nii.gz")
    assert list(p1.nodes.track_id) == ["1", "2"] and list(p2.nodes.track_id) == ["2", "5"]
    assert q1.image is None and list(q1.nodes.track_id) == ["4"]  # one label: still instances
    image = _image(np.zeros((6, 16, 16), np.uint8))
    np.testing.assert_allclose(p2.nodes.pos[0], _world(image, (4.5, 4.5, 2.5)), atol=1e-4)

    out = tmp_path / "cohort"
    import_seg(table, out)
    cohort = read_cohort(out)
    (pair,) = cohort.pairs(patients=["P"])
    np.testing.assert_array_equal(pair.gt_matches(), [[1, 0]])
    np.testing.assert_array_equal(pair.gt_disappeared(), [0])
    np.testing.assert_array_equal(pair.gt_new(), [1])
    assert "data/p1_ct.nii.gz" in (out / "scans.csv").read_text()


def test_table_binary_masks_are_components(tmp_path):
    _write_timepoints(tmp_path)
    table = _scan_table(tmp_path, ["R,1,data/r1_ct.nii.gz,data/r1_mask.nrrd",
                                   "Q,1,data/q1_ct.nii.gz,data/q1_mask.nrrd"])
    result = read_seg_table(table, min_volume_mm3=0)
    assert result.mode == "components" and result.dropped == 0
    assert list(result.scans[0].nodes.node_id) == ["1", "2"]
    assert list(result.scans[0].nodes.track_id) == [None, None]
    assert list(result.scans[1].nodes.node_id) == ["1"]  # label 4 of a one-label mask
    assert read_seg_table(table).dropped == 1


def test_table_mask_off_the_image_grid_names_the_row(tmp_path):
    data = _write_timepoints(tmp_path)
    shifted = sitk.ReadImage(str(data / "p2_mask.nrrd"))
    shifted.SetOrigin((ORIGIN[0] + 1.0, ORIGIN[1], ORIGIN[2]))
    sitk.WriteImage(shifted, str(data / "p2_mask.nrrd"))
    table = _scan_table(tmp_path, ["P,1,data/p1_ct.nii.gz,data/p1_mask.nrrd",
                                   "P,2,data/p2_ct.nii.gz,data/p2_mask.nrrd"])
    with pytest.raises(InputError) as info:
        read_seg_table(table)
    assert str(info.value) == (
        f"{table}, line 3 (scan P_2): mask 'data/p2_mask.nrrd': {data / 'p2_mask.nrrd'}: the "
        "mask is not on the image's grid: origin (-99.5, 20.25, 300) vs the image's (-100.5, "
        "20.25, 300) mm (LPS); a mask must have the size, spacing, origin and direction of its "
        "image")
    write_image(_image(np.zeros((6, 16, 17), np.uint8)), data / "p2_mask.nrrd")
    with pytest.raises(InputError, match=r"size \(17, 16, 6\) vs the image's \(16, 16, 6\)"):
        read_seg_table(table)
    assert not (tmp_path / "cohort").exists()


def test_table_missing_files_name_the_row(tmp_path):
    _write_timepoints(tmp_path)
    table = _scan_table(tmp_path, ["P,1,data/p1_ct.nii.gz,data/nothing.nrrd"])
    with pytest.raises(InputError, match=r"masks\.csv, line 2 \(scan P_1\): mask "
                                         r"'data/nothing\.nrrd': .*nothing\.nrrd: image not found"):
        read_seg_table(table)
    table = _scan_table(tmp_path, ["P,1,data/p1_ct.nii.gz,"])
    with pytest.raises(InputError, match=r"masks\.csv, line 2: mask is empty"):
        read_seg_table(table)
    table = _scan_table(tmp_path, ["P,1,data/p1_mask.nrrd"], header="patient_id,timepoint,mask")
    with pytest.raises(InputError, match=r"line 1: missing column\(s\) image; expected "
                                         r"patient_id, timepoint, image, mask"):
        read_seg_table(table)


def test_import_seg_refuses_an_output_folder_holding_the_inputs(tmp_path):
    _write_timepoints(tmp_path)
    table = _scan_table(tmp_path, ["Q,1,data/q1_ct.nii.gz,data/q1_mask.nrrd"])
    with pytest.raises(InputError, match=r"data: holds the image of scan Q_1"):
        import_seg(table, tmp_path / "data", overwrite=True)
    assert (tmp_path / "data" / "q1_mask.nrrd").exists()
