"""MkDocs hook: replace ``<!-- lngraph-help: CMD -->`` markers with the ``--help`` text of CMD.

The CLI reference is thereby generated from the parsers themselves and never drifts.
"""

import contextlib
import io
import re

from lngraph.cli.main import build_parser

MARKER = re.compile(r"<!-- lngraph-help:\s*([\w\s-]*?)\s*-->")


def _help(words: list[str]) -> str:
    parser = build_parser()
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        parser.parse_args([*words, "--help"])
    return out.getvalue().replace("usage: lngraph", "usage: lngraph", 1)


def on_page_markdown(markdown, page, config, files):
    def render(match):
        words = match.group(1).split()
        return "```text\n" + _help(words).rstrip() + "\n```"

    return MARKER.sub(render, markdown)
