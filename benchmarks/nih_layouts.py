"""Derive the packaged NIH layouts (``lngraph/synth/data/nih_abdominal_layouts.csv``).

Reads the 86 abdominal cases (``ABD_LYMPH_*``) of the NIH CT Lymph Nodes annotations
(rsummers11/CADLab, ``MED_ABD_LYMPH_ANNOTATIONS`` at commit
601ecc0a8a7f6d56c100b476e0ecca70ecc6f124; CC BY 3.0; Roth et al., MICCAI 2014) with
:func:`lngraph.synth.nodes.read_nih_cases` — exactly what ``lngraph synth --layouts nih
--nih-root DIR`` uses: node centres (``*_physicalPoints.txt``, LPS mm) and measured short and
long axes (``*_sizes.txt``, mm) — and writes them with
:func:`lngraph.synth.nodes.format_nih_layouts`, one row per node, every number read back exactly.

Run: ``python benchmarks/nih_layouts.py`` (rewrites the packaged table from
``../shared/data/nih_ct_lymph_nodes``); ``--check`` only compares and exits 1 when the packaged
table differs from what the annotations give.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lngraph.io.atomic import atomic_path
from lngraph.synth.nodes import (
    NIH_DEFAULT_ROOT,
    NIH_LAYOUTS_CSV,
    format_nih_layouts,
    read_nih_cases,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nih-root", type=Path, default=NIH_DEFAULT_ROOT, metavar="DIR",
                        help=f"folder of the ABD_LYMPH_* case folders (default {NIH_DEFAULT_ROOT})")
    parser.add_argument("--out", type=Path, default=NIH_LAYOUTS_CSV, metavar="CSV",
                        help="table to write (default: the packaged one)")
    parser.add_argument("--check", action="store_true",
                        help="compare with --out instead of writing it")
    args = parser.parse_args(argv)
    cases = read_nih_cases(args.nih_root)
    text = format_nih_layouts(cases)
    nodes = sum(len(c.pos) for c in cases)
    if args.check:
        same = args.out.is_file() and args.out.read_bytes() == text.encode("utf-8")
        print(f"{args.out}: {'identical to' if same else 'DIFFERS from'} the {len(cases)} cases "
              f"({nodes} nodes) of {args.nih_root}")
        return 0 if same else 1
    with atomic_path(args.out) as tmp:
        tmp.write_bytes(text.encode("utf-8"))  # "\n" line ends on every platform
    print(f"wrote {args.out}: {len(cases)} cases, {nodes} nodes from {args.nih_root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
