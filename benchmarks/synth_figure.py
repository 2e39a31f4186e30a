"""Figure of the phantom for the docs: one tracked lymph node in a baseline and a follow-up.

Renders patient 1 of a ``default`` cohort (seed 0) and shows, in an abdominal window
(−160…240 HU), the axial slice through one node in the baseline and in the follow-up (the
node ringed in both, the other annotated nodes of the slice marked), and a coronal slice of
the baseline.

Run: ``python benchmarks/synth_figure.py`` (writes ``docs/img/synth_slice.png``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lngraph.io import atomic_path  # noqa: E402
from lngraph.synth import DEFAULT_GRID, PatientRenderer, simulate_patient  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "img" / "synth_slice.png"
WINDOW = (-160, 240)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    seeds = np.random.SeedSequence(args.seed).spawn(1)
    sim = simulate_patient("P0001", seeds[0], "default")
    renderer = PatientRenderer(sim, DEFAULT_GRID)
    geometry = renderer.geometry()
    scans = [renderer.scan(t) for t in (0, 1)]
    tables = [sim.node_table(t) for t in (0, 1)]
    tracked = [t for t in tables[0].track_id if t in set(tables[1].track_id)]
    track = max(tracked, key=lambda t: tables[0].short_axis_mm[list(tables[0].track_id)
                                                              .index(t)])
    spacing = np.asarray(geometry.spacing)
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.2), gridspec_kw={"width_ratios": [1, 1, 1]})
    for t, ax in enumerate(axes[:2]):
        table = tables[t]
        k_node = list(table.track_id).index(track)
        kji = geometry.world_to_array(table.pos)
        k = int(round(kji[k_node, 0]))
        ax.imshow(scans[t][k], cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1])
        near = np.abs(kji[:, 0] - k) <= 1.5
        ax.scatter(kji[near, 2], kji[near, 1], s=30, marker="+", color="yellow", linewidths=1)
        radius = table.long_axis_mm[k_node] / 2 / spacing[0] + 3
        ax.add_patch(plt.Circle((kji[k_node, 2], kji[k_node, 1]), radius, fill=False,
                                color="red", linewidth=1))
        ax.set_title(f"{'baseline' if t == 0 else 'follow-up'} {sim.dates[t]}, z = "
                     f"{table.pos[k_node, 2]:.0f} mm", fontsize=8)
    j = int(round(geometry.world_to_array(tables[0].pos)[list(tables[0].track_id).index(track),
                                                         1]))
    axes[2].imshow(scans[0][:, j, :], cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1],
                   origin="lower", aspect=spacing[2] / spacing[0])
    axes[2].set_title("baseline, coronal", fontsize=8)
    for ax in axes:
        ax.set_axis_off()
    fig.tight_layout()
    with atomic_path(args.out) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
