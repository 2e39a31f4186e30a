"""Fixtures of the training tests: small in-memory geometry-only cohorts, and tiny cohort
folders with noise images."""

import numpy as np
import pytest
import SimpleITK as sitk

from lngraph.io import write_cohort, write_image
from lngraph.io.cohort import Cohort, NodeTable, Scan


def make_geometry_cohort(patients: int, seed: int = 0) -> Cohort:
    """Patients with two scans: 6-10 nodes, then the same nodes rotated a little, shifted,
    jittered by 1.5 mm and shuffled, minus one node (disappeared) plus one (new)."""
    rng = np.random.default_rng(seed)
    scans = []
    for p in range(patients):
        n = int(rng.integers(6, 11))
        pos = rng.uniform(-60, 60, (n, 3))
        size = rng.uniform(6, 20, n)
        tracks = np.array([f"P{p}-{k}" for k in range(n)], object)
        scans.append(Scan(f"P{p:02d}", f"P{p:02d}_a", "1", None,
                          NodeTable.from_arrays(pos, size, 1.2 * size, track_id=tracks)))
        angle = rng.uniform(-0.2, 0.2)
        rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                        [0, 0, 1]])
        later = pos[1:] @ rot.T + rng.uniform(-30, 30, 3) + rng.normal(0, 1.5, (n - 1, 3))
        later = np.concatenate([later, rng.uniform(-60, 60, (1, 3))])
        later_size = np.concatenate([size[1:] * rng.uniform(0.9, 1.1, n - 1), [10.0]])
        later_tracks = np.concatenate([tracks[1:], [f"P{p}-new"]])
        perm = rng.permutation(n)
        scans.append(Scan(f"P{p:02d}", f"P{p:02d}_b", "2", None,
                          NodeTable.from_arrays(later[perm], later_size[perm],
                                                1.2 * later_size[perm],
                                                track_id=later_tracks[perm])))
    return Cohort(scans)


@pytest.fixture(scope="session")
def geometry_cohort() -> Cohort:
    """24 patients, one pair each."""
    return make_geometry_cohort(24)


def make_cohort_folder(path, patients=3, images=False, seed=0):
    """Per patient two scans of four nodes (one disappears, one is new); with ``images`` each
    scan gets a 40×40×30 noise volume of 2 mm voxels that holds every node."""
    rng = np.random.default_rng(seed)
    scans = []
    for p in range(patients):
        pos = rng.uniform(-15, 15, (4, 3))
        tracks = np.array([f"t{p}_{k}" for k in range(4)], object)
        later = np.vstack([pos[:3] + rng.normal(0, 2, (3, 3)), rng.uniform(-15, 15, (1, 3))])
        for scan_id, t, centres, track in ((f"p{p}a", "0", pos, tracks),
                                           (f"p{p}b", "1", later,
                                            np.append(tracks[:3], f"t{p}_new").astype(object))):
            image = None
            if images:
                volume = sitk.GetImageFromArray(
                    rng.normal(40, 80, (30, 40, 40)).astype(np.int16))
                volume.SetSpacing((2.0, 2.0, 2.0))
                volume.SetOrigin((-39.0, -39.0, -29.0))
                image = write_image(volume, path / "images" / f"{scan_id}.nrrd")
            scans.append(Scan(f"p{p}", scan_id, t, image, NodeTable.from_arrays(
                centres, np.full(4, 8.0), track_id=track)))
    return write_cohort(path, scans)


@pytest.fixture
def make_cohort():
    """:func:`make_cohort_folder`: ``make_cohort(path, patients=3, images=False, seed=0)``
    writes a cohort folder and returns it."""
    return make_cohort_folder
