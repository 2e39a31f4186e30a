"""Reading and writing CT images, always in the ITK/DICOM **LPS** world frame.

:func:`read_image` returns a 3D scalar ``SimpleITK.Image`` whose origin and direction cosines
are in LPS millimetres, from

* **NIfTI** (``.nii``, ``.nii.gz``) — the file stores RAS; ITK's reader converts it to LPS
  (x and y negated). A header with ``qform_code = sform_code = 0`` has no world frame at all
  and is refused.
* **NRRD** (``.nrrd``, ``.nhdr``) — the header's ``space`` field names the frame. ITK converts
  the anatomical spaces (``right-anterior-superior``, ``left-anterior-superior``) to LPS;
  a non-anatomical space (``scanner-xyz``, ``3D-right-handed``, …) or a missing ``space``
  field cannot be placed in LPS and is refused.
* **MetaImage** (``.mha``, ``.mhd``) — ITK's own format, LPS by definition.
* **DICOM** — a folder holding one series (slices sorted by position, LPS by the standard;
  unevenly spaced slices are refused), or a single multi-frame file.

Anything else (Analyze, PNG stacks, VTK, …) has no defined world frame and is refused rather
than guessed. Every refusal, a missing path and an unreadable file raise
:class:`~lngraph.io.errors.InputError` naming the file and the reason.

:func:`write_image` writes a single-file format atomically; :func:`image_geometry` reads only
a file's header (cheap checks such as "is this node inside the image").
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lngraph.io.atomic import atomic_path
from lngraph.io.coords import ImageGeometry
from lngraph.io.errors import InputError

#: File endings :func:`write_image` accepts: formats that keep header and voxels in one file.
WRITABLE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha")

_LPS = "left-posterior-superior"
_LPS_IOS = ("MetaImageIO", "GDCMImageIO")
_POSITION_TAG = "0020|0032"
#: Largest relative deviation of a DICOM slice gap from the mean gap.
_SLICE_GAP_TOLERANCE = 1e-3


def _itk_reason(exc: Exception) -> str:
    """The useful last part of a SimpleITK exception message."""
    text = str(exc).strip()
    if "ERROR:" in text:
        text = text.rsplit("ERROR:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _check_frame(io_name: str, meta: dict[str, str], path: Path) -> None:
    """Raise unless the header of a file read by ``io_name`` places it in LPS."""
    if io_name == "NrrdImageIO":
        space = meta.get("NRRD_space")
        if space is None:
            raise InputError(path, "the NRRD header names no anatomical space (no 'space:' "
                             "field), so its axes cannot be placed in LPS; add e.g. 'space: "
                             "left-posterior-superior' if that is what the data are")
        if space != _LPS:
            raise InputError(path, f"the NRRD space {space!r} is not an anatomical frame "
                             "(LPS, RAS or LAS), so the image cannot be placed in LPS")
    elif io_name == "NiftiImageIO":
        if meta.get("qform_code", "0") == "0" and meta.get("sform_code", "0") == "0":
            raise InputError(path, "the NIfTI header has qform_code = sform_code = 0: it "
                             "defines no world frame, so the image cannot be placed in LPS")
    elif io_name not in _LPS_IOS:
        raise InputError(path, f"the format read by {io_name} defines no LPS world frame; "
                         "convert the image to NIfTI, NRRD, MHA or a DICOM series")


def _check_volume(image: sitk.Image, path: Path) -> sitk.Image:
    if image.GetDimension() != 3:
        raise InputError(path, f"expected a 3D image, got {image.GetDimension()}D")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(path, f"expected one value per voxel, got "
                         f"{image.GetNumberOfComponentsPerPixel()} (a colour or vector image)")
    return image


def _file_reader(path: Path) -> sitk.ImageFileReader:
    """A reader whose header has been read and checked."""
    reader = sitk.ImageFileReader()
    io_name = reader.GetImageIOFromFileName(str(path))
    if not io_name:
        raise InputError(path, "not a readable image (no reader recognises the file)")
    reader.SetImageIO(io_name)
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputError(path, f"not a readable image ({_itk_reason(exc)})") from None
    if reader.GetDimension() != 3:
        raise InputError(path, f"expected a 3D image, got {reader.GetDimension()}D")
    _check_frame(io_name, {k: reader.GetMetaData(k) for k in reader.GetMetaDataKeys()}, path)
    return reader


def _read_dicom_series(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if len(series) == 0:
        raise InputError(folder, "the folder holds no DICOM series")
    if len(series) > 1:
        raise InputError(folder, f"the folder holds {len(series)} DICOM series "
                         f"({', '.join(series)}); give the folder of one series")
    files = reader.GetGDCMSeriesFileNames(str(folder), series[0])
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(folder, f"not a readable DICOM series ({_itk_reason(exc)})") from None
    positions = []
    for k, file in enumerate(files):
        if not reader.HasMetaDataKey(k, _POSITION_TAG):
            raise InputError(folder, f"slice {Path(file).name} has no Image Position (Patient) "
                             "tag, so the slices cannot be placed")
        positions.append([float(v) for v in reader.GetMetaData(k, _POSITION_TAG).split("\\")])
    _check_even_slices(np.asarray(positions), image, folder)
    return image


def _check_even_slices(positions: np.ndarray, image: sitk.Image, folder: Path) -> None:
    """Raise unless the slice positions along the normal are evenly spaced."""
    if len(positions) < 3:
        return
    normal = np.reshape(image.GetDirection(), (3, 3))[:, 2]
    gaps = np.diff(positions @ normal)
    deviation = float(np.max(np.abs(gaps - gaps.mean())))
    if deviation > _SLICE_GAP_TOLERANCE * abs(gaps.mean()):
        raise InputError(folder, f"the DICOM slices are not evenly spaced (gaps "
                         f"{gaps.min():.3f} to {gaps.max():.3f} mm: a missing slice or variable "
                         "spacing); one voxel spacing cannot describe the series")


def read_image(path: str | os.PathLike) -> sitk.Image:
    """Read a 3D CT image (file or DICOM series folder) with its geometry in LPS.

    Args:
        path: a NIfTI, NRRD, MetaImage or DICOM file, or a folder holding one DICOM series.

    Raises:
        InputError: the path is missing, unreadable, not 3D scalar, or not placeable in LPS.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "image not found")
    if path.is_dir():
        return _check_volume(_read_dicom_series(path), path)
    reader = _file_reader(path)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(path, f"not a readable image ({_itk_reason(exc)})") from None
    return _check_volume(image, path)


def image_geometry(path: str | os.PathLike) -> ImageGeometry:
    """The geometry of an image in LPS, reading only the header of a file.

    A DICOM series folder has no single header: its series is read in full.

    Raises:
        InputError: as :func:`read_image`.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "image not found")
    if path.is_dir():
        return ImageGeometry.from_image(read_image(path))
    return ImageGeometry.from_image(_file_reader(path))


def write_image(image: sitk.Image, path: str | os.PathLike, *, compress: bool = True) -> Path:
    """Write ``image`` atomically to a single-file format (see :data:`WRITABLE_SUFFIXES`).

    Args:
        image: the image; its geometry is taken to be LPS (ITK's convention).
        path: the output file; ``.nii``/``.nii.gz`` are stored in RAS by the NIfTI writer.
        compress: compress the voxels (``.nii.gz`` is always compressed, ``.nii`` never).

    Returns:
        ``path``.
    """
    path = Path(path)
    name = path.name.lower()
    if not name.endswith(WRITABLE_SUFFIXES):
        raise ValueError(f"cannot write {path}: use one of {', '.join(WRITABLE_SUFFIXES)} "
                         "(formats that keep header and voxels in one file)")
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=compress)
    return path
