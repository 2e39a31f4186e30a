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
from lngraph.io.errors import InputError

__all__ = [
    "Cohort", "ImageGeometry", "InputError", "NodeTable", "Scan", "ScanPair", "atomic_path",
    "lps_to_ras", "ras_to_lps", "read_cohort", "write_cohort", "write_text_atomic",
]
