"""Baseline matching methods behind one interface (:class:`~lngraph.baselines.base.Method`)."""

from lngraph.baselines.base import REGISTRY, Method, register
from lngraph.baselines.lgm import LGM
from lngraph.baselines.nearest import Nearest
from lngraph.baselines.pointset import PointSet
from lngraph.baselines.registration import ImageRegistration
from lngraph.baselines.trackers import DLTLite, LesionTracker, SAMLite, TLTLite

__all__ = ["REGISTRY", "Method", "register", "PointSet", "ImageRegistration", "LGM", "Nearest",
           "DLTLite", "LesionTracker", "SAMLite", "TLTLite"]
