"""Rigid patient motion: a scan rotated exactly as if the patient had lain rotated in the scanner.

A rotation ``R`` (3×3, proper) about a world point ``c`` (LPS mm) moves every physical point
``p`` to ``R (p - c) + c``. Applied to a scan, consistently:

* **image** — the voxel array is unchanged; the direction cosines become ``R · D`` and the
  origin ``R (o - c) + c``. So the voxel at index ``u``, which was at ``o + D S u``, is now at
  ``R (o + D S u - c) + c``: the whole volume moves rigidly with the patient (no resampling,
  no interpolation, no voxel leaves the field of view);
* **nodes** — every centre ``p`` becomes ``R (p - c) + c``; the diameters are unchanged.

:func:`rotate_scan` does this for one scan (image and/or nodes), :func:`random_rotation` draws
a rotation by a given angle about a uniformly random axis, and :func:`rotate_cohort` writes a
copy of a cohort folder in which chosen scans (by default every scan whose timepoint index
within its patient is odd, so that every consecutive pair has exactly one rotated scan) are
rotated about their node centroid (the image centre when the scan has no nodes). This is the
"patient repositioning" perturbation of ``benchmarks/robustness.py``.

Knows no learner: nothing here imports torch.
"""

from __future__ import annotations

import json
import os
import shutil
import zlib
from collections.abc import Callable, Collection
from pathlib import Path

import numpy as np

from lngraph.io.atomic import atomic_folder, safe_name, unique_name, write_text_atomic
from lngraph.io.cohort import Cohort, NodeTable, Scan, read_cohort, write_cohort
from lngraph.io.errors import InputError

IMAGE_DIR = "images"
#: The file :func:`rotate_cohort` writes beside ``scans.csv``: what was rotated, and how.
MOTION_FILE = "motion.json"
#: Selections of :func:`rotate_cohort` by name: which timepoint indices within a patient.
WHICH = {
    "odd": lambda index: index % 2 == 1,
    "even": lambda index: index % 2 == 0,
    "all": lambda index: True,
    "none": lambda index: False,
}


def random_rotation(angle_deg: float, rng: np.random.Generator | int | None = None
                    ) -> np.ndarray:
    """A ``3×3`` rotation by ``angle_deg`` degrees about an axis drawn uniformly from the
    unit sphere (Rodrigues' formula; ``angle_deg = 0`` gives exactly the identity).

    Args:
        angle_deg: rotation angle in degrees (right-handed about the drawn axis).
        rng: a numpy ``Generator``, or a seed for one.
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    axis = rng.standard_normal(3)
    while np.linalg.norm(axis) < 1e-12:  # pragma: no cover - probability zero
        axis = rng.standard_normal(3)
    axis /= np.linalg.norm(axis)
    return axis_angle_matrix(axis, angle_deg)


def axis_angle_matrix(axis, angle_deg: float) -> np.ndarray:
    """The rotation by ``angle_deg`` degrees about the unit vector ``axis``."""
    axis = np.asarray(axis, dtype=np.float64).reshape(3)
    axis = axis / np.linalg.norm(axis)
    theta = np.deg2rad(float(angle_deg))
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]],
                  [-axis[1], axis[0], 0.0]])
    return np.eye(3) + np.sin(theta) * k + (1.0 - np.cos(theta)) * (k @ k)


def _check_rotation(rotation) -> np.ndarray:
    r = np.asarray(rotation, dtype=np.float64)
    if r.shape != (3, 3) or not np.all(np.isfinite(r)):
        raise ValueError(f"rotation must be a finite 3x3 matrix, got shape {r.shape}")
    if not np.allclose(r.T @ r, np.eye(3), atol=1e-6) or np.linalg.det(r) < 0:
        raise ValueError("rotation must be orthonormal with determinant +1 (a proper rotation)")
    return r


def rotate_points(points, rotation, center) -> np.ndarray:
    """``R (p - c) + c`` for points ``[..., 3]`` (returned unchanged, as a copy, when ``R`` is
    exactly the identity, so that a 0° rotation changes nothing, not even the last bit)."""
    p = np.asarray(points, dtype=np.float64)
    r = np.asarray(rotation, dtype=np.float64)
    if np.array_equal(r, np.eye(3)):
        return p.copy()
    c = np.asarray(center, dtype=np.float64).reshape(3)
    return (p - c) @ r.T + c


def image_center(image) -> np.ndarray:
    """World LPS position of the centre of ``image``'s voxel grid."""
    middle = (np.asarray(image.GetSize(), dtype=np.float64) - 1) / 2
    return np.asarray(image.TransformContinuousIndexToPhysicalPoint(middle.tolist()))


def rotate_scan(image, nodes: NodeTable | None, rotation, center):
    """Move one scan rigidly by ``rotation`` about ``center`` (module docstring).

    Args:
        image: a 3D ``SimpleITK.Image`` or ``None`` (geometry-only).
        nodes: the scan's nodes or ``None``.
        rotation: ``3×3`` proper rotation ``R``.
        center: world LPS point ``c`` (mm) the rotation is about.

    Returns:
        ``(image, nodes)``: a new image with the same voxels, direction ``R · D`` and origin
        ``R (o - c) + c``; a new table with every centre ``R (p - c) + c`` and everything else
        unchanged. ``None`` stays ``None``; the inputs are not modified.
    """
    import SimpleITK as sitk

    r = _check_rotation(rotation)
    center = np.asarray(center, dtype=np.float64).reshape(3)
    moved_image = None
    if image is not None:
        if image.GetDimension() != 3:
            raise ValueError(f"expected a 3D image, got {image.GetDimension()}D")
        moved_image = sitk.Image(image)  # a copy: the caller's image keeps its geometry
        if not np.array_equal(r, np.eye(3)):
            direction = r @ np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
            moved_image.SetDirection(direction.ravel().tolist())
            moved_image.SetOrigin(rotate_points(image.GetOrigin(), r, center).tolist())
    moved_nodes = None
    if nodes is not None:
        moved_nodes = NodeTable(nodes.node_id.copy(), rotate_points(nodes.pos, r, center),
                                nodes.short_axis_mm.copy(), nodes.long_axis_mm.copy(),
                                nodes.track_id.copy())
    return moved_image, moved_nodes


def scan_center(scan: Scan, image=None) -> np.ndarray:
    """What :func:`rotate_cohort` rotates a scan about: its node centroid, else the centre of
    its image, else the world origin (a geometry-only scan without nodes: nothing moves)."""
    if len(scan.nodes):
        return scan.nodes.pos.mean(axis=0)
    if image is not None:
        return image_center(image)
    if scan.image is not None:
        from lngraph.io.image import image_geometry

        geometry = image_geometry(scan.image)
        return geometry.index_to_world((np.asarray(geometry.size, np.float64) - 1) / 2)
    return np.zeros(3)


def scan_rotation(scan_id: str, angle_deg: float, seed: int) -> np.ndarray:
    """The rotation :func:`rotate_cohort` gives scan ``scan_id``: :func:`random_rotation` with
    a generator seeded by ``(seed, crc32(scan_id))``, so a scan's rotation depends only on its
    id and the seed (not on the cohort's other scans or on ``which``)."""
    key = zlib.crc32(str(scan_id).encode("utf-8", "surrogatepass"))
    return random_rotation(angle_deg, np.random.default_rng([int(seed), key]))


def _selector(which, cohort: Cohort) -> Callable[[Scan, int], bool]:
    if which is None:
        which = "odd"
    if isinstance(which, str):
        if which not in WHICH:
            raise ValueError(f"which must be one of {', '.join(WHICH)}, a collection of scan "
                             f"ids or a function (scan, index) -> bool, got {which!r}")
        rule = WHICH[which]
        return lambda scan, index: rule(index)
    if callable(which):
        return which
    chosen = {str(s) for s in which}
    unknown = sorted(chosen - set(cohort.scans))
    if unknown:
        raise ValueError(f"which names scan(s) not in the cohort: {', '.join(unknown[:5])}")
    return lambda scan, index: scan.scan_id in chosen


def _image_suffix(path: Path) -> str | None:
    """The single-file suffix of ``path`` that :func:`write_image` accepts, else ``None``."""
    from lngraph.io.image import WRITABLE_SUFFIXES

    name = path.name.lower()
    return next((s for s in WRITABLE_SUFFIXES if name.endswith(s)), None)


def rotate_cohort(cohort_dir: str | os.PathLike | Cohort, out_dir: str | os.PathLike,
                  angle_deg: float = 10.0, seed: int = 0,
                  which: str | Collection[str] | Callable[[Scan, int], bool] | None = None,
                  *, overwrite: bool = True) -> Path:
    """Write a copy of a cohort in which the chosen scans are rotated by ``angle_deg``.

    Each chosen scan gets its own rotation (:func:`scan_rotation`: ``angle_deg`` about a random
    axis) about its node centroid (:func:`scan_center`), applied to its image and nodes by
    :func:`rotate_scan`. ``out_dir`` is written whole or not at all
    (:func:`~lngraph.io.atomic.atomic_folder`): ``scans.csv`` and ``nodes.csv`` (by
    :func:`~lngraph.io.cohort.write_cohort`, so :func:`~lngraph.io.cohort.read_cohort` reads
    it), ``images/`` (rotated images re-written, the others copied, as are all at 0°; an image
    that is not a single file of a writable format, e.g. a DICOM series, is converted to
    ``.nii.gz``) and ``motion.json`` (the source, angle, seed and each rotated scan's
    rotation and centre).

    Args:
        cohort_dir: the cohort (folder or :class:`~lngraph.io.cohort.Cohort`).
        out_dir: the new cohort folder (must differ from the source).
        angle_deg: rotation angle in degrees.
        seed: seed of the rotation axes.
        which: the scans to rotate: ``"odd"`` (default: timepoint index within the patient
            1, 3, …, so each consecutive pair has exactly one rotated scan), ``"even"``,
            ``"all"``, ``"none"``, a collection of scan ids, or a function
            ``(scan, index within patient) -> bool``.
        overwrite: replace a non-empty ``out_dir``.

    Returns:
        ``out_dir``.

    Raises:
        ValueError: bad ``which`` (an unknown name or scan id), or ``out_dir`` is the source.
        InputError: the source is not a valid cohort, or ``out_dir`` cannot be written.
    """
    from lngraph.io.image import read_image, write_image

    cohort = cohort_dir if isinstance(cohort_dir, Cohort) else read_cohort(cohort_dir)
    out = Path(out_dir)
    if cohort.root is not None and out.resolve() == Path(cohort.root).resolve():
        raise ValueError(f"out_dir {out} is the source cohort folder; write the copy elsewhere")
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder; give a folder for the cohort")
    chosen = _selector(which, cohort)
    scans, motion, used = [], {}, set()
    with atomic_folder(out, overwrite=overwrite) as tmp:
        for patient in cohort.patients:
            for index, scan in enumerate(cohort.scans_of(patient)):
                rotate = bool(chosen(scan, index))
                image_path = None
                if scan.image is not None:
                    source = Path(scan.image)
                    suffix = _image_suffix(source) if source.is_file() else None
                    name = unique_name(safe_name(scan.scan_id), scan.scan_id, used)
                    image_path = tmp / IMAGE_DIR / f"{name}{suffix or '.nii.gz'}"
                image, nodes = None, scan.nodes
                if rotate:
                    r = scan_rotation(scan.scan_id, angle_deg, seed)
                    moves = not np.array_equal(r, np.eye(3))  # 0°: an exact copy
                    if moves and scan.image is not None:
                        image = read_image(scan.image)
                    center = scan_center(scan, image)
                    image, nodes = rotate_scan(image, nodes, r, center)
                    motion[scan.scan_id] = {"rotation": r.tolist(), "center_mm": center.tolist()}
                if image_path is not None:
                    if image is not None:
                        write_image(image, image_path)
                    elif suffix is not None:
                        image_path.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(scan.image, image_path)
                    else:
                        write_image(read_image(scan.image), image_path)
                scans.append(Scan(scan.patient_id, scan.scan_id, scan.timepoint, image_path,
                                  nodes))
        write_cohort(tmp, scans)
        meta = {"generator": "lngraph.synth.motion",
                "source": None if cohort.root is None else str(Path(cohort.root).resolve()),
                "angle_deg": float(angle_deg), "seed": int(seed),
                "which": "odd" if which is None else which if isinstance(which, str) else
                "custom", "rotated_scans": len(motion), "scans": motion}
        write_text_atomic(tmp / MOTION_FILE, json.dumps(meta, indent=2) + "\n")
    return out
