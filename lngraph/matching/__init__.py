"""Turning scores into matchings: assignment solvers and the SCB correction rule.

Knows no trainer and no files.
"""

from lngraph.matching.assignment import hungarian, hungarian_max
from lngraph.matching.scb_rule import scb_correct

__all__ = ["hungarian", "hungarian_max", "scb_correct"]
