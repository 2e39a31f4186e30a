"""``lngraph.viz.figure``: node statuses, the drawn match figure (circles, lines, gallery) and
its PNG (atomic)."""

import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.image import imread
from matplotlib.patches import Circle, ConnectionPatch

from lngraph.io.cohort import ScanPair
from lngraph.io.matches import PairPrediction
from lngraph.viz.figure import (
    STATUS_COLOURS,
    WRONG_COLOUR,
    draw_match_figure,
    match_figure,
    missed_matches,
    node_status,
    wrong_matches,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: A low resolution keeps the tests fast; the layout does not depend on it.
DPI = 40
MATCHED, GONE, NEW = (to_hex(STATUS_COLOURS[s]) for s in ("matched", "disappeared", "new"))


def _read_png(path):
    """The PNG at ``path`` as an array, after checking its signature; 13 inches wide."""
    assert path.read_bytes()[:8] == PNG_MAGIC
    pixels = imread(path)
    assert pixels.shape[1] == 13 * DPI
    return pixels


def _circles(ax) -> list[Circle]:
    return [p for p in ax.patches if isinstance(p, Circle)]


def _lines(fig) -> list[ConnectionPatch]:
    return [a for a in fig.artists if isinstance(a, ConnectionPatch)]


def _colour(artist) -> str:
    return to_hex(artist.get_edgecolor()[:3])


def _texts(ax) -> set[str]:
    return {t.get_text() for t in ax.texts}


def test_node_status_and_ground_truth(pair):
    pred = PairPrediction(3, 3, [[0, 0], [2, 1]], [0.9, 0.3])
    src, dst = node_status(pred)
    assert src.tolist() == ["matched", "disappeared", "matched"]
    assert dst.tolist() == ["matched", "matched", "new"]
    assert wrong_matches(pair, pred).tolist() == [False, True]
    assert missed_matches(pair, pred).tolist() == [[1, 1]]


def test_no_ground_truth_means_no_judgement(pair, make_scan):
    unknown = ScanPair(pair.src, make_scan("b", "2", pair.dst.nodes.pos, [None, None, None]))
    pred = PairPrediction(3, 3, [[0, 0]])
    assert wrong_matches(unknown, pred) is None
    assert missed_matches(unknown, pred).shape == (0, 2)


def test_geometry_only_figure(pair, tmp_path):
    pred = PairPrediction(3, 3, [[0, 0], [1, 1]], [0.9, 0.8])
    fig = draw_match_figure(pair, pred, dpi=DPI)
    assert len(fig.axes) == 2  # two panels, no gallery
    for ax, scan, colours in zip(fig.axes, (pair.src, pair.dst),
                                 ([MATCHED, MATCHED, GONE], [MATCHED, MATCHED, NEW]),
                                 strict=True):
        assert not ax.images  # no CT: world millimetres, coronal (x, z)
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("x (mm, LPS)", "z (mm, LPS)")
        circles = _circles(ax)
        assert len(circles) == len(scan.nodes)
        np.testing.assert_allclose([c.center for c in circles], scan.nodes.pos[:, [0, 2]])
        assert [c.radius for c in circles] == [5.0] * 3
        assert [_colour(c) for c in circles] == colours
        # matched nodes solid, unmatched dashed
        assert [c.get_linestyle() == "-" for c in circles] == [True, True, False]
        assert _texts(ax) >= {*scan.nodes.node_id, "R", "L", "S", "I"}
    lines = _lines(fig)
    assert [_colour(line) for line in lines] == [MATCHED, MATCHED]  # both right, none missed
    np.testing.assert_allclose([line.xy1 for line in lines], pair.src.nodes.pos[:2][:, [0, 2]])
    np.testing.assert_allclose([line.xy2 for line in lines], pair.dst.nodes.pos[:2][:, [0, 2]])
    assert fig.get_suptitle().startswith("Patient P: a → b — 2 matched, 1 disappeared, 1 new")
    assert "2 of 2 predicted matches right, 2 of 2 true matches found" in fig.get_suptitle()

    path = match_figure(pair, pred, tmp_path / "out" / "pair.png", dpi=DPI)
    assert path == tmp_path / "out" / "pair.png"
    pixels = _read_png(path)
    assert pixels.shape[0] > 6 * DPI
    assert pixels[..., :3].std() > 0.05  # something was drawn
    assert sorted(p.name for p in path.parent.iterdir()) == ["pair.png"]


def test_image_figure_with_gallery(pair, phantom, tmp_path):
    pred = PairPrediction(3, 3, [[0, 0], [2, 1]], [0.9, 0.3])
    crops = (np.random.default_rng(0).random((3, 12, 12, 12)),
             np.random.default_rng(1).random((3, 12, 12, 12)))
    images = {"src_image": phantom(pair.src), "dst_image": phantom(pair.dst)}
    fig = draw_match_figure(pair, pred, crops=crops, dpi=DPI, **images)
    panels, gallery = fig.axes[:2], fig.axes[2:]
    for ax, scan in zip(panels, (pair.src, pair.dst), strict=True):
        (image,) = ax.images
        slab_pixels = np.asarray(image.get_array())
        circles = _circles(ax)
        assert len(circles) == len(scan.nodes)
        for circle in circles:  # each circle sits on its node's bright sphere (120 vs 40 HU)
            col, row = np.round(circle.center).astype(int)
            assert slab_pixels[row, col] > 55.0
    # the match 2 -> 1 is wrong (tracks C, B); the true match 1 -> 1 was missed (white on CT)
    assert [_colour(line) for line in _lines(fig)] == [MATCHED, to_hex(WRONG_COLOUR),
                                                       to_hex("white")]
    assert [line.get_linestyle() for line in _lines(fig)] == ["-", "--", ":"]
    legend = {t.get_text() for t in fig.legends[0].get_texts()}
    assert {"match contradicted by ground truth", "true match missed"} <= legend
    # one gallery row of 6 cells: the two matches, then blank cells
    assert len(gallery) == 6
    assert [ax.get_title() for ax in gallery[:2]] == ["an0 → bn0  (0.90)",
                                                      "an2 → bn1  (0.30)  wrong"]
    assert [ax.axison for ax in gallery] == [True, True, False, False, False, False]
    assert _colour(gallery[1].spines["top"]) == to_hex(WRONG_COLOUR)

    with_gallery = match_figure(pair, pred, tmp_path / "gallery.png", crops=crops, dpi=DPI,
                                **images)
    plain = match_figure(pair, pred, tmp_path / "plain.png", plane="axial", projection="max",
                         dpi=DPI, **images)
    assert with_gallery == tmp_path / "gallery.png"
    assert _read_png(with_gallery).shape[0] > _read_png(plain).shape[0]  # the gallery row


def test_gallery_is_capped(pair):
    pred = PairPrediction(3, 3, [[0, 0], [1, 1]], [0.9, 0.8])
    crops = (np.zeros((3, 8, 8, 8)), np.zeros((3, 8, 8, 8)))
    fig = draw_match_figure(pair, pred, crops=crops, max_gallery=1, dpi=DPI)
    titles = [ax.get_title() for ax in fig.axes[2:]]
    assert titles == ["an0 → bn0  (0.90)"] + [""] * 5
    assert "1 more matches not shown" in fig.legends[0].get_title().get_text()


def test_figure_of_a_pair_without_nodes(make_scan, tmp_path):
    empty = ScanPair(make_scan("a", "1", np.zeros((0, 3)), []),
                     make_scan("b", "2", np.zeros((0, 3)), []))
    fig = draw_match_figure(empty, PairPrediction(0, 0), dpi=DPI)
    for ax in fig.axes:
        assert _circles(ax) == []
        assert "no nodes" in _texts(ax)
    assert _lines(fig) == []
    assert fig.get_suptitle().startswith("Patient P: a → b — 0 matched, 0 disappeared, 0 new")
    path = match_figure(empty, PairPrediction(0, 0), tmp_path / "empty.png", dpi=DPI)
    assert path == tmp_path / "empty.png"
    assert _read_png(path).shape[0] > 6 * DPI


def test_bad_arguments(pair, phantom, tmp_path):
    with pytest.raises(ValueError, match="prediction is for 2 x 3 nodes"):
        match_figure(pair, PairPrediction(2, 3), tmp_path / "x.png")
    with pytest.raises(ValueError, match="both scans' images or neither"):
        match_figure(pair, PairPrediction(3, 3), tmp_path / "x.png",
                     src_image=phantom(pair.src))
    with pytest.raises(ValueError, match="src crops have shape"):
        match_figure(pair, PairPrediction(3, 3), tmp_path / "x.png",
                     crops=(np.zeros((2, 8, 8, 8)), np.zeros((3, 8, 8, 8))))
    with pytest.raises(ValueError, match="plane"):
        match_figure(pair, PairPrediction(3, 3), tmp_path / "x.png", plane="sagittal")
    with pytest.raises(ValueError, match="projection"):
        match_figure(pair, PairPrediction(3, 3), tmp_path / "x.png", projection="median")
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
