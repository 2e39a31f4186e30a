"""The number that selects among models on validation pairs: :func:`selection_score`
(:mod:`lngraph.train.module` explains it). Defined in :mod:`lngraph.metrics.selection`, so that
the learned baselines, which sit below :mod:`lngraph.train`, select by the same number."""

from __future__ import annotations

from lngraph.metrics.selection import selection_score

__all__ = ["selection_score"]
