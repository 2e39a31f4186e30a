"""One interface for every matching method (ours and the baselines) and the registry by name.

A method is a class with a ``name``; ``fit`` learns from training patients (a no-op for
geometric methods), ``predict`` matches one scan pair. Adding a method to ``lngraph bench``
is one file::

    @register
    class MyMatcher(Method):
        name = "mine"
        def predict(self, pair):
            ...
            return PairPrediction(len(pair.src.nodes), len(pair.dst.nodes), matches, scores)

**Construction.** The leaderboard builds every method through one classmethod,
:meth:`Method.build` ``(options, seed=..., max_epochs=...)``: ``options`` are the method's
own constructor keywords (``--set METHOD.KEY=VALUE``), and the class says what else its
constructor accepts through two class attributes — :attr:`Method.seeded` (it takes ``seed``)
and :attr:`Method.epochs_option` (the keyword that caps its training epochs). Nothing is
guessed from the constructor's signature; a method whose construction differs overrides
:meth:`Method.build`.

**Registry.** :func:`register` adds a class to :data:`REGISTRY` by name (names are unique).
The built-in methods register themselves too, but their leaderboard order, and the list
``lngraph bench`` loads, is :data:`lngraph.bench.registry.BUILTIN_METHODS`; a user's method
joins by ``@register`` in a module or ``.py`` file named with ``lngraph bench --import``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from lngraph.io.cohort import Cohort, ScanPair
from lngraph.io.matches import PairPrediction

#: Every registered method class by name (the built-ins once imported, and the user's).
REGISTRY: dict[str, type[Method]] = {}


class Method:
    """Base class of a matching method.

    Class attributes:
        name: registry key, used on the command line.
        needs_images: True when the method reads CT images (skipped on geometry-only cohorts).
        learned: True when :meth:`fit` trains something.
        seeded: True when the constructor takes ``seed`` (an int that makes ``fit`` and
            ``predict`` repeatable); :meth:`build` then passes the leaderboard's seed.
        epochs_option: the constructor keyword that sets the number of training epochs (e.g.
            ``"epochs"``), or None; :meth:`build` caps it at ``max_epochs``.
    """

    name: ClassVar[str] = ""
    needs_images: ClassVar[bool] = False
    learned: ClassVar[bool] = False
    seeded: ClassVar[bool] = False
    epochs_option: ClassVar[str | None] = None

    @classmethod
    def build(cls, options: Mapping[str, Any] | None = None, *, seed: int = 0,
              max_epochs: int | None = None) -> Method:
        """A fresh instance: ``cls(**options)``, plus ``seed=seed`` when :attr:`seeded` (unless
        ``options`` give one) and, when :attr:`epochs_option` names a keyword and
        ``max_epochs`` is given, that keyword set to ``max_epochs`` or to the smaller value
        given in ``options``.

        Args:
            options: constructor keyword arguments (a mapping, so that they may include
                ``seed`` or ``max_epochs`` themselves).
            seed: the leaderboard's seed (ignored unless :attr:`seeded`).
            max_epochs: cap of the training epochs (ignored unless :attr:`epochs_option`).
        """
        kwargs = dict(options or {})
        if cls.seeded:
            kwargs.setdefault("seed", seed)
        key = cls.epochs_option
        if key is not None and max_epochs is not None:
            given = kwargs.get(key)
            kwargs[key] = max_epochs if given is None else min(given, max_epochs)
        return cls(**kwargs)

    def fit(self, train: Cohort, val: Cohort | None = None) -> Method:
        """Learn from ``train`` (select on ``val``); geometric methods return ``self``."""
        return self

    def predict(self, pair: ScanPair) -> PairPrediction:
        raise NotImplementedError(f"{type(self).__name__} must implement predict()")


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: add a :class:`Method` subclass to :data:`REGISTRY` under its name.

    Raises:
        ValueError: an empty name, or a name already taken by another class.
    """
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a non-empty `name`")
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"a method named {cls.name!r} is already registered")
    REGISTRY[cls.name] = cls
    return cls
