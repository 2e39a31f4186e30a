"""``lngraph synth``: generate a synthetic longitudinal abdominal CT cohort.

``lngraph synth OUT --patients N --seed S --preset easy|default|hard [--layouts prior|nih]
[--timepoints N|A-B] [--workers K]`` writes the cohort folder contract (``scans.csv``,
``nodes.csv``, ``images/*.nii.gz``, plus ``synth.json``) with a progress bar; see
:mod:`lngraph.synth`. ``--timepoints`` makes follow-up series of N scans (or A to B, drawn per
patient) in which nodes may miss a scan and come back (:mod:`lngraph.synth.cohort`).

``OUT`` is written whole or not at all; an existing non-empty ``OUT`` (such as an earlier
cohort) is refused unless ``--overwrite`` is given, and then replaced as a whole only once the
new cohort is complete.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lngraph.cli.common import HelpFormatter, examples, positive_int
from lngraph.cli.main import OVERWRITE_HELP


def _timepoints(text: str) -> tuple[int, int]:
    from lngraph.synth.cohort import parse_timepoints

    try:
        return parse_timepoints(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "synth",
        help="generate a synthetic longitudinal abdominal CT cohort",
        description="Generate a synthetic cohort: per patient 2-3 (or --timepoints) abdominal "
        "CT scans (int16 HU "
        "NIfTI, 192x160x96 voxels of 1.6x1.6x3 mm) of a phantom abdomen with lymph nodes that "
        "move, deform, change size, disappear and appear, and their annotations with "
        "ground-truth track_id. Deterministic by seed (independent of --workers).",
        epilog=examples("lngraph synth my_synth --patients 40 --seed 3",
                        "lngraph synth geo --patients 200 --no-images --layouts nih",
                        "lngraph synth series --patients 30 --timepoints 3-6 --no-images"),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("out", type=Path, metavar="OUT",
                        help="cohort folder to write (whole, at the end)")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    parser.add_argument("--patients", type=positive_int, default=20, help="patients (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="cohort seed (default 0)")
    parser.add_argument("--preset", choices=("easy", "default", "hard"), default="default",
                        help="difficulty (default: default); see docs/synth.md")
    parser.add_argument("--layouts", choices=("prior", "nih"), default="prior",
                        help="baseline node layouts: the built-in NIH-fitted prior (default) or "
                        "the real NIH CT Lymph Nodes abdominal layouts (86 cases, shipped "
                        "with lngraph; CC BY 3.0, see docs/synth.md)")
    parser.add_argument("--nih-root", type=Path, default=None, metavar="DIR",
                        help="with --layouts nih: read the layouts from a folder of the original "
                        "NIH annotations (ABD_LYMPH_* folders) instead of the shipped table")
    parser.add_argument("--timepoints", type=_timepoints, default=None, metavar="N|A-B",
                        help="scans per patient: N, or a range A-B drawn per patient (2..20); "
                        "nodes may then miss an inner scan and come back (default: 2 or 3 "
                        "scans, as the preset says)")
    parser.add_argument("--workers", type=positive_int, default=1,
                        help="worker processes (default 1)")
    parser.add_argument("--no-images", action="store_true",
                        help="write a geometry-only cohort (same nodes, no images)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from lngraph.cli.main import check_outside
    from lngraph.synth import generate_cohort

    if args.layouts == "nih":
        check_outside(args.out, [("the NIH annotations", args.nih_root)])
    out = generate_cohort(args.out, args.patients, args.seed, preset=args.preset,
                          layouts=args.layouts, workers=args.workers, progress=True,
                          images=not args.no_images, nih_root=args.nih_root,
                          overwrite=args.overwrite, timepoints=args.timepoints)
    print(f"wrote {out}")
    return 0
