"""Figures: a scan pair's predicted matching drawn as a PNG; reliability diagrams of match
confidences (:mod:`lngraph.viz.reliability`); a patient's node tracks over its scans
(:mod:`lngraph.viz.tracks`).

:mod:`lngraph.viz.slabs` resamples and projects a scan onto a world-aligned panel (numpy and
SimpleITK only); :mod:`lngraph.viz.figure` draws the pair with matplotlib (node statuses,
match lines, ground-truth judgement, crop gallery). Reads :mod:`lngraph.io` types; knows no
model. Names are imported on first use, so ``from lngraph.viz import node_status`` (what
``lngraph match`` needs for its markups) does not import matplotlib until a figure is drawn.
"""

from lngraph._lazy import lazy_exports

#: Public name → the submodule that defines it.
_EXPORTS = {
    **dict.fromkeys(("DISPLAY_WINDOW", "STATUS_COLOURS", "WRONG_COLOUR", "draw_match_figure",
                     "match_figure"), "figure"),
    **dict.fromkeys(("missed_matches", "node_status", "wrong_matches"), "status"),
    **dict.fromkeys(("PLANES", "Box", "Slab", "central_slice", "choose_plane", "panel_boxes",
                     "slab"), "slabs"),
    **dict.fromkeys(("draw_reliability", "reliability_figure"), "reliability"),
    **dict.fromkeys(("draw_track_figure", "track_figure", "track_series"), "tracks"),
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
