"""Crops, views, caches and pair graphs: from files to tensors; knows no model."""

from lngraph.data.cache import ScanCrops, default_cache_dir, precompute_crops, scan_crops
from lngraph.data.crops import CropParams, crop_cubes
from lngraph.data.geometry import AlignmentParams, pair_shifts
from lngraph.data.graph import complete_edge_index, pair_graphs, pair_to_heterodata
from lngraph.data.views import nine_views

__all__ = [
    "AlignmentParams", "CropParams", "ScanCrops", "complete_edge_index", "crop_cubes",
    "default_cache_dir", "nine_views", "pair_graphs", "pair_shifts", "pair_to_heterodata",
    "precompute_crops", "scan_crops",
]
