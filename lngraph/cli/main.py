"""The ``lngraph`` command: one subcommand per module of :mod:`lngraph.cli`.

Each subcommand module exposes ``add_parser(subparsers)``, which registers its parser and sets
``func`` (called with the parsed arguments). Heavy libraries are imported inside ``func`` so that
``lngraph --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from lngraph import __version__
from lngraph.io.errors import InputError

#: Subcommand modules, in the order ``--help`` lists them.
COMMANDS = (
    "lngraph.cli.demo",
    "lngraph.cli.import_cmd",
    "lngraph.cli.synth",
    "lngraph.cli.train",
    "lngraph.cli.match",
    "lngraph.cli.evaluate",
    "lngraph.cli.bench",
    "lngraph.cli.tune",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lngraph",
        description="Match abdominal lymph nodes across follow-up CT scans. Every command reads "
        "or writes a cohort folder (scans.csv + nodes.csv, coordinates in LPS mm); see "
        "`lngraph COMMAND --help`.",
    )
    parser.add_argument("--version", action="version", version=f"lngraph {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"lngraph {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
