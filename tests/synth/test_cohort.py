import hashlib
import json

import numpy as np
import pytest
import SimpleITK as sitk

from lngraph.io.cohort import read_cohort
from lngraph.io.errors import InputError
from lngraph.synth import DEFAULT_GRID, generate_cohort
from lngraph.synth.cohort import _nih_cases

#: A coarse test grid (same field of view as the default): fast, and the nodes are unchanged.
TINY = DEFAULT_GRID.scaled(0.25)


def _digest(path) -> str:
    image = sitk.ReadImage(str(path))
    h = hashlib.sha256(sitk.GetArrayFromImage(image).tobytes())
    h.update(repr((image.GetOrigin(), image.GetSpacing(), image.GetDirection())).encode())
    return h.hexdigest()


@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory):
    return generate_cohort(tmp_path_factory.mktemp("a"), 1, seed=5, grid=TINY, progress=False)


def test_cohort_contract(tiny_cohort):
    cohort = read_cohort(tiny_cohort)
    assert cohort.patients == ["P0001"] and 2 <= len(cohort) <= 3 and cohort.has_images
    for scan in cohort.scans.values():
        image = sitk.ReadImage(str(scan.image))
        assert image.GetPixelID() == sitk.sitkInt16
        assert image.GetSize() == TINY.shape
        np.testing.assert_allclose(image.GetSpacing(), TINY.spacing)
    assert all(p.has_ground_truth for p in cohort.pairs())
    meta = json.loads((tiny_cohort / "synth.json").read_text(encoding="utf-8"))
    assert meta["seed"] == 5 and meta["preset"]["name"] == "default"
    assert meta["grid"]["shape"] == list(TINY.shape)


def test_same_seed_same_cohort(tiny_cohort, tmp_path):
    again = generate_cohort(tmp_path, 1, seed=5, grid=TINY, progress=False)
    assert (again / "nodes.csv").read_bytes() == (tiny_cohort / "nodes.csv").read_bytes()
    assert (again / "scans.csv").read_bytes() == (tiny_cohort / "scans.csv").read_bytes()
    for name in sorted(p.name for p in (tiny_cohort / "images").iterdir()):
        assert _digest(again / "images" / name) == _digest(tiny_cohort / "images" / name)


def test_different_seed_differs(tiny_cohort, tmp_path):
    other = generate_cohort(tmp_path, 1, seed=6, grid=TINY, progress=False)
    assert (other / "nodes.csv").read_bytes() != (tiny_cohort / "nodes.csv").read_bytes()
    assert _digest(other / "images" / "P0001_T0.nii.gz") != _digest(
        tiny_cohort / "images" / "P0001_T0.nii.gz")


def test_geometry_only_has_the_same_nodes(tiny_cohort, tmp_path):
    geo = generate_cohort(tmp_path, 1, seed=5, images=False, progress=False)
    assert (geo / "nodes.csv").read_bytes() == (tiny_cohort / "nodes.csv").read_bytes()
    assert not read_cohort(geo).has_images and not (geo / "images").exists()


@pytest.mark.slow
def test_workers_do_not_change_the_cohort(tmp_path):
    one = generate_cohort(tmp_path / "one", 2, seed=9, images=False, progress=False)
    two = generate_cohort(tmp_path / "two", 2, seed=9, images=False, workers=2, progress=False)
    assert (one / "nodes.csv").read_bytes() == (two / "nodes.csv").read_bytes()


def test_cohort_size_does_not_change_patients(tmp_path):
    big = read_cohort(generate_cohort(tmp_path, 2, seed=9, images=False, progress=False))
    small = read_cohort(generate_cohort(tmp_path, 1, seed=9, images=False,
                                        progress=False))  # replaces the 2-patient cohort
    assert small.patients == ["P0001"]
    np.testing.assert_array_equal(small.scans["P0001_T0"].nodes.pos,
                                  big.scans["P0001_T0"].nodes.pos)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="patients must be at least 1"):
        generate_cohort(tmp_path, 0, seed=0, progress=False)
    with pytest.raises(ValueError, match="layouts must be one of prior, nih"):
        generate_cohort(tmp_path, 1, seed=0, layouts="real", progress=False)
    with pytest.raises(ValueError, match="unknown preset"):
        generate_cohort(tmp_path, 1, seed=0, preset="extreme", progress=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="file: exists and is not a folder"):
        generate_cohort(tmp_path / "file", 1, seed=0, progress=False)
    with pytest.raises(InputError, match="annotations not found"):
        generate_cohort(tmp_path, 1, seed=0, layouts="nih", nih_root=tmp_path / "none",
                        progress=False)


def _check_nih_layouts(cohort, cases) -> None:
    for k, case in enumerate(cases):
        baseline = cohort.scans_of(f"P{k + 1:04d}")[0].nodes
        assert len(baseline) == len(case.pos)
        ratio = np.sort(baseline.short_axis_mm) / np.sort(case.short_mm)
        assert np.all(np.abs(np.log(ratio)) < 0.4)  # real sizes, up to annotation jitter


def test_nih_layouts_ship_with_the_package(tmp_path, monkeypatch):
    """``layouts="nih"`` needs no annotations folder (as in a fresh clone): the packaged cases
    are used."""
    monkeypatch.setattr("lngraph.synth.nodes.NIH_DEFAULT_ROOT", tmp_path / "absent")
    cohort = read_cohort(generate_cohort(tmp_path, 2, seed=1, layouts="nih", images=False,
                                         progress=False))
    cases = _nih_cases("nih", 2, 1, None)
    assert all(c.name.startswith("ABD_LYMPH_") for c in cases)
    _check_nih_layouts(cohort, cases)
    meta = json.loads((tmp_path / "synth.json").read_text(encoding="utf-8"))
    assert meta["layouts"] == "nih"


def test_nih_layouts_from_the_annotations_folder(shared_data, tmp_path):
    """``nih_root`` reads the original annotations, which give the same cohort."""
    root = shared_data / "nih_ct_lymph_nodes"
    folder = generate_cohort(tmp_path / "real", 2, seed=1, layouts="nih", nih_root=root,
                             images=False, progress=False)
    _check_nih_layouts(read_cohort(folder), _nih_cases("nih", 2, 1, root))
    packaged = generate_cohort(tmp_path / "packaged", 2, seed=1, layouts="nih", images=False,
                               progress=False)
    assert (folder / "nodes.csv").read_bytes() == (packaged / "nodes.csv").read_bytes()
