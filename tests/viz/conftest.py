"""Shared scans for the figure tests: a small pair with ground truth and a phantom CT."""

import numpy as np
import pytest
import SimpleITK as sitk

from lngraph.io.cohort import NodeTable, Scan, ScanPair


def _scan(scan_id, timepoint, pos, tracks, image=None):
    pos = np.asarray(pos, dtype=np.float64).reshape(-1, 3)
    nodes = NodeTable.from_arrays(pos, np.full(len(pos), 8.0), np.full(len(pos), 10.0),
                                  node_id=[f"{scan_id}n{k}" for k in range(len(pos))],
                                  track_id=tracks)
    return Scan("P", scan_id, timepoint, image, nodes)


def _phantom(scan: Scan) -> sitk.Image:
    """A small axis-aligned CT: soft tissue (40 HU) with a 120 HU sphere at every node."""
    size, spacing, origin = (48, 40, 36), np.array([2.5, 2.5, 3.0]), np.array([-60.0, -50, -54])
    k, j, i = np.indices(size[::-1])
    world = np.stack([i, j, k], axis=-1) * spacing + origin
    array = np.full(size[::-1], 40.0, dtype=np.float32)
    for centre, radius in zip(scan.nodes.pos, scan.nodes.radius_mm, strict=True):
        array[np.linalg.norm(world - centre, axis=-1) <= radius] = 120.0
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(spacing))
    image.SetOrigin(tuple(origin))
    return image


@pytest.fixture
def make_scan():
    """``make_scan(scan_id, timepoint, pos, tracks)``: nodes of radius 5 mm (long axis 10)
    named ``<scan_id>n<k>``."""
    return _scan


@pytest.fixture
def phantom():
    """``phantom(scan)``: a CT with a bright sphere at each of the scan's nodes."""
    return _phantom


@pytest.fixture
def pair():
    # tracks A, B persist (moved by (5, 0, 2) mm); C disappears; D is new
    src = _scan("a", "1", [[-20, 0, -10], [15, 5, 10], [30, -5, 25]], ["A", "B", "C"])
    dst = _scan("b", "2", [[-15, 0, -8], [20, 5, 12], [-30, 10, 30]], ["A", "B", "D"])
    return ScanPair(src, dst)
