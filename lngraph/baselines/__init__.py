"""Baseline matching methods behind one interface (:class:`~lngraph.baselines.base.Method`)."""

from lngraph.baselines.base import REGISTRY, Method, register

__all__ = ["REGISTRY", "Method", "register"]
