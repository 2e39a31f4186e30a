"""PNG figure of one patient's node tracks: each track's short axis over the scans
(:func:`track_figure`).

The x axis is the patient's scans in time order (labelled with scan id and timepoint), the y
axis the annotated short-axis diameter in mm (log scale: equal steps are equal ratios). Each
track is a line through its nodes, solid between consecutive scans and dashed across a scan it
skips; the track's name (without the patient prefix) is written at its last node. A track
that starts after the first scan (*new*) begins with an upward triangle, one that ends before
the last scan (*lost*) ends with a cross, in the status colours of :mod:`lngraph.viz.figure`
(new: sky blue, lost: orange). With ground truth, the title also counts the predicted tracks
that join different lymph nodes and the lymph nodes split over several tracks.

Matplotlib's object API on the Agg canvas, written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from lngraph.io.atomic import atomic_path
from lngraph.io.cohort import Scan

#: Marker colours of new and lost tracks (the status colours of the pair figures).
NEW_COLOUR, LOST_COLOUR = "#56B4E9", "#E69F00"


def track_series(scans: Sequence[Scan], tracks: Mapping[str, Sequence[str]]
                 ) -> dict[str, list[tuple[int, float, str]]]:
    """Each track's ``(scan index, short axis mm, node id)`` in time order, tracks in order of
    first appearance."""
    out: dict[str, list[tuple[int, float, str]]] = {}
    for t, scan in enumerate(scans):
        for k, track in enumerate(tracks[scan.scan_id]):
            out.setdefault(str(track), []).append(
                (t, float(scan.nodes.short_axis_mm[k]), str(scan.nodes.node_id[k])))
    return out


def _ground_truth_note(scans: Sequence[Scan], series: Mapping[str, list]) -> str:
    """``"; vs truth: M merged, F split"`` when every node has a ``track_id``, else ``""``."""
    truth = {(t, node): scan.nodes.track_id[k] for t, scan in enumerate(scans)
             for k, node in enumerate(str(n) for n in scan.nodes.node_id)}
    if not truth or any(v is None for v in truth.values()):
        return ""
    merged = sum(len({truth[(t, node)] for t, _, node in points}) > 1
                 for points in series.values())
    owners: dict[str, set[str]] = {}
    for name, points in series.items():
        for t, _, node in points:
            owners.setdefault(truth[(t, node)], set()).add(name)
    split = sum(len(names) > 1 for names in owners.values())
    return (f"; vs ground truth: {merged} track(s) join different lymph nodes, {split} lymph "
            "node(s) split")


def draw_track_figure(scans: Sequence[Scan], tracks: Mapping[str, Sequence[str]], *,
                      title: str | None = None) -> Figure:
    """The figure of :func:`track_figure` (not written)."""
    series = track_series(scans, tracks)
    patient = scans[0].patient_id if scans else ""
    last = len(scans) - 1
    fig = Figure(figsize=(max(6.0, 1.6 * len(scans) + 3.0), 6.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    palette = colormaps["tab20"]
    n_new = n_lost = 0
    for k, (name, points) in enumerate(series.items()):
        colour = palette(k % 20)
        x = np.array([p[0] for p in points], dtype=float)
        y = np.array([p[1] for p in points], dtype=float)
        step = np.diff(x)
        for style, keep in (("-", step == 1), ("--", step > 1)):
            if keep.any():        # one line per style, NaN between the kept segments
                xs = np.stack([x[:-1], x[1:], np.full(len(step), np.nan)], 1)[keep].ravel()
                ys = np.stack([y[:-1], y[1:], np.full(len(step), np.nan)], 1)[keep].ravel()
                ax.plot(xs, ys, ls=style, color=colour, lw=1.6)
        ax.plot(x, y, "o", color=colour, ms=4.5)
        if x[0] > 0:
            n_new += 1
            ax.plot(x[:1], y[:1], "^", ms=10, mfc="none", mec=NEW_COLOUR, mew=2)
        if x[-1] < last:
            n_lost += 1
            ax.plot(x[-1:], y[-1:], "x", ms=10, color=LOST_COLOUR, mew=2.2)
        short = name.removeprefix(f"{patient}_") if patient else name
        ax.annotate(short, (x[-1], y[-1]), xytext=(6, 0), textcoords="offset points",
                    fontsize=7, color=colour, va="center")
    ax.set_yscale("log")
    ticks = [3, 5, 7, 10, 15, 20, 30, 50, 70, 100]
    ax.set_yticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    sizes = [p[1] for points in series.values() for p in points]
    if sizes:
        ax.set_ylim(min(sizes) / 1.15, max(sizes) * 1.15)
    ax.set_xticks(range(len(scans)), [f"{s.scan_id}\n{s.timepoint}" for s in scans],
                  fontsize=8)
    ax.set_xlim(-0.4, last + 0.9)
    ax.set_ylabel("short axis (mm, log scale)")
    ax.grid(alpha=0.3)
    head = title if title is not None else f"{patient}: {len(series)} tracks"
    ax.set_title(f"{head} ({n_new} new, {n_lost} lost){_ground_truth_note(scans, series)}",
                 fontsize=10)
    fig.legend(handles=[
        Line2D([], [], color="grey", lw=1.6, label="consecutive scans"),
        Line2D([], [], color="grey", lw=1.6, ls="--", label="skips a scan"),
        Line2D([], [], ls="none", marker="^", ms=9, mfc="none", mec=NEW_COLOUR, mew=2,
               label="new (after the first scan)"),
        Line2D([], [], ls="none", marker="x", ms=9, color=LOST_COLOUR, mew=2.2,
               label="lost (before the last scan)"),
    ], fontsize=8, loc="lower center", ncol=4, frameon=False)
    fig.subplots_adjust(left=0.08, right=0.97, top=0.93, bottom=0.17)
    return fig


def track_figure(path: str | os.PathLike, scans: Sequence[Scan],
                 tracks: Mapping[str, Sequence[str]], *, title: str | None = None,
                 dpi: int = 110) -> Path:
    """Draw one patient's tracks (module docstring) and write the PNG atomically.

    Args:
        path: the output ``.png`` (its folder is created).
        scans: the patient's scans, earliest first.
        tracks: ``{scan_id: [n] track id of each node}`` (as in ``tracks.csv``).
        title: replaces the default ``"PATIENT: K tracks"``.
        dpi: resolution.
    """
    fig = draw_track_figure(scans, tracks, title=title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, facecolor="white")
    return Path(path)
