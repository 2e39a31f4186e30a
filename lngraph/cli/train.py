"""``lngraph train``: train the asymmetric matcher on a cohort folder.

``lngraph train COHORT --out RUN [--config lite|full|paper|FILE.yaml] [--set SECTION.KEY=VALUE ...]
[--fold K --folds N] [--max-epochs E] [--seed S] [--accelerator A --devices D --strategy S
--num-nodes M] [--workers K]`` trains one model (:func:`lngraph.train.fit_matcher`) and writes

* ``RUN/model.ckpt`` — the best epoch's weights with their config (lngraph's format);
* ``RUN/config.yaml`` — the config it was trained with;
* ``RUN/metrics.json`` — every metric of that model on the validation pairs;
* ``RUN/split.json`` — the training, validation and test patients;
* ``RUN/logs/`` — Lightning's CSV logs.

The run folder is written whole or not at all (:func:`lngraph.io.atomic.atomic_folder`): an
interrupted or failed run leaves an earlier ``RUN`` as it was. An existing non-empty ``RUN``
is refused unless ``--overwrite`` is given.

Patients: with ``--fold K`` (0-based) the cohort is split into ``--folds`` patient-level folds
(:func:`lngraph.train.patient_folds`, shuffled by ``--split-seed``), fold K is held out as the
test set and the validation patients come from the rest; without it every patient is used,
``protocol.val_fraction`` of them for validation. A cohort without images trains the
geometry-only matcher.

Config: a preset or a YAML file of sections (:mod:`lngraph.models.config`), then ``--set``
values by dotted key, read as YAML: ``--set model.feature_dim=32 optim.lr=3e-4``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lngraph.cli.common import (
    HelpFormatter,
    add_cache_dir,
    add_cohort,
    add_device,
    add_out_dir,
    add_quiet,
    add_workers,
    examples,
    lightning_accelerator,
    positive_int,
    show_progress,
)


def _devices(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train a matcher on a cohort",
        description="Train lngraph's matcher (preset lite: the graph matcher; full: a larger "
        "one; paper: the paper's asymmetric matcher) on a cohort folder with patient-level "
        "splits, early stopping and the decision threshold on validation patients, and a "
        "saved best model (RUN/model.ckpt, usable with `lngraph match --model RUN`). A cohort "
        "without images trains the geometry-only matcher. Runs on a GPU when present, else on "
        "the CPU; --devices, --strategy and --num-nodes are Lightning's.",
        epilog=examples("lngraph train my_cohort --out run",
                        "lngraph train my_cohort --out run_f0 --fold 0 --max-epochs 30",
                        "lngraph train my_cohort --out run --config full --set optim.lr=3e-4"),
        formatter_class=HelpFormatter,
    )
    add_cohort(parser)
    add_out_dir(parser, metavar="RUN", help="output folder (model.ckpt, config.yaml, "
                "metrics.json, split.json, logs/), written whole at the end")
    parser.add_argument("--config", default="lite", metavar="lite|full|paper|FILE.yaml",
                        help="a preset name or a YAML file of config sections (default: lite)")
    parser.add_argument("--set", dest="settings", nargs="+", default=[],
                        metavar="SECTION.KEY=VALUE",
                        help="config values by dotted key on top of --config, read as YAML, "
                        "e.g. model.feature_dim=32 optim.lr=3e-4")
    parser.add_argument("--fold", type=int, default=None, metavar="K",
                        help="hold out test fold K (0-based) of --folds patient-level folds; "
                        "default: train on every patient")
    parser.add_argument("--folds", type=positive_int, default=None, metavar="N",
                        help="number of folds (default: the config's, 5)")
    parser.add_argument("--split-seed", type=int, default=0, metavar="S",
                        help="seed of the patient shuffle behind the folds (default 0); "
                        "`lngraph evaluate --fold` uses the same")
    parser.add_argument("--max-epochs", type=positive_int, default=None, metavar="E",
                        help="maximum epochs (default: the config's)")
    parser.add_argument("--seed", type=seed_value, default=None, metavar="S",
                        help="training seed (default: the config's)")
    parser.add_argument("--pairs", choices=("consecutive", "all"), default="consecutive",
                        help="train on consecutive scan pairs (default) or on all "
                        "earlier/later pairs of each patient")
    add_device(parser)
    parser.add_argument("--accelerator", default=None, help=argparse.SUPPRESS)  # before 0.2
    parser.add_argument("--devices", type=_devices, default="auto",
                        help="Lightning devices: a count, a list such as 0,1, or auto")
    parser.add_argument("--strategy", default="auto", help="Lightning strategy, e.g. ddp")
    parser.add_argument("--num-nodes", type=positive_int, default=1, help="Lightning num_nodes")
    add_workers(parser, "fill the crop cache")
    add_cache_dir(parser)
    add_quiet(parser)
    parser.set_defaults(func=run)
    return parser


def load_config(text: str):
    """A preset by name, else a YAML file."""
    from lngraph.models.config import PRESETS, MatcherConfig, preset

    if text in PRESETS:
        return preset(text)
    return MatcherConfig.from_yaml(text)


def parse_settings(items: list[str]) -> dict:
    """``SECTION.KEY=VALUE`` strings (values read as YAML) → ``{dotted key: value}`` for
    :meth:`~lngraph.models.MatcherConfig.with_values`.

    Raises:
        ValueError: an item not of that form, or a value that is not YAML.
    """
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set wants SECTION.KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ValueError(f"--set {key.strip()}: cannot read {value!r}: {exc}") from None
    return out


def configure(text: str, settings: list[str]):
    """The config of ``--config`` with the ``--set`` values on top.

    Raises:
        InputError: naming the config file (or preset) or ``--set``, with the problem.
    """
    from lngraph.io.errors import InputError

    try:
        config = load_config(text)
    except ValueError as exc:
        raise InputError(text, str(exc)) from None
    try:
        return config.with_values(parse_settings(settings)) if settings else config
    except ValueError as exc:
        raise InputError("--set", str(exc)) from None


def split_patients(patients: list[str], fold: int | None, folds: int, seed: int,
                   val_fraction: float, config_seed: int) -> dict:
    """``{"train", "val", "test"}`` patients for ``--fold`` (or every patient without it).

    Raises:
        ValueError: a fold outside ``0 .. folds - 1`` or too few patients for the folds.
    """
    from lngraph.train.folds import holdout_split, patient_folds

    if fold is None:
        train, val = holdout_split(patients, val_fraction, config_seed)
        return {"train": list(train), "val": list(val), "test": []}
    if not 0 <= fold < folds:
        raise ValueError(f"--fold must be in 0..{folds - 1}, got {fold}")
    split = patient_folds(patients, folds, seed, val_fraction)[fold]
    return {"train": list(split.train), "val": list(split.val), "test": list(split.test)}


def seed_value(text: str) -> int:
    """An argparse type: an integer seed in ``0 .. 2**32 - 1``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be in 0 .. {2**32 - 1}, got {value}")
    return value


def check_training_pairs(cohort, patients: list[str], pair_mode: str, source) -> None:
    """Refuse a split whose training patients have no scan pair with nodes (nothing to learn
    from), before any output is written.

    Raises:
        InputError: naming ``source`` (the cohort folder).
    """
    from lngraph.io.errors import InputError

    if not any(len(p.src.nodes) + len(p.dst.nodes) for p in cohort.pairs(pair_mode, patients)):
        raise InputError(source, f"no {pair_mode} scan pair with nodes among the "
                         f"{len(patients)} training patient(s); training needs patients with "
                         "at least two scans and some nodes")


def accelerator(args: argparse.Namespace) -> str:
    """The Lightning accelerator of ``--device`` (or of the older ``--accelerator``)."""
    return args.accelerator or lightning_accelerator(args.device)


def run(args: argparse.Namespace) -> int:
    from lngraph.cli.main import UsageError, output_folder
    from lngraph.io.atomic import write_text_atomic
    from lngraph.io.cohort import read_cohort
    from lngraph.io.errors import InputError
    from lngraph.metrics import write_metrics_json
    from lngraph.train import TrainingDiverged, fit_matcher
    from lngraph.train.datamodule import config_for_cohort

    config = configure(args.config, args.settings)
    cohort = read_cohort(args.cohort)
    effective = config_for_cohort(config, cohort)
    if effective is not config:
        print("the cohort has scans without images: training the geometry-only matcher")
    folds = args.folds or effective.protocol.folds
    try:
        split = split_patients(cohort.patients, args.fold, folds, args.split_seed,
                               effective.protocol.val_fraction, effective.protocol.seed)
    except ValueError as exc:
        raise InputError(args.cohort, str(exc)) from None
    check_training_pairs(cohort, split["train"], args.pairs, args.cohort)
    config_file = None if args.config in _presets() else args.config
    out: Path = args.out
    with output_folder(out, overwrite=args.overwrite,
                       inputs=[("the cohort", args.cohort), ("the --config file", config_file),
                               ("the crop cache", args.cache_dir)]) as tmp:
        try:
            result = fit_matcher(
                cohort, effective, train_patients=split["train"], val_patients=split["val"],
                out_dir=tmp, max_epochs=args.max_epochs, seed=args.seed,
                progress=show_progress(args), accelerator=accelerator(args),
                devices=args.devices,
                strategy=args.strategy, num_nodes=args.num_nodes, cache_dir=args.cache_dir,
                pair_mode=args.pairs, workers=args.workers)
        except TrainingDiverged as exc:
            raise UsageError(str(exc)) from None
        effective.to_yaml(tmp / "config.yaml")
        write_metrics_json(tmp / "metrics.json", result.val_metrics)
        write_text_atomic(tmp / "split.json", json.dumps(
            {"cohort": str(args.cohort), "fold": args.fold,
             "folds": folds if args.fold is not None else None, "split_seed": args.split_seed,
             **split}, indent=2) + "\n")
        checkpoint = out / result.checkpoint.relative_to(tmp)
        log_dir = out / Path(result.log_dir).relative_to(tmp) if result.log_dir else None
    print(f"trained {result.epochs} epoch(s) in {result.train_seconds:.1f} s "
          f"({result.pairs_per_second:.1f} training pairs/s); best epoch {result.best_epoch}")
    if result.val_metrics:
        m = result.val_metrics
        print(f"validation: F1 {_pct(m['f1'])}, NLR {_pct(m['nlr'])}, DLR {_pct(m['dlr'])}")
    else:
        print(NO_VALIDATION.format(why="no validation patients" if not split["val"] else
                                   "no usable validation pair (see the warning above)"))
    print(f"model:   {checkpoint}")
    print(f"config:  {out / 'config.yaml'}")
    print(f"metrics: {out / 'metrics.json'}"
          + (" (validation)" if result.val_metrics else " (empty: no validation)"))
    print(f"split:   {out / 'split.json'}")
    print(f"logs:    {log_dir}")
    return 0


#: Printed after a run without validation patients (``FitResult.val_metrics == {}``):
#: :func:`~lngraph.train.fit_matcher` then keeps the epoch with the lowest training loss.
NO_VALIDATION = ("{why}: the model is the epoch with the lowest training loss (the best "
                 "epoch above), not validated")


def _presets() -> tuple[str, ...]:
    from lngraph.models.config import PRESETS

    return tuple(PRESETS)


def _pct(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:.2f} %"
