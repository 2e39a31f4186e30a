"""Figures: a scan pair's predicted matching drawn as a PNG.

:mod:`lngraph.viz.slabs` resamples and projects a scan onto a world-aligned panel (numpy and
SimpleITK only); :mod:`lngraph.viz.figure` draws the pair with matplotlib (node statuses,
match lines, ground-truth judgement, crop gallery). Reads :mod:`lngraph.io` types; knows no
model. Importing this package imports matplotlib (:mod:`lngraph.io` does not).
"""

from lngraph.viz.figure import (
    DISPLAY_WINDOW,
    STATUS_COLOURS,
    WRONG_COLOUR,
    draw_match_figure,
    match_figure,
    missed_matches,
    node_status,
    wrong_matches,
)
from lngraph.viz.slabs import PLANES, Box, Slab, central_slice, choose_plane, panel_boxes, slab

__all__ = [
    "DISPLAY_WINDOW", "PLANES", "STATUS_COLOURS", "WRONG_COLOUR", "Box", "Slab",
    "central_slice", "choose_plane", "draw_match_figure", "match_figure", "missed_matches",
    "node_status", "panel_boxes", "slab", "wrong_matches",
]
