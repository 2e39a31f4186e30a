"""``lngraph match``: match the lymph nodes of scan pairs with a trained model.

The pairs come from a cohort folder or from two node tables; the outputs are ``matches.csv``,
3D Slicer markups per pair and scan, and optional figures. :data:`DESCRIPTION` (the command's
help text, also the docs' CLI reference) gives the inputs, the output folder and the markup
labels.
"""

from __future__ import annotations

import argparse
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
)

#: Optional columns of a ``--src-nodes``/``--dst-nodes`` table.
PAIR_NODE_OPTIONAL = ("long_axis_mm", "track_id")
PAIR_NODE_COLUMNS = ("node_id", "x", "y", "z", "short_axis_mm")
#: Slicer display colours (RGB in [0, 1]) of each status, as in the figures.
STATUS_RGB = {"matched": (0.0, 0.62, 0.45), "disappeared": (0.90, 0.62, 0.0),
              "new": (0.34, 0.71, 0.91)}


DESCRIPTION = """\
Match lymph nodes across follow-up scans, for every consecutive (or every) scan
pair of a cohort folder, or for one pair given as two node tables (and
images). The matcher is a shipped model (default: lite-image when every scan
has an image, lite-geometry when not; `lngraph models` lists them), a model
you trained (`lngraph train`, `lngraph demo`), or with --method a method that
needs no training (nearest, pointset, registration).

Node tables (--src-nodes, --dst-nodes): CSV with node_id,x,y,z,short_axis_mm
and optionally long_axis_mm and track_id; centres in LPS mm; validated like
nodes.csv. The scan ids are the file names without .csv.

Output folder (written whole at the end; an existing non-empty OUT is refused
unless --overwrite is given, and then replaced as a whole):
  OUT/matches.csv                        one row per node of each pair:
                                         src_scan, src_node, dst_scan, dst_node,
                                         score, status (matched|disappeared|new)
  OUT/markups/SRC__DST/SCAN.mrk.json     3D Slicer point lists of both scans
  OUT/figures/SRC__DST.png               with --figure

In the markups each scan's nodes form three point lists (matched, disappeared,
new), coloured as in the figures; a point's label names the node, its status
and partner ("n3 -> m5" in the earlier scan, "m5 <- n3" in the later one,
"n4 (disappeared)", "m7 (new)"); its description keeps track_id and sizes.

File and folder names come from the scan ids: characters other than letters,
digits, '.', '_' and '-' become '_', and a name changed that way (or cut to 96
characters) gets 8 hex digits of the id's hash, so no two ids share a name.
"""

EXAMPLES = examples(
    "lngraph match my_cohort --out matches --figure",
    "lngraph match my_cohort --model lite-geometry --pairs all --out matches",
    "lngraph match --src-nodes t0.csv --dst-nodes t1.csv --src-image t0.nii.gz "
    "--dst-image t1.nii.gz --out pair",
    "lngraph match my_cohort --method nearest --out matches_nearest")


def untrained_method(name: str, *, images: bool, source):
    """A fresh instance of the registered method ``--method NAME`` names.

    Raises:
        UsageError: an unknown method, or one that is trained first (it needs ``--model``).
        InputError: a method that reads images, for scans without them (naming ``source``,
            the file that lists the scans).
    """
    from lngraph.baselines import REGISTRY
    from lngraph.cli.main import UsageError
    from lngraph.io.errors import InputError

    if name in REGISTRY and not REGISTRY[name].learned:
        known = dict(REGISTRY)        # the baselines: no need to import the trainers
    else:
        from lngraph.bench.registry import available_methods

        known = available_methods()
    usable = ", ".join(n for n, cls in known.items() if not cls.learned)
    if name not in known:
        raise UsageError(f"--method {name}: unknown method; methods that need no training: "
                         f"{usable}")
    cls = known[name]
    if cls.learned:
        raise UsageError(f"--method {name}: this method is trained first; give a trained model "
                         f"with --model, or one of {usable}")
    if cls.needs_images and not images:
        raise InputError(source, f"--method {name} reads CT images, but no image is given for "
                         "every scan")
    return cls.build()


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "match", help="match the nodes of scan pairs (shipped or trained model, or a method)",
        description=DESCRIPTION, epilog=EXAMPLES,
        formatter_class=HelpFormatter)
    add_cohort(parser, optional=True, help="cohort folder (scans.csv + nodes.csv): match its "
               "scan pairs (or give one pair with --src-nodes/--dst-nodes)")
    parser.add_argument("--cohort", dest="cohort_option", type=Path, default=None,
                        help=argparse.SUPPRESS)       # the grammar before 0.2
    add_out_dir(parser)
    add_matcher(parser)
    parser.add_argument("--pairs", choices=("consecutive", "all"), default="consecutive",
                        help="with COHORT: consecutive timepoints (default) or every "
                        "earlier/later pair")
    parser.add_argument("--src-nodes", type=Path, metavar="CSV",
                        help="earlier scan's nodes: node_id,x,y,z,short_axis_mm"
                        "[,long_axis_mm][,track_id], LPS mm")
    parser.add_argument("--dst-nodes", type=Path, metavar="CSV",
                        help="later scan's nodes, same columns")
    parser.add_argument("--src-image", type=Path, metavar="IMG",
                        help="earlier scan's CT (NIfTI, NRRD, MHA or a DICOM folder)")
    parser.add_argument("--dst-image", type=Path, metavar="IMG", help="later scan's CT")
    parser.add_argument("--figure", action="store_true",
                        help="also draw each pair (OUT/figures/<src>__<dst>.png)")
    add_cache_dir(parser, "the user cache, ~/.cache/lngraph/crops, for a cohort; a temporary "
                  "folder for a single pair")
    parser.add_argument("--cache", dest="cache_dir", type=Path, help=argparse.SUPPRESS)
    add_device(parser)
    add_quiet(parser)
    parser.set_defaults(func=run)
    return parser


def read_pair_nodes(path: Path, scan_id: str):
    """A ``--src-nodes``/``--dst-nodes`` table as a :class:`~lngraph.io.cohort.NodeTable`,
    validated with the rules of ``nodes.csv`` (errors name the file and line)."""
    from lngraph.io.cohort import NodeTable, read_csv_table, read_nodes_frame
    from lngraph.io.errors import InputError

    frame = read_csv_table(path, PAIR_NODE_COLUMNS)
    if "scan_id" in frame.columns:
        raise InputError(path, "has a scan_id column: give the nodes of one scan (to match "
                         "the scans of a cohort's nodes.csv, give the cohort folder)", line=1)
    for column in PAIR_NODE_OPTIONAL:
        if column not in frame.columns:
            frame[column] = ""
    frame.insert(0, "scan_id", scan_id)
    return read_nodes_frame(frame, path, known_scans=None).get(scan_id, NodeTable.empty())


def _pair_scan_ids(src: Path, dst: Path) -> tuple[str, str]:
    a, b = src.name.removesuffix(".csv"), dst.name.removesuffix(".csv")
    return (a, b) if a != b else ("src", "dst")


def single_pair(args):
    """The pair given by ``--src-nodes``/``--dst-nodes`` (and images)."""
    from lngraph.io.cohort import Scan, ScanPair
    from lngraph.io.errors import InputError
    from lngraph.io.image import image_exists

    if args.src_nodes is None or args.dst_nodes is None:
        raise InputError("lngraph match", "give a cohort folder (lngraph match COHORT --out "
                         "DIR), or both --src-nodes and --dst-nodes")
    if (args.src_image is None) != (args.dst_image is None):
        raise InputError("lngraph match", "give both --src-image and --dst-image, or neither")
    for image in (args.src_image, args.dst_image):
        if image is not None and not image_exists(image):
            raise InputError(image, "image not found")
    src_id, dst_id = _pair_scan_ids(args.src_nodes, args.dst_nodes)
    scans = [Scan("pair", scan_id, timepoint, None if image is None else image.resolve(),
                  read_pair_nodes(nodes, scan_id))
             for scan_id, timepoint, image, nodes in ((src_id, "1", args.src_image,
                                                       args.src_nodes),
                                                      (dst_id, "2", args.dst_image,
                                                       args.dst_nodes))]
    return ScanPair(*scans)


def _check_arguments(args) -> None:
    from lngraph.cli.main import UsageError

    if args.cohort_option is not None:
        if args.cohort is not None:
            raise UsageError("give the cohort once: COHORT (or the older --cohort DIR)")
        args.cohort = args.cohort_option
    given = [name for name in ("src_nodes", "dst_nodes", "src_image", "dst_image")
             if getattr(args, name) is not None]
    if args.cohort is not None and given:
        raise UsageError(f"COHORT and --{given[0].replace('_', '-')} exclude each other: "
                         "match a cohort or one pair")


def pair_folder_name(pair) -> str:
    """``<src>__<dst>`` from the pair's scan ids, each made file-name safe with
    :func:`~lngraph.io.atomic.safe_name` (never a path out of the folder; a changed id gets a
    hash)."""
    from lngraph.io.atomic import safe_name

    return f"{safe_name(pair.src.scan_id)}__{safe_name(pair.dst.scan_id)}"


def markup_labels(pair, pred) -> tuple[list[str], list[str]]:
    """Each node's Slicer label: its id, status and partner (module docstring)."""
    src_ids, dst_ids = pair.src.nodes.node_id, pair.dst.nodes.node_id
    partner = pred.partner_of_src()
    src = [f"{src_ids[i]} -> {dst_ids[j]}" if j >= 0 else f"{src_ids[i]} (disappeared)"
           for i, j in enumerate(partner.tolist())]
    dst = [f"{node} (new)" for node in dst_ids]
    for i, j in pred.matches.tolist():
        dst[j] = f"{dst_ids[j]} <- {src_ids[i]}"
    return src, dst


def scan_markups_document(scan, labels: list[str], status) -> dict:
    """The ``.mrk.json`` document of one scan of a pair: a point list per status."""
    import numpy as np

    from lngraph.io.cohort import NodeTable
    from lngraph.io.slicer import markups_document

    nodes = scan.nodes
    shown = NodeTable(np.asarray(labels, dtype=object), nodes.pos, nodes.short_axis_mm,
                      nodes.long_axis_mm, nodes.track_id)
    document = None
    for name, rgb in STATUS_RGB.items():
        rows = np.flatnonzero(status == name)
        if len(rows) == 0:
            continue
        part = markups_document(shown.take(rows), name=f"{scan.scan_id} {name}")
        for markup in part["markups"]:
            markup["display"].update(color=list(rgb), selectedColor=list(rgb),
                                     activeColor=list(rgb), textScale=3.0)
        document = part if document is None else {
            **document, "markups": document["markups"] + part["markups"]}
    return document if document is not None else markups_document(
        NodeTable.empty(), name=f"{scan.scan_id} (no nodes)")


def write_pair_markups(folder: Path, pair, pred) -> list[Path]:
    """Write both scans' markups of a pair into ``folder``; returns the paths."""
    import json

    from lngraph.io.atomic import safe_name, unique_name, write_text_atomic
    from lngraph.viz import node_status

    paths, used = [], set()
    for scan, labels, status in zip((pair.src, pair.dst), markup_labels(pair, pred),
                                    node_status(pred), strict=True):
        name = unique_name(safe_name(scan.scan_id), scan.scan_id, used)
        document = scan_markups_document(scan, labels, status)
        paths.append(write_text_atomic(folder / f"{name}.mrk.json",
                                       json.dumps(document, indent=2) + "\n"))
    return paths


def pair_figure(path: Path, pair, pred, params, cache_dir) -> Path:
    """:func:`~lngraph.viz.match_figure` of a pair: on its images with a crop gallery
    (crops with ``params`` through the cache ``cache_dir``) when both scans have one."""
    from lngraph.data.cache import scan_crops
    from lngraph.io.image import read_image
    from lngraph.viz import match_figure

    if pair.src.image is None or pair.dst.image is None:
        return match_figure(pair, pred, path)
    crops = tuple(scan_crops(scan, params, cache_dir=cache_dir).cubes
                  for scan in (pair.src, pair.dst))
    return match_figure(pair, pred, path, src_image=read_image(pair.src.image),
                        dst_image=read_image(pair.dst.image), crops=crops)


def _summary(results) -> str:
    matched = sum(len(pred.matches) for _, pred in results)
    gone = sum(len(pred.disappeared) for _, pred in results)
    new = sum(len(pred.new) for _, pred in results)
    return (f"{len(results)} scan pair(s): {matched} matched, {gone} disappeared, {new} new "
            "node(s)")


def match_pairs(model, pairs, out: Path, *, figure: bool, cache_dir,
                progress: bool = True, predictions=None) -> list:
    """Predict every pair (in batches) and write ``matches.csv``, markups and figures into
    ``out``; returns ``[(pair, prediction)]``. ``predictions`` (one per pair) replaces the
    model's (``model`` may then be ``None``)."""
    from tqdm.auto import tqdm

    from lngraph.data.crops import CropParams
    from lngraph.io.atomic import unique_name
    from lngraph.io.matches import write_matches
    from lngraph.models import predict_pairs

    if predictions is None:
        predictions = predict_pairs(model, pairs, cache_dir=cache_dir, progress=progress)
    crops = model.config.crops if model is not None else CropParams()
    results = list(zip(pairs, predictions, strict=True))
    used: set[str] = set()
    for pair, pred in tqdm(results, desc="write", unit="pair", disable=not progress):
        # distinct pairs can share a name only on a case-insensitive file system: keep apart
        name = unique_name(pair_folder_name(pair), f"{pair.src.scan_id}\0{pair.dst.scan_id}",
                           used)
        write_pair_markups(out / "markups" / name, pair, pred)
        if figure:
            pair_figure(out / "figures" / f"{name}.png", pair, pred, crops, cache_dir)
    write_matches(out / "matches.csv", results)
    return results


def _load_pairs(args):
    """The pairs to match, whether every scan has an image, the file that says so, and the
    crop cache folder to use (None: a temporary one)."""
    from lngraph.data.cache import default_cache_dir
    from lngraph.io.cohort import read_cohort

    _check_arguments(args)
    if args.cohort is None:
        pair = single_pair(args)
        return [pair], pair.src.image is not None, args.src_nodes, args.cache_dir
    cohort = read_cohort(args.cohort)
    cache_dir = args.cache_dir if args.cache_dir is not None else default_cache_dir(cohort)
    return cohort.pairs(args.pairs), cohort.has_images, args.cohort / "scans.csv", cache_dir


def load_matcher(spec, *, images: bool, source, device: str = "cpu"):
    """The model ``--model`` names (:func:`lngraph.models.zoo.model_path`), loaded on
    ``device``, and its path.

    Raises:
        InputError: no such model, or an image model for scans without images (naming
            ``source``, the file that lists the scans).
    """
    from lngraph.io.errors import InputError
    from lngraph.models import load_checkpoint
    from lngraph.models.zoo import model_path

    path = model_path(spec, images=images)
    model, config, _ = load_checkpoint(path, map_location=device)
    if not config.model.geometry_only and not images:
        raise InputError(source, f"the model ({spec}) matches on image crops, but no image is "
                         "given for every scan; give images, or use a geometry-only model "
                         "(--model lite-geometry)")
    return model, path


def run(args) -> int:
    import tempfile

    from lngraph.cli.common import show_progress, torch_device
    from lngraph.cli.main import output_folder

    progress = show_progress(args)
    pairs, images, source, cache_dir = _load_pairs(args)
    if args.method is not None:
        model, model_file = None, None
        method = untrained_method(args.method, images=images, source=source)
        predictions = [method.predict(pair) for pair in pairs]
    else:
        model, model_file = load_matcher(args.model, images=images, source=source,
                                         device=torch_device(args.device))
        predictions = None
    inputs = [("the model", model_file), ("the cohort", args.cohort),
              ("--src-nodes", args.src_nodes), ("--dst-nodes", args.dst_nodes),
              ("--src-image", args.src_image), ("--dst-image", args.dst_image),
              ("the crop cache", args.cache_dir)]
    with output_folder(args.out, overwrite=args.overwrite, inputs=inputs) as tmp, \
            tempfile.TemporaryDirectory(prefix="lngraph-match-") as scratch:
        cache = cache_dir if cache_dir is not None else Path(scratch)
        results = match_pairs(model, pairs, tmp, figure=args.figure, cache_dir=cache,
                              progress=progress, predictions=predictions)
    matcher = f"--method {args.method}" if args.method else f"model {model_file}"
    print(f"{_summary(results)} ({matcher})")
    print(f"matches: {args.out / 'matches.csv'}")
    print(f"3D Slicer markups: {args.out / 'markups'}")
    if args.figure:
        print(f"figures: {args.out / 'figures'}")
    return 0
