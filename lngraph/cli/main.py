"""The ``lngraph`` command: one subcommand per module of :mod:`lngraph.cli`.

Each subcommand module exposes ``add_parser(subparsers)``, which registers its parser and sets
``func`` (called with the parsed arguments). Heavy libraries are imported inside ``func`` so that
``lngraph --help`` stays fast.

**Exit codes and errors** (docs/errors.md). ``0`` success; ``2`` bad input or usage — an
:class:`~lngraph.io.errors.InputError` (a file, table, image, checkpoint or argument the user
gave is wrong; commands turn the library's errors they know to be about their input into one),
a file-system refusal such as a permission error or a full disk, or an argparse usage error —
printed as one line ``lngraph COMMAND: error: …`` without a traceback; ``130`` interrupted
(Ctrl-C), one line ``lngraph COMMAND: interrupted``; ``1`` anything else, which is a bug:
Python's traceback is shown. ``lngraph --debug COMMAND …`` prints the traceback of every error.

**Outputs.** A command that writes a folder writes it through :func:`output_folder`
(:func:`lngraph.io.atomic.atomic_folder`): all or nothing, an existing non-empty folder only
replaced with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

from lngraph import __version__
from lngraph.io.errors import InputError

#: Subcommand modules, in the order ``--help`` lists them.
COMMANDS = (
    "lngraph.cli.demo",
    "lngraph.cli.import_cmd",
    "lngraph.cli.synth",
    "lngraph.cli.train",
    "lngraph.cli.match",
    "lngraph.cli.track",
    "lngraph.cli.models",
    "lngraph.cli.evaluate",
    "lngraph.cli.bench",
    "lngraph.cli.tune",
)

EXIT_OK = 0
EXIT_BUG = 1
EXIT_INPUT = 2
EXIT_INTERRUPTED = 130
#: ``OSError`` numbers that describe the user's files or machine, not a bug: exit 2.
USER_OS_ERRORS = frozenset(getattr(errno, name) for name in (
    "EACCES", "EPERM", "ENOSPC", "EDQUOT", "EROFS", "ENAMETOOLONG", "EISDIR", "ENOTDIR",
    "EEXIST") if hasattr(errno, name))

OVERWRITE_HELP = "replace an existing non-empty output folder (default: refuse)"


class UsageError(InputError):
    """Command-line arguments that do not fit together or name nothing valid (no file to
    blame): reported and exited on like :class:`~lngraph.io.errors.InputError`, status 2."""

    def __init__(self, problem: str):
        ValueError.__init__(self, problem)
        self.path, self.line, self.problem, self.what = "", None, problem, None

    def __reduce__(self):
        return UsageError, (self.problem,)


def build_parser() -> argparse.ArgumentParser:
    from lngraph.cli.common import HelpFormatter, examples

    parser = argparse.ArgumentParser(
        prog="lngraph",
        description="Match abdominal lymph nodes across follow-up CT scans. Every command reads "
        "or writes a cohort folder (scans.csv + nodes.csv, coordinates in LPS mm); see "
        "`lngraph COMMAND --help`. Exit status: 0 done, 2 bad input (one-line message), "
        "130 interrupted, 1 a bug (traceback).",
        epilog=examples("lngraph demo",
                        "lngraph import slicer reads/ my_cohort --images scans/",
                        "lngraph match my_cohort --out my_matches --figure",
                        "lngraph track my_cohort --out my_tracks"),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lngraph {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of every error (default: one line for errors "
                        "in the input)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def one_line(text: str) -> str:
    """``text`` with its lines joined by spaces (messages are printed as one line)."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _os_error_message(exc: OSError) -> str:
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    reason = exc.strerror or type(exc).__name__
    return f"{' -> '.join(names)}: {reason}" if names else f"{reason}: {exc}"


class _InterruptWatch:
    """A SIGINT handler that raises ``KeyboardInterrupt`` like Python's and remembers the
    signal: libraries that turn Ctrl-C into another exit (Lightning calls ``sys.exit(1)``)
    are still reported as interrupted."""

    def __init__(self):
        self.seen = False
        self.previous = None

    def __call__(self, signum, frame):
        self.seen = True
        raise KeyboardInterrupt

    def __enter__(self):
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self.previous = signal.signal(signal.SIGINT, self)
        return self

    def __exit__(self, *exc_info):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    name = f"lngraph {args.command}"

    def report(message: str, code: int) -> int:
        if args.debug:
            traceback.print_exc()
        print(f"{name}: {message}", file=sys.stderr)
        return code

    def show_warning(message, category, filename, lineno, file=None, line=None):
        if category.__module__.startswith("lngraph"):    # our own warnings: one clean line
            print(f"{name}: warning: {message}", file=sys.stderr)
        else:
            default_show(message, category, filename, lineno, file, line)

    default_show = warnings.showwarning
    with _InterruptWatch() as watch, warnings.catch_warnings():
        warnings.showwarning = show_warning
        try:
            return int(args.func(args) or 0)
        except KeyboardInterrupt:
            return report("interrupted", EXIT_INTERRUPTED)
        except InputError as exc:
            return report(f"error: {one_line(exc)}", EXIT_INPUT)
        except OSError as exc:
            if exc.errno not in USER_OS_ERRORS:
                raise
            return report(f"error: {one_line(_os_error_message(exc))}", EXIT_INPUT)
        except BaseException:
            if watch.seen:  # Ctrl-C turned into SystemExit or another error by a library
                return report("interrupted", EXIT_INTERRUPTED)
            raise


def check_outside(out: Path, inputs: Iterable[tuple[str, object]]) -> None:
    """Refuse an output folder that holds (or is) one of the inputs, which replacing it would
    delete.

    Args:
        out: the output folder.
        inputs: ``(what, path)`` of each input given (``None`` paths are skipped), e.g.
            ``("the cohort", args.cohort)``.

    Raises:
        InputError: naming the output folder and the input inside it.
    """
    root = Path(os.path.realpath(out))
    for what, path in inputs:
        if path is None:
            continue
        target = Path(os.path.realpath(path))
        if target == root or root in target.parents:
            raise InputError(out, f"holds {what} ({path}); the output folder is replaced as a "
                             "whole, so write it elsewhere")


@contextlib.contextmanager
def output_folder(out: Path, *, overwrite: bool,
                  inputs: Iterable[tuple[str, object]] = ()) -> Iterator[Path]:
    """:func:`~lngraph.io.atomic.atomic_folder` for a command's output folder, after
    :func:`check_outside`: yields the temporary folder to write into."""
    from lngraph.io.atomic import atomic_folder

    check_outside(out, inputs)
    with atomic_folder(out, overwrite=overwrite) as tmp:
        yield tmp


if __name__ == "__main__":
    sys.exit(main())
