"""``lngraph evaluate``: score a method's matchings against a cohort's ground truth.

``lngraph evaluate --predictions MATCHES.csv COHORT --out metrics.json`` reads a ``matches.csv``
(any method's output, many scan pairs in one file), scores it with :mod:`lngraph.metrics`
against the cohort's ``track_id``s, writes the metrics as JSON and prints a short table.
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
        "CPM@Radius, CPM@10mm, MED (definitions in DESIGN §5). Metrics are pooled over all "
        "scored scan pairs; a ratio with a zero denominator is null in the JSON.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--predictions", type=Path, metavar="MATCHES.csv",
                        help="a matches.csv (src_scan, src_node, dst_scan, dst_node, score, "
                        "status), one row per node of each predicted scan pair")
    parser.add_argument("cohort", type=Path, metavar="COHORT",
                        help="cohort folder (scans.csv + nodes.csv) holding the ground truth")
    parser.add_argument("--out", type=Path, required=True, metavar="metrics.json",
                        help="where to write the metrics (JSON)")
    parser.add_argument("--pairs", choices=("predicted", "consecutive", "all"),
                        default="predicted",
                        help="which scan pairs to score: those in the predictions (default), "
                        "or every consecutive / every ordered pair of the cohort — then a pair "
                        "with nodes but no prediction is an error")
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

    predictions = read_matches(args.predictions, cohort)
    pairs = None if args.pairs == "predicted" else cohort.pairs(args.pairs)
    try:
        return evaluate_predictions(cohort, predictions, pairs)
    except ValueError as exc:
        raise InputError(args.predictions, str(exc)) from None


def run(args) -> int:
    from lngraph.io.cohort import read_cohort
    from lngraph.metrics import write_metrics_json

    cohort = read_cohort(args.cohort, check_images=False)
    metrics = _score_predictions(args, cohort)
    write_metrics_json(args.out, metrics)
    print(format_table(metrics))
    print(f"metrics written to {args.out}")
    return 0
