"""``lngraph evaluate``: score a method's matchings against a cohort's ground truth.

``lngraph evaluate COHORT --predictions MATCHES.csv [--out metrics.json]`` reads a
``matches.csv`` (any method's output, many scan pairs in one file) and scores it with
:mod:`lngraph.metrics` against the cohort's ``track_id``s. ``lngraph evaluate COHORT --model
NAME|CKPT`` first runs a matcher — a shipped model's name or a checkpoint
(:func:`lngraph.models.zoo.model_path`) — on the cohort's consecutive scan pairs (every
earlier/later pair with ``--pairs all``; only held-out patients with ``--patients-from RUN`` or
``--fold K``), then scores its matchings the same way. ``lngraph evaluate COHORT --tracks
TRACKS.csv`` scores node tracks (:func:`lngraph.cli.track.evaluate_tracks_command`).

The table is always printed; ``--out`` also writes every metric as JSON. Besides matching
quality the report gives the calibration of the match scores
(:mod:`lngraph.metrics.calibration`): the expected calibration error (15 equal-width bins) of
the file's or the model's match scores against whether each match is right, and for a model the
ECE of its assigned pairs before and after its stored confidence map (``T``, ``b``), with the
reliability diagram written next to ``--out`` (``metrics.json`` →
``metrics.reliability.png``).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from lngraph.cli.common import (
    HelpFormatter,
    add_cache_dir,
    add_device,
    add_quiet,
    examples,
    show_progress,
    torch_device,
)

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

DESCRIPTION = """\
Score predicted lymph-node matchings against the ground truth (track_id) of a
cohort folder: precision, recall, F1, new/disappeared rates and precisions,
CPM@Radius, CPM@10mm, MED (definitions in docs/design.md, section Metrics).
Metrics are pooled over all scored scan pairs; a ratio with a zero denominator
is null in the JSON.

Input (one of):
  --predictions MATCHES.csv   any method's matches.csv
  --model NAME|CKPT           a shipped model (see `lngraph models`) or a
                              checkpoint / run folder: match the cohort's
                              pairs with it, then score them
  --tracks TRACKS.csv         a tracks.csv (`lngraph track`'s output): track
                              metrics against the cohort's track_ids

Confidence: the report also gives the expected calibration error (ECE, 15
equal-width bins) of the match scores against whether each match is right.
With --model it is given for every pair the model assigns (kept or not) and
for the kept matches, before and after the model's confidence map
sigma(logit(p) / T + b) fitted on validation patients (docs/method.md,
Calibrated confidence); the map changes no decision. With --out the
reliability diagram is written next to the JSON (metrics.json ->
metrics.reliability.png).
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="score predicted matchings against a cohort's ground truth",
        description=DESCRIPTION, formatter_class=HelpFormatter,
        epilog=examples(
            "lngraph evaluate COHORT --predictions RUN/matches.csv --out metrics.json",
            "lngraph evaluate COHORT --model RUN --patients-from RUN --out test.json",
            "lngraph evaluate COHORT --model lite-geometry --matches matches.csv",
            "lngraph evaluate COHORT --tracks tracks.csv"))
    parser.add_argument("cohort", type=Path, metavar="COHORT",
                        help="cohort folder (scans.csv + nodes.csv) holding the ground truth")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--predictions", type=Path, metavar="MATCHES.csv",
                        help="a matches.csv (src_scan, src_node, dst_scan, dst_node, score, "
                        "status), one row per node of each predicted scan pair")
    source.add_argument("--model", metavar="NAME|CKPT",
                        help="a shipped model's name or a trained matcher (model.ckpt of "
                        "`lngraph train`, or its run folder): match the cohort's pairs with "
                        "it, then score them")
    source.add_argument("--tracks", type=Path, metavar="TRACKS.csv",
                        help="a tracks.csv (`lngraph track`'s output): score its tracks "
                        "against the cohort's track_ids")
    parser.add_argument("--out", type=Path, default=None, metavar="metrics.json",
                        help="also write the metrics as JSON (and, with scores, the "
                        "reliability diagram next to it); the table is always printed")
    parser.add_argument("--allow-empty", action="store_true",
                        help="with --predictions: accept a matches.csv with a header but no "
                        "rows (scored as no predicted pairs); by default that is an error")
    parser.add_argument("--pairs", choices=("predicted", "consecutive", "all"),
                        default="predicted",
                        help="which scan pairs to score: those in the predictions (default), "
                        "or every consecutive / every ordered pair of the cohort — then a pair "
                        "with nodes but no prediction is an error; with --model, consecutive "
                        "(default) or all")
    add_quiet(parser)
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
                       help="also write the model's matchings as a matches.csv (scores: the "
                       "calibrated confidences)")
    add_cache_dir(model)
    add_device(model)
    parser.set_defaults(func=run)
    return parser


def _value(value) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def format_calibration(report: dict) -> list[str]:
    """The calibration lines of the table (:func:`calibration_report`)."""
    lines = [f"  confidence: ECE over {report['bins']} equal-width bins (0 = calibrated)"]
    matches = report["matches"]
    if "assigned_pairs" not in report:
        lines.append(f"    scored matches (n = {matches['n']}): ECE {_value(matches['ece'])}")
        return lines
    t, b = report["temperature"], report["bias"]
    if report["calibrated"]:
        lines.append(f"    the model's confidence map: sigma(logit(p) / {t:.3g} + {b:.3g})")
    else:
        lines.append("    the model has no fitted confidence map: scores are its decision "
                     "scores")
    for key, label in (("assigned_pairs", "assigned pairs"), ("kept", "kept matches")):
        part = report[key]
        text = f"ECE {_value(part['ece_raw'])}"
        if report["calibrated"]:
            text = f"ECE {_value(part['ece_raw'])} raw -> {_value(part['ece'])} calibrated"
        lines.append(f"    {label} (n = {part['n']}): {text}")
    return lines


def format_table(metrics: dict) -> str:
    """The headline metrics as an aligned text table (percentages and mm; ``n/a`` for null),
    and the calibration lines when ``metrics`` has a ``calibration`` entry."""
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
    if metrics.get("calibration"):
        lines += format_calibration(metrics["calibration"])
    return "\n".join(lines)


def reliability_path(out: Path) -> Path:
    """Where the reliability diagram of ``--out`` goes: ``metrics.json`` →
    ``metrics.reliability.png``."""
    return out.with_name(f"{out.stem}.reliability.png")


def _score_predictions(args, cohort) -> tuple[dict, dict]:
    from lngraph.io.errors import InputError
    from lngraph.io.matches import read_matches
    from lngraph.metrics import evaluate_predictions
    from lngraph.metrics.calibration import N_BINS, match_events, reliability_curve

    predictions = read_matches(args.predictions, cohort, allow_empty=args.allow_empty)
    pairs = None if args.pairs == "predicted" else cohort.pairs(args.pairs)
    try:
        metrics = evaluate_predictions(cohort, predictions, pairs)
    except ValueError as exc:
        raise InputError(args.predictions, str(exc)) from None
    known = {(p.src.scan_id, p.dst.scan_id): p for p in cohort.pairs("all")}
    curve = reliability_curve(*match_events((known[key], pred)
                                            for key, pred in predictions.items()))
    report = {"bins": N_BINS, "matches": {"n": curve.n, "ece": curve.ece,
                                          "reliability": curve.to_dict()}}
    return metrics, report


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


def calibration_report(config, pairs, candidates) -> dict:
    """The calibration of a model's scores on ``pairs``: ``candidates`` are its predictions at
    threshold 0 without the confidence map (every assigned pair with its decision score
    :math:`p`). ``assigned_pairs``: those events, :math:`p` against :math:`f_{T,b}(p)`;
    ``kept``: the same for the pairs with :math:`p \\ge` the decision threshold (the matches
    the model keeps, whose calibrated scores a ``matches.csv`` holds)."""
    import numpy as np

    from lngraph.metrics.calibration import N_BINS, calibration_summary, match_events
    from lngraph.train.calibrate import decision_key

    m = config.model
    t, b = m.score_temperature, m.score_bias
    scores, labels = match_events(zip(pairs, candidates, strict=True))
    kept = scores >= config.flat()[decision_key(config)]
    assigned = calibration_summary(scores, labels, t, b)
    kept_summary = calibration_summary(scores[kept], labels[kept], t, b)
    return {"bins": N_BINS, "temperature": t, "bias": b,
            "calibrated": bool(t != 1.0 or b != 0.0),
            "assigned_pairs": assigned,
            "kept": {k: v for k, v in kept_summary.items() if not k.startswith("reliability")},
            "matches": {"n": int(np.count_nonzero(kept)), "ece": kept_summary["ece"]}}


def _score_model(args, cohort) -> tuple[dict, dict]:
    from lngraph.data.cache import default_cache_dir
    from lngraph.io.matches import write_matches
    from lngraph.metrics import evaluate_predictions
    from lngraph.models import load_checkpoint, matcher_graphs, predict_graphs
    from lngraph.models.zoo import model_path

    path = model_path(args.model, images=cohort.has_images)
    model, config, _ = load_checkpoint(path, map_location=torch_device(args.device))
    pairs = cohort.pairs("all" if args.pairs == "all" else "consecutive",
                         held_out_patients(args, cohort))
    cache_dir = args.cache_dir if args.cache_dir is not None else (
        None if config.model.geometry_only else default_cache_dir(cohort))
    progress = show_progress(args)
    graphs = matcher_graphs(pairs, config, cache_dir=cache_dir, progress=progress)
    predictions = predict_graphs(model, graphs, progress=progress)
    candidates = predict_graphs(model, graphs, threshold=0.0, calibrated=False)
    if args.matches is not None:
        write_matches(args.matches, zip(pairs, predictions, strict=True))
        print(f"matches written to {args.matches}")
    metrics = evaluate_predictions(cohort, {(p.src.scan_id, p.dst.scan_id): pred
                                            for p, pred in zip(pairs, predictions, strict=True)},
                                   pairs)
    return metrics, calibration_report(config, pairs, candidates)


def check_output_files(args) -> None:
    """Refuse ``--out`` or ``--matches`` naming a folder, or the same file, before any work.

    Raises:
        InputError: naming the option and the folder.
    """
    from lngraph.io.errors import InputError

    for option, path in (("--out", args.out), ("--matches", args.matches)):
        if path is not None and path.is_dir():
            raise InputError(path, f"is a folder; {option} names the file to write, e.g. "
                             f"{path / ('metrics.json' if option == '--out' else 'matches.csv')}")
    if args.matches is not None and args.out is not None and \
            args.out.resolve() == args.matches.resolve():
        raise InputError(args.out, "--out and --matches name the same file")


def _diagram(args, report: dict) -> Path | None:
    """Write the reliability diagram next to ``--out`` (nothing without ``--out`` or
    events)."""
    from lngraph.viz.reliability import reliability_figure

    if args.out is None:
        return None
    if "assigned_pairs" in report:
        part = report["assigned_pairs"]
        if not part["n"]:
            return None
        curves = {"decision score p": part["reliability_raw"]}
        if report["calibrated"]:
            curves["calibrated confidence"] = part["reliability"]
        title = f"{args.model}: every assigned pair of {args.cohort.name}"
    else:
        part = report["matches"]
        if not part["n"]:
            return None
        curves = {"match score": part["reliability"]}
        title = f"{args.predictions.name}: predicted matches"
    return reliability_figure(curves, reliability_path(args.out), title=title)


def run(args) -> int:
    from lngraph.io.cohort import read_cohort
    from lngraph.io.errors import InputError
    from lngraph.metrics import write_metrics_json

    if args.model is None and (args.patients_from is not None or args.fold is not None
                               or args.matches is not None):
        raise InputError(args.cohort, "--patients-from, --fold and --matches need --model")
    if args.predictions is None and args.allow_empty:
        raise InputError(args.cohort, "--allow-empty applies to --predictions only")
    if args.tracks is not None:
        if args.pairs != "predicted":
            raise InputError(args.cohort, "--pairs applies to --predictions and --model")
        from lngraph.cli.track import evaluate_tracks_command

        return evaluate_tracks_command(args)
    check_output_files(args)
    cohort = read_cohort(args.cohort, check_images=args.model is not None)
    metrics, report = (_score_model(args, cohort) if args.model is not None
                       else _score_predictions(args, cohort))
    metrics["calibration"] = report
    print(format_table(metrics))
    if args.out is not None:
        write_metrics_json(args.out, metrics)
        print(f"metrics written to {args.out}")
        diagram = _diagram(args, report)
        if diagram is not None:
            print(f"reliability diagram written to {diagram}")
    return 0
