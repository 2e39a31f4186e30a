"""``lngraph.viz.slabs``: plane choice, panel boxes, slab coordinates, crop slices."""

import numpy as np
import pytest
import SimpleITK as sitk

from lngraph.io.cohort import ScanPair
from lngraph.viz.slabs import Box, central_slice, choose_plane, panel_boxes, slab


def test_choose_plane(pair, make_scan):
    assert choose_plane(pair) == "coronal"  # spread z 40 mm > y 15 mm: project along y
    flat = ScanPair(make_scan("a", "1", [[0, -40, 0], [0, 40, 2]], ["A", "B"]),
                    make_scan("b", "2", [[0, -40, 0]], ["A"]))
    assert choose_plane(flat) == "axial"


def test_panel_boxes_share_the_field_of_view(pair):
    src_box, dst_box = panel_boxes(pair, "coronal")
    assert src_box.half[0] == src_box.half[2] == dst_box.half[0] == dst_box.half[2]
    assert src_box.half[0] >= 40.0
    # depth (y) follows each scan's own nodes: src y in [-5, 5] ± radius 5 + margin 5
    assert src_box.half[1] == pytest.approx(5 + 5 + 5)
    np.testing.assert_allclose(src_box.centre, [5, 0, 7.5])


@pytest.mark.parametrize("plane", ["coronal", "axial"])
@pytest.mark.parametrize("direction", [(1, 0, 0, 0, 1, 0, 0, 0, 1),
                                       (0, 1, 0, -1, 0, 0, 0, 0, -1)])
def test_slab_maps_world_points_to_their_pixel(plane, direction):
    """A bright point at a known world position shows at ``to_pixels`` of it, also for an
    image whose voxel axes are rotated and flipped against the world axes."""
    size, spacing = (30, 34, 26), (2.0, 1.5, 2.5)
    image = sitk.Image(size, sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    image.SetOrigin((7.0, -3.0, 11.0))
    target = np.array(image.TransformIndexToPhysicalPoint((12, 20, 9)))
    array = np.full(size[::-1], -100.0, dtype=np.float32)
    array[9, 20, 12] = 1000.0
    bright = sitk.GetImageFromArray(array)
    bright.CopyInformation(image)
    box = Box(target + np.array([3.0, -2.0, 4.0]), np.array([25.0, 25.0, 25.0]))
    view = slab(bright, box, plane, "max", pixel_mm=0.5)
    row, col = np.unravel_index(np.argmax(view.pixels), view.pixels.shape)
    np.testing.assert_allclose(view.to_pixels(target)[0], [col, row], atol=0.51)
    assert view.pixel_mm == 0.5


def test_slab_rejects_unknown_projection():
    image = sitk.Image((4, 4, 4), sitk.sitkFloat32)
    with pytest.raises(ValueError, match="projection"):
        slab(image, Box(np.zeros(3), np.ones(3)), "coronal", "median")


def test_central_slice_orientation():
    cube = np.zeros((4, 4, 4))  # numpy order (z, y, x)
    cube[3, 2, 1] = 1.0  # z = 3, y = 2 (the middle), x = 1
    assert central_slice(cube, "coronal")[3, 1] == 1.0  # (z, x)
    cube[2, 0, 3] = 2.0
    assert central_slice(cube, "axial")[0, 3] == 2.0  # (y, x)
