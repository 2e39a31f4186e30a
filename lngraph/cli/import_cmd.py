"""``lngraph import FORMAT SRC OUT``: convert real annotation formats into a cohort folder.

Formats: ``nih`` (NIH/TCIA CT Lymph Nodes), ``slicer`` (3D Slicer ``.mrk.json`` and
``.fcsv``), ``dls`` (DeepLesion DLS pairs) and ``seg`` (segmentation masks listed in a table).
Each writes ``OUT/scans.csv`` and ``OUT/nodes.csv`` (coordinates in LPS mm) with
:func:`lngraph.io.write_cohort`; the readers live in :mod:`lngraph.io`.

``OUT`` is written whole at the end (:func:`lngraph.io.atomic.atomic_folder`); an existing
non-empty ``OUT`` is refused unless ``--overwrite`` is given, and then replaced as a whole, so
the input annotations and ``--images`` must lie outside it.
"""

from __future__ import annotations

import argparse
import sys

from lngraph.cli.common import HelpFormatter, examples

DESCRIPTION = """\
Convert annotations into a cohort folder OUT (scans.csv + nodes.csv, centres
in world LPS mm, sizes in mm; see docs/formats.md). Warnings about the input
(e.g. an unmeasured size) are printed; any error names the file, the line or
node, and the problem. OUT is written whole at the end; a non-empty OUT is
refused unless --overwrite is given (which replaces all of it, so keep the
annotations and images outside OUT).

formats:
  nih     NIH/TCIA "CT Lymph Nodes" annotation folders (one scan per patient)
  slicer  3D Slicer point files, .mrk.json or .fcsv (one scan per file)
  dls     DeepLesion "DLS" follow-up lesion pairs JSON (one scan per series)
  seg     segmentation masks listed in a table (one scan per mask)

A DICOM folder holding several series is refused with a list of them; choose
one by writing the image path as FOLDER#SERIESUID (in a table's image column).
"""

NIH_DESCRIPTION = """\
Read NIH/TCIA "CT Lymph Nodes" annotations. SRC is the collection folder
holding one folder per patient (ABD_LYMPH_001, MED_LYMPH_001, ...) or a single
such folder. Per patient: *_lymphnodes_physicalPoints.txt (x y z, world LPS
mm) or the .mps file with the same points, and *_lymphnodes_sizes.txt ("short
long" or "short", mm). Each patient becomes one geometry-only scan (scan_id =
patient_id = folder name, timepoint 0); node ids are 0, 1, ... in file order;
track ids are empty (single time point).
"""

SLICER_DESCRIPTION = """\
Read 3D Slicer point lists: markups JSON (.mrk.json) or fiducial CSV (.fcsv).
One file per scan, named by one of:
  * the file name PATIENT_TIMEPOINT.mrk.json or PATIENT_TIMEPOINT.fcsv, where
    the text after the last '_' is the timepoint (an integer or an ISO date
    YYYY-MM-DD), the text before it the patient_id, and the whole name
    (without the suffix) the scan_id; e.g. case07_2021-03-04.mrk.json. SRC is
    a folder of such files (not recursive) or one file;
  * --patient P --timepoint T, for a single file SRC of any name
    (scan_id P_T);
  * --table FILE.csv instead of SRC, columns file,patient_id,timepoint and
    optionally scan_id and image (paths relative to the table's folder; an
    image may be FOLDER#SERIESUID, one series of a DICOM folder).

Coordinates are converted to LPS from the file's frame: the markup's
coordinateSystem (LPS or RAS) in .mrk.json, the '# CoordinateSystem = LPS'
(or RAS; 1 or 0 in old files) header line in .fcsv; a file stating no frame
is refused. Per point: the label is the node_id; the description is either a
track_id (e.g. "LN7") or key=value items "track=LN7; short=8.5; long=12" (mm).
Nodes without "short=" get --default-short-axis, or the import fails naming
the point.
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
"""

SEG_DESCRIPTION = """\
Turn segmentation masks into nodes. SRC is a CSV table, one scan per row:
patient_id,timepoint,image,mask and optionally scan_id (default
PATIENT_TIMEPOINT); paths are relative to the table's folder. image is the CT
(any format read elsewhere; FOLDER#SERIESUID chooses one series of a DICOM
folder; empty: a geometry-only scan); mask is an image on the same grid (size,
spacing, origin and direction are checked).

--labels: 'components' reads a binary mask, each connected component a node
(26-connected; node ids 1, 2, ...; no track_id); 'instances' reads a label
map, each nonzero value a node with node_id = track_id = the value, so a label
that agrees across a patient's timepoints is one lymph node (--no-tracks for
label maps numbered per scan); 'auto' (default) reads every mask as instances
when any mask holds more than one nonzero value, else as components.

Per node: the centre is the centroid of its voxels (LPS mm); the long axis is
the longest diameter of the node within one image slice, over its slices, and
the short axis the longest chord perpendicular to it in that slice, both in
mm from edge to edge of the voxels (RECIST-style; docs/formats.md). Nodes
smaller than --min-volume are dropped and counted.
"""


#: ``lngraph.io.seg.LABEL_MODES`` and ``DEFAULT_MIN_VOLUME_MM3``, repeated so that ``--help``
#: does not import SimpleITK (a test checks they agree).
LABEL_MODES = ("auto", "components", "instances")
DEFAULT_MIN_VOLUME_MM3 = 10.0


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of mm, got {text}")
    return value


def _volume(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a volume ≥ 0 mm³, got {text}")
    return value


def _common(parser: argparse.ArgumentParser, src_help: str, *, src_optional: bool = False
            ) -> None:
    parser.add_argument("src", metavar="SRC", help=src_help, nargs="?" if src_optional else None)
    parser.add_argument("out", metavar="OUT",
                        help="cohort folder to write (created; written whole at the end)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a non-empty OUT as a whole (default: refuse)")


def add_parser(subparsers) -> None:
    raw = HelpFormatter
    parser = subparsers.add_parser(
        "import", help="convert NIH, 3D Slicer, DeepLesion or mask annotations into a cohort "
        "folder", description=DESCRIPTION, formatter_class=raw,
        epilog=examples("lngraph import slicer data/example_markups/ slicer_cohort/",
                        "lngraph import seg masks.csv seg_cohort/"))
    formats = parser.add_subparsers(dest="format", metavar="FORMAT", required=True)

    nih = formats.add_parser("nih", help="NIH/TCIA CT Lymph Nodes annotation folders",
                             description=NIH_DESCRIPTION, formatter_class=raw,
                             epilog=examples("lngraph import nih CT_Lymph_Nodes_annotations/ "
                                             "nih_cohort/"))
    _common(nih, "the collection folder, or one patient folder")
    nih.add_argument("--points", choices=("txt", "mps"), default="txt",
                     help="point source: *_physicalPoints.txt or the MITK .mps file "
                     "(default: %(default)s)")
    nih.add_argument("--unmeasured-size", type=_positive, default=10.0, metavar="MM",
                     help="short axis for a node whose size is 0 ('not measured'); "
                     "default %(default)s mm, the RECIST 1.1 threshold of a pathological node")

    slicer = formats.add_parser(
        "slicer", help="3D Slicer point files (.mrk.json, .fcsv)",
        description=SLICER_DESCRIPTION, formatter_class=raw,
        epilog=examples("lngraph import slicer data/example_markups/ slicer_cohort/",
                        "lngraph import slicer my_reads/ cohort/ --default-short-axis 10 "
                        "--images scans/",
                        "lngraph import slicer F.fcsv cohort/ --patient case07 --timepoint 2",
                        "lngraph import slicer --table reads.csv cohort/"))
    _common(slicer, "a folder of PATIENT_TIMEPOINT.mrk.json / .fcsv files, or one file "
            "(omit with --table)", src_optional=True)
    slicer.add_argument("--default-short-axis", type=_positive, default=None, metavar="MM",
                        help="short axis of nodes whose description has no 'short=' "
                        "(default: such a node is an error)")
    slicer.add_argument("--images", metavar="DIR", default=None,
                        help="folder with each scan's image, SCAN_ID.nii.gz (or .nii, .nrrd, "
                        ".nhdr, .mha, .mhd) or a DICOM folder SCAN_ID/ holding one series; "
                        "stored in scans.csv relative to OUT (default: geometry-only)")
    slicer.add_argument("--patient", metavar="P", default=None,
                        help="patient_id of the single file SRC (with --timepoint)")
    slicer.add_argument("--timepoint", metavar="T", default=None,
                        help="timepoint of the single file SRC, an integer or YYYY-MM-DD "
                        "(with --patient)")
    slicer.add_argument("--table", metavar="FILE.csv", default=None,
                        help="read the files this table lists (columns file,patient_id,"
                        "timepoint[,scan_id][,image]) instead of SRC")

    dls = formats.add_parser("dls", help="DeepLesion DLS follow-up lesion pairs (JSON)",
                             description=DLS_DESCRIPTION, formatter_class=raw,
                             epilog=examples("lngraph import dls valid.json dls_cohort/"))
    _common(dls, "the DLS pair JSON file")
    dls.add_argument("--tolerance", type=_positive, default=1.0, metavar="MM",
                     help="centres of one series closer than this are one lesion "
                     "(default: %(default)s mm)")

    seg = formats.add_parser(
        "seg", help="segmentation masks (binary or label maps) listed in a table",
        description=SEG_DESCRIPTION, formatter_class=raw,
        epilog=examples("lngraph import seg masks.csv seg_cohort/",
                        "lngraph import seg masks.csv seg_cohort/ --labels instances "
                        "--min-volume 20"))
    _common(seg, "the CSV table patient_id,timepoint,image,mask[,scan_id]")
    seg.add_argument("--labels", choices=LABEL_MODES, default="auto",
                     help="how a mask is read: connected components, instance labels, or "
                     "auto (default: instances when any mask holds several nonzero values)")
    seg.add_argument("--min-volume", type=_volume, default=DEFAULT_MIN_VOLUME_MM3,
                     metavar="MM3", help="drop nodes smaller than this, in mm³ (default "
                     "%(default)s; 0 keeps all)")
    seg.add_argument("--no-tracks", action="store_true",
                     help="instance labels are numbered per scan, not the same node across "
                     "timepoints: leave track_id empty")

    parser.set_defaults(func=run)


def _slicer_arguments(args) -> None:
    """Refuse slicer options that do not fit together."""
    from lngraph.cli.main import UsageError

    if (args.patient is None) != (args.timepoint is None):
        raise UsageError("give --patient and --timepoint together (they name the scan of a "
                         "single file)")
    if args.table is not None:
        if args.src is not None:
            raise UsageError(f"give SRC or --table, not both (the table lists the files; got "
                             f"SRC {args.src})")
        if args.patient is not None:
            raise UsageError("--patient/--timepoint name the scan of a single file SRC; with "
                             "--table the table's patient_id and timepoint columns do")
    elif args.src is None:
        raise UsageError("give SRC (a markups folder or file) and OUT, or --table FILE.csv "
                         "and OUT")


def _inputs(args) -> list[tuple[str, object]]:
    """``(what, path)`` of every input the command reads, which OUT must not hold."""
    if args.format == "seg":
        from lngraph.io.seg import seg_inputs
        return seg_inputs(args.src)
    inputs = [("the annotations (SRC)", args.src), ("--images", getattr(args, "images", None))]
    if getattr(args, "table", None) is not None:
        from lngraph.io.image import split_series
        from lngraph.io.slicer import TABLE_COLUMNS, read_scan_table

        inputs.append(("--table", args.table))
        for row in read_scan_table(args.table, TABLE_COLUMNS, ("image",)):
            inputs += [(f"the {column} of {row.what}", split_series(row.path(column))[0])
                       for column in ("file", "image") if row.path(column) is not None]
    return inputs


def _read(args) -> tuple[list, list[str]]:
    """The scans, and lines to print after the summary."""
    if args.format == "nih":
        from lngraph.io.nih import read_nih
        return read_nih(args.src, points=args.points,
                        unmeasured_size_mm=args.unmeasured_size), []
    if args.format == "slicer":
        from lngraph.io.slicer import read_markups_folder, read_markups_table
        if args.table is not None:
            return read_markups_table(args.table, default_short_axis_mm=args.default_short_axis,
                                      images=args.images), []
        return read_markups_folder(args.src, default_short_axis_mm=args.default_short_axis,
                                   images=args.images, patient_id=args.patient,
                                   timepoint=args.timepoint), []
    if args.format == "seg":
        from lngraph.io.seg import read_seg_table
        result = read_seg_table(args.src, labels=args.labels, min_volume_mm3=args.min_volume,
                                tracks=not args.no_tracks)
        notes = [f"masks read as {result.mode}"
                 + (" (track_id = label)" if result.mode == "instances" and not args.no_tracks
                    else "")]
        if result.dropped:
            notes.append(f"dropped {result.dropped} node{'s' * (result.dropped != 1)} smaller "
                         f"than {args.min_volume:g} mm³ (--min-volume)")
        return result.scans, notes
    from lngraph.io.dls import read_dls
    return read_dls(args.src, tolerance_mm=args.tolerance), []


def run(args) -> int:
    import warnings
    from pathlib import Path

    from lngraph.cli.main import output_folder
    from lngraph.io.cohort import Cohort, write_cohort

    if args.format == "slicer":
        _slicer_arguments(args)
    out = Path(args.out)
    with output_folder(out, overwrite=args.overwrite, inputs=_inputs(args)) as tmp:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            scans, notes = _read(args)
        for warning in caught:
            print(f"lngraph import: warning: {warning.message}", file=sys.stderr)
        cohort = Cohort(scans)
        write_cohort(tmp, cohort)
    n_nodes = sum(len(s.nodes) for s in scans)
    print(f"wrote {out} ({args.format}): patients {len(cohort.patients)}, scans {len(scans)}, "
          f"nodes {n_nodes}")
    for note in notes:
        print(f"  {note}")
    return 0
