"""``lngraph.io.figures``: the match figure (PNG, atomic), slab coordinates, node statuses."""

import numpy as np
import pytest
import SimpleITK as sitk
from matplotlib.figure import Figure
from matplotlib.image import imread

from lngraph.io.cohort import NodeTable, Scan, ScanPair
from lngraph.io.figures import (
    Box,
    central_slice,
    choose_plane,
    match_figure,
    missed_matches,
    node_status,
    panel_boxes,
    slab,
    wrong_matches,
)
from lngraph.io.matches import PairPrediction

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: A low resolution keeps the tests fast; the layout does not depend on it.
DPI = 40


def _scan(scan_id, timepoint, pos, tracks, image=None):
    pos = np.asarray(pos, dtype=np.float64).reshape(-1, 3)
    nodes = NodeTable.from_arrays(pos, np.full(len(pos), 8.0), np.full(len(pos), 10.0),
                                  node_id=[f"{scan_id}n{k}" for k in range(len(pos))],
                                  track_id=tracks)
    return Scan("P", scan_id, timepoint, image, nodes)


@pytest.fixture
def pair():
    # tracks A, B persist (moved by (5, 0, 2) mm); C disappears; D is new
    src = _scan("a", "1", [[-20, 0, -10], [15, 5, 10], [30, -5, 25]], ["A", "B", "C"])
    dst = _scan("b", "2", [[-15, 0, -8], [20, 5, 12], [-30, 10, 30]], ["A", "B", "D"])
    return ScanPair(src, dst)


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


def _read_png(path):
    assert path.read_bytes()[:8] == PNG_MAGIC
    return imread(path)


def test_node_status_and_ground_truth(pair):
    pred = PairPrediction(3, 3, [[0, 0], [2, 1]], [0.9, 0.3])
    src, dst = node_status(pred)
    assert src.tolist() == ["matched", "disappeared", "matched"]
    assert dst.tolist() == ["matched", "matched", "new"]
    assert wrong_matches(pair, pred).tolist() == [False, True]
    assert missed_matches(pair, pred).tolist() == [[1, 1]]


def test_no_ground_truth_means_no_judgement(pair):
    unknown = ScanPair(pair.src, _scan("b", "2", pair.dst.nodes.pos, [None, None, None]))
    pred = PairPrediction(3, 3, [[0, 0]])
    assert wrong_matches(unknown, pred) is None
    assert missed_matches(unknown, pred).shape == (0, 2)


def test_choose_plane(pair):
    assert choose_plane(pair) == "coronal"  # spread z 40 mm > y 15 mm: project along y
    flat = ScanPair(_scan("a", "1", [[0, -40, 0], [0, 40, 2]], ["A", "B"]),
                    _scan("b", "2", [[0, -40, 0]], ["A"]))
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


def test_geometry_only_figure(pair, tmp_path):
    pred = PairPrediction(3, 3, [[0, 0], [1, 1]], [0.9, 0.8])
    path = match_figure(pair, pred, tmp_path / "out" / "pair.png", dpi=DPI)
    assert path == tmp_path / "out" / "pair.png"
    pixels = _read_png(path)
    assert pixels.shape[1] == 13 * DPI and pixels.shape[0] > 6 * DPI
    assert pixels[..., :3].std() > 0.05  # something was drawn
    assert sorted(p.name for p in path.parent.iterdir()) == ["pair.png"]


def test_image_figure_with_gallery(pair, tmp_path):
    pred = PairPrediction(3, 3, [[0, 0], [2, 1]], [0.9, 0.3])
    crops = (np.random.default_rng(0).random((3, 12, 12, 12)),
             np.random.default_rng(1).random((3, 12, 12, 12)))
    with_gallery = match_figure(pair, pred, tmp_path / "gallery.png",
                                src_image=_phantom(pair.src), dst_image=_phantom(pair.dst),
                                crops=crops, dpi=DPI)
    plain = match_figure(pair, pred, tmp_path / "plain.png", src_image=_phantom(pair.src),
                         dst_image=_phantom(pair.dst), plane="axial", projection="max", dpi=DPI)
    assert _read_png(with_gallery).shape[0] > _read_png(plain).shape[0]  # the gallery row


def test_figure_of_a_pair_without_nodes(tmp_path):
    empty = ScanPair(_scan("a", "1", np.zeros((0, 3)), []), _scan("b", "2", np.zeros((0, 3)),
                                                                  []))
    _read_png(match_figure(empty, PairPrediction(0, 0), tmp_path / "empty.png",
                                   dpi=DPI))


def test_bad_arguments(pair, tmp_path):
    with pytest.raises(ValueError, match="prediction is for 2 x 3 nodes"):
        match_figure(pair, PairPrediction(2, 3), tmp_path / "x.png")
    with pytest.raises(ValueError, match="both scans' images or neither"):
        match_figure(pair, PairPrediction(3, 3), tmp_path / "x.png",
                     src_image=_phantom(pair.src))
    with pytest.raises(ValueError, match="src crops have shape"):
        match_figure(pair, PairPrediction(3, 3), tmp_path / "x.png",
                     crops=(np.zeros((2, 8, 8, 8)), np.zeros((3, 8, 8, 8))))
    with pytest.raises(ValueError, match="plane"):
        match_figure(pair, PairPrediction(3, 3), tmp_path / "x.png", plane="sagittal")
    assert list(tmp_path.iterdir()) == []


def test_write_is_atomic(pair, tmp_path, monkeypatch):
    path = tmp_path / "pair.png"
    path.write_bytes(b"old figure")

    def broken_savefig(self, fname, **kwargs):
        with open(fname, "wb") as handle:
            handle.write(PNG_MAGIC + b"half")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        match_figure(pair, PairPrediction(3, 3), path)
    assert path.read_bytes() == b"old figure"
    assert [p.name for p in tmp_path.iterdir()] == ["pair.png"]  # no temporary file left
