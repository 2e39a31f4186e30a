"""``lngraph import FORMAT SRC OUT``: convert real annotation formats into a cohort folder.

Formats: ``nih`` (NIH/TCIA CT Lymph Nodes), ``slicer`` (3D Slicer ``.mrk.json``) and ``dls``
(DeepLesion DLS pairs). Each writes ``OUT/scans.csv`` and ``OUT/nodes.csv`` (coordinates in LPS
mm) with :func:`lngraph.io.write_cohort`; the readers live in :mod:`lngraph.io`.

``OUT`` is written whole at the end (:func:`lngraph.io.atomic.atomic_folder`); an existing
non-empty ``OUT`` is refused unless ``--overwrite`` is given, and then replaced as a whole, so
the input annotations and ``--images`` must lie outside it.
"""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = """\
Convert annotations into a cohort folder OUT (scans.csv + nodes.csv, centres
in world LPS mm, sizes in mm; see docs/formats.md). Warnings about the input
(e.g. an unmeasured size) are printed; any error names the file, the line or
node, and the problem. OUT is written whole at the end; a non-empty OUT is
refused unless --overwrite is given (which replaces all of it, so keep the
annotations and images outside OUT).

formats:
  nih     NIH/TCIA "CT Lymph Nodes" annotation folders (one scan per patient)
  slicer  3D Slicer markups files, PATIENT_TIMEPOINT.mrk.json (one scan per file)
  dls     DeepLesion "DLS" follow-up lesion pairs JSON (one scan per series)
"""

NIH_DESCRIPTION = """\
Read NIH/TCIA "CT Lymph Nodes" annotations. SRC is the collection folder
holding one folder per patient (ABD_LYMPH_001, MED_LYMPH_001, ...) or a single
such folder. Per patient: *_lymphnodes_physicalPoints.txt (x y z, world LPS
mm) or the .mps file with the same points, and *_lymphnodes_sizes.txt ("short
long" or "short", mm). Each patient becomes one geometry-only scan (scan_id =
patient_id = folder name, timepoint 0); node ids are 0, 1, ... in file order;
track ids are empty (single time point).

example:
  lngraph import nih CT_Lymph_Nodes_annotations/ nih_cohort/
"""

SLICER_DESCRIPTION = """\
Read 3D Slicer markups point lists. SRC is a folder of .mrk.json files (not
recursive) or one file. File names give the scan: PATIENT_TIMEPOINT.mrk.json,
where the text after the last '_' is the timepoint (an integer or an ISO date
YYYY-MM-DD), the text before it the patient_id, and the whole name (without
.mrk.json) the scan_id; e.g. case07_2021-03-04.mrk.json.

Per control point: the label is the node_id; coordinates are converted from
the markup's coordinateSystem (LPS or RAS; a file without it is refused) to
LPS; the description is either a track_id (e.g. "LN7") or key=value items
"track=LN7; short=8.5; long=12" (mm). Nodes without "short=" get
--default-short-axis, or the import fails naming the control point.

example:
  lngraph import slicer data/example_markups/ slicer_cohort/
  lngraph import slicer my_reads/ cohort/ --default-short-axis 10 --images scans/
"""

DLS_DESCRIPTION = """\
Read a DeepLesion "DLS" pair JSON file (e.g. valid.json of the Deep Lesion
Tracker). Each series PPPPPP_SS_II becomes one geometry-only scan of patient
PPPPPP with timepoint 100*SS + II; lesion centres are (x*sx, y*sy, (first
slice + z)*sz) mm from the corner of the series (DeepLesion has no origins:
positions of two scans agree only up to a translation); long/short axes are
the RECIST diameters times the in-plane spacing. Lesions of one series within
--tolerance mm are merged, and both ends of every pair share a track_id
(joined across pairs, so a lesion followed through three studies keeps one
track).

example:
  lngraph import dls valid.json dls_cohort/
"""


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of mm, got {text}")
    return value


def _common(parser: argparse.ArgumentParser, src_help: str) -> None:
    parser.add_argument("src", metavar="SRC", help=src_help)
    parser.add_argument("out", metavar="OUT",
                        help="cohort folder to write (created; written whole at the end)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a non-empty OUT as a whole (default: refuse)")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "import", help="convert NIH, 3D Slicer or DeepLesion annotations into a cohort folder",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    formats = parser.add_subparsers(dest="format", metavar="FORMAT", required=True)
    raw = argparse.RawDescriptionHelpFormatter

    nih = formats.add_parser("nih", help="NIH/TCIA CT Lymph Nodes annotation folders",
                             description=NIH_DESCRIPTION, formatter_class=raw)
    _common(nih, "the collection folder, or one patient folder")
    nih.add_argument("--points", choices=("txt", "mps"), default="txt",
                     help="point source: *_physicalPoints.txt or the MITK .mps file "
                     "(default: %(default)s)")
    nih.add_argument("--unmeasured-size", type=_positive, default=10.0, metavar="MM",
                     help="short axis for a node whose size is 0 ('not measured'); "
                     "default %(default)s mm, the RECIST 1.1 threshold of a pathological node")

    slicer = formats.add_parser("slicer", help="3D Slicer markups (PATIENT_TIMEPOINT.mrk.json)",
                                description=SLICER_DESCRIPTION, formatter_class=raw)
    _common(slicer, "a folder of PATIENT_TIMEPOINT.mrk.json files, or one such file")
    slicer.add_argument("--default-short-axis", type=_positive, default=None, metavar="MM",
                        help="short axis of nodes whose description has no 'short=' "
                        "(default: such a node is an error)")
    slicer.add_argument("--images", metavar="DIR", default=None,
                        help="folder with each scan's image, SCAN_ID.nii.gz (or .nii, .nrrd, "
                        ".nhdr, .mha, .mhd) or a DICOM folder SCAN_ID/; stored in scans.csv "
                        "relative to OUT (default: geometry-only)")

    dls = formats.add_parser("dls", help="DeepLesion DLS follow-up lesion pairs (JSON)",
                             description=DLS_DESCRIPTION, formatter_class=raw)
    _common(dls, "the DLS pair JSON file")
    dls.add_argument("--tolerance", type=_positive, default=1.0, metavar="MM",
                     help="centres of one series closer than this are one lesion "
                     "(default: %(default)s mm)")

    parser.set_defaults(func=run)


def _read(args) -> list:
    if args.format == "nih":
        from lngraph.io.nih import read_nih
        return read_nih(args.src, points=args.points, unmeasured_size_mm=args.unmeasured_size)
    if args.format == "slicer":
        from lngraph.io.slicer import read_markups_folder
        return read_markups_folder(args.src, default_short_axis_mm=args.default_short_axis,
                                   images=args.images)
    from lngraph.io.dls import read_dls
    return read_dls(args.src, tolerance_mm=args.tolerance)


def run(args) -> int:
    import warnings
    from pathlib import Path

    from lngraph.cli.main import output_folder
    from lngraph.io.cohort import Cohort, write_cohort

    out = Path(args.out)
    inputs = [("the annotations (SRC)", args.src), ("--images", getattr(args, "images", None))]
    with output_folder(out, overwrite=args.overwrite, inputs=inputs) as tmp:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            scans = _read(args)
        for warning in caught:
            print(f"lngraph import: warning: {warning.message}", file=sys.stderr)
        cohort = Cohort(scans)
        write_cohort(tmp, cohort)
    n_nodes = sum(len(s.nodes) for s in scans)
    print(f"wrote {out} ({args.format}): patients {len(cohort.patients)}, scans {len(scans)}, "
          f"nodes {n_nodes}")
    return 0
