"""Files and coordinates: the cohort contract, real annotation formats, images.

Knows no model: nothing here imports torch or torch_geometric.
"""

from lngraph.io.atomic import atomic_path, write_text_atomic
from lngraph.io.cohort import (
    Cohort,
    NodeTable,
    Scan,
    ScanPair,
    read_cohort,
    write_cohort,
)
from lngraph.io.coords import ImageGeometry, lps_to_ras, ras_to_lps
from lngraph.io.dls import read_dls
from lngraph.io.errors import InputError
from lngraph.io.image import check_image, read_image, write_image
from lngraph.io.matches import PairPrediction, read_matches, write_matches
from lngraph.io.nih import read_nih
from lngraph.io.seg import import_seg, nodes_from_mask, read_seg_table
from lngraph.io.slicer import (
    read_fcsv,
    read_markups,
    read_markups_folder,
    read_markups_table,
    read_points,
    write_markups,
    write_scan_markups,
)

__all__ = [
    "Cohort", "ImageGeometry", "InputError", "NodeTable", "Scan", "ScanPair", "atomic_path",
    "lps_to_ras", "ras_to_lps", "read_cohort", "write_cohort", "write_text_atomic",
    "PairPrediction", "read_matches", "write_matches",
    "check_image", "read_image", "write_image",
    "read_dls", "read_nih", "read_fcsv", "read_markups", "read_markups_folder",
    "read_markups_table", "read_points", "write_markups", "write_scan_markups",
    "import_seg", "nodes_from_mask", "read_seg_table",
]
