"""Real-texture cohorts (lngraph.synth.texture), on a small synthetic stand-in for a real CT
(and one test on the real chest CT of ../shared/data, skipped where it is absent)."""

import json
from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk

from lngraph.io.cohort import read_cohort
from lngraph.io.coords import ImageGeometry
from lngraph.io.errors import InputError
from lngraph.synth import (
    DEFAULT,
    TextureParams,
    generate_texture_cohort,
    load_texture_source,
    simulate_texture_patient,
)
from lngraph.synth.texture import PLACED_CONTRAST, render_texture_scan

#: Stand-in CT: 64 × 64 × 24 voxels of 2.5 × 2.5 × 4 mm, oblique (10° about k), LPS.
SHAPE_KJI = (24, 64, 64)
SPACING = (2.5, 2.5, 4.0)
ORIGIN = (-80.0, -120.0, -300.0)
ANGLE = np.deg2rad(10.0)
DIRECTION = (np.cos(ANGLE), -np.sin(ANGLE), 0.0, np.sin(ANGLE), np.cos(ANGLE), 0.0, 0.0, 0.0, 1.0)
#: The two halves of the stand-in (array order k, half-open), as a benchmark would split a CT.
TRAIN_Z, BENCH_Z = (0, 12), (12, 24)
#: The value of every voxel of the stand-in's benchmark half in the "marked" file.
MARK_HU = 2500
#: Small boxes and motion that fit a 12-slice half (44 mm between its first and last slice).
SMALL = TextureParams(fov_mm=(110.0, 110.0, 40.0), nodes=(3, 6), short_mm=(5.0, 8.0),
                      pose_deg=10.0, rotation_deg=2.0, translation_mm=(3.0, 3.0, 1.0),
                      deformation_mm=(1.0, 3.0), local_shift_mm=2.0, slice_mm=(1.5, 4.0),
                      pixel_scale=(1.0, 1.2), noise_hu=(0.0, 10.0))
#: The same with exact annotations and no scan effects (1 mm slices: one sample per voxel).
EXACT = replace(SMALL, slice_mm=(1.0, 1.0), pixel_scale=(1.0, 1.0), blur_mm=(0.0, 0.0),
                noise_hu=(0.0, 0.0), offset_hu=(0.0, 0.0),
                preset=replace(DEFAULT, centre_jitter_mm=0.0, size_jitter=0.0))


def _stand_in(path, marked: bool = False):
    """A fat-like smooth random texture (about −80 HU) with air on the low-i side; with
    ``marked``, the slices ``BENCH_Z`` hold ``MARK_HU`` instead."""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    grain = ndimage.gaussian_filter(rng.standard_normal(SHAPE_KJI), 2.0)
    hu = -80.0 + 20.0 * grain / grain.std()
    hu[:, :, :10] = -1000.0
    hu = ndimage.gaussian_filter(hu, (0.0, 1.0, 1.0))
    if marked:
        hu[BENCH_Z[0]:BENCH_Z[1]] = MARK_HU
    image = sitk.GetImageFromArray(np.rint(hu).astype(np.int16))
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    image.SetDirection(DIRECTION)
    sitk.WriteImage(image, str(path))
    return path


@pytest.fixture(scope="module")
def source_file(tmp_path_factory):
    return _stand_in(tmp_path_factory.mktemp("src") / "standin.nrrd")


@pytest.fixture(scope="module")
def cohort(source_file, tmp_path_factory):
    return generate_texture_cohort(tmp_path_factory.mktemp("tex") / "c", source_file, TRAIN_Z,
                                   patients=3, seed=4, params=SMALL, progress=False)


@pytest.fixture(scope="module")
def exact(source_file, tmp_path_factory):
    """A cohort without annotation jitter and scan effects, with its simulated patients."""
    params = replace(EXACT, preset=replace(EXACT.preset, p_disappear=0.4))
    out = generate_texture_cohort(tmp_path_factory.mktemp("tex") / "e", source_file, TRAIN_Z,
                                  patients=4, seed=2, params=params, progress=False)
    source = load_texture_source(source_file, TRAIN_Z)
    seeds = np.random.SeedSequence(2).spawn(4)
    patients = [simulate_texture_patient(source, f"R{i + 1:04d}", seeds[i], params)
                for i in range(4)]
    return read_cohort(out), source, patients


def _array(path) -> tuple[np.ndarray, ImageGeometry]:
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image).astype(np.float64), ImageGeometry.from_image(image)


def _voxel_at(array: np.ndarray, geometry: ImageGeometry, point) -> tuple[float, np.ndarray]:
    """The value of the voxel nearest to a world point, and that voxel's centre (world)."""
    kji = np.rint(geometry.world_to_array(np.asarray(point, dtype=np.float64))).astype(int)
    return float(array[tuple(kji)]), geometry.array_to_world(kji.astype(np.float64))


def test_cohort_reads_back(cohort):
    c = read_cohort(cohort)
    assert c.patients == ["R0001", "R0002", "R0003"] and len(c) == 6 and c.has_images
    assert all(p.has_ground_truth for p in c.pairs())
    assert sum(len(s.nodes) for s in c.scans.values()) > 0
    for scan in c.scans.values():
        image = sitk.ReadImage(str(scan.image))
        assert image.GetPixelID() == sitk.sitkInt16
        np.testing.assert_allclose(image.GetDirection(), DIRECTION, atol=1e-5)
        assert 1.5 - 1e-6 <= image.GetSpacing()[2] <= 4.0 + 1e-6
        assert SPACING[0] - 1e-6 <= image.GetSpacing()[0] <= 1.2 * SPACING[0] + 1e-6
    meta = json.loads((cohort / "texture.json").read_text(encoding="utf-8"))
    assert meta["z_range"] == list(TRAIN_Z) and meta["seed"] == 4 and meta["patients"] == 3
    assert len(meta["patient_records"]) == 3


def test_nodes_lie_inside_their_images(cohort):
    c = read_cohort(cohort)
    for scan in c.scans.values():
        geometry = ImageGeometry.from_image(sitk.ReadImage(str(scan.image)))
        assert geometry.contains(scan.nodes.pos, margin=0.0).all(), scan.scan_id


def test_nodes_avoid_air(exact, source_file):
    _, source, patients = exact
    for patient in patients:
        centres = np.array([s.centre for s in patient.timeline.specs])
        assert (source.sample(source.tissue, centres) > -500).all()
        assert (patient.placement == PLACED_CONTRAST).all()


def test_follow_up_positions_are_the_deformed_baseline(exact):
    cohort, _, patients = exact
    checked = 0
    for patient in patients:
        pair = cohort.pair(patient.scan_id(0), patient.scan_id(1))
        m = pair.gt_matches()
        expected = patient.follow_up_position(pair.src.nodes.pos[m[:, 0]])
        np.testing.assert_allclose(pair.dst.nodes.pos[m[:, 1]], expected, atol=1e-3)
        # and the motion is not the identity: the check has teeth
        assert np.linalg.norm(expected - pair.src.nodes.pos[m[:, 0]], axis=1).min() > 0.1
        checked += len(m)
    assert checked >= 5


def test_follow_up_image_is_the_moved_background(exact):
    cohort, source, patients = exact
    rng = np.random.default_rng(0)
    for patient in patients:
        array, geometry = _array(cohort.scans[patient.scan_id(1)].image)
        nodes = patient.true_positions(1)
        index = np.stack([rng.integers(0, n, 400) for n in geometry.size], axis=1)
        world = geometry.index_to_world(index)
        far = np.linalg.norm(world[:, None] - nodes[None], axis=-1).min(axis=1) > 15.0
        expected = source.sample(source.slab, patient.transforms[1].to_canonical(world[far]))
        got = array[index[far, 2], index[far, 1], index[far, 0]]
        tissue = expected > -300          # (away from the steep air border)
        assert tissue.sum() > 50
        np.testing.assert_allclose(got[tissue], expected[tissue], atol=3.0)


def test_inserted_node_stands_out_at_its_centre(exact):
    cohort, source, patients = exact
    differences = []
    for patient in patients:
        for t in range(2):
            array, geometry = _array(cohort.scans[patient.scan_id(t)].image)
            positions = patient.true_positions(t)
            for i in np.flatnonzero(patient.timeline.present[t]):
                value, voxel = _voxel_at(array, geometry, positions[i])
                background = float(source.sample(source.slab,
                                                 patient.transforms[t].to_canonical(voxel)))
                differences.append(value - background)
    assert len(differences) >= 5
    assert min(differences) > 20.0     # node 20–60 HU in fat of about −80 HU


def test_disappeared_node_is_not_drawn_in_the_follow_up(exact):
    cohort, source, patients = exact
    found = 0
    for patient in patients:
        tl = patient.timeline
        array, geometry = _array(cohort.scans[patient.scan_id(1)].image)
        positions = patient.true_positions(1)
        for i in np.flatnonzero(tl.present[0] & ~tl.present[1]):
            assert patient.track_id(i) not in set(cohort.scans[patient.scan_id(1)]
                                                  .nodes.track_id)
            value, voxel = _voxel_at(array, geometry, positions[i])
            background = float(source.sample(source.slab,
                                             patient.transforms[1].to_canonical(voxel)))
            assert abs(value - background) < 3.0
            found += 1
    assert found >= 1


def test_only_the_given_slices_are_read(tmp_path):
    marked = _stand_in(tmp_path / "marked.nrrd", marked=True)
    out = generate_texture_cohort(tmp_path / "c", marked, TRAIN_Z, patients=2, seed=1,
                                  params=SMALL, progress=False)
    for scan in read_cohort(out).scans.values():
        array, _ = _array(scan.image)
        assert array.max() < 500, f"{scan.scan_id} holds voxels of slices outside {TRAIN_Z}"
    meta = json.loads((out / "texture.json").read_text(encoding="utf-8"))
    first_z = ORIGIN[2] + TRAIN_Z[0] * SPACING[2]
    last_z = ORIGIN[2] + (TRAIN_Z[1] - 1) * SPACING[2]
    np.testing.assert_allclose(meta["slab_z_mm"], [first_z, last_z])
    assert set(range(*TRAIN_Z)).isdisjoint(range(*BENCH_Z))


def test_a_box_larger_than_the_slices_is_refused(source_file, tmp_path):
    too_tall = replace(SMALL, fov_mm=(110.0, 110.0, 60.0))
    with pytest.raises(InputError, match=r"does not fit in slices 0\.\.11.*along k"):
        generate_texture_cohort(tmp_path / "c", source_file, TRAIN_Z, patients=1, seed=0,
                                params=too_tall, progress=False)
    assert not (tmp_path / "c").exists()


def test_same_seed_same_cohort(cohort, source_file, tmp_path):
    again = generate_texture_cohort(tmp_path / "c", source_file, TRAIN_Z, patients=3, seed=4,
                                    params=SMALL, progress=False)
    assert (again / "nodes.csv").read_bytes() == (cohort / "nodes.csv").read_bytes()
    assert (again / "scans.csv").read_bytes() == (cohort / "scans.csv").read_bytes()
    for name in sorted(p.name for p in (cohort / "images").iterdir()):
        a, ga = _array(cohort / "images" / name)
        b, gb = _array(again / "images" / name)
        assert ga == gb and np.array_equal(a, b)
    other = generate_texture_cohort(tmp_path / "d", source_file, TRAIN_Z, patients=3, seed=5,
                                    params=SMALL, progress=False)
    assert (other / "nodes.csv").read_bytes() != (cohort / "nodes.csv").read_bytes()


def test_bad_source_path(tmp_path):
    missing = tmp_path / "no_such_ct.nrrd"
    with pytest.raises(InputError, match="no_such_ct.nrrd"):
        generate_texture_cohort(tmp_path / "c", missing, (0, 4), patients=1, seed=0,
                                progress=False)
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("z_range, message", [
    ((0, 30), r"outside the image, which has 24 slices"),
    ((-1, 5), r"outside the image"),
    ((5, 5), r"outside the image"),
    ((3, 4), r"at least 2"),
    (("a", 4), r"two slice indices"),
    ((1.5, 4), r"two slice indices"),
])
def test_bad_z_range(source_file, z_range, message):
    with pytest.raises(InputError, match=message) as info:
        load_texture_source(source_file, z_range)
    assert "standin.nrrd" in str(info.value)


def test_bad_params():
    with pytest.raises(ValueError, match="slice_mm"):
        TextureParams(slice_mm=(5.0, 1.0))
    with pytest.raises(ValueError, match="short_mm"):
        TextureParams(short_mm=(2.0, 10.0))


def test_real_chest_ct(shared_data):
    """One patient from the benchmark half of the real chest CT with the default settings."""
    path = shared_data / "real_ct" / "lung1_image.nrrd"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    source = load_texture_source(path, (24, 48))
    patient = simulate_texture_patient(source, "R0001", 0)
    assert len(patient.timeline.specs) >= 2
    assert (patient.placement == PLACED_CONTRAST).mean() >= 0.5
    for t in range(2):
        image = render_texture_scan(source, patient, t)
        geometry = ImageGeometry.from_image(image)
        assert 1.0 <= geometry.spacing[2] <= 5.0
        np.testing.assert_allclose(geometry.direction, source.geometry.direction)
        table = patient.node_table(t)
        assert geometry.contains(table.pos, margin=0.0).all()
        array = sitk.GetArrayFromImage(image)
        values = [array[tuple(np.rint(geometry.world_to_array(p)).astype(int))]
                  for p in patient.true_positions(t)[patient.timeline.present[t]]]
        assert np.median(values) > 0      # soft-tissue nodes, mostly in fat
