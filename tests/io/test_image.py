"""Image reading in LPS: round trips, NIfTI RAS headers, NRRD spaces, DICOM series, bad files."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from lngraph.io import InputError, read_image, write_image
from lngraph.io.coords import ImageGeometry, ras_to_lps
from lngraph.io.image import check_image, image_exists, image_files, image_geometry, split_series

ROTATION = Rotation.from_euler("xyz", [12.0, -20.0, 33.0], degrees=True).as_matrix()
SPACING = (0.8, 0.9, 2.5)
ORIGIN = (-100.5, 20.25, 300.0)


@pytest.fixture
def oblique():
    """A 8×7×6 int16 image with random voxels, anisotropic spacing and tilted axes."""
    array = np.random.default_rng(0).integers(-1000, 1000, size=(6, 7, 8)).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetDirection(tuple(ROTATION.ravel()))
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    return image


def assert_same_geometry(a: sitk.Image, b: sitk.Image, tol: float = 1e-4):
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=tol)
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=tol)
    assert a.GetSize() == b.GetSize()


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha"])
def test_round_trip_keeps_geometry_and_voxels(tmp_path, oblique, suffix):
    path = write_image(oblique, tmp_path / f"scan{suffix}")
    back = read_image(path)
    assert_same_geometry(back, oblique)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(oblique))
    assert ImageGeometry.from_image(back) == image_geometry(path)
    assert [p.name for p in tmp_path.iterdir()] == [f"scan{suffix}"]  # no temporary file left


def _nifti_header_affine(path) -> tuple[np.ndarray, int, int]:
    raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    qform, sform = struct.unpack_from("<hh", raw, 252)
    srow = np.array(struct.unpack_from("<12f", raw, 280)).reshape(3, 4)
    return srow, qform, sform


def test_nifti_file_stores_ras_and_reads_back_lps(tmp_path, oblique):
    path = write_image(oblique, tmp_path / "scan.nii.gz")
    srow, _, sform = _nifti_header_affine(path)
    assert sform > 0
    lps_affine = ROTATION * np.asarray(SPACING)[None, :]
    flip = np.diag([-1.0, -1.0, 1.0])
    np.testing.assert_allclose(srow[:, :3], flip @ lps_affine, atol=1e-5)
    np.testing.assert_allclose(srow[:, 3], ras_to_lps(ORIGIN), atol=1e-4)


def _write_nifti(path, array: np.ndarray, ras_affine: np.ndarray | None):
    """A NIfTI-1 file written byte by byte: int16 voxels, sform = ``ras_affine`` (or none)."""
    header = bytearray(352)
    nk, nj, ni = array.shape
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 3, ni, nj, nk, 1, 1, 1, 1)
    struct.pack_into("<hh", header, 70, 4, 16)
    spacing = [1.0, 1.0, 1.0] if ras_affine is None else np.linalg.norm(ras_affine[:, :3], axis=0)
    struct.pack_into("<8f", header, 76, 1.0, *spacing, 1.0, 1.0, 1.0, 1.0)
    struct.pack_into("<f", header, 108, 352.0)
    struct.pack_into("<B", header, 123, 2)  # millimetres
    if ras_affine is not None:
        struct.pack_into("<hh", header, 252, 0, 1)
        struct.pack_into("<12f", header, 280, *ras_affine.ravel())
    header[344:348] = b"n+1\0"
    path.write_bytes(bytes(header) + array.astype("<i2").tobytes())


def test_hand_written_nifti_affine_is_converted_to_lps(tmp_path):
    ras_direction = Rotation.from_euler("zyx", [15.0, 5.0, -10.0], degrees=True).as_matrix()
    ras_affine = np.hstack([ras_direction * np.array([0.6, 0.7, 3.0]),
                            np.array([[-40.0], [55.0], [-120.0]])])
    array = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    _write_nifti(tmp_path / "ras.nii", array, ras_affine)
    image = read_image(tmp_path / "ras.nii")
    np.testing.assert_allclose(image.GetOrigin(), [40.0, -55.0, -120.0], atol=1e-4)
    np.testing.assert_allclose(image.GetSpacing(), [0.6, 0.7, 3.0], atol=1e-5)
    lps_direction = np.diag([-1.0, -1.0, 1.0]) @ ras_direction
    np.testing.assert_allclose(np.reshape(image.GetDirection(), (3, 3)), lps_direction,
                               atol=1e-5)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), array)
    # a voxel's RAS position per the header equals its LPS position per the image, flipped
    ras = ras_affine @ np.array([4.0, 3.0, 2.0, 1.0])
    np.testing.assert_allclose(image.TransformIndexToPhysicalPoint((4, 3, 2)), ras_to_lps(ras),
                               atol=1e-4)


def test_nifti_without_world_frame_is_refused(tmp_path):
    _write_nifti(tmp_path / "analyze_like.nii", np.zeros((2, 2, 2), np.int16), None)
    with pytest.raises(InputError, match=r"analyze_like\.nii: .*qform_code = sform_code = 0"):
        read_image(tmp_path / "analyze_like.nii")


def _write_nrrd(path, space_line: str):
    header = ("NRRD0004\ntype: short\ndimension: 3\n" + space_line + "sizes: 2 3 4\n"
              "space directions: (1,0,0) (0,2,0) (0,0,3)\nendian: little\nencoding: raw\n"
              "space origin: (10,20,30)\n\n")
    path.write_bytes(header.encode() + np.arange(24, dtype="<i2").tobytes())


def test_nrrd_in_ras_space_is_converted_to_lps(tmp_path):
    _write_nrrd(tmp_path / "ras.nrrd", "space: right-anterior-superior\n")
    image = read_image(tmp_path / "ras.nrrd")
    np.testing.assert_allclose(image.GetOrigin(), [-10.0, -20.0, 30.0])
    np.testing.assert_allclose(image.GetDirection(), [-1, 0, 0, 0, -1, 0, 0, 0, 1])
    np.testing.assert_allclose(image.GetSpacing(), [1.0, 2.0, 3.0])


@pytest.mark.parametrize("space_line, message", [
    ("space: scanner-xyz\n", r"NRRD space 'scanner-xyz' is not an anatomical frame"),
    ("space dimension: 3\n", r"NRRD header names no anatomical space"),
])
def test_nrrd_without_anatomical_space_is_refused(tmp_path, space_line, message):
    _write_nrrd(tmp_path / "odd.nrrd", space_line)
    with pytest.raises(InputError, match=r"odd\.nrrd: the " + message):
        read_image(tmp_path / "odd.nrrd")
    with pytest.raises(InputError, match=message):
        image_geometry(tmp_path / "odd.nrrd")


def test_format_without_world_frame_is_refused(tmp_path, oblique):
    sitk.WriteImage(oblique, str(tmp_path / "scan.vtk"))
    with pytest.raises(InputError, match=r"scan\.vtk: the format read by VTKImageIO defines no "
                                         r"LPS world frame"):
        read_image(tmp_path / "scan.vtk")


def write_dicom_series(image: sitk.Image, folder, series_uid: str, skip: int | None = None,
                       description: str | None = None):
    """Write ``image`` as CT slices with the position and orientation tags a reader needs."""
    folder.mkdir(parents=True, exist_ok=True)
    d = image.GetDirection()
    orientation = "\\".join(f"{v:.10g}" for v in (d[0], d[3], d[6], d[1], d[4], d[7]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        if k == skip:
            continue
        plane = image[:, :, k]
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2",  # CT image storage
            "0008|0018": f"{series_uid}.{k + 1}",
            "0008|0060": "CT",
            "0020|000d": f"{series_uid}.0",
            "0020|000e": series_uid,
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.10g}" for v in position),
            "0020|0037": orientation,
        }
        if description is not None:
            tags["0008|103e"] = description
        for tag, value in tags.items():
            plane.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{series_uid[-4:]}_{k:03d}.dcm"))
        writer.Execute(plane)


def test_dicom_series_folder_reads_in_lps(tmp_path, oblique):
    write_dicom_series(oblique, tmp_path / "series", "1.2.826.0.1.3680043.2.1125.77.1")
    image = read_image(tmp_path / "series")
    assert_same_geometry(image, oblique, tol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(oblique))
    assert image_geometry(tmp_path / "series") == ImageGeometry.from_image(image)


UID_1, UID_2 = "1.2.826.0.1.3680043.2.1125.77.1", "1.2.826.0.1.3680043.2.1125.77.2"


@pytest.fixture
def two_series(tmp_path, oblique):
    """A folder with two series: ``oblique`` (described) and its first 3 slices (not)."""
    write_dicom_series(oblique, tmp_path / "mixed", UID_1, description="AX 2.5mm")
    write_dicom_series(oblique[:, :, :3], tmp_path / "mixed", UID_2)
    return tmp_path / "mixed"


def test_dicom_folder_with_two_series_is_refused_with_a_list(two_series):
    expected = (f"{two_series}: the folder holds 2 DICOM series: {UID_1} ('AX 2.5mm', 6 files); "
                f"{UID_2} (no description, 3 files). Choose one by writing the image path as "
                f"FOLDER#SERIESUID, e.g. {two_series}#{UID_1}")
    for function in (read_image, image_geometry, check_image):
        with pytest.raises(InputError) as info:
            function(two_series)
        assert str(info.value) == expected


def test_dicom_series_chosen_by_uid(two_series, oblique):
    image = read_image(f"{two_series}#{UID_2}")
    assert image.GetSize() == (8, 7, 3)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image),
                                  sitk.GetArrayFromImage(oblique)[:3])
    assert_same_geometry(read_image(f"{two_series}#{UID_1}"), oblique, tol=1e-6)
    assert image_geometry(f"{two_series}#{UID_2}").size == (8, 7, 3)
    assert check_image(f"{two_series}#{UID_2}") == Path(f"{two_series}#{UID_2}")
    assert image_exists(f"{two_series}#{UID_2}") and image_exists(two_series)
    assert [p.name for p in image_files(f"{two_series}#{UID_2}")] == [
        f"77.2_{k:03d}.dcm" for k in range(3)]
    assert len(image_files(two_series)) == 9


def test_unknown_or_misplaced_series_uid(two_series, tmp_path, oblique):
    with pytest.raises(InputError) as info:
        read_image(f"{two_series}#1.2.3")
    assert str(info.value) == (f"{two_series}#1.2.3: the folder holds no DICOM series 1.2.3; it "
                               f"holds {UID_1} ('AX 2.5mm', 6 files); {UID_2} (no description, "
                               "3 files)")
    with pytest.raises(InputError, match=r"nowhere#1\.2: image not found"):
        check_image(tmp_path / "nowhere#1.2")
    assert not image_exists(tmp_path / "nowhere#1.2")
    path = write_image(oblique, tmp_path / "scan.mha")
    with pytest.raises(InputError, match=r"scan\.mha is a file, but '#1\.2' chooses a series"):
        read_image(f"{path}#1.2")


def test_split_series(tmp_path):
    assert split_series("a/b#1.2.840.1") == (Path("a/b"), "1.2.840.1")
    assert split_series("a/b#draft") == (Path("a/b#draft"), None)  # not a UID
    assert split_series("a/b") == (Path("a/b"), None)
    (tmp_path / "odd#1.2").mkdir()  # exists as written: never split
    assert split_series(tmp_path / "odd#1.2") == (tmp_path / "odd#1.2", None)


def test_dicom_series_with_missing_slice_is_refused(tmp_path, oblique):
    write_dicom_series(oblique, tmp_path / "gap", "1.2.826.0.1.3680043.2.1125.77.1", skip=2)
    with pytest.raises(InputError, match=r"gap: the DICOM slices are not evenly spaced"):
        read_image(tmp_path / "gap")


def test_folder_without_dicom_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty: the folder holds no DICOM series"):
        read_image(tmp_path / "empty")


def test_missing_image_names_the_file(tmp_path):
    with pytest.raises(InputError, match=r"nowhere\.nii\.gz: image not found"):
        read_image(tmp_path / "nowhere.nii.gz")
    with pytest.raises(InputError, match=r"nowhere\.nrrd: image not found"):
        image_geometry(tmp_path / "nowhere.nrrd")


def test_unreadable_image_names_the_file(tmp_path):
    (tmp_path / "garbage.nii.gz").write_bytes(b"this is not an image")
    with pytest.raises(InputError, match=r"garbage\.nii\.gz: not a readable image"):
        read_image(tmp_path / "garbage.nii.gz")


def test_truncated_image_names_the_file(tmp_path):
    _write_nrrd(tmp_path / "cut.nrrd", "space: left-posterior-superior\n")
    (tmp_path / "cut.nrrd").write_bytes((tmp_path / "cut.nrrd").read_bytes()[:-10])
    with pytest.raises(InputError, match=r"cut\.nrrd: truncated or corrupt image: the file ends "
                                         r"after 38 of the 48 bytes of voxel data"):
        read_image(tmp_path / "cut.nrrd")


def test_non_volumes_are_refused(tmp_path):
    write_image(sitk.Image([4, 5], sitk.sitkInt16), tmp_path / "flat.nrrd")
    with pytest.raises(InputError, match=r"flat\.nrrd: expected a 3D image, got 2D"):
        read_image(tmp_path / "flat.nrrd")
    write_image(sitk.Image([4, 5, 6], sitk.sitkVectorFloat32, 3), tmp_path / "vector.mha")
    with pytest.raises(InputError, match=r"vector\.mha: expected one value per voxel, got 3"):
        read_image(tmp_path / "vector.mha")


def test_write_refuses_two_file_formats(tmp_path, oblique):
    with pytest.raises(ValueError, match=r"cannot write .*scan\.mhd"):
        write_image(oblique, tmp_path / "scan.mhd")


def test_real_ct_nrrd_header(shared_data):
    path = shared_data / "real_ct" / "lung1_image.nrrd"
    geometry = image_geometry(path)
    assert geometry.size == (512, 512, 48)
    np.testing.assert_allclose(geometry.spacing, (0.5703125, 0.5703125, 5.0))
    np.testing.assert_allclose(geometry.origin, (-146.0, -325.0, -777.5))
    assert geometry.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    image = read_image(path)
    assert ImageGeometry.from_image(image) == geometry
    assert image.GetPixelID() == sitk.sitkInt16
