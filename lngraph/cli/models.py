"""``lngraph models``: the models that ship with lngraph, and their model cards."""

from __future__ import annotations

import argparse

from lngraph.cli.common import HelpFormatter, examples

DESCRIPTION = """\
List the models that ship with lngraph (usable by name in `lngraph match
--model NAME`), or print one model's card: what it was trained on and how,
its measured quality on data it never saw, and its limits.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "models", help="list the shipped models or show one's model card",
        description=DESCRIPTION, formatter_class=HelpFormatter,
        epilog=examples("lngraph models", "lngraph models lite-geometry"))
    parser.add_argument("name", nargs="?", metavar="NAME",
                        help="print this shipped model's card")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from lngraph.cli.main import UsageError
    from lngraph.models.zoo import DEFAULT_GEOMETRY_MODEL, DEFAULT_IMAGE_MODEL, shipped_models

    models = {m.name: m for m in shipped_models()}
    if args.name is not None:
        if args.name not in models:
            raise UsageError(f"no shipped model named {args.name!r} (shipped: "
                             f"{', '.join(models)})")
        model = models[args.name]
        if not model.card.is_file():
            raise UsageError(f"the card of {args.name!r} is missing from this installation "
                             f"({model.card})")
        print(model.card.read_text(encoding="utf-8"), end="")
        return 0
    width = max(len(name) for name in models)
    defaults = {DEFAULT_IMAGE_MODEL: "default with images",
                DEFAULT_GEOMETRY_MODEL: "default without images"}
    for model in models.values():
        state = "" if model.available else "  [missing from this installation]"
        print(f"{model.name:<{width}}  {model.summary}{state}")
        notes = [defaults[model.name]] if model.name in defaults else []
        print(f"{'':<{width}}  " + "; ".join([*notes, f"checkpoint {model.checkpoint}"]))
    print("\n`lngraph models NAME` prints a model's card; `lngraph match COHORT --model NAME` "
          "uses it.")
    return 0
