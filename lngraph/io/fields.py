"""Typed fields of frozen settings dataclasses whose values come from YAML or checkpoints.

:func:`coerce_fields` converts each field of a dataclass instance to its annotated type (YAML
reads ``1e-4`` as a string and lists where tuples are meant) and lists what cannot be
converted; :class:`FieldsError` carries the problems of one object, one message per problem,
each starting with the field's name, so that a container can prefix them with its own key.
Used by :class:`~lngraph.data.crops.CropParams` and :mod:`lngraph.models.config`.
"""

from __future__ import annotations

from dataclasses import fields


class FieldsError(ValueError):
    """Invalid field values; :attr:`problems` lists them (the message joins them with ``; ``)."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def coerce(kind: str, value):
    """``value`` as the annotated type ``kind`` (``"int"``, ``"float"``, ``"bool"``, ``"str"``,
    ``"tuple[float, ...]"``…); ints pass as floats, numeric strings as numbers; a bool is never
    a number.

    Raises:
        TypeError, ValueError: ``value`` cannot be read as ``kind``.
    """
    if kind.startswith("tuple["):
        item = kind[6:].split(",")[0].strip().rstrip("]")
        if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
            raise TypeError(value)
        return tuple(coerce(item, v) for v in value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise TypeError(value)
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise TypeError(value)
        return value
    if isinstance(value, bool):
        raise TypeError(value)
    if kind == "int":
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return int(value)
    return float(value)


def coerce_fields(obj) -> list[str]:
    """Convert every field of the (frozen) dataclass instance ``obj`` in place to its annotated
    type (string annotations, as under ``from __future__ import annotations``); returns one
    problem per field that cannot be converted, e.g. ``"size must be int, got 'big'"``."""
    problems = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        try:
            object.__setattr__(obj, f.name, coerce(str(f.type), value))
        except (TypeError, ValueError):
            problems.append(f"{f.name} must be {f.type}, got {value!r}")
    return problems
