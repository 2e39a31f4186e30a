"""``lngraph demo``: the whole method in a few minutes, on the CPU, with no input and no network.

1. synthesise a small ``default`` cohort (:func:`lngraph.synth.generate_cohort`) into
   ``OUT/cohort`` — or reuse the one there when it was made with the same patients and seed;
2. split its patients into training, validation and held-out test patients
   (:func:`lngraph.train.patient_folds`, first of 3 folds: a third of the patients is held
   out);
3. train the ``lite`` matcher briefly (:func:`lngraph.train.fit_matcher`) → ``OUT/run``;
4. match the held-out pairs with it and with the ``nearest`` baseline, score both
   (:mod:`lngraph.metrics`) and print the table;
5. write ``OUT/metrics.json``, ``OUT/matches.csv`` (the model's matches of the held-out pairs)
   and ``OUT/figure.png`` (one held-out pair, :func:`lngraph.viz.match_figure`).

The default sizes keep the demo to a few minutes on two CPU cores; the numbers it prints come
from a short training run on a small cohort and are no benchmark (``benchmarks/`` has those).

``OUT`` is written whole or not at all (:func:`lngraph.io.atomic.atomic_folder`). An earlier
demo's output there is replaced (its cohort reused through hard links when the settings match);
any other non-empty ``OUT`` is refused unless ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

from lngraph.cli.evaluate import TABLE_ROWS

DEFAULT_OUT = Path("lngraph_demo")
DEFAULT_PATIENTS = 12
DEFAULT_SEED = 0
DEFAULT_MAX_EPOCHS = 15
#: Cross-validation folds the demo's split is the first of (a third of the patients is tested).
SPLIT_FOLDS = 3
MODEL_NAME = "lngraph lite"
BASELINE_NAME = "nearest"


DESCRIPTION = f"""\
Run the whole method end to end on the CPU, with no input and no network:
synthesise a small cohort, train the lite matcher on some of its patients,
match the held-out patients' scan pairs with it and with the nearest baseline,
print the metrics of both, and write the results. A few minutes on 2 cores
with the defaults; the numbers come from a short run on a small cohort and
are no benchmark.

Output folder (written whole at the end; an earlier demo's output there is
replaced, any other non-empty folder only with --overwrite):
  OUT/cohort/        the synthetic cohort (reused by a rerun with the same
                     --patients and --seed)
  OUT/run/model.ckpt the trained model (use it with `lngraph match`)
  OUT/metrics.json   metrics of both methods on the held-out pairs
  OUT/matches.csv    the model's matches of the held-out pairs
  OUT/figure.png     one held-out pair drawn

Split: the first of {SPLIT_FOLDS} patient-level folds (lngraph.train.patient_folds):
a third of the patients is held out, a fifth of the rest validates.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo",
        help="synthesise a cohort, train the lite model, compare it with nearest (minutes)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
                        help=f"output folder (default ./{DEFAULT_OUT})")
    parser.add_argument("--patients", type=int, default=DEFAULT_PATIENTS, metavar="N",
                        help=f"patients to synthesise, at least {SPLIT_FOLDS} "
                        f"(default {DEFAULT_PATIENTS})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, metavar="S",
                        help=f"seed of the cohort, the split and the training (default "
                        f"{DEFAULT_SEED})")
    parser.add_argument("--max-epochs", type=int, default=DEFAULT_MAX_EPOCHS, metavar="E",
                        help=f"training epochs at most (default {DEFAULT_MAX_EPOCHS})")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        metavar="W", help="processes that synthesise the cohort and crop it "
                        "(default: the CPU cores, at most 4)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a non-empty output folder that is not an earlier demo's "
                        "(default: refuse)")
    parser.set_defaults(func=run)
    return parser


def comparison_table(results: dict[str, dict]) -> str:
    """The headline metrics of several methods side by side (percentages and mm)."""
    names = list(results)
    width = max(len(label) for _, label, _ in TABLE_ROWS)
    columns = [max(len(name), 9) for name in names]
    lines = ["  " + " " * width + "".join(f"  {name:>{w}}" for name, w in zip(names, columns,
                                                                            strict=True))]
    for key, label, unit in TABLE_ROWS:
        cells = []
        for name, w in zip(names, columns, strict=True):
            value = results[name][key]
            if value is None or math.isnan(value):
                text = "n/a"
            else:
                text = f"{100 * value:.2f} %" if unit == "%" else f"{value:.2f} mm"
            cells.append(f"  {text:>{w}}")
        lines.append(f"  {label:<{width}}" + "".join(cells))
    return "\n".join(lines)


def _matching_cohort(folder: Path, patients: int, seed: int):
    """The cohort in ``folder`` if ``lngraph synth`` made it with these settings, else None."""
    import json

    from lngraph.io.cohort import read_cohort
    from lngraph.io.errors import InputError

    try:
        meta = json.loads((folder / "synth.json").read_text(encoding="utf-8"))
        if (meta.get("patients"), meta.get("seed"), meta.get("images"),
                meta.get("preset", {}).get("name")) != (patients, seed, True, "default"):
            return None
        return read_cohort(folder)
    except (OSError, ValueError, InputError):
        return None


#: What a demo writes into OUT: a folder holding only these is an earlier demo's output.
DEMO_ENTRIES = frozenset({"cohort", "run", "metrics.json", "matches.csv", "figure.png"})


def is_demo_output(folder: Path) -> bool:
    """Whether ``folder`` holds an earlier demo's output (only :data:`DEMO_ENTRIES`, with
    ``cohort/synth.json``), which a new demo may replace without ``--overwrite``."""
    try:
        names = {p.name for p in folder.iterdir()}
    except OSError:
        return False
    return bool(names) and names <= DEMO_ENTRIES and (folder / "cohort" / "synth.json").is_file()


def _link_tree(src: Path, dst: Path) -> None:
    """Copy a folder by hard links (files are never rewritten in place: new versions are
    renamed over them), falling back to copies where links are not possible."""
    import shutil

    def link(a, b):
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link)


def _cohort(folder: Path, earlier: Path, patients: int, seed: int, workers: int):
    """The demo cohort in ``folder``: the one in ``earlier`` (a previous demo's) when it was
    made with these settings, else a new one."""
    from lngraph.io.cohort import read_cohort
    from lngraph.synth import generate_cohort

    if _matching_cohort(earlier, patients, seed) is not None:
        _link_tree(earlier, folder)
        cohort = read_cohort(folder)
        print(f"reusing the cohort in {earlier} ({cohort!r})")
        return cohort
    generate_cohort(folder, patients, seed, preset="default", workers=workers, progress=True)
    return read_cohort(folder)


def _figure_pair(pairs):
    """The held-out pair to draw: one with new or disappeared nodes if any, the most nodes."""
    return max(pairs, key=lambda p: (len(p.gt_new()) + len(p.gt_disappeared()) > 0,
                                     len(p.src.nodes) + len(p.dst.nodes)))


def _check(args) -> None:
    from lngraph.io.errors import InputError

    if args.patients < SPLIT_FOLDS:
        raise InputError("lngraph demo", f"--patients must be at least {SPLIT_FOLDS} (training, "
                         f"validation and test patients), got {args.patients}")
    if args.max_epochs < 1 or args.workers < 1:
        raise InputError("lngraph demo", "--max-epochs and --workers must be at least 1")


def run(args) -> int:
    from lngraph.cli.main import output_folder

    _check(args)
    out: Path = args.out
    replace = args.overwrite or is_demo_output(out)
    start = time.perf_counter()
    with output_folder(out, overwrite=replace) as tmp:
        written = _demo(args, out, tmp)
    print(written)
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0


def _demo(args, out: Path, tmp: Path) -> str:
    """The demo, writing into ``tmp`` (which becomes ``out``); returns the lines naming the
    outputs (printed once they are in ``out``)."""
    from lngraph.baselines import REGISTRY
    from lngraph.cli.match import pair_figure
    from lngraph.data.cache import default_cache_dir
    from lngraph.io.matches import write_matches
    from lngraph.metrics import evaluate_predictions, write_metrics_json
    from lngraph.models import load_checkpoint, predict_pairs, preset
    from lngraph.train import fit_matcher, patient_folds

    print(f"[1/4] synthesising {args.patients} patients into {out / 'cohort'}")
    cohort = _cohort(tmp / "cohort", out / "cohort", args.patients, args.seed, args.workers)
    cohort.root = out / "cohort"  # where it will be: the checkpoint records the cohort folder
    split = patient_folds(cohort.patients, folds=SPLIT_FOLDS, seed=args.seed)[0]
    test_pairs = cohort.pairs("consecutive", split.test)
    print(f"      {len(split.train)} training, {len(split.val)} validation and "
          f"{len(split.test)} held-out patients ({len(test_pairs)} held-out scan pairs)")

    print(f"[2/4] training the lite model for at most {args.max_epochs} epochs")
    config = preset("lite")
    fit = fit_matcher(cohort, config, train_patients=split.train, val_patients=split.val,
                      out_dir=tmp / "run", max_epochs=args.max_epochs, seed=args.seed,
                      progress=True, workers=args.workers)
    model, config, _ = load_checkpoint(fit.checkpoint)

    print(f"[3/4] matching {len(test_pairs)} held-out scan pairs")
    cache_dir = default_cache_dir(cohort)
    predictions = predict_pairs(model, test_pairs, cache_dir=cache_dir, progress=True)
    nearest = REGISTRY[BASELINE_NAME]()
    keys = [(p.src.scan_id, p.dst.scan_id) for p in test_pairs]
    results = {
        MODEL_NAME: evaluate_predictions(cohort, dict(zip(keys, predictions, strict=True)),
                                         test_pairs),
        BASELINE_NAME: evaluate_predictions(
            cohort, {k: nearest.predict(p) for k, p in zip(keys, test_pairs, strict=True)},
            test_pairs),
    }

    print("[4/4] writing results")
    write_metrics_json(tmp / "metrics.json", {
        "methods": results, "test_patients": split.test, "val_patients": split.val,
        "train_patients": split.train, "patients": args.patients, "seed": args.seed,
        "max_epochs": args.max_epochs, "epochs_run": fit.epochs, "best_epoch": fit.best_epoch,
        "train_seconds": fit.train_seconds, "val_metrics": fit.val_metrics,
    })
    write_matches(tmp / "matches.csv", zip(test_pairs, predictions, strict=True))
    shown = _figure_pair(test_pairs)
    pair_figure(tmp / "figure.png", shown, predictions[test_pairs.index(shown)], config.crops,
                cache_dir)

    print()
    print(f"Held-out patients {', '.join(split.test)}: {results[MODEL_NAME]['n_pairs']} scan "
          f"pairs, {results[MODEL_NAME]['n_gt_matches']} ground-truth matches, "
          f"{results[MODEL_NAME]['n_gt_new']} new and "
          f"{results[MODEL_NAME]['n_gt_disappeared']} disappeared nodes")
    print(comparison_table(results))
    print(f"(a {fit.epochs}-epoch demo run on {len(split.train)} training patients; see "
          "benchmarks/ for cross-validated numbers)")
    print()
    return "\n".join([
        f"model:    {out / 'run' / fit.checkpoint.name}",
        f"metrics:  {out / 'metrics.json'}",
        f"matches:  {out / 'matches.csv'}",
        f"figure:   {out / 'figure.png'} ({shown.src.scan_id} -> {shown.dst.scan_id})"])
