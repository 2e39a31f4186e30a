"""The methods ``lngraph bench`` knows: the built-ins in leaderboard order, then the user's.

:data:`BUILTIN_METHODS` is the one list of the built-in method classes, in the order of the
leaderboard's tables. A new built-in method is one file (a
:class:`~lngraph.baselines.base.Method` subclass, under :mod:`lngraph.baselines` or, when it
trains a matcher, :mod:`lngraph.train`) plus one line in that list.

A user's method joins without touching lngraph: ``@register`` it
(:func:`lngraph.baselines.register`) in a module or ``.py`` file, and name that with
``lngraph bench --import`` (or :func:`import_methods`, or ``extra_modules`` of
:func:`~lngraph.bench.leaderboard.run_leaderboard`). User methods follow the built-ins, sorted
by name; a name taken by a built-in is refused by ``register``.

Every method is built by :meth:`Method.build <lngraph.baselines.base.Method.build>` (see
:func:`build_method`).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from lngraph.baselines.base import REGISTRY, Method
from lngraph.baselines.geometry_fusion import GeometryFusion, GeometryFusionFrame
from lngraph.baselines.lgm import LGM
from lngraph.baselines.nearest import Nearest
from lngraph.baselines.pointset import PointSet
from lngraph.baselines.registration import ImageRegistration
from lngraph.baselines.trackers import DLTLite, SAMLite, TLTLite
from lngraph.train.ablations import (
    AppearanceHungarian,
    GeometryDustbin,
    GeometryFrame,
    GeometryFrameEnsemble,
    GeometryOnly,
    PaperMatcher,
    WithDustbin,
    WithoutCross,
    WithoutPosition,
    WithoutSelf,
    WithSCB,
    WithSE,
    WithSEAG,
    WithSEAGLayers,
    WithTE,
)
from lngraph.train.method import MatcherMethod

#: The built-in methods, in leaderboard order.
BUILTIN_METHODS: tuple[type[Method], ...] = (
    Nearest,               # nearest
    PointSet,              # pointset
    ImageRegistration,     # registration
    LGM,                   # lgm
    GeometryFusion,        # geometry_fusion
    GeometryFusionFrame,   # geometry_fusion_frame
    DLTLite,               # dlt_lite
    SAMLite,               # sam_lite
    TLTLite,               # tlt_lite
    AppearanceHungarian,   # abl_appearance
    WithSEAG,              # abl_seag
    WithTE,                # abl_te
    WithSE,                # abl_se
    WithSCB,               # abl_scb
    PaperMatcher,          # paper
    MatcherMethod,         # matcher
    GeometryOnly,          # matcher_geometry
    GeometryFrame,         # matcher_geometry_frame
    GeometryFrameEnsemble,  # matcher_geometry_frame_ensemble
    WithDustbin,           # matcher_dustbin
    GeometryDustbin,       # matcher_geometry_dustbin
    WithoutCross,          # matcher_no_cross
    WithoutPosition,       # matcher_no_position
    WithoutSelf,           # matcher_no_self
    WithSEAGLayers,        # matcher_seag
)


def available_methods() -> dict[str, type[Method]]:
    """Name → class of every method: :data:`BUILTIN_METHODS` in order, then every other class
    in :data:`~lngraph.baselines.base.REGISTRY` (the user's), sorted by name."""
    methods = {cls.name: cls for cls in BUILTIN_METHODS}
    methods.update(sorted((n, c) for n, c in REGISTRY.items() if n not in methods))
    return methods


def import_methods(extra: Sequence[str] = ()) -> dict[str, type[Method]]:
    """Import the user's method modules — dotted module names or paths of ``.py`` files, whose
    ``@register`` classes join — and return :func:`available_methods`.

    Raises:
        ValueError: a ``.py`` file or module that cannot be found.
    """
    for item in extra:
        path = Path(item)
        if path.suffix == ".py":
            if not path.is_file():
                raise ValueError(f"method file {item} does not exist")
            spec = importlib.util.spec_from_file_location(f"lngraph_user_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            try:
                importlib.import_module(item)
            except ModuleNotFoundError as exc:
                raise ValueError(f"cannot import method module {item!r}: {exc}") from exc
    return available_methods()


def method_names(names: str | Sequence[str]) -> list[str]:
    """``"all"`` (or ``["all"]``) → every available name in leaderboard order; otherwise the
    given names without repeats, checked (load user methods with :func:`import_methods`
    first).

    Raises:
        ValueError: an unknown name, listing the known ones.
    """
    names = [names] if isinstance(names, str) else list(names)
    known = available_methods()
    if names == ["all"]:
        return list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; registered: "
                         f"{', '.join(known)}")
    return list(dict.fromkeys(names))


def build_method(name: str, *, seed: int = 0, max_epochs: int | None = None,
                 options: Mapping | None = None) -> Method:
    """A fresh instance of method ``name``:
    ``cls.build(options, seed=seed, max_epochs=max_epochs)`` (see
    :meth:`~lngraph.baselines.base.Method.build`).

    Raises:
        ValueError: an unknown name.
    """
    method_names([name])
    cls = available_methods()[name]
    return cls.build(options, seed=seed, max_epochs=max_epochs)
