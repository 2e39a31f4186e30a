"""Turning scores into matchings: assignment solvers, the batched decision rule, alignment,
and consistent tracks over many scans (:mod:`~lngraph.matching.tracks`).

Knows no trainer and no files.
"""

from lngraph.matching.assignment import hungarian, hungarian_max
from lngraph.matching.batched import BatchedMatches, apply_threshold, batched_assignment
from lngraph.matching.tracks import Tracks, chain_tracks, link_predictions, synchronize

__all__ = ["BatchedMatches", "Tracks", "apply_threshold", "batched_assignment",
           "chain_tracks", "hungarian", "hungarian_max", "link_predictions", "synchronize"]
