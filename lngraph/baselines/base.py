"""One interface for every matching method (ours and the baselines) and the registry by name.

A method is a class with a registered ``name``; ``fit`` learns from training patients (a no-op
for geometric methods), ``predict`` matches one scan pair. Adding a method to ``lngraph bench``
is one file::

    @register
    class MyMatcher(Method):
        name = "mine"
        def predict(self, pair):
            ...
            return PairPrediction(len(pair.src.nodes), len(pair.dst.nodes), matches, scores)
"""

from __future__ import annotations

from typing import ClassVar

from lngraph.io.cohort import Cohort, ScanPair
from lngraph.io.matches import PairPrediction

REGISTRY: dict[str, type[Method]] = {}


class Method:
    """Base class of a matching method.

    Class attributes:
        name: registry key, used on the command line.
        needs_images: True when the method reads CT images (skipped on geometry-only cohorts).
        learned: True when :meth:`fit` trains something.
    """

    name: ClassVar[str] = ""
    needs_images: ClassVar[bool] = False
    learned: ClassVar[bool] = False

    def fit(self, train: Cohort, val: Cohort | None = None) -> Method:
        """Learn from ``train`` (select on ``val``); geometric methods return ``self``."""
        return self

    def predict(self, pair: ScanPair) -> PairPrediction:
        raise NotImplementedError(f"{type(self).__name__} must implement predict()")


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: add a :class:`Method` subclass to :data:`REGISTRY` under its name."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a non-empty `name`")
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"a method named {cls.name!r} is already registered")
    REGISTRY[cls.name] = cls
    return cls
