r"""Reliability diagrams: how often matches of a given confidence are right.

Top panel: per equal-width confidence bin, the accuracy (share of correct matches) drawn as a
bar over the bin and a dot at (the bin's mean confidence, its accuracy), against the diagonal
of perfect calibration; each curve's legend entry (below the panels) gives its ECE

.. math::
    \mathrm{ECE} = \sum_b \frac{n_b}{n}\,\lvert \mathrm{acc}_b - \mathrm{conf}_b \rvert .

Bottom panel: the number of events per bin (log scale), one step line per curve. Several
curves (e.g. the raw decision scores and the calibrated confidences) share the axes.

A curve is anything with ``edges [B + 1]``, ``confidence [B]``, ``accuracy [B]`` (NaN in empty
bins) and ``count [B]`` — as attributes
(:class:`~lngraph.metrics.calibration.ReliabilityCurve`) or as keys of a mapping (its
``to_dict()``, or the ``reliability`` entries of ``lngraph evaluate``'s JSON). Matplotlib's
object API on the Agg canvas (no pyplot state); PNGs are written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lngraph.io.atomic import atomic_path

#: Colours of successive curves (Okabe–Ito: blue, vermillion, bluish green, orange).
CURVE_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#E69F00")
KEYS = ("edges", "confidence", "accuracy", "count")


def curve_arrays(curve) -> dict[str, np.ndarray]:
    """``{edges, confidence, accuracy, count}`` of a curve (module docstring) as float arrays
    (NaN where a list holds ``None``, as JSON writes NaN).

    Raises:
        ValueError: a key is missing or the sizes do not fit.
    """
    get = curve.get if isinstance(curve, Mapping) else (lambda k: getattr(curve, k, None))
    out = {}
    for key in KEYS:
        value = get(key)
        if value is None:
            raise ValueError(f"a reliability curve needs {', '.join(KEYS)}; {key} is missing")
        out[key] = np.array([np.nan if v is None else v for v in np.asarray(value, object)],
                            dtype=np.float64)
    bins = len(out["count"])
    if bins < 1 or len(out["edges"]) != bins + 1 or any(
            len(out[k]) != bins for k in ("confidence", "accuracy")):
        raise ValueError(f"a reliability curve needs B + 1 edges and B values per bin, got "
                         f"{len(out['edges'])} edges and {bins} counts")
    return out


def curve_ece(arrays: Mapping[str, np.ndarray]) -> float:
    """ECE of a curve's arrays (:func:`curve_arrays`); NaN without events."""
    count, n = arrays["count"], arrays["count"].sum()
    if not n:
        return float("nan")
    full = count > 0
    return float((count[full] * np.abs(arrays["accuracy"][full]
                                       - arrays["confidence"][full])).sum() / n)


def draw_reliability(curves: Mapping[str, object], *, title: str | None = None,
                     dpi: int = 150) -> Figure:
    """The reliability diagram of ``{label: curve}`` (module docstring) on a new Agg figure.

    Raises:
        ValueError: no curves, a malformed curve, or curves with different bins.
    """
    if not curves:
        raise ValueError("a reliability diagram needs at least one curve")
    arrays = {label: curve_arrays(curve) for label, curve in curves.items()}
    edges = next(iter(arrays.values()))["edges"]
    if any(a["edges"].shape != edges.shape or not np.allclose(a["edges"], edges)
           for a in arrays.values()):
        raise ValueError("the curves of one diagram must share their bins")
    fig = Figure(figsize=(5.6, 7.0), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3.2, 1.2))
    top.plot([0, 1], [0, 1], color="0.45", linestyle="--", linewidth=1,
             label="perfect calibration")
    width = np.diff(edges)
    k = len(arrays)
    for index, (label, a) in enumerate(arrays.items()):
        colour = CURVE_COLOURS[index % len(CURVE_COLOURS)]
        full = a["count"] > 0
        left = edges[:-1] + index * width / k
        top.bar(left[full], a["accuracy"][full], width=width[full] / k, align="edge",
                color=colour, alpha=0.55, edgecolor=colour, linewidth=0.8,
                label=f"{label} (ECE {curve_ece(a):.3f}, n = {int(a['count'].sum())})")
        top.plot(a["confidence"][full], a["accuracy"][full], marker="o", markersize=3.5,
                 color=colour, linestyle="none", markeredgecolor="white",
                 markeredgewidth=0.5)
        bottom.stairs(a["count"], edges, baseline=None, color=colour, linewidth=1.4,
                      label=label)
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy (share of correct matches)",
            aspect="auto")
    top.grid(alpha=0.25)
    if title:
        top.set_title(title, fontsize=10)
    bottom.set(xlabel="confidence", ylabel="matches per bin")
    if any(a["count"].max() > 0 for a in arrays.values()):
        bottom.set_yscale("symlog", linthresh=1)
    bottom.set_ylim(bottom=0)
    bottom.grid(alpha=0.25)
    fig.legend(*top.get_legend_handles_labels(), loc="outside lower center", ncols=1,
               fontsize=8, frameon=False,
               title="bars: accuracy per bin; dots: (mean confidence, accuracy)",
               title_fontsize=7.5)
    return fig


def reliability_figure(curves: Mapping[str, object], path: str | os.PathLike, *,
                       title: str | None = None, dpi: int = 150) -> Path:
    """Draw :func:`draw_reliability` and write it as a PNG (atomically; its folder is
    created). Returns ``path``.

    Raises:
        ValueError: as :func:`draw_reliability`; nothing is written then.
    """
    fig = draw_reliability(curves, title=title, dpi=dpi)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, facecolor="white")
    return path
