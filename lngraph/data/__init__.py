"""Crops, views, caches and pair graphs: from files to tensors; knows no model."""

from lngraph.data.cache import ScanCrops, default_cache_dir, precompute_crops, scan_crops
from lngraph.data.crops import CropParams, crop_cubes
from lngraph.data.views import nine_views

__all__ = [
    "CropParams", "ScanCrops", "crop_cubes", "default_cache_dir", "nine_views",
    "precompute_crops", "scan_crops",
]
