"""PNG figure of one scan pair's predicted matching (:func:`match_figure`).

Layout: the earlier scan (left) and the later scan (right) side by side, each node drawn as a
circle of its radius, coloured by its predicted status (matched / disappeared / new; unmatched
nodes dashed) and labelled with its ``node_id``; a line joins the two nodes of every predicted
match across the panels. When the pair has ground truth (every node has a ``track_id``), a
match that the ground truth contradicts is drawn dashed in a warning colour, a true match the
prediction missed is drawn as a thin dotted line, and the title counts the right ones. An
optional gallery row shows, for each matched pair, the central slice of the two nodes' crops
side by side.

**Panels.** With images, each panel is a slab of its scan (:mod:`lngraph.viz.slabs`: the
image resampled on a world-aligned grid over the nodes and projected through the slab's
depth, coronal or axial, radiological convention); without images the nodes are drawn in world
millimetres.

Matplotlib's object API on the Agg canvas is used (no pyplot state):
:func:`draw_match_figure` builds the figure, :func:`match_figure` also writes it as a PNG,
atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from matplotlib import colormaps, patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, ConnectionPatch
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

from lngraph.io.atomic import atomic_path
from lngraph.io.cohort import Scan, ScanPair
from lngraph.io.image import read_image
from lngraph.io.matches import PairPrediction
from lngraph.viz.slabs import (
    MAX_PANEL_PIXELS,
    PLANES,
    PROJECTIONS,
    Box,
    Slab,
    central_slice,
    choose_plane,
    panel_boxes,
    slab,
)
from lngraph.viz.status import missed_matches, node_status, wrong_matches

#: Colour of each status (Okabe–Ito palette, distinguishable with colour-vision deficiency).
STATUS_COLOURS = {"matched": "#009E73", "disappeared": "#E69F00", "new": "#56B4E9"}
#: Colour of a predicted match that the ground truth contradicts.
WRONG_COLOUR = "#FF2D55"
#: Colour of a true match that the prediction missed (dotted), on images and on white.
MISSED_COLOURS = ("white", "black")
#: Abdominal soft-tissue display window, HU.
DISPLAY_WINDOW = (-160.0, 240.0)
#: Orientation letters at the left, right, top and bottom edges of each plane.
EDGE_LETTERS = {"coronal": ("R", "L", "S", "I"), "axial": ("R", "L", "A", "P")}
#: Gallery cells per row, and the most matched pairs shown by default.
GALLERY_COLUMNS = 6
MAX_GALLERY = 12
_DARK_OUTLINE = [patheffects.withStroke(linewidth=2.5, foreground="black")]
_LIGHT_OUTLINE = [patheffects.withStroke(linewidth=2.5, foreground="white")]


@dataclass(frozen=True)
class _Panel:
    """A scan as drawn: display coordinates (slab pixels, or mm without an image)."""

    scan: Scan
    box: Box
    plane: str
    slab: Slab | None

    def to_display(self, points) -> np.ndarray:
        if self.slab is not None:
            return self.slab.to_pixels(points)
        horizontal, vertical, _ = PLANES[self.plane]
        return np.asarray(points, dtype=np.float64).reshape(-1, 3)[:, [horizontal, vertical]]

    @property
    def per_mm(self) -> float:
        return 1.0 if self.slab is None else 1.0 / self.slab.pixel_mm

    @property
    def up(self) -> float:
        """+1 where the vertical display coordinate grows upwards (coronal), -1 (axial)."""
        return 1.0 if self.plane == "coronal" else -1.0


def _draw_background(ax, panel: _Panel, window: Sequence[float]) -> None:
    if panel.slab is not None:
        ax.imshow(panel.slab.pixels, cmap="gray", vmin=window[0], vmax=window[1],
                  origin="lower" if panel.up > 0 else "upper", interpolation="bilinear")
        ax.set_xticks([])
        ax.set_yticks([])
        length = _round_length(panel.slab.pixels.shape[1] * panel.slab.pixel_mm / 5)
        ax.add_artist(AnchoredSizeBar(ax.transData, length * panel.per_mm, f"{length:g} mm",
                                      "lower right", color="white", frameon=False, pad=0.6,
                                      size_vertical=0.6 * panel.per_mm,
                                      fontproperties={"size": 9}))
        return
    horizontal, vertical, _ = PLANES[panel.plane]
    centre = panel.box.centre[[horizontal, vertical]]
    half = panel.box.half[horizontal]
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(*((centre[1] - half, centre[1] + half)[::int(panel.up)]))
    ax.set_aspect("equal")
    ax.grid(True, color="0.88", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.set_xlabel(f"{'xyz'[horizontal]} (mm, LPS)")
    ax.set_ylabel(f"{'xyz'[vertical]} (mm, LPS)")


def _round_length(mm: float) -> float:
    """The largest of 1, 2, 5 × 10^k mm not above ``mm`` (a scale bar's length)."""
    power = 10.0 ** math.floor(math.log10(max(mm, 1e-3)))
    return max(step * power for step in (1, 2, 5) if step * power <= max(mm, power))


def _draw_nodes(ax, panel: _Panel, status: np.ndarray) -> np.ndarray:
    """Circles, centre marks and labels; returns the ``[N, 2]`` display positions."""
    nodes = panel.scan.nodes
    xy = panel.to_display(nodes.pos)
    radius = nodes.radius_mm * panel.per_mm
    on_image = panel.slab is not None
    text_colour, outline = ("white", _DARK_OUTLINE) if on_image else ("black", _LIGHT_OUTLINE)
    for k in range(len(nodes)):
        colour = STATUS_COLOURS[status[k]]
        matched = status[k] == "matched"
        ax.add_patch(Circle(tuple(xy[k]), radius[k], fill=False, edgecolor=colour,
                            linewidth=2.0, linestyle="-" if matched else (0, (3, 2)), zorder=3))
        ax.plot(*xy[k], marker="+", color=colour, markersize=6, markeredgewidth=1.5, zorder=3)
        corner = xy[k] + 0.72 * radius[k] * np.array([1.0, panel.up])
        ax.annotate(str(nodes.node_id[k]), tuple(corner), xytext=(1, 1),
                    textcoords="offset points", fontsize=8.5, fontweight="bold",
                    color=text_colour, path_effects=outline, zorder=4, annotation_clip=False)
    left, right, top, bottom = EDGE_LETTERS[panel.plane]
    for text, x, y, ha, va in ((left, 0.015, 0.5, "left", "center"),
                               (right, 0.985, 0.5, "right", "center"),
                               (top, 0.5, 0.985, "center", "top"),
                               (bottom, 0.5, 0.015, "center", "bottom")):
        ax.text(x, y, text, transform=ax.transAxes, ha=ha, va=va, fontsize=10,
                fontweight="bold", color=text_colour, path_effects=outline, alpha=0.8)
    if len(nodes) == 0:
        ax.text(0.5, 0.5, "no nodes", transform=ax.transAxes, ha="center", va="center",
                color=text_colour, path_effects=outline)
    return xy


def _panel_title(role: str, scan: Scan, status: np.ndarray) -> str:
    counts = {s: int((status == s).sum()) for s in STATUS_COLOURS}
    parts = [f"{counts[s]} {s}" for s in STATUS_COLOURS if counts[s]]
    return (f"{role}: {scan.scan_id} ({scan.timepoint})\n{len(status)} nodes"
            + (f" — {', '.join(parts)}" if parts else ""))


def _summary(pair: ScanPair, pred: PairPrediction, wrong: np.ndarray | None) -> str:
    line = (f"Patient {pair.patient_id}: {pair.src.scan_id} → {pair.dst.scan_id} — "
            f"{len(pred.matches)} matched, {len(pred.disappeared)} disappeared, "
            f"{len(pred.new)} new")
    if wrong is None:
        return line
    truth = len(pair.gt_matches())
    right = int((~wrong).sum())
    return (line + f"\nground truth: {right} of {len(wrong)} predicted matches right, "
            f"{right} of {truth} true matches found")


def _legend_handles(wrong: np.ndarray | None, missed: np.ndarray) -> list[Line2D]:
    handles = [Line2D([], [], marker="o", markersize=10, markerfacecolor="none",
                      markeredgewidth=2, markeredgecolor=colour, linestyle="none",
                      label=f"{status} node")
               for status, colour in STATUS_COLOURS.items()]
    handles.append(Line2D([], [], color=STATUS_COLOURS["matched"], linewidth=1.6,
                          label="predicted match"))
    if wrong is not None and wrong.any():
        handles.append(Line2D([], [], color=WRONG_COLOUR, linewidth=1.6, linestyle="--",
                              label="match contradicted by ground truth"))
    if len(missed):
        handles.append(Line2D([], [], color="0.55", linewidth=1.2, linestyle=":",
                              label="true match missed"))
    return handles


def _connect(fig, ax_src, ax_dst, xy_src, xy_dst, pred: PairPrediction,
             wrong: np.ndarray | None, missed: np.ndarray, on_image: bool) -> None:
    """Lines across the panels: predicted matches (wrong ones dashed in the warning colour)
    and, thin and dotted, true matches the prediction missed."""
    for m, (i, j) in enumerate(pred.matches.tolist()):
        bad = wrong is not None and bool(wrong[m])
        fig.add_artist(ConnectionPatch(
            xyA=tuple(xy_src[i]), coordsA=ax_src.transData,
            xyB=tuple(xy_dst[j]), coordsB=ax_dst.transData,
            color=WRONG_COLOUR if bad else STATUS_COLOURS["matched"],
            linewidth=1.6 if bad else 1.2, linestyle="--" if bad else "-",
            alpha=0.9 if bad else 0.75, zorder=5))
    for i, j in missed.tolist():
        fig.add_artist(ConnectionPatch(
            xyA=tuple(xy_src[i]), coordsA=ax_src.transData,
            xyB=tuple(xy_dst[j]), coordsB=ax_dst.transData,
            color=MISSED_COLOURS[0 if on_image else 1], linewidth=1.0, linestyle=":",
            alpha=0.9, zorder=5))


def _check_crops(crops, pair: ScanPair) -> tuple[np.ndarray, np.ndarray]:
    src, dst = (np.asarray(c, dtype=np.float32) for c in crops)
    for name, cubes, scan in (("src", src, pair.src), ("dst", dst, pair.dst)):
        if cubes.ndim not in (4, 5) or len(cubes) != len(scan.nodes):
            raise ValueError(f"{name} crops have shape {cubes.shape}; expected "
                             f"[{len(scan.nodes)}, S, S, S] for scan {scan.scan_id}")
    return src, dst


def _draw_gallery(axes, pair: ScanPair, pred: PairPrediction, crops, plane: str,
                  wrong: np.ndarray | None, shown: int) -> None:
    """One cell for each of the first ``shown`` matched pairs: the two central crop slices
    with a white gap, framed in the match colour and titled ``src → dst (score)``; the other
    cells blank."""
    src_cubes, dst_cubes = crops
    cmap = colormaps["gray"].with_extremes(bad="white")
    for m, ax in enumerate(axes):
        ax.set_xticks([])
        ax.set_yticks([])
        if m >= shown:
            ax.set_axis_off()
            continue
        i, j = pred.matches[m]
        a, b = central_slice(src_cubes[i], plane), central_slice(dst_cubes[j], plane)
        gap = np.full((a.shape[0], max(1, a.shape[1] // 6)), np.nan, dtype=np.float32)
        ax.imshow(np.concatenate([a, gap, b], axis=1), cmap=cmap, vmin=0.0, vmax=1.0,
                  origin="lower" if plane == "coronal" else "upper", interpolation="nearest")
        bad = wrong is not None and bool(wrong[m])
        colour = WRONG_COLOUR if bad else STATUS_COLOURS["matched"]
        for spine in ax.spines.values():
            spine.set_edgecolor(colour)
            spine.set_linewidth(2.0)
        ax.set_title(f"{pair.src.nodes.node_id[i]} → {pair.dst.nodes.node_id[j]}  "
                     f"({pred.scores[m]:.2f}){'  wrong' if bad else ''}", fontsize=8.5,
                     color=WRONG_COLOUR if bad else "black", pad=3)


def _as_image(image) -> sitk.Image | None:
    if image is None or isinstance(image, sitk.Image):
        return image
    return read_image(image)


def draw_match_figure(pair: ScanPair, pred: PairPrediction, *, src_image=None,
                      dst_image=None, crops=None, plane: str = "auto", projection: str = "mean",
                      window: Sequence[float] = DISPLAY_WINDOW, max_gallery: int = MAX_GALLERY,
                      dpi: int = 150) -> Figure:
    """Draw ``pred`` for ``pair`` (see the module docstring) on a new Agg-backed figure.

    The figure's first two axes are the earlier and the later scan's panels (a
    :class:`~matplotlib.patches.Circle` per node), then the gallery cells; the lines across
    the panels are :class:`~matplotlib.patches.ConnectionPatch` artists of the figure.

    Args:
        pair: the scan pair (its nodes, and ground truth when every node has a track_id).
        pred: the predicted matching of ``pair``.
        src_image, dst_image: both scans' CTs (``SimpleITK.Image`` in HU or a path
            :func:`~lngraph.io.image.read_image` reads), or neither for a geometry-only figure.
        crops: optional ``(src_cubes, dst_cubes)``, each ``[N, S, S, S]`` in [0, 1], numpy
            order (z, y, x), as in the crop cache; adds the gallery of matched pairs.
        plane: ``"coronal"``, ``"axial"`` or ``"auto"`` (:func:`choose_plane`).
        projection: ``"mean"`` or ``"max"`` through each slab.
        window: HU range shown from black to white.
        max_gallery: most matched pairs shown in the gallery (first by src node order).
        dpi: resolution of the figure.

    Returns:
        The figure (nothing is written).

    Raises:
        ValueError: ``pred`` is sized for another pair, only one image is given, bad crops,
            an unknown plane or projection.
    """
    sizes = (len(pair.src.nodes), len(pair.dst.nodes))
    if (pred.n_src, pred.n_dst) != sizes:
        raise ValueError(f"prediction is for {pred.n_src} x {pred.n_dst} nodes but pair "
                         f"{pair.src.scan_id} -> {pair.dst.scan_id} has {sizes[0]} x {sizes[1]}")
    if (src_image is None) != (dst_image is None):
        raise ValueError("give both scans' images or neither")
    plane = choose_plane(pair) if plane == "auto" else plane
    if plane not in PLANES:
        raise ValueError(f"plane must be 'auto' or one of {', '.join(PLANES)}, got {plane!r}")
    if projection not in PROJECTIONS:
        raise ValueError(f"projection must be one of {PROJECTIONS}, got {projection!r}")
    images = (_as_image(src_image), _as_image(dst_image))
    crops = None if crops is None else _check_crops(crops, pair)
    boxes = panel_boxes(pair, plane, images)
    pixel_mm = None
    if images[0] is not None:
        finest = min(min(image.GetSpacing()) for image in images)
        pixel_mm = max(finest, 2 * float(boxes[0].half[PLANES[plane][0]]) / MAX_PANEL_PIXELS)
    panels = [_Panel(scan, box, plane, None if image is None
                     else slab(image, box, plane, projection, pixel_mm))
              for scan, box, image in zip((pair.src, pair.dst), boxes, images, strict=True)]
    status = node_status(pred)
    wrong = wrong_matches(pair, pred)

    n_gallery = 0 if crops is None else min(len(pred.matches), max_gallery)
    gallery_rows = math.ceil(n_gallery / GALLERY_COLUMNS)
    fig = Figure(figsize=(13, 7.4 + 1.75 * gallery_rows), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(1 + gallery_rows, GALLERY_COLUMNS,
                            height_ratios=[6.2] + [1.45] * gallery_rows)
    ax_src, ax_dst = fig.add_subplot(grid[0, :3]), fig.add_subplot(grid[0, 3:])
    positions = []
    for ax, panel, role, scan_status in zip((ax_src, ax_dst), panels, ("earlier", "later"),
                                            status, strict=True):
        _draw_background(ax, panel, window)
        positions.append(_draw_nodes(ax, panel, scan_status))
        ax.set_title(_panel_title(role, panel.scan, scan_status), fontsize=11)
    missed = missed_matches(pair, pred)
    _connect(fig, ax_src, ax_dst, *positions, pred, wrong, missed, panels[0].slab is not None)
    fig.suptitle(_summary(pair, pred, wrong), fontsize=12.5)
    what = (f"{plane} {projection} slabs through the nodes, window {window[0]:g} to "
            f"{window[1]:g} HU" if panels[0].slab is not None
            else f"{plane} projection of the node centres (no images)")
    note = f"{what}; circles show each node's radius; patient's right on the left"
    if n_gallery:
        axes = [fig.add_subplot(grid[1 + r, c]) for r in range(gallery_rows)
                for c in range(GALLERY_COLUMNS)]
        _draw_gallery(axes, pair, pred, crops, plane, wrong, n_gallery)
        more = len(pred.matches) - n_gallery
        note += (f"\ngallery: central {plane} slice of each matched pair's crops, earlier | "
                 "later, (match score)" + (f"; {more} more matches not shown" if more else ""))
    handles = _legend_handles(wrong, missed)
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False,
               fontsize=9.5, title=note, title_fontsize=8.5)
    return fig


def match_figure(pair: ScanPair, pred: PairPrediction, path: str | os.PathLike, *,
                 src_image=None, dst_image=None, crops=None, plane: str = "auto",
                 projection: str = "mean", window: Sequence[float] = DISPLAY_WINDOW,
                 max_gallery: int = MAX_GALLERY, dpi: int = 150) -> Path:
    """Draw ``pred`` for ``pair`` (:func:`draw_match_figure`) and write it as a PNG.

    Args:
        pair, pred, src_image, dst_image, crops, plane, projection, window, max_gallery: as
            for :func:`draw_match_figure`.
        path: the output ``.png`` (written atomically; its folder is created).
        dpi: resolution of the PNG.

    Returns:
        ``path``.

    Raises:
        ValueError: as :func:`draw_match_figure`; nothing is written then.
    """
    fig = draw_match_figure(pair, pred, src_image=src_image, dst_image=dst_image, crops=crops,
                            plane=plane, projection=projection, window=window,
                            max_gallery=max_gallery, dpi=dpi)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, facecolor="white")
    return path
