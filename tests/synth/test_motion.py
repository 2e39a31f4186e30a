import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from lngraph.io.cohort import NodeTable, Scan, read_cohort, write_cohort
from lngraph.io.image import read_image, write_image
from lngraph.synth import random_rotation, rotate_cohort, rotate_scan
from lngraph.synth.motion import axis_angle_matrix, scan_center, scan_rotation

SPACING = (0.8, 1.3, 2.7)  # anisotropic
OBLIQUE = axis_angle_matrix([1.0, 2.0, -0.5], 23.0)


def oblique_image(size=(24, 20, 12), seed=0) -> sitk.Image:
    """A smooth random volume (so linear interpolation is exact enough) with anisotropic
    spacing and an oblique direction."""
    rng = np.random.default_rng(seed)
    k, j, i = np.meshgrid(*(np.arange(n) for n in size[::-1]), indexing="ij")
    a, b, c = rng.uniform(0.2, 0.6, 3)
    array = (100 * np.sin(a * i) * np.cos(b * j) + 40 * np.sin(c * k + i * 0.1)).astype(
        np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING)
    image.SetDirection(OBLIQUE.ravel().tolist())
    image.SetOrigin((-12.5, 30.25, -7.0))
    return image


def table(n=6, seed=1) -> NodeTable:
    rng = np.random.default_rng(seed)
    return NodeTable.from_arrays(rng.uniform(-40, 40, (n, 3)), rng.uniform(5, 10, n),
                                 rng.uniform(10, 15, n),
                                 track_id=np.array([f"t{k}" for k in range(n)], object))


def sample(image: sitk.Image, point) -> float:
    """Linear interpolation of ``image`` at a world point."""
    index = np.asarray(image.TransformPhysicalPointToContinuousIndex(
        [float(v) for v in point]))
    lo = np.floor(index).astype(int)
    frac = index - lo
    array = sitk.GetArrayFromImage(image)
    value = 0.0
    for corner in np.ndindex(2, 2, 2):
        c = lo + corner
        weight = np.prod(np.where(corner, frac, 1 - frac))
        value += weight * array[c[2], c[1], c[0]]
    return float(value)


@pytest.mark.parametrize("angle", [10.0, 37.0, 120.0])
def test_random_rotation_is_proper(angle):
    rng = np.random.default_rng(3)
    for _ in range(20):
        r = random_rotation(angle, rng)
        np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-12)
        assert np.linalg.det(r) == pytest.approx(1.0, abs=1e-12)
        assert np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1))) == pytest.approx(
            angle, abs=1e-9)


def test_random_rotation_axes_cover_the_sphere():
    rng = np.random.default_rng(0)
    axes = []
    for _ in range(400):
        r = random_rotation(30.0, rng)
        axis = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
        axes.append(axis / np.linalg.norm(axis))
    axes = np.asarray(axes)
    assert np.abs(axes.mean(axis=0)).max() < 0.12  # no preferred direction
    assert (axes > 0).mean(axis=0).min() > 0.4
    np.testing.assert_array_equal(random_rotation(30.0, 7), random_rotation(30.0, 7))


def test_rotated_image_reads_the_same_intensity_at_the_rotated_point():
    image = oblique_image()
    r = random_rotation(10.0, 5)
    center = np.array([3.0, 41.0, 2.0])
    moved, _ = rotate_scan(image, None, r, center)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(moved), sitk.GetArrayFromImage(image))
    np.testing.assert_allclose(np.reshape(moved.GetDirection(), (3, 3)), r @ OBLIQUE,
                               atol=1e-12)
    assert moved.GetSpacing() == image.GetSpacing()
    assert image.GetDirection() == pytest.approx(tuple(OBLIQUE.ravel()))  # input untouched
    rng = np.random.default_rng(2)
    size = np.asarray(image.GetSize())
    for _ in range(25):
        index = rng.uniform(1, size - 2)
        p = np.asarray(image.TransformContinuousIndexToPhysicalPoint(index.tolist()))
        q = r @ (p - center) + center
        np.testing.assert_allclose(moved.TransformPhysicalPointToContinuousIndex(q.tolist()),
                                   index, atol=1e-9)
        assert sample(moved, q) == pytest.approx(sample(image, p), abs=1e-3)


def test_resampling_the_rotated_image_back_gives_the_original():
    """Resample the rotated image on the original grid through the inverse motion: the
    original voxels come back (the rotated image is the same patient, moved)."""
    image = oblique_image()
    r = random_rotation(10.0, 11)
    center = image.TransformContinuousIndexToPhysicalPoint(
        ((np.asarray(image.GetSize()) - 1) / 2).tolist())
    moved, _ = rotate_scan(image, None, r, center)
    # ResampleImageFilter maps output points through the transform into the input image:
    # an original point p must go to R (p - c) + c.
    transform = sitk.Euler3DTransform()
    transform.SetCenter(center)
    transform.SetMatrix(r.ravel().tolist())
    back = sitk.Resample(moved, image, transform, sitk.sitkLinear, -1000.0)
    np.testing.assert_allclose(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image),
                               atol=1e-3)


def test_nodes_move_rigidly_with_the_image():
    image, nodes = oblique_image(), table()
    r = random_rotation(10.0, 8)
    center = nodes.pos.mean(axis=0)
    moved_image, moved = rotate_scan(image, nodes, r, center)
    np.testing.assert_allclose(moved.pos, (nodes.pos - center) @ r.T + center)
    distances = np.linalg.norm(nodes.pos[:, None] - nodes.pos[None], axis=-1)
    np.testing.assert_allclose(np.linalg.norm(moved.pos[:, None] - moved.pos[None], axis=-1),
                               distances, atol=1e-9)
    np.testing.assert_allclose(moved.pos.mean(axis=0), center, atol=1e-9)
    for name in ("short_axis_mm", "long_axis_mm"):
        np.testing.assert_array_equal(getattr(moved, name), getattr(nodes, name))
    assert list(moved.node_id) == list(nodes.node_id)
    assert list(moved.track_id) == list(nodes.track_id)
    # each node keeps its continuous voxel index: the image moved with it
    for p, q in zip(nodes.pos, moved.pos, strict=True):
        np.testing.assert_allclose(moved_image.TransformPhysicalPointToContinuousIndex(q),
                                   image.TransformPhysicalPointToContinuousIndex(p), atol=1e-9)


def test_zero_degrees_changes_nothing():
    image, nodes = oblique_image(), table()
    r = random_rotation(0.0, 4)
    np.testing.assert_array_equal(r, np.eye(3))
    moved_image, moved = rotate_scan(image, nodes, r, nodes.pos.mean(axis=0))
    np.testing.assert_array_equal(moved.pos, nodes.pos)
    assert moved_image.GetOrigin() == image.GetOrigin()
    assert moved_image.GetDirection() == image.GetDirection()


def test_rotate_scan_refuses_an_improper_matrix():
    with pytest.raises(ValueError, match="proper rotation"):
        rotate_scan(None, table(), np.diag([1.0, 1.0, -1.0]), np.zeros(3))
    with pytest.raises(ValueError, match="3x3"):
        rotate_scan(None, table(), np.eye(2), np.zeros(3))


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """Two patients (3 and 2 scans) with oblique anisotropic images; one scan has no nodes."""
    root = tmp_path_factory.mktemp("src")
    scans = []
    for p, n_scans in ((0, 3), (1, 2)):
        for t in range(n_scans):
            sid = f"P{p}_T{t}"
            path = write_image(sitk.Cast(oblique_image(seed=3 * p + t), sitk.sitkInt16),
                               root / "images" / f"{sid}.nii.gz")
            nodes = NodeTable.empty() if (p, t) == (1, 1) else table(5 + t, seed=10 * p + t)
            scans.append(Scan(f"P{p}", sid, str(t + 1), path, nodes))
    return write_cohort(root, scans)


def test_rotate_cohort_round_trip(source, tmp_path):
    out = rotate_cohort(source, tmp_path / "rot", 10.0, seed=3)
    before, after = read_cohort(source), read_cohort(out)
    assert after.patients == before.patients
    assert list(after.scans) == list(before.scans)
    meta = json.loads((out / "motion.json").read_text(encoding="utf-8"))
    assert sorted(meta["scans"]) == ["P0_T1", "P1_T1"]  # odd timepoint index
    assert meta["angle_deg"] == 10.0 and meta["which"] == "odd"
    for pair in after.pairs():
        assert (pair.src.scan_id in meta["scans"]) != (pair.dst.scan_id in meta["scans"])
    for sid, old in before.scans.items():
        new = after.scans[sid]
        assert new.image is not None and Path(new.image).is_relative_to(out.resolve())
        assert (new.patient_id, new.timepoint) == (old.patient_id, old.timepoint)
        assert list(new.nodes.track_id) == list(old.nodes.track_id)
        old_image, new_image = read_image(old.image), read_image(new.image)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(new_image),
                                      sitk.GetArrayFromImage(old_image))
        if sid not in meta["scans"]:
            np.testing.assert_array_equal(new.nodes.pos, old.nodes.pos)
            assert new_image.GetOrigin() == old_image.GetOrigin()
            continue
        r, center = np.asarray(meta["scans"][sid]["rotation"]), meta["scans"][sid]["center_mm"]
        np.testing.assert_allclose(r, scan_rotation(sid, 10.0, 3))
        np.testing.assert_allclose(center, scan_center(old, old_image))
        np.testing.assert_allclose(new.nodes.pos, (old.nodes.pos - center) @ r.T + center,
                                   atol=1e-4)  # nodes.csv keeps 1e-4 mm
        np.testing.assert_allclose(np.reshape(new_image.GetDirection(), (3, 3)),
                                   r @ np.reshape(old_image.GetDirection(), (3, 3)), atol=1e-5)
        for index in ([0, 0, 0], [23, 19, 11], [5.5, 7.25, 3.0]):
            p = np.asarray(old_image.TransformContinuousIndexToPhysicalPoint(index))
            np.testing.assert_allclose(
                new_image.TransformPhysicalPointToContinuousIndex(r @ (p - center) + center),
                index, atol=1e-3)
        if len(old.nodes) == 0:  # about the image centre
            np.testing.assert_allclose(center, old_image.TransformContinuousIndexToPhysicalPoint(
                [11.5, 9.5, 5.5]), atol=1e-6)


def test_rotate_cohort_by_zero_degrees_is_an_identical_copy(source, tmp_path):
    out = rotate_cohort(source, tmp_path / "zero", 0.0, seed=1, which="all")
    assert (out / "nodes.csv").read_bytes() == (source / "nodes.csv").read_bytes()
    before, after = read_cohort(source), read_cohort(out)
    for sid, old in before.scans.items():
        new = after.scans[sid]
        np.testing.assert_array_equal(new.nodes.pos, old.nodes.pos)
        old_image, new_image = read_image(old.image), read_image(new.image)
        assert new_image.GetOrigin() == old_image.GetOrigin()
        assert new_image.GetDirection() == old_image.GetDirection()
        np.testing.assert_array_equal(sitk.GetArrayFromImage(new_image),
                                      sitk.GetArrayFromImage(old_image))


def test_rotate_cohort_geometry_only_and_which(tmp_path):
    scans = [Scan("A", f"A{t}", str(t), None, table(4, seed=t)) for t in range(4)]
    source = write_cohort(tmp_path / "geo", scans)
    out = rotate_cohort(source, tmp_path / "geo_rot", 10.0, seed=0, which=["A2"])
    before, after = read_cohort(source), read_cohort(out)
    assert not after.has_images
    for t in (0, 1, 3):
        np.testing.assert_array_equal(after.scans[f"A{t}"].nodes.pos,
                                      before.scans[f"A{t}"].nodes.pos)
    moved, old = after.scans["A2"].nodes.pos, before.scans["A2"].nodes.pos
    assert np.abs(moved - old).max() > 0.5
    np.testing.assert_allclose(np.linalg.norm(moved - moved[0], axis=1),
                               np.linalg.norm(old - old[0], axis=1), atol=1e-3)
    with pytest.raises(ValueError, match="not in the cohort"):
        rotate_cohort(source, tmp_path / "bad", 10.0, which=["nope"])
    with pytest.raises(ValueError, match="which must be"):
        rotate_cohort(source, tmp_path / "bad", 10.0, which="sometimes")
    with pytest.raises(ValueError, match="source cohort folder"):
        rotate_cohort(source, source, 10.0)
    assert not (tmp_path / "bad").exists()
