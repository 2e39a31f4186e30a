"""Arguments that mean the same in every ``lngraph`` command.

One grammar across commands: the cohort folder is the positional ``COHORT``; ``--out`` names
the output; ``--cache-dir`` the crop cache; ``--device {auto,cpu,cuda}`` where a model runs;
``--workers`` the processes; ``--quiet`` turns progress off (progress is only drawn on a
terminal anyway); every ``--help`` ends with examples (:func:`examples`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEVICES = ("auto", "cpu", "cuda")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help text as written when it holds line breaks (laid-out descriptions, the examples
    epilog), wrapped to the terminal when it is one paragraph."""

    def _fill_text(self, text, width, indent):
        if "\n" in text:
            return super()._fill_text(text, width, indent)
        return argparse.HelpFormatter._fill_text(self, text, width, indent)


def examples(*commands: str) -> str:
    """An ``--help`` epilog listing example command lines (use with :class:`HelpFormatter`)."""
    lines = "\n".join(f"  {command}" for command in commands)
    return f"example{'s' if len(commands) > 1 else ''}:\n{lines}"


def positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_cohort(parser: argparse.ArgumentParser, *, optional: bool = False,
               help: str = "cohort folder (scans.csv + nodes.csv)") -> None:
    """The positional ``COHORT`` (``optional``: may be left out when another input is
    given)."""
    parser.add_argument("cohort", type=Path, metavar="COHORT", nargs="?" if optional else None,
                        help=help)


def add_matcher(parser: argparse.ArgumentParser) -> None:
    """``--model NAME|CKPT`` or ``--method NAME`` (exclusive), as ``match`` and ``track`` take
    them (resolved by :func:`lngraph.cli.match.load_matcher` and
    :func:`lngraph.cli.match.untrained_method`)."""
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", default=None, metavar="NAME|CKPT",
                       help="a shipped model's name (`lngraph models`) or a checkpoint "
                       "(RUN/model.ckpt or RUN); default: lite-image when every scan has an "
                       "image, else lite-geometry")
    which.add_argument("--method", default=None, metavar="NAME",
                       help="match with a registered method that needs no training instead "
                       "of a model: nearest, pointset or registration (needs images)")


def add_cache_dir(parser: argparse.ArgumentParser, default_text: str = "the user cache, "
                  "~/.cache/lngraph/crops") -> None:
    parser.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                        help=f"crop cache folder (default: {default_text})")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="where the model runs: auto (default: a CUDA GPU when present, "
                        "else the CPU), cpu or cuda")


def add_workers(parser: argparse.ArgumentParser, what: str, default: int = 1) -> None:
    parser.add_argument("--workers", type=positive_int, default=default, metavar="K",
                        help=f"processes that {what} (default {default})")


def add_out_dir(parser: argparse.ArgumentParser, *, metavar: str = "DIR",
                help: str = "output folder (written whole at the end)") -> None:
    """``--out DIR`` (required) and ``--overwrite``, as every command writing a folder takes
    them."""
    from lngraph.cli.main import OVERWRITE_HELP

    parser.add_argument("--out", type=Path, required=True, metavar=metavar, help=help)
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true",
                        help="no progress output (progress is drawn only on a terminal)")


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars for this command: not ``--quiet`` and stderr is a terminal."""
    if getattr(args, "quiet", False):
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def torch_device(name: str) -> str:
    """``--device`` → a torch device string.

    Raises:
        lngraph.cli.main.UsageError: ``cuda`` asked for on a machine without a CUDA GPU.
    """
    import torch

    from lngraph.cli.main import UsageError

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA GPU is available on this machine (use "
                         "--device cpu or auto)")
    return name


def lightning_accelerator(name: str) -> str:
    """``--device`` → a Lightning accelerator (``auto``, ``cpu`` or ``gpu``)."""
    if name == "cuda":
        torch_device(name)          # the same clear error without a GPU
        return "gpu"
    return name


def cpu_count() -> int:
    return os.cpu_count() or 1
