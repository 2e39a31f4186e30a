"""Turning scores into matchings: assignment solvers, the batched decision rule, alignment.

Knows no trainer and no files.
"""

from lngraph.matching.assignment import hungarian, hungarian_max
from lngraph.matching.batched import BatchedMatches, apply_threshold, batched_assignment

__all__ = ["BatchedMatches", "apply_threshold", "batched_assignment", "hungarian",
           "hungarian_max"]
