"""``lngraph bench``: the leaderboard of matching methods on a cohort.

``lngraph bench COHORT --methods LIST|all --folds 5 --seeds 0 [1 ...] --out DIR [--quick]
[--max-epochs E] [--set METHOD.KEY=VALUE ...] [--import MODULE|FILE.py ...]`` runs
:func:`lngraph.bench.leaderboard.run_leaderboard`: every method on the same patient-level
folds (fit on the training patients, selection on the validation patients, scored on the
held-out patients' scan pairs), every matching metric as mean ± std over folds, inference
seconds per pair and training seconds. It writes ``DIR/leaderboard.csv`` (one row per method),
``DIR/leaderboard_folds.csv`` (one row per fold), ``DIR/leaderboard.md`` and
``DIR/leaderboard.png``.

Methods needing images are skipped (and listed) on a geometry-only cohort; a method that fails
is listed with its error. ``--import`` loads more methods (a module or a ``.py`` file whose
``@register`` classes join the registry), so a new method is benchmarked without touching
lngraph. ``--set dlt_lite.steps=50`` passes a constructor argument to one method (the value
read as YAML; :meth:`lngraph.baselines.Method.build` adds the seed and the epoch cap).
``--quick`` is a small version that runs in minutes: 2 folds, one seed, at most 2 epochs and
lighter settings of the slow baselines.

``DIR`` is written whole at the end (an interrupted run leaves an earlier ``DIR`` as it was);
an existing non-empty ``DIR`` is refused unless ``--overwrite`` is given. The exit status is 1
when a method failed (the leaderboard, with the failure noted, is still written).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from lngraph.cli.common import (
    HelpFormatter,
    add_cohort,
    add_out_dir,
    add_quiet,
    examples,
    positive_int,
)
from lngraph.cli.main import one_line


def _method_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give method names separated by commas, or all")
    return names


def parse_settings(items: list[str]) -> dict[str, dict]:
    """``METHOD.KEY=VALUE`` strings (values read as YAML) → ``{method: {key: value}}``.

    Raises:
        ValueError: an item not of that form, or a value that is not YAML.
    """
    import yaml

    out: dict[str, dict] = {}
    for item in items:
        target, sep, value = item.partition("=")
        method, dot, key = target.partition(".")
        if not sep or not dot or not method.strip() or not key.strip():
            raise ValueError(f"--set wants METHOD.KEY=VALUE, got {item!r}")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ValueError(f"--set {target.strip()}: cannot read {value!r}: "
                             f"{one_line(str(exc))}") from None
        out.setdefault(method.strip(), {})[key.strip()] = parsed
    return out


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "bench",
        help="leaderboard of matching methods on a cohort",
        description="Run matching methods (ours, the baselines, the ablations, and any "
        "registered with --import) on the same patient-level folds of a cohort and write a "
        "leaderboard: every metric as mean ± std over folds, inference seconds per pair and "
        "training seconds (DIR/leaderboard.md, .csv, _folds.csv, .png).",
        epilog=examples("lngraph bench my_cohort --out board",
                        "lngraph bench my_cohort --methods nearest,lgm,matcher --folds 5 "
                        "--out board",
                        "lngraph bench my_cohort --import my_method.py --methods mine,nearest "
                        "--out board"),
        formatter_class=HelpFormatter,
    )
    add_cohort(parser)
    parser.add_argument("--methods", type=_method_list, default=["all"], metavar="LIST|all",
                        help="comma-separated method names, or all (default)")
    parser.add_argument("--folds", type=positive_int, default=5, metavar="K",
                        help="patient-level folds (default 5)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="S",
                        help="seeds: each reshuffles the folds and seeds the methods "
                        "(default 0)")
    add_out_dir(parser)
    parser.add_argument("--quick", action="store_true",
                        help="small version: 2 folds, one seed, at most 2 epochs, lighter "
                        "slow baselines")
    parser.add_argument("--max-epochs", type=positive_int, default=None, metavar="E",
                        help="cap of the learned methods' epochs (default: each method's)")
    parser.add_argument("--set", dest="settings", nargs="+", default=[],
                        metavar="METHOD.KEY=VALUE",
                        help="constructor arguments of one method, e.g. lgm.epochs=5")
    parser.add_argument("--import", dest="imports", nargs="+", default=[],
                        metavar="MODULE|FILE.py",
                        help="modules or .py files that register more methods")
    parser.add_argument("--pairs", choices=("consecutive", "all"), default="consecutive",
                        help="scan pairs of each test patient to score (default consecutive)")
    parser.add_argument("--val-fraction", type=float, default=0.2, metavar="F",
                        help="share of each fold's training patients used for validation "
                        "(default 0.2)")
    parser.add_argument("--extra-val", type=Path, default=None, metavar="COHORT",
                        help="a cohort folder whose patients join every fold's validation "
                        "patients (all methods; e.g. held-out synthetic patients when the "
                        "folds' own validation patients are few); its patient ids must "
                        "differ from the cohort's")
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="torch CPU threads (default: torch's)")
    add_quiet(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    import torch

    from lngraph.bench import import_methods, method_names, run_leaderboard
    from lngraph.bench.leaderboard import QUICK_FOLDS, check_extra_val
    from lngraph.cli.main import UsageError, output_folder
    from lngraph.io.cohort import read_cohort
    from lngraph.io.errors import InputError
    from lngraph.train.folds import patient_folds

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        import_methods(args.imports)
        names = method_names(args.methods)
        options = parse_settings(args.settings)
    except ValueError as exc:  # these three only check the arguments
        raise UsageError(str(exc)) from None
    cohort = read_cohort(args.cohort)
    folds, seeds = (min(args.folds, QUICK_FOLDS), args.seeds[:1]) if args.quick \
        else (args.folds, args.seeds)
    try:  # the folds run_leaderboard will cut: refuse a cohort too small before any work
        for seed in seeds:
            patient_folds(cohort.patients, folds, seed, args.val_fraction)
    except ValueError as exc:
        raise InputError(args.cohort, str(exc)) from None
    extra_val = None
    if args.extra_val is not None:
        extra_val = read_cohort(args.extra_val)
        try:
            check_extra_val(cohort, extra_val)
        except ValueError as exc:
            raise InputError(args.extra_val, f"{exc} (the cohort: {args.cohort})") from None
    command = shlex.join(["lngraph", "bench", *sys.argv[2:]]) \
        if sys.argv[1:2] == ["bench"] else None
    with output_folder(args.out, overwrite=args.overwrite,
                       inputs=[("the cohort", args.cohort)]) as tmp:
        rows = run_leaderboard(cohort, names, folds=args.folds, seeds=args.seeds,
                               out_dir=tmp, quick=args.quick, max_epochs=args.max_epochs,
                               options=options, val_fraction=args.val_fraction,
                               pair_mode=args.pairs, command=command,
                               extra_val=extra_val, progress=not args.quiet)
    failed = sorted(set(rows.loc[rows["status"] == "failed", "method"]))
    print(f"wrote {args.out / 'leaderboard.md'}" + (f"; failed: {', '.join(failed)}"
                                                     if failed else ""))
    return 1 if failed else 0
