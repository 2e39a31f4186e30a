"""The recipe of the models that ship with lngraph (``lngraph models``), rerunnable by anyone.

1. ``lite-image``: the ``lite`` graph matcher with CT crops, trained on a synthetic
   ``default`` cohort (``--image-patients`` patients, seed ``--image-seed``; 80 % train, 20 %
   validation, which chooses the epoch and the decision threshold); ``--image-extra N`` adds
   N synthetic patients of seed ``--image-extra-seed`` to its training.
2. ``lite-geometry``: the geometry-only ``lite`` matcher, pre-trained on a synthetic cohort
   without images (``--geometry-patients``, seed ``--geometry-seed``), then fine-tuned on that
   cohort together with the DeepLesion DLS validation pairs (``../shared/data/dls/valid.json``)
   of 80 % of the DLS patients; the other 20 % are held out of every training. (Fine-tuning
   on the DLS pairs alone made a model that recalled 15 % of the matches of synthetic
   patients.) Without the DLS file the synthetic model is shipped as is, and its card says so.
3. Quality on data no model saw: a synthetic ``default`` cohort of another seed
   (``--test-seed``) for both models, beside ``nearest``; the held-out DLS patients for the
   geometry model, beside its synthetic-only start, ``nearest`` and ``lgm``.

Writes ``lngraph/models/shipped/NAME.ckpt`` and the model card ``NAME.md`` of each, and
``benchmarks/results/shipped_models.md``. Synthetic cohorts and each step's model are kept
under ``benchmarks/.data``, so an interrupted run resumes after its last finished step.

    python benchmarks/ship_models.py                 # about an hour on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from cohorts import cached_cohort, extra_cohort

from lngraph.bench.registry import build_method
from lngraph.bench.report import commit, machine
from lngraph.data.cache import image_digest
from lngraph.data.folds import holdout_split
from lngraph.io.atomic import atomic_path
from lngraph.io.cohort import Cohort, read_cohort, write_cohort
from lngraph.io.dls import read_dls
from lngraph.metrics import evaluate_predictions
from lngraph.models import load_checkpoint, predict_pairs
from lngraph.models.config import preset
from lngraph.models.zoo import SHIPPED_DIR
from lngraph.train import fit_matcher, recalibrate_checkpoint
from lngraph.train.calibrate import DEFAULT_GRID

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data"
RESULTS = HERE / "results"
DLS = HERE.parent.parent / "shared" / "data" / "dls" / "valid.json"
ROWS = (("precision", "precision"), ("recall", "recall"), ("f1", "F1"), ("nlr", "NLR"),
        ("new_precision", "new prec."), ("dlr", "DLR"), ("disappeared_precision",
                                                         "disapp. prec."))


def fit(cohort: Cohort, config, out: Path, *, epochs: int, init_from=None,
        extra: Cohort | None = None) -> dict:
    """Train one model into ``out``, or reuse the model an earlier run with the same settings
    left there (``out/fit.json``), so that an interrupted recipe resumes. ``cohort`` is split
    80 % training / 20 % validation; the patients of ``extra`` join the training only."""
    train, val = holdout_split(cohort.patients, 0.2, seed=0)
    settings = {"cohort": str(cohort.root), "patients": len(cohort.patients),
                "config": config.name, "geometry_only": config.model.geometry_only,
                "epochs": epochs, "init_from": None if init_from is None else str(init_from),
                "init_from_sha256": None if init_from is None else image_digest(init_from)}
    if extra is not None:
        settings["extra"] = {"cohort": str(extra.root), "patients": len(extra.patients)}
        train = [*train, *extra.patients]
        cohort = Cohort([*cohort.scans.values(), *extra.scans.values()], root=cohort.root)
    record = out / "fit.json"
    if record.is_file():
        done = json.loads(record.read_text(encoding="utf-8"))
        if done.get("settings") == settings and Path(done["checkpoint"]).is_file():
            print(f"  reusing {done['checkpoint']}", flush=True)
            val_f1 = recalibrate_if_stale(Path(done["checkpoint"]), cohort)
            if val_f1 is not None:
                done["val_f1"] = val_f1
                record.write_text(json.dumps(done, indent=2) + "\n", encoding="utf-8")
            return {**done, "checkpoint": Path(done["checkpoint"])}
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    result = fit_matcher(cohort, config, train_patients=train, val_patients=val, out_dir=out,
                         max_epochs=epochs, progress=False, accelerator="cpu",
                         init_from=init_from)
    done = {"settings": settings, "checkpoint": str(result.checkpoint),
            "train_patients": len(train), "val_patients": len(val), "epochs": result.epochs,
            "best_epoch": result.best_epoch, "minutes": (time.perf_counter() - start) / 60,
            "val_f1": result.val_metrics.get("f1")}
    record.write_text(json.dumps(done, indent=2) + "\n", encoding="utf-8")
    return {**done, "checkpoint": result.checkpoint}


def recalibrate_if_stale(checkpoint: Path, cohort: Cohort) -> float | None:
    """Choose the threshold and the confidence map of a reused model again on its validation
    patients when it was calibrated on another threshold grid than today's
    (:func:`lngraph.train.recalibrate_checkpoint`; the weights stay); the new validation F1,
    or ``None`` when nothing changed."""
    _, _, extra = load_checkpoint(checkpoint)
    tried = sorted(float(t) for t in (extra.get("calibration") or {}).get("scores", {}))
    if tried and tried != sorted(DEFAULT_GRID):
        result = recalibrate_checkpoint(checkpoint, cohort=cohort)
        print(f"  recalibrated on the current threshold grid: threshold "
              f"{result.config.model.similarity_threshold:g}", flush=True)
        return result.val_metrics.get("f1")
    return None


def score_model(checkpoint: Path, cohort: Cohort) -> dict:
    model, _, _ = load_checkpoint(checkpoint)
    pairs = cohort.pairs()
    with tempfile.TemporaryDirectory(prefix="lngraph-ship-") as cache:
        predictions = predict_pairs(model, pairs, cache_dir=cache)
    return evaluate_predictions(cohort, {(p.src.scan_id, p.dst.scan_id): pred
                                         for p, pred in zip(pairs, predictions, strict=True)},
                                pairs)


def score_method(name: str, cohort: Cohort) -> dict:
    method = build_method(name)
    pairs = cohort.pairs()
    return evaluate_predictions(cohort, {(p.src.scan_id, p.dst.scan_id): method.predict(p)
                                         for p in pairs}, pairs)


def table(rows: dict[str, dict]) -> list[str]:
    out = ["| model | " + " | ".join(label for _, label in ROWS) + " |",
           "|---|" + "---|" * len(ROWS)]
    for name, metrics in rows.items():
        cells = ["n/a" if metrics.get(key) is None else f"{100 * metrics[key]:.1f}"
                 for key, _ in ROWS]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return out


def card(name: str, summary: str, recipe: list[str], quality: list[str], limits: list[str],
         header: list[str]) -> str:
    return "\n".join([f"# Model card: `{name}`", "", summary, "", *header, "",
                      "## Training data and recipe", "", *recipe, "",
                      "## Measured quality (pairs the model never saw)", "", *quality, "",
                      "## Limits", "", *limits, ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-patients", type=int, default=100)
    parser.add_argument("--image-seed", type=int, default=0)
    parser.add_argument("--image-epochs", type=int, default=15)
    parser.add_argument("--image-extra", type=int, default=200, metavar="N",
                        help="synthetic patients with images of another seed "
                             "(--image-extra-seed) that join the image model's training "
                             "(validation stays on the --image-patients cohort)")
    parser.add_argument("--image-extra-seed", type=int, default=12)
    parser.add_argument("--geometry-patients", type=int, default=200)
    parser.add_argument("--geometry-seed", type=int, default=11)
    parser.add_argument("--geometry-epochs", type=int, default=30)
    parser.add_argument("--dls-epochs", type=int, default=30,
                        help="epochs of the joint synthetic + DLS fine-tuning")
    parser.add_argument("--dls-test-fraction", type=float, default=0.2,
                        help="DLS patients held out of training, for the card's test")
    parser.add_argument("--test-patients", type=int, default=30)
    parser.add_argument("--test-seed", type=int, default=101)
    parser.add_argument("--dls-file", type=Path, default=DLS)
    parser.add_argument("--workers", type=int, default=2, help="synth worker processes")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=SHIPPED_DIR)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = shlex.join(["python", "benchmarks/ship_models.py", *sys.argv[1:]])
    header = [f"- made by: `{command}`", f"- commit: `{commit()}`",
              f"- machine: {machine()}", f"- date: {time.strftime('%Y-%m-%d')}"]
    work = DATA / "ship"         # each step's model; a rerun resumes after the last one done
    args.out.mkdir(parents=True, exist_ok=True)

    print("[1/4] image model", flush=True)
    image_cohort = cached_cohort(DATA / f"leaderboard-p{args.image_patients}-s{args.image_seed}",
                                 args.image_patients, args.image_seed, workers=args.workers)
    extra = None
    if args.image_extra:
        folder = DATA / f"images-p{args.image_extra}-s{args.image_extra_seed}"
        cached_cohort(folder, args.image_extra, args.image_extra_seed, workers=args.workers)
        extra = read_cohort(extra_cohort(folder))
    image = fit(image_cohort, preset("lite"), work / "image", epochs=args.image_epochs,
                extra=extra)

    print("[2/4] geometry model: synthetic pre-training", flush=True)
    geo_cohort = cached_cohort(
        DATA / f"geometry-p{args.geometry_patients}-s{args.geometry_seed}",
        args.geometry_patients, args.geometry_seed, images=False, workers=args.workers)
    geo_config = preset("lite").with_values({"model.geometry_only": True})
    geo_pre = fit(geo_cohort, geo_config, work / "geometry-pre", epochs=args.geometry_epochs)
    dls = dls_test = None
    geo = geo_pre
    if args.dls_file.is_file():
        print("[2/4] geometry model: synthetic + DLS pairs (DLS test patients held out)",
              flush=True)
        dls = read_cohort(write_cohort(work / "dls", read_dls(args.dls_file)))
        dls_trainval, dls_held = holdout_split(dls.patients, args.dls_test_fraction, seed=0)
        dls_test = dls.subset(dls_held)
        joint = read_cohort(write_cohort(work / "joint", [
            *geo_cohort.scans.values(), *dls.subset(dls_trainval).scans.values()]))
        geo = fit(joint, geo_config, work / "geometry-joint", epochs=args.dls_epochs,
                  init_from=geo_pre["checkpoint"])

    print("[3/4] quality on unseen data", flush=True)
    test = cached_cohort(DATA / f"leaderboard-p{args.test_patients}-s{args.test_seed}",
                         args.test_patients, args.test_seed, workers=args.workers)
    synthetic = {"`lite-image`": score_model(image["checkpoint"], test),
                 "`lite-geometry`": score_model(geo["checkpoint"], test),
                 "`nearest` (baseline)": score_method("nearest", test)}
    real = {}
    if dls_test is not None:
        lgm = build_method("lgm", options={"epochs": 10})
        train, val = holdout_split(geo_cohort.patients, 0.2, seed=0)
        lgm.fit(geo_cohort.subset(train), geo_cohort.subset(val))
        pairs = dls_test.pairs()
        real = {"`lite-geometry`": score_model(geo["checkpoint"], dls_test),
                "`lite-geometry` before the DLS pairs (synthetic only)":
                score_model(geo_pre["checkpoint"], dls_test),
                "`nearest` (baseline)": score_method("nearest", dls_test),
                "`lgm` (fitted on the synthetic pre-training cohort)": evaluate_predictions(
                    dls_test, {(p.src.scan_id, p.dst.scan_id): lgm.predict(p) for p in pairs},
                    pairs)}

    print("[4/4] writing", flush=True)
    test_text = (f"Synthetic `default` cohort, seed {args.test_seed} (no model saw it), "
                 f"{args.test_patients} patients, {len(test.pairs())} consecutive scan pairs "
                 f"(metrics in %, pooled over pairs):")
    quality_synth = [test_text, "", *table(synthetic)]
    quality_dls = ([f"The DLS test patients ({len(dls_test.patients)} of {len(dls.patients)} "
                    f"patients, held out of every training; {len(dls_test.pairs())} consecutive "
                    "pairs; real lesion geometry, no images):", "", *table(real)]
                   if dls_test is not None else
                   ["The DLS pairs were not available: not measured."])

    def recipe(run: dict, what: str) -> list[str]:
        return [what, "", f"- {run['train_patients']} training / {run['val_patients']} "
                f"validation patients; {run['epochs']} epochs run, epoch {run['best_epoch']} "
                f"kept; {run['minutes']:.1f} min on this machine; validation F1 "
                f"{100 * (run['val_f1'] or float('nan')):.1f} %"]

    cards = {
        "lite-image": card(
            "lite-image", "The `lite` graph matcher with CT crops (appearance + size + "
            "aligned position, attention within and across the scans, dual-softmax assignment "
            "with learned matchability).", recipe(image, (
                f"Synthetic `default` cohort, seed {args.image_seed}, {args.image_patients} "
                "patients with rendered CT (`lngraph synth`)"
                + (f", and {args.image_extra} more training patients of seed "
                   f"{args.image_extra_seed}" if args.image_extra else "")
                + "; preset `lite`, "
                f"{args.image_epochs} epochs at most, early stopping and the decision "
                "threshold on the validation patients.")), quality_synth,
            ["- Appearance was learned on synthetic phantoms only: on real CT texture it may "
             "help less than on the phantoms, or hurt. Use `lite-geometry` when in doubt, and "
             "train your own (`lngraph train`) when you have annotated follow-up pairs.",
             "- Abdominal lymph nodes of adults; scans of one patient in one body position."],
            header),
        "lite-geometry": card(
            "lite-geometry", "The geometry-only `lite` graph matcher: node centres (after a "
            "robust alignment of the two scans) and sizes; no images needed.",
            recipe(geo_pre, (
                f"Pre-trained on a synthetic `default` cohort without images, seed "
                f"{args.geometry_seed}, {args.geometry_patients} patients:"))
            + ([""] + recipe(geo, (
                "then fine-tuned on that cohort together with the DeepLesion DLS validation "
                f"pairs of {len(dls.patients) - len(dls_test.patients)} patients (real lesion "
                "geometry; Cai et al., CVPR 2021; CC BY-SA 4.0); the other "
                f"{len(dls_test.patients)} DLS patients are held out for the test below:"))
               if dls_test is not None else ["", "Not fine-tuned: the DLS pairs were absent."]),
            quality_synth + [""] + quality_dls,
            ["- Position and size only: nodes that moved by more than their neighbours' "
             "spacing or changed size a lot are its errors.",
             "- DLS holds lesions of every kind, not only lymph nodes."], header),
    }
    for name, text in cards.items():
        source = image["checkpoint"] if name == "lite-image" else geo["checkpoint"]
        with atomic_path(args.out / f"{name}.ckpt") as tmp:
            shutil.copyfile(source, tmp)
        with atomic_path(args.out / f"{name}.md") as tmp:
            Path(tmp).write_text(text, encoding="utf-8")
    report = "\n".join(["# Shipped models", "", *header, "", "## Synthetic, unseen seed", "",
                        *quality_synth, "", "## DLS", "", *quality_dls, ""])
    with atomic_path(RESULTS / "shipped_models.md") as tmp:
        Path(tmp).write_text(report, encoding="utf-8")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
