"""The crop cache: hits, invalidation by image bytes, node table and parameters, corrupt entries,
parallel pre-computation and its errors."""

from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk

from lngraph.data import CropParams, default_cache_dir, precompute_crops, scan_crops
from lngraph.data.cache import entry_path, image_digest
from lngraph.data.crops import crop_cubes
from lngraph.data.views import nine_views
from lngraph.io import InputError, NodeTable, Scan, read_cohort, write_cohort, write_image

SMALL = CropParams(mode="fixed", size=8)


def blob_image(peak: float) -> sitk.Image:
    """A 30×30×12 int16 CT with a bright blob; ``peak`` changes the voxels, not the file size."""
    z, y, x = np.meshgrid(np.arange(12), np.arange(30), np.arange(30), indexing="ij")
    array = -100 + peak * np.exp(-((x - 15) ** 2 + (y - 14) ** 2 + (z - 6) ** 2 * 6) / 20)
    image = sitk.GetImageFromArray(array.astype(np.int16))
    image.SetSpacing((0.8, 0.8, 2.0))
    image.SetOrigin((-12.0, -11.0, 5.0))
    return image


def make_scan(folder, scan_id="s1", peak=300.0, pos=((0.0, 0.0, 17.0), (2.0, -3.0, 20.0))):
    image = write_image(blob_image(peak), folder / f"{scan_id}.nrrd", compress=False)
    nodes = NodeTable.from_arrays(pos, [8.0] * len(pos), node_id=["a", "b"][:len(pos)])
    return Scan("p1", scan_id, "0", image, nodes)


def entry_files(cache):
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_second_call_is_a_hit_with_the_same_arrays(tmp_path):
    scan, cache = make_scan(tmp_path), tmp_path / "cache"
    first = scan_crops(scan, SMALL, cache_dir=cache)
    second = scan_crops(scan, SMALL, cache_dir=cache)
    assert not first.from_cache and second.from_cache and first.key == second.key
    np.testing.assert_array_equal(second.cubes, first.cubes)
    np.testing.assert_array_equal(second.views, first.views)
    assert first.cubes.shape == (2, 8, 8, 8) and second.views.shape == (2, 9, 8, 8)
    assert second.cubes.dtype == second.views.dtype == np.float32
    # one entry, named by the scan id and a hash of the parameters and image; no temporary left
    assert entry_files(cache) == [entry_path(cache, "s1", SMALL, image_digest(scan.image)).name]


def test_crops_equal_a_direct_computation(tmp_path):
    scan = make_scan(tmp_path)
    crops = scan_crops(scan, SMALL, cache_dir=tmp_path / "cache")
    direct = crop_cubes(blob_image(300.0), scan.nodes.pos, mode="fixed", size=8)
    np.testing.assert_allclose(crops.cubes, direct, atol=1e-6)
    np.testing.assert_allclose(crops.views, nine_views(direct), atol=1e-6)


def test_changed_image_bytes_invalidate_the_entry(tmp_path):
    scan, cache = make_scan(tmp_path), tmp_path / "cache"
    before = scan_crops(scan, SMALL, cache_dir=cache)
    size = scan.image.stat().st_size
    write_image(blob_image(600.0), scan.image, compress=False)
    assert scan.image.stat().st_size == size
    after = scan_crops(scan, SMALL, cache_dir=cache)
    assert not after.from_cache and after.key != before.key
    assert after.cubes.max() > before.cubes.max()
    assert scan_crops(scan, SMALL, cache_dir=cache).from_cache


def test_changed_node_table_invalidates_the_entry(tmp_path):
    scan, cache = make_scan(tmp_path), tmp_path / "cache"
    scan_crops(scan, SMALL, cache_dir=cache)
    moved = replace(scan, nodes=NodeTable.from_arrays([[0.0, 0.0, 17.0], [2.0, -3.0, 22.0]],
                                                      short_axis_mm=[8.0, 8.0]))
    assert not scan_crops(moved, SMALL, cache_dir=cache).from_cache
    radius = replace(SMALL, mode="radius")
    scan_crops(moved, radius, cache_dir=cache)
    grown = replace(moved, nodes=NodeTable.from_arrays(moved.nodes.pos, [8.0, 20.0]))
    crops = scan_crops(grown, radius, cache_dir=cache)
    assert not crops.from_cache
    assert scan_crops(grown, radius, cache_dir=cache).from_cache


def test_changed_parameters_use_their_own_entry(tmp_path):
    scan, cache = make_scan(tmp_path), tmp_path / "cache"
    scan_crops(scan, SMALL, cache_dir=cache)
    wide = replace(SMALL, window=(-1000.0, 1000.0))
    assert not scan_crops(scan, wide, cache_dir=cache).from_cache
    assert not scan_crops(scan, replace(SMALL, mode="radius"), cache_dir=cache).from_cache
    assert len(entry_files(cache)) == 3
    assert scan_crops(scan, SMALL, cache_dir=cache).from_cache
    assert scan_crops(scan, wide, cache_dir=cache).from_cache


def test_corrupt_entry_is_recomputed(tmp_path):
    scan, cache = make_scan(tmp_path), tmp_path / "cache"
    scan_crops(scan, SMALL, cache_dir=cache)
    path = entry_path(cache, "s1", SMALL, image_digest(scan.image))
    path.write_bytes(path.read_bytes()[:100])
    assert not scan_crops(scan, SMALL, cache_dir=cache).from_cache
    assert scan_crops(scan, SMALL, cache_dir=cache).from_cache


def test_without_cache_dir_nothing_is_written(tmp_path):
    scan = make_scan(tmp_path)
    crops = scan_crops(scan, SMALL)
    assert not crops.from_cache and crops.cubes.shape == (2, 8, 8, 8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s1.nrrd"]


def test_scans_of_two_cohorts_with_one_id_keep_their_own_entries(tmp_path):
    cache = tmp_path / "cache"
    a = make_scan(tmp_path / "a")
    b = make_scan(tmp_path / "b", peak=900.0)       # same scan id, another image
    first = scan_crops(a, SMALL, cache_dir=cache)
    scan_crops(b, SMALL, cache_dir=cache)
    assert len(entry_files(cache)) == 2
    again = scan_crops(a, SMALL, cache_dir=cache)
    assert again.from_cache and again.key == first.key


def test_scan_ids_become_safe_file_names(tmp_path):
    odd = entry_path(tmp_path, "p1/scan 2", SMALL)
    assert odd.parent == tmp_path and odd.name.startswith("p1_scan_2_")
    assert odd != entry_path(tmp_path, "p1_scan_2", SMALL)
    long = entry_path(tmp_path, "x" * 400, SMALL)
    assert len(long.name) < 100


def test_node_outside_the_image_names_node_scan_and_image(tmp_path):
    scan = make_scan(tmp_path, pos=((0.0, 0.0, 17.0), (0.0, 0.0, 90.0)))
    with pytest.raises(InputError, match=r"s1\.nrrd \(node b of scan s1\): centre \(0\.0, "
                                         r"0\.0, 90\.0\) mm \(LPS\) lies outside the image"):
        scan_crops(scan, SMALL, cache_dir=tmp_path / "cache")
    assert entry_files(tmp_path / "cache") == []


def test_missing_or_absent_image_is_reported(tmp_path):
    scan = make_scan(tmp_path)
    scan.image.unlink()
    with pytest.raises(InputError, match=r"s1\.nrrd: image not found"):
        scan_crops(scan, SMALL, cache_dir=tmp_path / "cache")
    with pytest.raises(InputError, match=r"scans\.csv \(scan s1\): the scan has no image"):
        scan_crops(replace(scan, image=None), SMALL)


def test_unreadable_image_is_reported(tmp_path):
    scan = make_scan(tmp_path)
    scan.image.write_bytes(b"NRRD0004\nnot really\n")
    with pytest.raises(InputError, match=r"s1\.nrrd: not a readable image"):
        scan_crops(scan, SMALL, cache_dir=tmp_path / "cache")


def make_cohort(tmp_path, outside=False):
    scans = [make_scan(tmp_path, "s1"), make_scan(tmp_path, "s2", peak=500.0)]
    if outside:
        scans[1] = replace(scans[1], nodes=NodeTable.from_arrays([[0.0, 0.0, -50.0]], [8.0],
                                                                 node_id=["far"]))
    scans[1] = replace(scans[1], timepoint="1")
    write_cohort(tmp_path, scans)
    return read_cohort(tmp_path)


def test_precompute_fills_the_default_cache(tmp_path):
    cohort = make_cohort(tmp_path)
    assert precompute_crops(cohort, SMALL, progress=False) == {"s1": False, "s2": False}
    assert precompute_crops(cohort, SMALL, progress=False) == {"s1": True, "s2": True}
    cache = default_cache_dir(cohort)
    assert cache == default_cache_dir() and len(entry_files(cache)) == 2
    assert not (tmp_path / ".lngraph_cache").exists()       # nothing in the cohort folder
    assert scan_crops(cohort.scans["s2"], SMALL, cache_dir=cache).from_cache


@pytest.mark.slow
def test_precompute_in_worker_processes(tmp_path):
    cohort = make_cohort(tmp_path)
    assert precompute_crops(cohort, SMALL, workers=2, progress=False) == {"s1": False,
                                                                          "s2": False}
    assert precompute_crops(cohort, SMALL, workers=2, progress=False) == {"s1": True,
                                                                          "s2": True}


@pytest.mark.slow
def test_precompute_error_from_a_worker_keeps_its_message(tmp_path):
    cohort = make_cohort(tmp_path, outside=True)
    with pytest.raises(InputError, match=r"s2\.nrrd \(node far of scan s2\): centre \(0\.0, "
                                         r"0\.0, -50\.0\) mm \(LPS\) lies outside the image"):
        precompute_crops(cohort, SMALL, workers=2, progress=False)


def test_precompute_error_in_process(tmp_path):
    cohort = make_cohort(tmp_path, outside=True)
    with pytest.raises(InputError, match=r"node far of scan s2"):
        precompute_crops(cohort, SMALL, progress=False)


def test_scan_without_nodes_caches_empty_arrays(tmp_path):
    scan = replace(make_scan(tmp_path), nodes=NodeTable.empty())
    crops = scan_crops(scan, SMALL, cache_dir=tmp_path / "cache")
    assert crops.cubes.shape == (0, 8, 8, 8) and crops.views.shape == (0, 9, 8, 8)
    assert scan_crops(scan, SMALL, cache_dir=tmp_path / "cache").from_cache
