"""``lngraph tune``: search the matcher's hyper-parameters with Optuna.

``lngraph tune COHORT --trials N --out DIR [--storage URL] [--study-name NAME] [--timeout S]
[--n-jobs K] [--max-epochs E] [--fold K --folds N] [--config lite|full|paper|FILE.yaml]
[--set SECTION.KEY=VALUE ...] [--seed S]``
samples configs (:mod:`lngraph.tune.search_space`), trains each on the training patients and
scores it on the validation patients (:mod:`lngraph.tune.objective`: F1 of the matches plus
the F1 of new and disappeared nodes), prunes poor trials after each epoch, and writes the
report of :mod:`lngraph.tune.study`
(``DIR/best_config.yaml`` for ``lngraph train --config``, ``best.json``, ``trials.csv``,
``history.png``, ``intermediate.png``, ``importance.png``) plus every trial's run under
``DIR/trials/``.

Patients are chosen exactly as ``lngraph train`` chooses them for the same ``--fold``,
``--folds`` and ``--split-seed``: with ``--fold K`` fold K's test patients are left out and its
validation patients score the trials. Running the command again with the same storage and study
name resumes the study; several commands (processes or machines) with one storage share it.

Unlike the other commands' output folders, ``DIR`` is not replaced as a whole: it holds the
study (the default storage) that a rerun resumes. Every report file is written atomically, and
a Ctrl-C marks the running trials failed, writes the report and exits with status 130.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lngraph.cli import train as train_cmd
from lngraph.cli.common import (
    DEVICES,
    HelpFormatter,
    add_cache_dir,
    add_cohort,
    examples,
    lightning_accelerator,
    positive_int,
)


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "tune",
        help="search the matcher's hyper-parameters with Optuna",
        description="Tune lngraph's matcher (the --config preset) with Optuna: each trial "
        "samples a config, trains it on the training patients and is scored on the "
        "validation patients by "
        "F1 + mean(F1 of new, F1 of disappeared nodes); test patients of --fold are never "
        "used. Poor trials are pruned after an epoch. Resumable; several processes or "
        "machines share a study through one --storage. Writes DIR/best_config.yaml (for "
        "`lngraph train --config`), best.json, trials.csv and history, intermediate-value and "
        "importance plots.",
        epilog=examples("lngraph tune my_cohort --trials 40 --out tune_run",
                        "lngraph tune my_cohort --trials 40 --out tune_run --storage "
                        "sqlite:///study.db --n-jobs 2"),
        formatter_class=HelpFormatter,
    )
    add_cohort(parser)
    parser.add_argument("--trials", type=positive_int, required=True, metavar="N",
                        help="finished (complete or pruned) trials the study should hold; a "
                        "rerun resumes until it has them")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="output folder (report, trials/, default storage)")
    parser.add_argument("--storage", default=None, metavar="URL",
                        help="sqlite:///FILE, postgresql://USER:PASS@HOST/DB (shared by "
                        "machines), mysql+pymysql://..., or journal:FILE (default: "
                        "sqlite:///DIR/study.db)")
    parser.add_argument("--study-name", default="lngraph", metavar="NAME",
                        help="study name inside the storage (default: lngraph)")
    parser.add_argument("--timeout", type=_seconds, default=None, metavar="S",
                        help="stop starting trials after S seconds (per worker)")
    parser.add_argument("--n-jobs", type=positive_int, default=1, metavar="K",
                        help="worker processes on this machine (default 1)")
    parser.add_argument("--max-epochs", type=positive_int, default=None, metavar="E",
                        help="epochs per trial (default: the config's); the best config keeps "
                        "the config's own max_epochs")
    parser.add_argument("--config", default="lite", metavar="lite|full|paper|FILE.yaml",
                        help="base config: the values the search leaves alone (default: lite)")
    parser.add_argument("--set", dest="settings", nargs="+", default=[],
                        metavar="SECTION.KEY=VALUE",
                        help="base config values by dotted key on top of --config, read as "
                        "YAML, e.g. model.use_scb=true")
    parser.add_argument("--fold", type=int, default=None, metavar="K",
                        help="tune on fold K (0-based) of --folds patient-level folds, its test "
                        "patients left out; default: every patient, the config's "
                        "protocol.val_fraction for validation")
    parser.add_argument("--folds", type=positive_int, default=None, metavar="N",
                        help="number of folds (default: the config's, 5)")
    parser.add_argument("--split-seed", type=int, default=0, metavar="S",
                        help="seed of the patient shuffle behind the folds (default 0), as in "
                        "`lngraph train`")
    parser.add_argument("--seed", type=train_cmd.seed_value, default=None, metavar="S",
                        help="sampler seed (worker k uses S + k) and training seed of every "
                        "trial (default: unseeded sampler, the config's training seed)")
    parser.add_argument("--pairs", choices=("consecutive", "all"), default="consecutive",
                        help="train on consecutive scan pairs (default) or on all pairs")
    parser.add_argument("--device", choices=DEVICES, default="cpu",
                        help="where every trial trains, one device each: cpu (default), cuda "
                        "or auto")
    parser.add_argument("--accelerator", default=None, help=argparse.SUPPRESS)  # before 0.2
    add_cache_dir(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    import optuna

    from lngraph.cli.train import check_training_pairs, configure, split_patients
    from lngraph.io.cohort import read_cohort
    from lngraph.io.errors import InputError
    from lngraph.tune.objective import OBJECTIVE, TuneObjective
    from lngraph.tune.study import (
        default_storage_url,
        display_url,
        finished_trials,
        open_storage,
        open_study,
        optimize,
        write_report,
    )

    if args.out.exists() and not args.out.is_dir():
        raise InputError(args.out, "exists and is not a folder; give a folder for the report "
                         "and the trials")
    base = configure(args.config, args.settings)
    cohort = read_cohort(args.cohort)
    folds = args.folds or base.protocol.folds
    try:
        split = split_patients(cohort.patients, args.fold, folds, args.split_seed,
                               base.protocol.val_fraction, base.protocol.seed)
        objective = TuneObjective(cohort, base, split["train"], split["val"], args.out,
                                  max_epochs=args.max_epochs, seed=args.seed,
                                  accelerator=args.accelerator
                                  or lightning_accelerator(args.device),
                                  cache_dir=args.cache_dir,
                                  pair_mode=args.pairs)
    except ValueError as exc:
        raise InputError(args.cohort, str(exc)) from None
    check_training_pairs(cohort, split["train"], args.pairs, args.cohort)
    url = args.storage or default_storage_url(args.out)
    where = "--storage" if args.storage else f"--out {args.out}"
    try:
        storage = open_storage(url)
    except ValueError as exc:
        raise InputError(where, str(exc)) from None
    except OSError as exc:  # the folder of an SQLite or journal file cannot be made
        raise InputError(where, f"cannot create the folder of {display_url(url)}: "
                         f"{exc.strerror or exc}"
                         + (f" ({exc.filename})" if exc.filename else "")) from None
    try:
        study = open_study(storage, args.study_name, objective, seed=args.seed)
    except ValueError as exc:
        raise InputError(where, str(exc)) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    mode = "geometry-only" if objective.base.model.geometry_only else "appearance"
    print(f"study {args.study_name!r} in {display_url(url)}: {finished_trials(study)} of "
          f"{args.trials} trials finished; {mode} base config {base.name!r}; "
          f"{len(split['train'])} training, {len(split['val'])} validation patients")
    print(f"objective (maximised): {OBJECTIVE}")
    interrupted = False
    try:
        optimize(url, args.study_name, objective, trials=args.trials, timeout=args.timeout,
                 n_jobs=args.n_jobs, seed=args.seed)
    except KeyboardInterrupt:
        interrupted = True
    study = open_study(open_storage(url), args.study_name, objective)
    written = write_report(study, args.out)
    print(f"{finished_trials(study)} finished trials"
          + (" (interrupted: rerun the same command to resume)" if interrupted else ""))
    if "best_config" in written:
        best = study.best_trial
        print(f"best: trial {best.number}, objective {best.value:.4f}")
    for name, path in written.items():
        print(f"{name + ':':13s} {path}")
    return 130 if interrupted else 0
