"""lngraph's own checkpoint format for the matchers (:class:`~lngraph.models.GraphMatcher`,
:class:`~lngraph.models.AsymmetricMatcher`).

A checkpoint is one ``torch.save`` file holding a plain dict — nothing but tensors, strings,
numbers, bools, ``None``, lists and dicts — so it loads with ``torch.load(weights_only=True)``
and never runs pickled code::

    {"format": "lngraph-matcher", "format_version": 4, "lngraph_version": "0.1.0",
     "config": MatcherConfig.to_dict(), "state_dict": {name: tensor}, "extra": {...}}

``config`` is the nested dict of :meth:`~lngraph.models.MatcherConfig.to_dict`. ``extra`` is
free-form metadata (training patients, validation metrics, …) made of the same plain values.
An ensemble (``model.ensemble`` above 1) is one file too: its members' weights are stored under
``members.<k>.``; files without ``model.ensemble`` (written before it existed) hold one matcher,
which its default of 1 builds.
:data:`FORMAT_VERSION` is bumped whenever the layout or the meaning of the weights changes.
Files of version 2 (the same weights, with the config as one flat dict) are read by moving each
field to its section (:meth:`~lngraph.models.MatcherConfig.from_legacy_dict`); files of versions
2 and 3 hold the asymmetric matcher with a parameter-free SEAG, trained without geometric
augmentation at a constant learning rate, which their config is given
(``model.architecture: asymmetric``, ``model.seag_learn_q: false``, ``optim.augment_drop``,
``optim.augment_rotation_deg``, ``optim.augment_scale``, ``optim.augment_jitter_mm``: 0,
``optim.schedule: constant``). The reported confidence's map (``model.score_temperature``,
``model.score_bias``, :func:`~lngraph.models.asymmetric_matcher.confident_matches`) is part of
the config; a file without it — every file of versions 2 and 3, and version-4 files written
before it existed — loads with :math:`T = 1, b = 0`, i.e. the decision score is reported as
before (the map changes no weight and no decision, so the version stays 4). Likewise a file
without ``model.position_rigid``, ``model.position_search``, ``model.cross_edge_values``,
``model.cross_k`` or ``model.score_matchability`` (written before they existed) loads with the
translation alignment (and no rotation search), no edge values, cross-graph attention over
every node pair and matchability from the features alone: the model it was trained as. A file
of any other version, a corrupt file or any other file is refused with an
:class:`~lngraph.io.errors.InputError` naming it and the problem. So is a checkpoint whose
weights hold a NaN or an infinity (:func:`nonfinite_weights`: such a model scores every node
pair NaN and matches nothing) or whose decision thresholds (``model.similarity_threshold``,
``model.scb_threshold``) are not in [0, 1] — NaN included (the config's own validation);
:func:`save_checkpoint` refuses to write non-finite weights. Files are written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lngraph import __version__
from lngraph.io.atomic import atomic_path
from lngraph.io.errors import InputError
from lngraph.models.build import Matcher, build_matcher
from lngraph.models.config import MatcherConfig, legacy_nested

#: Identifies an lngraph matcher checkpoint.
FORMAT = "lngraph-matcher"
#: Layout version of the checkpoint dict. Version 2: the position prior's scalars became the
#: fusion weights (``fusion_weight``, ``fusion_bias``). Version 3: the config is stored in
#: sections (same weights). Version 4: ``model.architecture`` (the graph matcher) and SEAG's
#: learnable Q.
FORMAT_VERSION = 4
#: Older versions that are still read (their config is migrated).
READABLE_VERSIONS = (2, 3, FORMAT_VERSION)
#: What the configs of versions 2 and 3 meant by fields they did not have, by section: the
#: asymmetric matcher with a parameter-free SEAG, trained without geometric augmentation at a
#: constant learning rate (not the current ``lite`` defaults of these fields).
_BEFORE_4 = {"model": {"architecture": "asymmetric", "seag_learn_q": False},
             "optim": {"augment_drop": 0.0, "augment_rotation_deg": 0.0, "augment_scale": 0.0,
                       "augment_jitter_mm": 0.0, "schedule": "constant"}}


#: ``model.cross_k`` of files written before it existed: larger than any scan, so every
#: (earlier, later) node pair is a cross-graph edge, as they were trained.
ALL_PAIRS = 1_000_000

#: Model settings added to format 4 after its first files, with the value that reproduces
#: those files' models (a file without the key loads with it): the translation alignment
#: without the rotation search, no edge values, and cross-graph attention over every node
#: pair (:data:`ALL_PAIRS`).
_ADDED_IN_4 = {"position_rigid": False, "position_search": False, "cross_edge_values": False,
               "cross_k": ALL_PAIRS, "score_matchability": False}


def plain(value, where: str = "extra"):
    """``value`` as plain checkpoint-safe Python: numpy scalars and arrays, tuples and paths are
    converted; anything else that ``weights_only`` loading would refuse is a ``TypeError``."""
    if value is None or isinstance(value, bool | torch.Tensor):
        return value
    if isinstance(value, str):
        return str(value)           # (numpy's str_ is a str that weights_only refuses)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.ndarray):
        return plain(value.tolist(), where)
    if isinstance(value, list | tuple):
        return [plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {str(k): plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    raise TypeError(f"{where}: {type(value).__name__} cannot be stored in a checkpoint")


def nonfinite_weights(state_dict: Mapping) -> str | None:
    """What in ``state_dict`` is not finite — the first few floating-point tensors holding NaN
    or ±inf, by name, with their counts — or ``None`` when every value is finite."""
    bad = [(name, t) for name, t in state_dict.items()
           if isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex())
           and not bool(torch.isfinite(t).all())]
    if not bad:
        return None
    parts = []
    for name, t in bad[:3]:
        nan, inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
        counts = " and ".join(text for count, text in ((nan, f"{nan} NaN"),
                                                       (inf, f"{inf} infinite"))
                              if count)
        parts.append(f"{name!r} ({counts} of {t.numel()} value{'s' * (t.numel() != 1)})")
    more = f" and {len(bad) - 3} more tensor(s)" if len(bad) > 3 else ""
    return f"non-finite weights in {', '.join(parts)}{more}"


def save_checkpoint(path: str | os.PathLike, model: nn.Module, config: MatcherConfig,
                    extra: Mapping | None = None) -> Path:
    """Write ``model``'s weights, ``config`` and ``extra`` as an lngraph checkpoint (atomic).

    Weights are stored on the CPU. NaN values in ``extra`` are kept (they load as NaN).

    Raises:
        TypeError: ``extra`` holds a value that is not plain data.
        ValueError: a weight is NaN or infinite (:func:`nonfinite_weights`); nothing is
            written, since :func:`load_checkpoint` would refuse the file.
    """
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    problem = nonfinite_weights(state)
    if problem:
        raise ValueError(f"cannot save {os.fspath(path)}: {problem}")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "lngraph_version": __version__,
        "config": config.to_dict(),
        "state_dict": state,
        "extra": plain(dict(extra or {})),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def _read(path: Path, map_location) -> dict:
    if not path.is_file():
        raise InputError(path, "checkpoint not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # the unpickler fails in many ways on foreign bytes
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(path, "not a readable lngraph checkpoint (corrupt, truncated or "
                         f"another kind of file): {first}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputError(path, f"not an lngraph checkpoint (no format tag {FORMAT!r}); "
                         "`lngraph train` writes model.ckpt in this format")
    version = payload.get("format_version")
    if version not in READABLE_VERSIONS:
        raise InputError(path, f"checkpoint format version {version!r} (written by lngraph "
                         f"{payload.get('lngraph_version', '?')}), but lngraph {__version__} "
                         f"reads version {FORMAT_VERSION} (and "
                         f"{', '.join(map(str, READABLE_VERSIONS[:-1]))}); "
                         "retrain the model with this version")
    for key, kind in (("config", dict), ("state_dict", dict), ("extra", dict)):
        if not isinstance(payload.get(key), kind):
            raise InputError(path, f"checkpoint entry {key!r} is missing or not a mapping")
    return payload


def load_checkpoint(path: str | os.PathLike, map_location="cpu"
                    ) -> tuple[Matcher, MatcherConfig, dict]:
    """Read an lngraph checkpoint: ``(model in eval mode, config, extra)``; the flat config of
    a format-2 file is migrated to its sections.

    Raises:
        InputError: naming the file — missing, corrupt or not a checkpoint, another format
            version, an invalid config (a decision threshold outside [0, 1] or NaN among
            others, named by its key), non-finite weights (named by tensor), or weights that
            do not fit the config's model.
    """
    path = Path(path)
    payload = _read(path, map_location)
    try:
        version = payload["format_version"]
        values = payload["config"]
        if version == 2:
            values = legacy_nested(values)
        if version < 4:
            # migrated before validation: the graph matcher's checks (feature_dim a multiple
            # of heads) do not apply to the asymmetric matcher these files hold
            values = dict(values)
            for section, meant in _BEFORE_4.items():
                stored = values.get(section) or {}
                if isinstance(stored, Mapping):     # (anything else: from_dict says why)
                    values[section] = {**stored, **meant}
        model_values = values.get("model")
        if isinstance(model_values, Mapping):
            values = {**values, "model": {**_ADDED_IN_4, **model_values}}
        config = MatcherConfig.from_dict(values)
    except (TypeError, ValueError) as exc:
        raise InputError(path, f"invalid config in the checkpoint: {exc}") from None
    problem = nonfinite_weights(payload["state_dict"])
    if problem:
        raise InputError(path, f"{problem}: the model is unusable (it would match nothing); "
                         "its training diverged or the file was damaged — retrain it")
    model = build_matcher(config)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise InputError(path, f"the weights do not fit the model of the stored config: "
                         f"{str(exc).splitlines()[0]}") from None
    model.to(map_location if isinstance(map_location, str | torch.device) else "cpu")
    return model.eval(), config, payload["extra"]

