"""How far apart the scanner frames of training scans should be: ``matcher_geometry_frame``'s
translation augmentation (``optim.augment_translation_mm``) chosen on the DLS folds'
validation patients — or, with ``--setting KEY``, any other config value of that model (e.g.
``optim.augment_drop``, the share of nodes each training scan loses).

For each value of ``--values`` (for the translation: mm per axis, each training scan on its
own) the geometry-only graph matcher with the frame prior is trained on every fold of the
DLS leaderboard (the same 5 patient folds, seed 0; each fold's DLS training patients + the
200 synthetic patients of ``--extra-geometry``; epoch and threshold chosen on the fold's DLS
validation patients) and
scored on the fold's test patients. The value is chosen by the mean validation selection
score (the one that picks the epoch); the test columns are printed beside it for the record,
not for choosing.

Fold rows are appended to ``<stem>_folds.csv`` as they finish (``dls_translation`` for the
translation, ``dls_<key>`` otherwise, e.g. ``dls_augment_drop``); a fold whose row is there
already is skipped, so a rerun resumes and several processes can share the work;
``<stem>.md`` is written from every row of that file.

With ``--holdout`` a fifth of each fold's training patients (:func:`holdout_split`, seeded by
the fold) is held out from training and from validation, and each value is also scored on
those patients; the value is then chosen by the mean selection score on them. A score on the
patients that chose the epoch and the threshold favours the value whose validation curve is
noisiest (the best of many noisy epochs and thresholds looks better than it is); the held-out
patients chose nothing. The rows go to ``<stem>_holdout_folds.csv``.

Run: ``python benchmarks/dls_translation.py --values 0 10 20 30``,
``python benchmarks/dls_translation.py --setting optim.augment_drop --values 0.1 0.2 0.3 0.5``
and ``python benchmarks/dls_translation.py --setting model.ensemble --values 1 3 --holdout``
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import pandas as pd
import torch
from leaderboard import DATA, DLS, RESULTS, dls_cohort

from lngraph.bench.leaderboard import fold_row, score_pairs
from lngraph.cli.train import parse_settings
from lngraph.data.folds import FoldSplit, holdout_split, patient_folds
from lngraph.io.atomic import write_text_atomic
from lngraph.models import preset
from lngraph.train.ablations import GeometryFrame
from lngraph.train.method import MatcherMethod
from lngraph.train.selection import selection_score


def finished(csv: Path, value: float, fold: int) -> bool:
    """Whether ``csv`` already holds the row of (``value``, ``fold``)."""
    if not csv.is_file():
        return False
    rows = pd.read_csv(csv)
    return bool(((rows["value"] == value) & (rows["fold"] == fold)).any())


TRANSLATION = "optim.augment_translation_mm"
#: What the page calls a setting's values, and the page's title.
LABELS = {TRANSLATION: ("translation (mm per axis)", " mm",
                        "The frame prior's translation augmentation"),
          "optim.augment_drop": ("node drop (per node and scan)", "",
                                 "The share of nodes each training scan loses"),
          "model.ensemble": ("matchers (`model.ensemble`)", "",
                             "One matcher or an ensemble")}
#: Share of a fold's training patients held out with ``--holdout``.
HOLDOUT_FRACTION = 0.2


def stem(key: str, holdout: bool = False) -> str:
    """``dls_translation`` for the translation, ``dls_<last part of key>`` otherwise;
    ``_holdout`` appended with ``holdout``."""
    name = "dls_translation" if key == TRANSLATION else "dls_" + key.rsplit(".", 1)[-1]
    return name + "_holdout" * holdout


def run(values: list[float], extra: Path, folds: int, max_epochs: int, csv: Path,
        init: Path | None = None, settings: dict | None = None,
        key: str = TRANSLATION, holdout: bool = False) -> None:
    with dls_cohort(DLS) as cohort:
        splits = patient_folds(cohort.patients, folds, 0, 0.2)
        base = preset(GeometryFrame.base).with_values({**GeometryFrame.overrides,
                                                        **(settings or {})})
        kind = type(base.flat()[key])      # e.g. model.ensemble's int
        for value in values:      # matcher_geometry_frame's config with this value
            config = base.with_values({key: kind(value)})
            for k, split in enumerate(splits):
                if finished(csv, value, k):    # here, or by another process
                    continue
                held = ()
                if holdout:
                    train, held = holdout_split(split.train, HOLDOUT_FRACTION, seed=1000 + k)
                    split = FoldSplit(train, split.val, split.test)
                method = MatcherMethod(config, seed=0, max_epochs=max_epochs,
                                       extra_train=extra, init_from=init)
                row = fold_row(method, cohort, split, "consecutive")
                val = method.result.val_metrics
                line = {"value": value, "fold": k, "val_score": val["score"],
                        "val_f1": val["f1"], "test_f1": row["f1"], "test_nlr": row["nlr"],
                        "test_dlr": row["dlr"], "train_seconds": row["train_seconds"]}
                if held:
                    scores = score_pairs(method, cohort.pairs("consecutive", held))
                    line.update(holdout_patients=len(held),
                                holdout_score=selection_score(scores),
                                holdout_f1=scores["f1"])
                line = pd.DataFrame([line])
                line.to_csv(csv, mode="a", header=not csv.is_file(), index=False)
                print(line.to_string(index=False, header=False), flush=True)


def report(csv: Path, out: Path, command: str, extra: Path, max_epochs: int,
           init: Path | None = None, settings: dict | None = None,
           key: str = TRANSLATION) -> str:
    rows = pd.read_csv(csv).drop_duplicates(["value", "fold"])   # two processes, one fold
    holdout = "holdout_score" in rows
    extra_columns = {"holdout_score": ("holdout_score", "mean"),
                     "holdout_f1": ("holdout_f1", "mean")} if holdout else {}
    table = rows.groupby("value").agg(
        folds=("fold", "count"), val_score=("val_score", "mean"), val_f1=("val_f1", "mean"),
        **extra_columns, test_f1=("test_f1", "mean"), test_f1_std=("test_f1", "std"),
        test_nlr=("test_nlr", "mean"), test_dlr=("test_dlr", "mean"))
    complete = table[table["folds"] == table["folds"].max()]
    chosen = complete["holdout_score" if holdout else "val_score"].idxmax()
    by = ("the mean selection score on each fold's held-out training patients (a fifth of "
          "them, neither trained nor validated on)" if holdout
          else "the mean validation selection score over the folds")
    label, unit, title = LABELS.get(key, (f"`{key}`", "", f"`{key}`"))
    lines = [
        f"# {title}, chosen on "
        + ("held-out DLS training patients" if holdout else "DLS validation patients"), "",
        f"- command: `{command}`",
        "- model: `matcher_geometry_frame` (the `lite` geometry-only graph matcher with the "
        f"frame prior) with each value of `{key}`, at most {max_epochs} epochs; per fold the DLS "
        f"leaderboard's training patients{' not held out' * holdout} + the patients of "
        f"`{extra.name}`"
        + (f", each fold starting from `{init}`" if init else ", from random weights")
        + "".join(f"; `{k}` = {v!r}" for k, v in (settings or {}).items()),
        "- folds: the DLS leaderboard's 5 patient folds (seed 0); validation = the fold's DLS "
        "validation patients (epoch"
        + (f" and threshold); held out = {HOLDOUT_FRACTION:.0%} of the fold's DLS training "
           "patients, neither trained nor validated on (this choice)" if holdout else
           ", threshold and this choice)")
        + "; test = the fold's test patients",
        f"- chosen by {by}: **{chosen:g}{unit}** "
        "(values with fewer folds than the others are not candidates)", "",
        f"| {label} | folds | val. score | val. F1 (%) | "
        + ("held-out score | held-out F1 (%) | " if holdout else "")
        + "test F1 (%) | test NLR (%) | test DLR (%) |",
        "|---|---|---|---|" + "---|---|" * holdout + "---|---|---|",
    ]
    for value, r in table.iterrows():
        mark = " (chosen)" if value == chosen else ""
        held = (f"{r.holdout_score:.4f} | {100 * r.holdout_f1:.1f} | " if holdout else "")
        lines.append(f"| {value:g}{mark} | {int(r.folds)} | {r.val_score:.4f} | "
                     f"{100 * r.val_f1:.1f} | {held}{100 * r.test_f1:.1f} ± "
                     f"{100 * r.test_f1_std:.1f} | {100 * r.test_nlr:.1f} | "
                     f"{100 * r.test_dlr:.1f} |")
    lines += ["", "## Per fold", "",
              f"| {label} | fold | val. score | val. F1 | "
              + ("held-out patients | held-out score | held-out F1 | " if holdout else "")
              + "test F1 |",
              "|---|---|---|---|" + "---|---|---|" * holdout + "---|"]
    for r in rows.sort_values(["value", "fold"]).itertuples():
        held = (f"{r.holdout_patients} | {r.holdout_score:.4f} | {100 * r.holdout_f1:.1f} | "
                if holdout else "")
        lines.append(f"| {r.value:g} | {r.fold} | {r.val_score:.4f} | {100 * r.val_f1:.1f} | "
                     f"{held}{100 * r.test_f1:.1f} |")
    text = "\n".join(lines) + "\n"
    write_text_atomic(out, text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", default=TRANSLATION, metavar="SECTION.KEY",
                        help="the config value to choose (default: the translation, "
                             f"{TRANSLATION})")
    parser.add_argument("--values", type=float, nargs="*", default=[0.0, 10.0, 20.0, 30.0],
                        help="values to try (the translation's: standard deviations, mm per "
                             "axis)")
    parser.add_argument("--extra-geometry", type=Path,
                        default=DATA / "geometry-p200-s11-extra",
                        help="the id-prefixed synthetic geometry cohort that joins training "
                             "(made by benchmarks/leaderboard.py --extra-geometry)")
    parser.add_argument("--init-geometry", type=Path, default=None, metavar="CKPT",
                        help="start every fold from this checkpoint (a frame-prior model "
                             "pre-trained on synthetic geometry), not from random weights")
    parser.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE",
                        help="other config values of every run, e.g. optim.augment_drop=0.3")
    parser.add_argument("--holdout", action="store_true",
                        help="hold a fifth of each fold's training patients out of training "
                             "and validation and choose on them (module docstring)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--max-epochs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not DLS.is_file():
        print(f"skipped: the DLS pairs are not at {DLS}")
        return 0
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    name = stem(args.setting, args.holdout)
    csv = args.out / f"{name}_folds.csv"
    settings = parse_settings(args.set)
    run(args.values, args.extra_geometry, args.folds, args.max_epochs, csv, args.init_geometry,
        settings, args.setting, args.holdout)
    command = shlex.join(["python", "benchmarks/dls_translation.py", *sys.argv[1:]])
    print(report(csv, args.out / f"{name}.md", command, args.extra_geometry,
                 args.max_epochs, args.init_geometry, settings, args.setting))
    return 0


if __name__ == "__main__":
    sys.exit(main())
