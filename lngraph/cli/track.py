"""``lngraph track``: consistent lymph-node tracks over every scan of each patient.

``lngraph track COHORT --out DIR [--model NAME|PATH | --method NAME] [--mode sync|chain]``
matches every scan pair of each patient with a trained model or a geometric method, turns the
pairwise matchings into one cycle-consistent set of tracks (:mod:`lngraph.matching.tracks`)
and writes the tracks, the pairwise matchings they imply, 3D Slicer markups and a size-trend
figure per patient. :data:`DESCRIPTION` (the command's help, also the docs' CLI reference)
lists the outputs.

``lngraph evaluate --tracks tracks.csv COHORT`` scores such a file against the cohort's
``track_id``\\ s (:func:`evaluate_tracks_command`, metrics of :mod:`lngraph.metrics.tracking`).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from lngraph.cli.common import (
    HelpFormatter,
    add_cache_dir,
    add_cohort,
    add_device,
    add_matcher,
    add_out_dir,
    add_quiet,
    examples,
    show_progress,
)

DESCRIPTION = """\
Track lymph nodes over every scan of each patient: match every pair of a
patient's scans (not only consecutive ones) with a trained model (--model, a
shipped name or a checkpoint; default lite-image for cohorts with images,
lite-geometry without) or a method that needs no training (--method nearest,
pointset, registration), then solve one consistent assignment of nodes to
tracks (--mode sync: permutation synchronisation of all pairwise matchings;
chain: link consecutive scans only). A track holds at most one node per scan
and may skip a scan; every node is in exactly one track.

Output folder (written whole at the end; an existing non-empty DIR is refused
unless --overwrite is given, and then replaced as a whole):
  DIR/tracks.csv                  patient_id, scan_id, node_id, track_id
  DIR/matches.csv                 the pairwise matchings the tracks imply, as
                                  `lngraph match` writes them (--pairs)
  DIR/markups/PATIENT/SCAN.mrk.json
                                  3D Slicer point lists per scan; a label is
                                  "NODE TRACK" plus "(new)" where the track
                                  starts after the first scan and "(lost)"
                                  where it ends before the last one
  DIR/figures/PATIENT.png         each track's short axis over the scans,
                                  new and lost tracks marked (unless
                                  --no-figures)
  DIR/track.json                  what was run and the counts

Score the tracks against a cohort's ground truth with
`lngraph evaluate --tracks DIR/tracks.csv COHORT` (IDF1, ID switches,
fragmentations, pairwise precision/recall/F1).
"""

def _unit_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {text}")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "track", help="consistent node tracks over all scans of each patient",
        description=DESCRIPTION, formatter_class=HelpFormatter,
        epilog=examples("lngraph track my_cohort --out tracks",
                        "lngraph track my_cohort --out tracks --method nearest",
                        "lngraph track my_cohort --out tracks_chain --mode chain --model "
                        "lite-geometry",
                        "lngraph evaluate --tracks tracks/tracks.csv my_cohort"))
    add_cohort(parser)
    add_out_dir(parser)
    add_matcher(parser)
    parser.add_argument("--mode", choices=("sync", "chain"), default="sync",
                        help="sync (default): synchronise the matchings of all scan pairs; "
                        "chain: link consecutive scans only")
    # the default is lngraph.matching.tracks.DEFAULT_THRESHOLD (not imported: --help stays
    # fast; a test holds the two equal)
    parser.add_argument("--threshold", type=_unit_interval, default=0.3, metavar="TAU",
                        help="sync: a node joins a track when its mean (denoised) affinity "
                        "to the track's nodes exceeds TAU (default 0.3)")
    parser.add_argument("--weights", choices=("binary", "score"), default="binary",
                        help="sync: a pairwise match counts 1 (binary, default) or its score")
    parser.add_argument("--pairs", choices=("all", "consecutive"), default="all",
                        help="which implied scan pairs matches.csv holds (default all)")
    parser.add_argument("--no-figures", action="store_true",
                        help="do not draw the per-patient size-trend figures")
    add_device(parser)
    add_cache_dir(parser)
    add_quiet(parser)
    parser.set_defaults(func=run)
    return parser


# ----------------------------------------------------------------------------- predicting

def _scans_csv(cohort):
    return cohort.root / "scans.csv" if cohort.root is not None else "scans.csv"


def method_predictor(name: str, cohort):
    """``(predict(pairs, progress) -> predictions, description)`` of a registered method that
    needs no training (:func:`lngraph.cli.match.untrained_method`)."""
    from lngraph.cli.match import untrained_method

    method = untrained_method(name, images=cohort.has_images, source=_scans_csv(cohort))

    def predict(pairs, progress: bool):
        from tqdm.auto import tqdm

        return [method.predict(pair) for pair in tqdm(pairs, desc=name, unit="pair",
                                                       disable=not progress)]

    return predict, f"method {name}"


def model_predictor(spec, cohort, device: str, cache_dir):
    """``(predict(pairs, progress) -> predictions, description)`` of a model
    (:func:`lngraph.cli.match.load_matcher`)."""
    from lngraph.cli.common import torch_device
    from lngraph.cli.match import load_matcher
    from lngraph.data.cache import default_cache_dir
    from lngraph.models import predict_pairs

    model, path = load_matcher(spec, images=cohort.has_images, source=_scans_csv(cohort),
                               device=torch_device(device))
    if not model.config.model.geometry_only and cache_dir is None:
        cache_dir = default_cache_dir(cohort)

    def predict(pairs, progress: bool):
        return predict_pairs(model, pairs, cache_dir=cache_dir, progress=progress)

    return predict, f"model {path}"


# ----------------------------------------------------------------------------- tracking

def track_cohort(cohort, predictions, *, mode: str = "sync", weights: str = "binary",
                 threshold: float | None = None) -> dict:
    """Tracks of every patient from pairwise predictions.

    Args:
        cohort: the cohort.
        predictions: ``{(src_scan, dst_scan): PairPrediction}`` — every pair of each
            patient for ``sync`` (fewer pairs, less evidence), the consecutive ones for
            ``chain``.
        mode, weights, threshold: of :func:`lngraph.matching.tracks.link_predictions`
            (``threshold=None``: its default).

    Returns:
        ``{patient_id: Tracks}``.
    """
    from lngraph.matching.tracks import DEFAULT_THRESHOLD, link_predictions

    threshold = DEFAULT_THRESHOLD if threshold is None else threshold
    out = {}
    for patient in cohort.patients:
        scans = cohort.scans_of(patient)
        index = {s.scan_id: k for k, s in enumerate(scans)}
        by_index = {(index[a], index[b]): pred for (a, b), pred in predictions.items()
                    if a in index and b in index}
        out[patient] = link_predictions([len(s.nodes) for s in scans], by_index, mode=mode,
                                        weights=weights, threshold=threshold)
    return out


def track_names(patient_id: str, tracks) -> list[str]:
    """Track ids of a patient: ``PATIENT_T001`` … in order of first appearance."""
    width = max(3, len(str(tracks.n_tracks)))
    return [f"{patient_id}_T{k + 1:0{width}d}" for k in range(tracks.n_tracks)]


def track_ids(cohort, tracks_of: dict) -> dict:
    """``{scan_id: [n] track id of each node}`` (the ``tracks.csv`` content)."""
    import numpy as np

    out = {}
    for patient, tracks in tracks_of.items():
        names = np.asarray(track_names(patient, tracks), dtype=object)
        for s, scan in enumerate(cohort.scans_of(patient)):
            out[scan.scan_id] = names[tracks.scan_labels(s)]
    return out


def node_track_status(tracks, s: int):
    """``(status, suffix)`` of each node of scan ``s``: status for the markup colour
    (``matched`` = the track goes on, ``new``, ``disappeared`` = lost) and the label suffix."""
    import numpy as np

    table = tracks.table()
    present = table >= 0
    first = present.argmax(axis=1)
    last = present.shape[1] - 1 - present[:, ::-1].argmax(axis=1)
    final = len(tracks.sizes) - 1
    labels = tracks.scan_labels(s)
    status = np.full(len(labels), "matched", dtype=object)
    suffix = []
    for k, t in enumerate(labels.tolist()):
        new, lost = first[t] == s and s > 0, last[t] == s and s < final
        lone = first[t] == last[t] == s
        if new or (lone and s == final):
            status[k] = "new"
        elif lost or lone:
            status[k] = "disappeared"
        notes = [w for w, on in (("new", new), ("lost", lost)) if on]
        suffix.append(f" ({', '.join(notes)})" if notes else "")
    return status, suffix


def write_track_markups(folder: Path, scans, tracks, names: list[str]) -> list[Path]:
    """One ``.mrk.json`` per scan of a patient: its nodes labelled ``NODE TRACK`` (and new /
    lost), coloured as in ``lngraph match``'s markups."""
    import json

    from lngraph.cli.match import scan_markups_document
    from lngraph.io.atomic import safe_name, unique_name, write_text_atomic

    paths, used = [], set()
    for s, scan in enumerate(scans):
        status, suffix = node_track_status(tracks, s)
        labels = [f"{node} {names[t]}{extra}" for node, t, extra in
                  zip(scan.nodes.node_id, tracks.scan_labels(s).tolist(), suffix, strict=True)]
        name = unique_name(safe_name(scan.scan_id), scan.scan_id, used)
        document = scan_markups_document(scan, labels, status)
        paths.append(write_text_atomic(folder / f"{name}.mrk.json",
                                       json.dumps(document, indent=2) + "\n"))
    return paths


def implied_matches(cohort, tracks_of: dict, pairs: str = "all") -> list:
    """``[(ScanPair, PairPrediction)]`` the tracks imply, for ``pairs`` ``"all"`` or
    ``"consecutive"`` scan pairs of every patient."""
    from lngraph.io.matches import PairPrediction

    out = []
    for patient, tracks in tracks_of.items():
        scans = cohort.scans_of(patient)
        index = {s.scan_id: k for k, s in enumerate(scans)}
        for pair in cohort.pairs(pairs, [patient]):
            a, b = index[pair.src.scan_id], index[pair.dst.scan_id]
            matches, scores = tracks.pair_matches(a, b)
            out.append((pair, PairPrediction(tracks.sizes[a], tracks.sizes[b], matches,
                                             scores)))
    return out


def write_outputs(out: Path, cohort, tracks_of: dict, *, pairs: str = "all",
                  figures: bool = True, progress: bool = False) -> dict:
    """Write ``tracks.csv``, ``matches.csv``, markups and figures into ``out``; returns
    ``{scan_id: track ids}``."""
    from tqdm.auto import tqdm

    from lngraph.io.atomic import safe_name, unique_name
    from lngraph.io.matches import write_matches
    from lngraph.metrics.tracking import write_tracks

    ids = track_ids(cohort, tracks_of)
    write_tracks(out / "tracks.csv", [s for p in cohort.patients for s in cohort.scans_of(p)],
                 ids)
    write_matches(out / "matches.csv", implied_matches(cohort, tracks_of, pairs))
    used: set[str] = set()
    for patient in tqdm(cohort.patients, desc="write", unit="patient", disable=not progress):
        name = unique_name(safe_name(patient), patient, used)
        scans = cohort.scans_of(patient)
        write_track_markups(out / "markups" / name, scans, tracks_of[patient],
                            track_names(patient, tracks_of[patient]))
        if figures:
            from lngraph.viz.tracks import track_figure

            track_figure(out / "figures" / f"{name}.png", scans, ids)
    return ids


def track_counts(cohort, tracks_of: dict) -> dict:
    """Tracks in all, spanning every scan, new after the first scan, lost before the last."""
    counts = {"patients": len(tracks_of), "scans": len(cohort), "nodes": 0, "tracks": 0,
              "full": 0, "new": 0, "lost": 0, "skipping": 0}
    for tracks in tracks_of.values():
        table = tracks.table() >= 0
        counts["nodes"] += int(sum(tracks.sizes))
        counts["tracks"] += tracks.n_tracks
        if not table.size:
            continue
        first = table.argmax(axis=1)
        last = table.shape[1] - 1 - table[:, ::-1].argmax(axis=1)
        counts["full"] += int(table.all(axis=1).sum())
        counts["new"] += int((first > 0).sum())
        counts["lost"] += int((last < table.shape[1] - 1).sum())
        counts["skipping"] += int((table.sum(axis=1) < last - first + 1).sum())
    return counts


def run(args) -> int:
    import json

    from lngraph.cli.main import output_folder
    from lngraph.io.atomic import write_text_atomic
    from lngraph.io.cohort import read_cohort

    progress = show_progress(args)
    cohort = read_cohort(args.cohort, check_images=False)
    if args.method is not None:
        predict, source = method_predictor(args.method, cohort)
    else:
        predict, source = model_predictor(args.model, cohort, args.device, args.cache_dir)
    pairs = cohort.pairs("all" if args.mode == "sync" else "consecutive")
    inputs = [("the cohort", args.cohort), ("the crop cache", args.cache_dir)]
    if args.model is not None:
        inputs.append(("the model", args.model))
    with output_folder(args.out, overwrite=args.overwrite, inputs=inputs) as tmp:
        predictions = predict(pairs, progress)
        by_key = {(p.src.scan_id, p.dst.scan_id): pred
                  for p, pred in zip(pairs, predictions, strict=True)}
        tracks_of = track_cohort(cohort, by_key, mode=args.mode, weights=args.weights,
                                 threshold=args.threshold)
        write_outputs(tmp, cohort, tracks_of, pairs=args.pairs,
                      figures=not args.no_figures, progress=progress)
        counts = track_counts(cohort, tracks_of)
        run_info = {"source": source, "mode": args.mode, "weights": args.weights,
                    "threshold": args.threshold, "pairs_matched": len(pairs),
                    "matches_csv_pairs": args.pairs, **counts}
        write_text_atomic(tmp / "track.json", json.dumps(run_info, indent=2) + "\n")
    print(f"{counts['patients']} patient(s), {counts['scans']} scans, {counts['nodes']} nodes: "
          f"{counts['tracks']} tracks ({counts['full']} in every scan, {counts['new']} new "
          f"after the first scan, {counts['lost']} lost before the last, {counts['skipping']} "
          f"skipping a scan); {source}, mode {args.mode}")
    print(f"tracks: {args.out / 'tracks.csv'}")
    print(f"implied pairwise matches: {args.out / 'matches.csv'}")
    print(f"3D Slicer markups: {args.out / 'markups'}")
    if not args.no_figures:
        print(f"figures: {args.out / 'figures'}")
    return 0


# ----------------------------------------------------------------------------- evaluating

#: (JSON key, label, kind) of the rows of the printed track table.
TRACK_TABLE_ROWS = (
    ("idf1", "IDF1", "%"),
    ("idp", "ID precision", "%"),
    ("idr", "ID recall", "%"),
    ("id_switches", "ID switches", "count"),
    ("fragmentations", "fragmentations", "count"),
    ("merges", "merges", "count"),
    ("precision", "pairwise precision", "%"),
    ("recall", "pairwise recall", "%"),
    ("f1", "pairwise F1", "%"),
)
#: Patients listed in the printed per-patient table (lowest IDF1 first).
MAX_PATIENT_ROWS = 15


def _percent(value) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:6.2f} %"


def format_track_table(metrics: dict) -> str:
    """The cohort's track metrics and a per-patient summary (lowest IDF1 first) as text."""
    total = metrics["cohort"]
    width = max(len(label) for _, label, _ in TRACK_TABLE_ROWS)
    lines = [f"{total['n_patients']} patient(s), {total['n_gt_tracks']} ground-truth tracks, "
             f"{total['n_pred_tracks']} predicted, {total['n_nodes']} nodes"]
    for key, label, kind in TRACK_TABLE_ROWS:
        if kind == "%":
            text = _percent(total[key])
        else:
            per = total[f"{key}_per_100"]
            rate = "n/a" if per is None or math.isnan(per) else f"{per:.1f}"
            text = f"{total[key]:6d}    ({rate} per 100 tracks)"
        lines.append(f"  {label:<{width}}  {text}")
    patients = sorted(metrics["patients"].items(),
                      key=lambda kv: (math.inf if math.isnan(kv[1]["idf1"]) else kv[1]["idf1"],
                                      kv[0]))
    if patients:
        lines.append("")
        lines.append(f"  {'patient':<12} {'tracks gt/pred':>14} {'IDF1':>8} {'IDSW':>5} "
                     f"{'frag':>5} {'merge':>5} {'pair F1':>8}")
        for patient, m in patients[:MAX_PATIENT_ROWS]:
            lines.append(f"  {patient:<12} {m['n_gt_tracks']:>6d}/{m['n_pred_tracks']:<7d} "
                         f"{_percent(m['idf1']):>8} {m['id_switches']:>5d} "
                         f"{m['fragmentations']:>5d} {m['merges']:>5d} "
                         f"{_percent(m['f1']):>8}")
        if len(patients) > MAX_PATIENT_ROWS:
            lines.append(f"  ... {len(patients) - MAX_PATIENT_ROWS} more patient(s) (lowest "
                         "IDF1 shown first; all in the JSON)")
    return "\n".join(lines)


def evaluate_tracks_command(args) -> int:
    """``lngraph evaluate --tracks TRACKS.csv COHORT [--out metrics.json]``: score a
    ``tracks.csv`` against the cohort's ``track_id``\\ s, print the table, write the JSON.

    ``args`` needs ``cohort``, ``tracks``, ``out`` (a path or ``None``) and ``quiet``.

    Raises:
        InputError: a bad ``tracks.csv`` (file, line and problem), or a cohort without any
            ground-truth ``track_id`` among the scored nodes.
    """
    from lngraph.io.cohort import read_cohort
    from lngraph.io.errors import InputError
    from lngraph.metrics import write_metrics_json
    from lngraph.metrics.tracking import evaluate_tracks, read_tracks

    out = getattr(args, "out", None)
    if out is not None and Path(out).is_dir():
        raise InputError(out, "is a folder; --out names the JSON file to write, e.g. "
                         f"{Path(out) / 'tracks_metrics.json'}")
    cohort = read_cohort(args.cohort, check_images=False)
    predicted = read_tracks(args.tracks, cohort)
    metrics = evaluate_tracks(cohort, predicted)
    if metrics["cohort"]["n_nodes"] == 0:
        raise InputError(Path(args.cohort) / "nodes.csv", "no node of the scored patients has a "
                         "track_id: there is no ground truth to score the tracks against")
    print(format_track_table(metrics))
    if out is not None:
        write_metrics_json(out, metrics)
        print(f"metrics written to {out}")
    return 0
