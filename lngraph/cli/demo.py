"""``lngraph demo``: the whole method in a few minutes, on the CPU, with no input and no network.

1. synthesise a ``default`` cohort of :data:`DEFAULT_PATIENTS` patients
   (:func:`lngraph.synth.generate_cohort`) into ``OUT/cohort`` — or reuse the one there when it
   was made with the same patients and seed;
2. split its patients into training, validation and held-out test patients
   (:func:`lngraph.train.patient_folds`, first of 3 folds: a third of the patients is held
   out) and count the new and disappeared nodes of the held-out scan pairs (with the defaults
   there are both, so every row of the table has a value);
3. train the ``lite`` matcher (:func:`lngraph.train.fit_matcher`, the ``lite`` preset with
   :data:`DEMO_SETTINGS` for the short run) → ``OUT/run``;
4. train the ``lgm`` baseline (:class:`lngraph.baselines.LGM`) on the same patients;
5. match the held-out pairs with the model, ``nearest`` and ``lgm``, score them
   (:mod:`lngraph.metrics`) and print the table;
6. write ``OUT/metrics.json``, ``OUT/matches.csv`` (the model's matches of the held-out pairs)
   and ``OUT/figure.png`` (one held-out pair, :func:`lngraph.viz.match_figure`).

The defaults take about three minutes on two CPU cores; the numbers come from a short training
run on a small cohort and are no benchmark (``benchmarks/`` has those). Torch runs on one CPU
thread (:func:`one_torch_thread`), so the numbers do not depend on the number of cores.
Progress bars are drawn only on a terminal (and not with ``--quiet``); elsewhere each training
epoch is one line. Lightning's own messages (devices, tips, model summary) are silenced.

``OUT`` is written whole or not at all (:func:`lngraph.io.atomic.atomic_folder`). An earlier
demo's output there is replaced (its cohort reused through hard links when the settings match);
any other non-empty ``OUT`` is refused unless ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path

from lngraph.cli.common import (
    HelpFormatter,
    add_cache_dir,
    add_device,
    add_quiet,
    add_workers,
    cpu_count,
    examples,
)
from lngraph.cli.evaluate import TABLE_ROWS

DEFAULT_OUT = Path("lngraph_demo")
DEFAULT_PATIENTS = 24
DEFAULT_SEED = 0
DEFAULT_MAX_EPOCHS = 20
#: The synthetic cohort's difficulty preset (:mod:`lngraph.synth.presets`).
PRESET = "default"
#: Cross-validation folds the demo's split is the first of (a third of the patients is tested).
SPLIT_FOLDS = 3
#: Settings on top of the ``lite`` preset for the demo's short run: a 3× learning rate, so
#: that 20 epochs on a dozen patients reach a useful model.
DEMO_SETTINGS = {"optim.lr": 3e-3}
MODEL_NAME = "lngraph lite"
#: The baselines the model is compared with (``lngraph bench`` names).
BASELINES = ("nearest", "lgm")
#: Lightning's loggers, silenced during the demo (devices, tips, seed, model summary).
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")


DESCRIPTION = f"""\
Run the whole method end to end, with no input and no network: synthesise a
small cohort, train the lite matcher and the lgm baseline on some of its
patients, match the held-out patients' scan pairs with them and with the
nearest baseline, print the metrics of all three, and write the results.
About three minutes on 2 CPU cores with the defaults; the numbers come from a
short run on a small cohort and are no benchmark. Progress bars only on a
terminal; elsewhere one line per training epoch.

Output folder (written whole at the end; an earlier demo's output there is
replaced, any other non-empty folder only with --overwrite):
  OUT/cohort/        the synthetic cohort ({PRESET} preset; reused by a rerun
                     with the same --patients and --seed)
  OUT/run/model.ckpt the trained model (use it with `lngraph match`)
  OUT/metrics.json   metrics of the three methods on the held-out pairs
  OUT/matches.csv    the model's matches of the held-out pairs
  OUT/figure.png     one held-out pair drawn

Split: the first of {SPLIT_FOLDS} patient-level folds (lngraph.train.patient_folds):
a third of the patients is held out, a fifth of the rest validates. The
model is the lite preset with {', '.join(f'{k}={v:g}' for k, v in DEMO_SETTINGS.items())}.
"""

EXAMPLES = examples(
    "lngraph demo",
    "lngraph demo --out /tmp/demo --patients 36 --max-epochs 30",
    "lngraph demo --quiet > demo.log")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo",
        help="synthesise a cohort, train the lite model, compare it with nearest and lgm "
        "(minutes)",
        description=DESCRIPTION, epilog=EXAMPLES,
        formatter_class=HelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
                        help=f"output folder (default ./{DEFAULT_OUT})")
    parser.add_argument("--patients", type=int, default=DEFAULT_PATIENTS, metavar="N",
                        help=f"patients to synthesise, at least {SPLIT_FOLDS} "
                        f"(default {DEFAULT_PATIENTS})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, metavar="S",
                        help=f"seed of the cohort, the split and the training (default "
                        f"{DEFAULT_SEED})")
    parser.add_argument("--max-epochs", type=int, default=DEFAULT_MAX_EPOCHS, metavar="E",
                        help=f"training epochs at most, of the model and of lgm (default "
                        f"{DEFAULT_MAX_EPOCHS})")
    add_workers(parser, "synthesise the cohort and crop it", default=min(4, cpu_count()))
    add_cache_dir(parser)
    add_device(parser)
    add_quiet(parser)
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


def unmatched_counts(pairs) -> tuple[int, int]:
    """Ground-truth ``(new, disappeared)`` nodes over scan pairs."""
    return (sum(len(p.gt_new()) for p in pairs), sum(len(p.gt_disappeared()) for p in pairs))


def _matching_cohort(folder: Path, patients: int, seed: int):
    """The cohort in ``folder`` if ``lngraph synth`` made it with these settings, else None."""
    import json

    from lngraph.io.cohort import read_cohort
    from lngraph.io.errors import InputError

    try:
        meta = json.loads((folder / "synth.json").read_text(encoding="utf-8"))
        if (meta.get("patients"), meta.get("seed"), meta.get("images"), meta.get("layouts"),
                meta.get("preset", {}).get("name")) != (patients, seed, True, "prior", PRESET):
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


def _cohort(folder: Path, earlier: Path, patients: int, seed: int, workers: int, *,
            progress: bool = False):
    """The demo cohort in ``folder``: the one in ``earlier`` (a previous demo's) when it was
    made with these settings, else a new one."""
    from lngraph.io.cohort import read_cohort
    from lngraph.synth import generate_cohort

    if _matching_cohort(earlier, patients, seed) is not None:
        _link_tree(earlier, folder)
        cohort = read_cohort(folder)
        print(f"      reusing the cohort in {earlier} ({cohort!r})")
        return cohort
    generate_cohort(folder, patients, seed, preset=PRESET, workers=workers, progress=progress)
    return read_cohort(folder)


def _figure_pair(pairs):
    """The held-out pair to draw: one with new or disappeared nodes if any, the most nodes."""
    return max(pairs, key=lambda p: (len(p.gt_new()) + len(p.gt_disappeared()) > 0,
                                     len(p.src.nodes) + len(p.dst.nodes)))


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's informational messages off (GPU/TPU lines, tips, "Seed set", the model
    summary); its warnings and errors still show."""
    import lightning.fabric
    import lightning.pytorch  # noqa: F401  (its import sets its logger's level: first)

    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch on one CPU thread: the demo's tensors are small, so one thread is as fast as
    several on an idle machine, much faster on a busy one, and gives the same numbers whatever
    the number of cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _epoch_lines(max_epochs: int):
    """A Lightning callback printing one line per training epoch (loss, validation score)."""
    from lightning.pytorch.callbacks import Callback

    class EpochLines(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            metrics = trainer.callback_metrics
            parts = [f"      epoch {trainer.current_epoch + 1:>2}/{max_epochs}"]
            if "train_total" in metrics:
                parts.append(f"training loss {float(metrics['train_total']):.3f}")
            if "val_score" in metrics:
                parts.append(f"validation score {float(metrics['val_score']):.3f}")
            print(", ".join(parts), flush=True)

    return EpochLines()


def _check(args) -> None:
    from lngraph.cli.common import torch_device
    from lngraph.io.errors import InputError

    if args.patients < SPLIT_FOLDS:
        raise InputError("lngraph demo", f"--patients must be at least {SPLIT_FOLDS} (training, "
                         f"validation and test patients), got {args.patients}")
    if args.max_epochs < 1:
        raise InputError("lngraph demo", "--max-epochs must be at least 1")
    torch_device(args.device)  # --device cuda without a GPU: refused before any work


def run(args) -> int:
    from lngraph.cli.main import output_folder

    _check(args)
    out: Path = args.out
    replace = args.overwrite or is_demo_output(out)
    start = time.perf_counter()
    with output_folder(out, overwrite=replace, inputs=[("the crop cache", args.cache_dir)]) \
            as tmp, quiet_lightning(), one_torch_thread():
        written = _demo(args, out, tmp)
    print(written)
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0


def _percent(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.1f} %"


def _demo(args, out: Path, tmp: Path) -> str:
    """The demo, writing into ``tmp`` (which becomes ``out``); returns the lines naming the
    outputs (printed once they are in ``out``)."""
    from lngraph.baselines import REGISTRY
    from lngraph.cli.common import lightning_accelerator, show_progress, torch_device
    from lngraph.cli.match import pair_figure
    from lngraph.data.cache import default_cache_dir
    from lngraph.io.matches import write_matches
    from lngraph.metrics import evaluate_predictions, write_metrics_json
    from lngraph.models import load_checkpoint, predict_pairs, preset
    from lngraph.train import fit_matcher, patient_folds

    progress = show_progress(args)
    device, accelerator = torch_device(args.device), lightning_accelerator(args.device)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(step: str) -> float:
        nonlocal clock
        now = time.perf_counter()
        seconds[step] = round(now - clock, 1)
        clock = now
        return seconds[step]

    print(f"[1/5] synthesising {args.patients} patients ({PRESET} preset) into "
          f"{out / 'cohort'}", flush=True)
    cohort = _cohort(tmp / "cohort", out / "cohort", args.patients, args.seed, args.workers,
                     progress=progress)
    cohort.root = out / "cohort"  # where it will be: the checkpoint records the cohort folder
    split = patient_folds(cohort.patients, folds=SPLIT_FOLDS, seed=args.seed)[0]
    test_pairs = cohort.pairs("consecutive", split.test)
    new, gone = unmatched_counts(test_pairs)
    print(f"      {len(split.train)} training, {len(split.val)} validation and "
          f"{len(split.test)} held-out patients; the {len(test_pairs)} held-out scan pairs "
          f"have {new} new and {gone} disappeared nodes ({lap('synthesis'):.0f} s)")
    if not new or not gone:
        print(f"      note: with no {'new' if not new else 'disappeared'} node among the "
              "held-out pairs some rows read n/a; more --patients or another --seed give some")

    print(f"[2/5] training the lite model for at most {args.max_epochs} epochs", flush=True)
    cache_dir = args.cache_dir if args.cache_dir is not None else default_cache_dir(cohort)
    config = preset("lite").with_values(DEMO_SETTINGS)
    fit = fit_matcher(cohort, config, train_patients=split.train, val_patients=split.val,
                      out_dir=tmp / "run", max_epochs=args.max_epochs, seed=args.seed,
                      progress=progress, workers=args.workers, cache_dir=cache_dir,
                      accelerator=accelerator,
                      callbacks=[] if progress or args.quiet else [_epoch_lines(args.max_epochs)])
    model, config, _ = load_checkpoint(fit.checkpoint, map_location=device)
    validated = (f"; validation F1 {_percent(fit.val_metrics['f1'])} at the calibrated "
                 "threshold" if fit.validated and "f1" in fit.val_metrics else "")
    print(f"      kept epoch {fit.best_epoch + 1} of {fit.epochs}{validated} "
          f"({lap('training'):.0f} s)")

    print(f"[3/5] training the lgm baseline for {args.max_epochs} epochs at most", flush=True)
    lgm = REGISTRY["lgm"].build({}, seed=args.seed, max_epochs=args.max_epochs)
    lgm.fit(cohort.subset(split.train), cohort.subset(split.val) if split.val else None)
    print(f"      threshold {lgm.threshold:g} chosen on the validation patients "
          f"({lap('lgm'):.0f} s)")

    print(f"[4/5] matching the {len(test_pairs)} held-out scan pairs with {MODEL_NAME}, "
          f"{' and '.join(BASELINES)}", flush=True)
    predictions = predict_pairs(model, test_pairs, cache_dir=cache_dir, progress=progress)
    keys = [(p.src.scan_id, p.dst.scan_id) for p in test_pairs]
    methods = {"nearest": REGISTRY["nearest"](), "lgm": lgm}
    results = {MODEL_NAME: evaluate_predictions(cohort, dict(zip(keys, predictions, strict=True)),
                                                test_pairs)}
    for name in BASELINES:
        results[name] = evaluate_predictions(
            cohort, {k: methods[name].predict(p) for k, p in zip(keys, test_pairs, strict=True)},
            test_pairs)
    lap("matching")

    print("[5/5] writing results", flush=True)
    write_metrics_json(tmp / "metrics.json", {
        "methods": results, "test_patients": split.test, "val_patients": split.val,
        "train_patients": split.train, "patients": args.patients, "seed": args.seed,
        "preset": PRESET, "config": "lite", "config_settings": DEMO_SETTINGS,
        "max_epochs": args.max_epochs, "epochs_run": fit.epochs, "best_epoch": fit.best_epoch,
        "train_seconds": fit.train_seconds, "val_metrics": fit.val_metrics,
        "lgm": {"epochs": lgm.epochs, "threshold": lgm.threshold},
        "seconds": seconds,
    })
    write_matches(tmp / "matches.csv", zip(test_pairs, predictions, strict=True))
    shown = _figure_pair(test_pairs)
    pair_figure(tmp / "figure.png", shown, predictions[test_pairs.index(shown)], config.crops,
                cache_dir)

    summary = results[MODEL_NAME]
    print()
    print(f"Held-out patients {', '.join(split.test)}: {summary['n_pairs']} scan pairs, "
          f"{summary['n_gt_matches']} ground-truth matches, {summary['n_gt_new']} new and "
          f"{summary['n_gt_disappeared']} disappeared nodes")
    print(comparison_table(results))
    print(f"(a {fit.epochs}-epoch demo run on {len(split.train)} training patients; see "
          "benchmarks/ for cross-validated numbers)")
    print()
    return "\n".join([
        f"model:    {out / 'run' / fit.checkpoint.name}",
        f"metrics:  {out / 'metrics.json'}",
        f"matches:  {out / 'matches.csv'}",
        f"figure:   {out / 'figure.png'} ({shown.src.scan_id} -> {shown.dst.scan_id})"])
