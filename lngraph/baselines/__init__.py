"""Baseline matching methods behind one interface (:class:`~lngraph.baselines.base.Method`).

Sits below :mod:`lngraph.train` (our matcher as a method) and :mod:`lngraph.bench` (the
leaderboard, whose :data:`~lngraph.bench.registry.BUILTIN_METHODS` lists every built-in
method) and imports neither.
"""

from lngraph.baselines.base import REGISTRY, Method, register
from lngraph.baselines.geometry_fusion import GeometryFusion
from lngraph.baselines.lgm import LGM
from lngraph.baselines.nearest import Nearest
from lngraph.baselines.pointset import PointSet
from lngraph.baselines.registration import ImageRegistration
from lngraph.baselines.trackers import DLTLite, LesionTracker, SAMLite, TLTLite

__all__ = ["REGISTRY", "Method", "register", "PointSet", "ImageRegistration", "LGM", "Nearest",
           "GeometryFusion", "DLTLite", "LesionTracker", "SAMLite", "TLTLite"]
