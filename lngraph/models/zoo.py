"""The models that ship with lngraph, and resolving ``--model NAME|PATH``.

Each shipped model is a checkpoint ``lngraph/models/shipped/NAME.ckpt`` with a model card
``NAME.md`` beside it (training data and recipe, measured quality, limits). The recipe that
made them is ``benchmarks/ship_models.py``.

* ``lite-image`` — the ``lite`` graph matcher with CT crops, trained on synthetic patients:
  the default for cohorts whose scans have images.
* ``lite-geometry`` — the geometry-only ``lite`` graph matcher (node centres and sizes, no
  images), trained on synthetic geometry and fine-tuned on the DeepLesion DLS validation pairs:
  the default for cohorts without images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lngraph.io.errors import InputError

#: Folder of the shipped checkpoints and their model cards.
SHIPPED_DIR = Path(__file__).with_name("shipped")
#: Shipped model names, with what each is for.
SHIPPED = {
    "lite-image": "lite graph matcher with CT crops, trained on synthetic patients",
    "lite-geometry": "geometry-only lite graph matcher (centres and sizes), trained on "
                     "synthetic geometry and the DLS validation pairs",
}
DEFAULT_IMAGE_MODEL = "lite-image"
DEFAULT_GEOMETRY_MODEL = "lite-geometry"


@dataclass(frozen=True)
class ShippedModel:
    """One shipped model: its ``name``, a one-line ``summary``, its ``checkpoint`` and its
    model ``card`` (Markdown)."""

    name: str
    summary: str
    checkpoint: Path
    card: Path

    @property
    def available(self) -> bool:
        return self.checkpoint.is_file()


def shipped_models() -> list[ShippedModel]:
    """Every shipped model, in :data:`SHIPPED` order."""
    return [ShippedModel(name, summary, SHIPPED_DIR / f"{name}.ckpt", SHIPPED_DIR / f"{name}.md")
            for name, summary in SHIPPED.items()]


def model_path(spec: str | os.PathLike | None, *, images: bool) -> Path:
    """The checkpoint ``--model`` names.

    Args:
        spec: a shipped model's name, a checkpoint path, or ``None`` for the default
            (``lite-image`` when ``images``, else ``lite-geometry``).
        images: whether the scans to match have images.

    Raises:
        InputError: ``spec`` is neither a shipped name nor an existing file (the message lists
            the shipped names), or a shipped checkpoint is missing from the installation.
    """
    if spec is None:
        spec = DEFAULT_IMAGE_MODEL if images else DEFAULT_GEOMETRY_MODEL
    text = os.fspath(spec)
    if text in SHIPPED:
        path = SHIPPED_DIR / f"{text}.ckpt"
        if not path.is_file():
            raise InputError(path, f"the shipped model {text!r} is missing from this "
                             "installation; reinstall lngraph or give a checkpoint path")
        return path
    path = Path(text)
    if path.is_dir() and (path / "model.ckpt").is_file():
        return path / "model.ckpt"
    if not path.is_file():
        raise InputError(path, "no such checkpoint, and not a shipped model name (shipped: "
                         f"{', '.join(SHIPPED)}; see `lngraph models`)")
    return path
