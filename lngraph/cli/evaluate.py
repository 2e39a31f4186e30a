"""``lngraph evaluate``: score a method's matchings against a cohort's ground truth.

``lngraph evaluate --predictions MATCHES.csv COHORT --out metrics.json`` reads a ``matches.csv``
(any method's output, many scan pairs in one file), scores it with :mod:`lngraph.metrics`
against the cohort's ``track_id``s, writes the metrics as JSON and prints a short table.

``lngraph evaluate --model RUN/model.ckpt COHORT --out metrics.json [--matches OUT.csv]``
first runs a trained matcher (:func:`lngraph.models.predict_pairs`) on the cohort's consecutive
scan pairs (every earlier/later pair with ``--pairs all``), then scores its matchings the same
way. To score only patients held out from training, give ``--patients-from RUN`` (the ``test``
patients in ``RUN/split.json``, written by ``lngraph train --fold``) or ``--fold K --folds N
[--split-seed S]`` (the same folds as ``lngraph train``, recomputed from the cohort).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

#: (JSON key, label, unit) of the rows of the printed table.
TABLE_ROWS = (
    ("precision", "Precision", "%"),
    ("recall", "Recall", "%"),
    ("f1", "F1", "%"),
    ("nlr", "NLR (new found)", "%"),
    ("new_precision", "new precision", "%"),
    ("dlr", "DLR (disappeared found)", "%"),
    ("disappeared_precision", "disappeared precision", "%"),
    ("cpm_radius", "CPM@Radius", "%"),
    ("cpm_10mm", "CPM@10mm", "%"),
    ("med_mm", "MED", "mm"),
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="score predicted matchings against a cohort's ground truth",
        description="Score predicted lymph-node matchings against the ground truth (track_id) "
        "of a cohort folder: precision, recall, F1, new/disappeared rates and precisions, "
        "CPM@Radius, CPM@10mm, MED (definitions in docs/design.md, section Metrics). Metrics "
        "are pooled over all scored scan pairs; a ratio with a zero denominator is null in the "
        "JSON.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--predictions", type=Path, metavar="MATCHES.csv",
                        help="a matches.csv (src_scan, src_node, dst_scan, dst_node, score, "
                        "status), one row per node of each predicted scan pair")
    source.add_argument("--model", type=Path, metavar="CKPT",
                        help="a trained matcher (model.ckpt of `lngraph train`): match the "
                        "cohort's pairs with it, then score them")
    parser.add_argument("--allow-empty", action="store_true",
                        help="with --predictions: accept a matches.csv with a header but no "
                        "rows (scored as no predicted pairs); by default that is an error")
    parser.add_argument("cohort", type=Path, metavar="COHORT",
                        help="cohort folder (scans.csv + nodes.csv) holding the ground truth")
    parser.add_argument("--out", type=Path, required=True, metavar="metrics.json",
                        help="where to write the metrics (JSON)")
    parser.add_argument("--pairs", choices=("predicted", "consecutive", "all"),
                        default="predicted",
                        help="which scan pairs to score: those in the predictions (default), "
                        "or every consecutive / every ordered pair of the cohort — then a pair "
                        "with nodes but no prediction is an error; with --model, consecutive "
                        "(default) or all")
    model = parser.add_argument_group("with --model")
    held_out = model.add_mutually_exclusive_group()
    held_out.add_argument("--patients-from", type=Path, metavar="RUN",
                          help="score only the test patients of a `lngraph train --fold` run "
                          "(RUN/split.json)")
    held_out.add_argument("--fold", type=int, default=None, metavar="K",
                          help="score only test fold K (0-based) of --folds patient-level folds")
    model.add_argument("--folds", type=int, default=5, metavar="N",
                       help="number of folds for --fold (default 5)")
    model.add_argument("--split-seed", type=int, default=0, metavar="S",
                       help="seed of the folds for --fold (default 0, as `lngraph train`)")
    model.add_argument("--matches", type=Path, default=None, metavar="OUT.csv",
                       help="also write the model's matchings as a matches.csv")
    model.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                       help="crop cache folder (default: the user cache, "
                       "~/.cache/lngraph/crops)")
    parser.set_defaults(func=run)
    return parser


def format_table(metrics: dict) -> str:
    """The headline metrics as an aligned text table (percentages and mm; ``n/a`` for null)."""
    width = max(len(label) for _, label, _ in TABLE_ROWS)
    lines = [f"{metrics['n_pairs']} scan pairs, {metrics['n_gt_matches']} ground-truth matches, "
             f"{metrics['n_cpm_missed']} of them predicted unmatched"]
    for key, label, unit in TABLE_ROWS:
        value = metrics[key]
        if value is None or math.isnan(value):
            text = "n/a"
        elif unit == "%":
            text = f"{100 * value:6.2f} %"
        else:
            text = f"{value:6.2f} mm"
        lines.append(f"  {label:<{width}}  {text}")
    return "\n".join(lines)


def _score_predictions(args, cohort) -> dict:
    from lngraph.io.errors import InputError
    from lngraph.io.matches import read_matches
    from lngraph.metrics import evaluate_predictions

    predictions = read_matches(args.predictions, cohort, allow_empty=args.allow_empty)
    pairs = None if args.pairs == "predicted" else cohort.pairs(args.pairs)
    try:
        return evaluate_predictions(cohort, predictions, pairs)
    except ValueError as exc:
        raise InputError(args.predictions, str(exc)) from None


def held_out_patients(args, cohort) -> list[str]:
    """The patients ``--patients-from`` or ``--fold`` select (every patient without them)."""
    import json

    from lngraph.io.errors import InputError
    from lngraph.train.folds import patient_folds

    if args.patients_from is not None:
        path = args.patients_from / "split.json"
        try:
            patients = json.loads(path.read_text(encoding="utf-8"))["test"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(path, f"cannot read the test patients: {exc}") from None
        if not patients:
            raise InputError(path, "the run has no test patients (trained without --fold)")
        unknown = sorted(set(patients) - set(cohort.patients))
        if unknown:
            raise InputError(path, f"test patient(s) {', '.join(unknown)} are not in the "
                             f"cohort {args.cohort}")
        return list(patients)
    if args.fold is not None:
        try:
            if not 0 <= args.fold < args.folds:
                raise ValueError(f"--fold must be in 0..{args.folds - 1}, got {args.fold}")
            return list(patient_folds(cohort.patients, args.folds, args.split_seed)[args.fold]
                        .test)
        except ValueError as exc:
            raise InputError(args.cohort, str(exc)) from None
    return cohort.patients


def _score_model(args, cohort) -> dict:
    from lngraph.data.cache import default_cache_dir
    from lngraph.io.matches import write_matches
    from lngraph.metrics import evaluate_predictions
    from lngraph.models import load_checkpoint, predict_pairs

    model, config, _ = load_checkpoint(args.model)
    pairs = cohort.pairs("all" if args.pairs == "all" else "consecutive",
                         held_out_patients(args, cohort))
    cache_dir = args.cache_dir if args.cache_dir is not None else (
        None if config.model.geometry_only else default_cache_dir(cohort))
    predictions = predict_pairs(model, pairs, cache_dir=cache_dir, progress=True)
    if args.matches is not None:
        write_matches(args.matches, zip(pairs, predictions, strict=True))
        print(f"matches written to {args.matches}")
    return evaluate_predictions(cohort, {(p.src.scan_id, p.dst.scan_id): pred
                                         for p, pred in zip(pairs, predictions, strict=True)},
                                pairs)


def check_output_files(args) -> None:
    """Refuse ``--out`` or ``--matches`` naming a folder, before any work.

    Raises:
        InputError: naming the option and the folder.
    """
    from lngraph.io.errors import InputError

    for option, path in (("--out", args.out), ("--matches", args.matches)):
        if path is not None and path.is_dir():
            raise InputError(path, f"is a folder; {option} names the file to write, e.g. "
                             f"{path / ('metrics.json' if option == '--out' else 'matches.csv')}")
    if args.matches is not None and args.out.resolve() == args.matches.resolve():
        raise InputError(args.out, "--out and --matches name the same file")


def run(args) -> int:
    from lngraph.io.cohort import read_cohort
    from lngraph.io.errors import InputError
    from lngraph.metrics import write_metrics_json

    if args.model is None and (args.patients_from is not None or args.fold is not None
                               or args.matches is not None):
        raise InputError(args.cohort, "--patients-from, --fold and --matches need --model")
    if args.model is not None and args.allow_empty:
        raise InputError(args.cohort, "--allow-empty applies to --predictions only")
    check_output_files(args)
    cohort = read_cohort(args.cohort, check_images=args.model is not None)
    metrics = (_score_model(args, cohort) if args.model is not None
               else _score_predictions(args, cohort))
    write_metrics_json(args.out, metrics)
    print(format_table(metrics))
    print(f"metrics written to {args.out}")
    return 0
