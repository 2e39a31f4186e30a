"""Real-texture benchmark: does appearance learned on phantoms help or hurt on real CT texture?

Cohorts are made by :func:`lngraph.synth.generate_texture_cohort` from the one real CT of the
reference data (``../shared/data/real_ct/lung1_image.nrrd``, a chest CT of 48 slices of 5 mm),
split by slice: slices 0–23 are the TRAINING half, slices 24–47 the BENCHMARK half; no voxel
of one half is ever sampled for a cohort of the other.

1. Two benchmark cohorts from the BENCHMARK half: ``--bench-patients`` patients with the
   default motion (:class:`~lngraph.synth.TextureParams`: residual motion with the median of
   real follow-ups, a lighter tail) and ``--wide-patients`` patients with wider motion
   (:data:`WIDE`: a tail closer to the real one). On both: the shipped ``lite-image`` and
   ``lite-geometry`` models and the untrained ``nearest`` baseline.
2. Transfer: ``lite-image`` fine-tuned (``init_from`` the shipped checkpoint) on
   ``--train-patients`` real-texture patients of the TRAINING half (``--val-patients`` of them
   kept for validation) together with phantom patients the shipped model was trained on
   (``benchmarks/.data/leaderboard-p100-s0``, so that it does not forget), by two recipes
   (:data:`RECIPES`): **A** validates (epoch, threshold, confidence) on the real-texture
   validation patients only; **B** adds phantom patients that the shipped model used for its
   own validation to the validation set, mixes in more phantom patients and takes a lower
   learning rate. Both are scored on the benchmark cohorts and, beside the shipped models,
   on unseen phantom patients (``leaderboard-p30-s101``) to check that they did not forget.
3. Writes ``benchmarks/results/real_texture.md`` and ``real_texture.csv``.

Cohorts, the crop cache and the fine-tuned models are kept under ``benchmarks/.data``, so a
rerun with the same settings only scores. Without the real CT the script says so and exits 0.

    python benchmarks/real_texture.py --threads 1        # about 20 minutes on one CPU thread
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from cohorts import cached_cohort
from provenance import commit

from lngraph.baselines import Nearest
from lngraph.bench.report import machine
from lngraph.data.cache import image_digest
from lngraph.io.atomic import write_text_atomic
from lngraph.io.cohort import Cohort, read_cohort
from lngraph.metrics.matching import pair_counts, summarize
from lngraph.models import load_checkpoint, predict_pairs
from lngraph.models.zoo import model_path
from lngraph.synth import TextureParams, generate_texture_cohort
from lngraph.synth.realism import nearest_neighbour_distances, pair_residuals, unmatched_share
from lngraph.synth.texture import META_NAME
from lngraph.train import fit_matcher

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data"
RESULTS = HERE / "results"
SOURCE = HERE.parent.parent / "shared" / "data" / "real_ct" / "lung1_image.nrrd"
#: The two halves of the real CT (array order k, half-open): disjoint by construction.
TRAIN_Z, BENCH_Z = (0, 24), (24, 48)
assert set(range(*TRAIN_Z)).isdisjoint(range(*BENCH_Z))
#: Wider follow-up motion: residuals after robust translation with a tail closer to the real
#: DeepLesion pairs (mean 10, p90 18 mm on this CT, against 11.1 and 22.2 mm).
WIDE = replace(TextureParams(), deformation_mm=(8.0, 20.0), rotation_deg=8.0,
               local_shift_mm=15.0, translation_mm=(15.0, 15.0, 8.0))
GEOMETRY = "`lite-geometry` (shipped, no images)"
IMAGE = "`lite-image` (shipped, phantom appearance)"
COLUMNS = (("precision", "precision"), ("recall", "recall"), ("f1", "F1"), ("nlr", "NLR"),
           ("new_precision", "new prec."), ("dlr", "DLR"),
           ("disappeared_precision", "disapp. prec."))


@dataclass(frozen=True)
class Recipe:
    """One way of fine-tuning ``lite-image`` (module docstring, step 2).

    Args:
        name: ``"A"``, ``"B"``.
        lr: Adam's learning rate.
        phantom_train: phantom patients of the shipped model's training set in the training mix.
        phantom_val: phantom patients of the shipped model's validation set added to the
            validation patients.
    """

    name: str
    lr: float
    phantom_train: int
    phantom_val: int

    @property
    def label(self) -> str:
        return f"`lite-image` fine-tuned {self.name}"

    def describe(self) -> str:
        val = ("the real-texture validation patients only" if not self.phantom_val else
               f"the real-texture validation patients + {self.phantom_val} phantom patients "
               "of the shipped model's own validation set")
        return (f"lr {self.lr:g}, {self.phantom_train} phantom training patients; "
                f"validation on {val}")


RECIPES = {"A": Recipe("A", lr=3e-4, phantom_train=30, phantom_val=0),
           "B": Recipe("B", lr=1e-4, phantom_train=60, phantom_val=10)}


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def texture_cohort(folder: Path, source: Path, z_range: tuple[int, int], patients: int,
                   seed: int, prefix: str, params: TextureParams
                   ) -> tuple[Cohort, float | None, bool]:
    """The real-texture cohort cached in ``folder``, generated again when it is missing or
    was made from another source file, slices, seed, size or parameters; with the seconds its
    generation took (recorded in ``<folder>.made.json``; ``None`` when unknown) and whether it
    was reused."""
    meta_path = folder / META_NAME
    made = folder.with_name(folder.name + ".made.json")
    wanted = {"z_range": list(z_range), "seed": seed, "patients": patients,
              "id_prefix": prefix, "params": json.loads(json.dumps(asdict(params)))}
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if ({k: meta.get(k) for k in wanted} == wanted
                and meta.get("source_sha256") == image_digest(source)):
            seconds = (json.loads(made.read_text(encoding="utf-8"))["seconds"]
                       if made.is_file() else None)
            return read_cohort(folder), seconds, True
    start = time.perf_counter()
    generate_texture_cohort(folder, source, z_range, patients, seed, params=params,
                            id_prefix=prefix)
    seconds = time.perf_counter() - start
    write_text_atomic(made, json.dumps({"seconds": seconds, "machine": machine()}) + "\n")
    return read_cohort(folder), seconds, False


def pair_predictions(cohort: Cohort, predict) -> dict:
    """``{(src, dst): PairPrediction}`` of every consecutive pair, from ``predict(pairs)``."""
    pairs = cohort.pairs()
    return {(p.src.scan_id, p.dst.scan_id): pred
            for p, pred in zip(pairs, predict(pairs), strict=True)}


def model_predictor(checkpoint: Path, cache: Path):
    model, _, _ = load_checkpoint(checkpoint)
    return lambda pairs: predict_pairs(model, pairs, cache_dir=cache)


def nearest_predictor(pairs):
    method = Nearest()
    return [method.predict(p) for p in pairs]


def scores(cohort: Cohort, predictions: dict) -> tuple[dict, list]:
    """Pooled metrics and the per-pair counts (for the bootstrap)."""
    pairs = cohort.pairs()
    counts = [pair_counts(p, predictions[(p.src.scan_id, p.dst.scan_id)]) for p in pairs]
    return summarize(counts), counts


def bootstrap_difference(a: list, b: list, keys: tuple[str, ...], rounds: int = 2000,
                         seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """Per metric of ``keys``: that of ``a`` minus that of ``b`` (pooled, in points) and a
    95 % interval from resampling the scan pairs (one per patient) with replacement."""
    rng = np.random.default_rng(seed)
    whole_a, whole_b = summarize(a), summarize(b)
    draws: dict[str, list] = {key: [] for key in keys}
    for _ in range(rounds):
        pick = rng.integers(0, len(a), len(a))
        sa, sb = summarize([a[i] for i in pick]), summarize([b[i] for i in pick])
        for key in keys:
            if np.isfinite(sa[key] - sb[key]):
                draws[key].append(100 * (sa[key] - sb[key]))
    out = {}
    for key in keys:
        lo, hi = np.percentile(draws[key], [2.5, 97.5]) if draws[key] else (np.nan, np.nan)
        out[key] = (100 * (whole_a[key] - whole_b[key]), float(lo), float(hi))
    return out


def pct(value: float) -> str:
    """A fraction as a percentage with one decimal, ``n/a`` when undefined (0/0)."""
    return f"{100 * value:.1f}" if np.isfinite(value) else "n/a"


def points(value: float) -> str:
    """A difference in points with a sign, ``n/a`` when undefined."""
    return f"{value:+.1f}" if np.isfinite(value) else "n/a"


def table(rows: dict[str, dict]) -> list[str]:
    out = ["| model | " + " | ".join(label for _, label in COLUMNS) + " | new / disapp. found |",
           "|---|" + "---|" * (len(COLUMNS) + 1)]
    for name, m in rows.items():
        cells = [pct(m.get(key, np.nan)) for key, _ in COLUMNS]
        found = (f"{m['n_correct_new']}/{m['n_gt_new']} · "
                 f"{m['n_correct_disappeared']}/{m['n_gt_disappeared']}")
        out.append(f"| {name} | " + " | ".join(cells) + f" | {found} |")
    return out


def describe(cohort: Cohort, folder: Path) -> list[str]:
    """Size and realism statistics of a real-texture cohort, beside the real targets."""
    meta = json.loads((folder / META_NAME).read_text(encoding="utf-8"))
    pairs = cohort.pairs()
    nodes = [len(s.nodes) for s in cohort.scans.values()]
    residual = pair_residuals(pairs)
    nn = nearest_neighbour_distances(s.nodes for s in cohort.scans.values())
    scans = [s for r in meta["patient_records"] for s in r["scans"]]
    placed = {k: sum(r["placed"][k] for r in meta["patient_records"])
              for k in ("contrast", "tissue", "body")}
    rms = [r["deformation_rms_mm"] for r in meta["patient_records"]]

    def span(key: str, fmt: str) -> str:
        values = [s[key] for s in scans]
        return f"{min(values):{fmt}}–{max(values):{fmt}}"

    p = meta["params"]
    return [
        f"{len(cohort.patients)} patients, {len(pairs)} scan pairs, {sum(nodes)} annotated "
        f"nodes (median {np.median(nodes):.0f} per scan), "
        f"{sum(len(p.gt_matches()) for p in pairs)} matched, "
        f"{sum(len(p.gt_new()) for p in pairs)} new, "
        f"{sum(len(p.gt_disappeared()) for p in pairs)} disappeared "
        f"(unmatched share {100 * unmatched_share(pairs):.1f} %); slices "
        f"{meta['z_range'][0]}–{meta['z_range'][1] - 1} of the source "
        f"(z {meta['slab_z_mm'][0]:.1f} … {meta['slab_z_mm'][1]:.1f} mm), seed {meta['seed']}",
        f"follow-up motion: rotation ≤ {p['rotation_deg']:g}°, translation ≤ "
        f"{'/'.join(f'{v:g}' for v in p['translation_mm'])} mm, deformation RMS "
        f"{min(rms):.1f}–{max(rms):.1f} mm, local shifts ≤ {p['local_shift_mm']:g} mm; "
        f"residual after robust translation: median {np.median(residual):.1f} mm, mean "
        f"{np.mean(residual):.1f}, p90 {np.percentile(residual, 90):.1f} (real, DLS: median "
        "8.2, mean 11.1, p90 22.2); nearest-neighbour distance median "
        f"{np.median(nn):.1f} mm (real, NIH abdominal: 24.0)",
        f"scan differences drawn per scan: slice thickness {span('slice_mm', '.1f')} mm, pixel "
        f"{span('pixel_mm', '.2f')} mm, kernel blur σ {span('blur_mm', '.2f')} mm, added "
        f"noise {span('noise_hu', '.0f')} HU, HU offset "
        f"{span('offset_hu', '+.0f').replace('–', ' to ')}",
        f"node places: {placed['contrast']} in fat/soft tissue with ≥ 30 HU contrast, "
        f"{placed['tissue']} in soft tissue without it, {placed['body']} elsewhere in the body",
    ]


def fine_tune(recipe: Recipe, args, train_cohort: Cohort, phantom: Cohort, cache: Path
              ) -> dict:
    """Fine-tune the shipped ``lite-image`` by ``recipe``, or reuse the model an earlier run
    with the same settings left in ``DATA/real-texture-finetune-<name>``."""
    shipped = model_path("lite-image", images=True)
    _, config, extra = load_checkpoint(shipped)
    rt = train_cohort.patients
    phantom_val = sorted(extra["val_patients"])[:recipe.phantom_val]
    phantom_train = sorted(extra["train_patients"])[:recipe.phantom_train]
    val = rt[:args.val_patients] + phantom_val
    train = rt[args.val_patients:] + phantom_train
    cohort = Cohort([s for p in rt for s in train_cohort.scans_of(p)]
                    + [s for p in phantom_train + phantom_val for s in phantom.scans_of(p)])
    config = config.with_values({"optim.lr": recipe.lr, "optim.patience": args.patience})
    out = DATA / f"real-texture-finetune-{recipe.name}"
    settings = {"recipe": asdict(recipe), "train": train, "val": val, "epochs": args.epochs,
                "patience": args.patience, "init_from": str(shipped),
                "init_from_sha256": image_digest(shipped),   # a re-shipped model: tune again
                "train_cohort": str(train_cohort.root),
                "train_cohort_sha256": {name: image_digest(train_cohort.root / name)
                                        for name in ("nodes.csv", META_NAME)},
                "threads": args.threads}
    record = out / "fit.json"
    if record.is_file():
        done = json.loads(record.read_text(encoding="utf-8"))
        if done.get("settings") == settings and Path(done["checkpoint"]).is_file():
            log(f"  reusing {done['checkpoint']} (fine-tuned in {done['minutes']:.1f} min)")
            return {**done, "reused": True}
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    result = fit_matcher(cohort, config, train_patients=train, val_patients=val, out_dir=out,
                         max_epochs=args.epochs, progress=False, accelerator="cpu",
                         cache_dir=cache, init_from=shipped)
    done = {"settings": settings, "checkpoint": str(result.checkpoint),
            "minutes": (time.perf_counter() - start) / 60, "epochs": result.epochs,
            "best_epoch": result.best_epoch, "train_seconds": result.train_seconds,
            "val_metrics": {k: v for k, v in result.val_metrics.items()
                            if isinstance(v, int | float)},
            "calibration": result.extra.get("calibration"),
            "calibration_skipped": result.calibration_skipped}
    write_text_atomic(record, json.dumps(done, indent=2) + "\n")
    return {**done, "reused": False}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE, help="the real CT")
    parser.add_argument("--bench-patients", type=int, default=80)
    parser.add_argument("--bench-seed", type=int, default=1)
    parser.add_argument("--wide-patients", type=int, default=40,
                        help="patients of the wider-motion benchmark cohort (0 skips it)")
    parser.add_argument("--wide-seed", type=int, default=3)
    parser.add_argument("--train-patients", type=int, default=70,
                        help="real-texture patients of the TRAINING half (validation included)")
    parser.add_argument("--train-seed", type=int, default=2)
    parser.add_argument("--val-patients", type=int, default=10,
                        help="of --train-patients, kept for validation")
    parser.add_argument("--recipes", nargs="*", default=list(RECIPES), choices=list(RECIPES),
                        help="fine-tuning recipes to run (none: score the shipped models only)")
    parser.add_argument("--phantom-test-patients", type=int, default=30,
                        help="unseen phantom patients (seed 101) for the forgetting check; "
                             "0 skips it")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not args.source.is_file():
        print(f"real CT not found at {args.source}: nothing to do (the real reference data is "
              "only present in the development workplace; give --source PATH)")
        return 0
    torch.set_num_threads(args.threads)
    command = shlex.join(["python", "benchmarks/real_texture.py", *sys.argv[1:]])
    started = time.perf_counter()
    header = [f"- command: `{command}`", f"- commit: `{commit()}` (the working tree may hold "
              "uncommitted changes)", f"- machine: {machine()} (at the start)",
              f"- date: {time.strftime('%Y-%m-%d')}"]
    cache = DATA / "real-texture-crops"
    timings: list[tuple[str, float | None, str]] = []     # (step, seconds, note)
    reused = "made by an earlier run and reused by this one"

    def timed(name: str, start: float) -> None:
        timings.append((name, time.perf_counter() - start, ""))

    log(f"[1/4] benchmark cohorts from slices {BENCH_Z[0]}–{BENCH_Z[1] - 1}: "
        f"{args.bench_patients} patients (default motion), {args.wide_patients} (wide motion)")
    benches = {"default": (DATA / f"real-texture-bench-p{args.bench_patients}"
                                  f"-s{args.bench_seed}", args.bench_patients, args.bench_seed,
                           "B", TextureParams())}
    if args.wide_patients > 0:
        benches["wide"] = (DATA / f"real-texture-wide-p{args.wide_patients}-s{args.wide_seed}",
                           args.wide_patients, args.wide_seed, "W", WIDE)
    cohorts = {}
    for key, (folder, n, seed, prefix, params) in benches.items():
        cohorts[key], seconds, again = texture_cohort(folder, args.source, BENCH_Z, n, seed,
                                                      prefix, params)
        timings.append((f"{key} benchmark cohort ({n} patients)", seconds,
                        reused if again else ""))

    log("[2/4] shipped models and nearest on the benchmark cohorts")
    t0 = time.perf_counter()
    predictors = {IMAGE: model_predictor(model_path("lite-image", images=True), cache),
                  GEOMETRY: model_predictor(model_path("lite-geometry", images=False), cache),
                  "`nearest` (untrained baseline)": nearest_predictor}
    rows: dict[str, dict] = {key: {} for key in cohorts}
    counts: dict[str, dict] = {key: {} for key in cohorts}

    def score(key: str, name: str, predict) -> None:
        rows[key][name], counts[key][name] = scores(cohorts[key],
                                                    pair_predictions(cohorts[key], predict))
        m = rows[key][name]
        log(f"  {key}: {name}: F1 {pct(m['f1'])}, NLR {pct(m['nlr'])}, DLR {pct(m['dlr'])}")

    for key in cohorts:
        for name, predict in predictors.items():
            score(key, name, predict)
    timed("scoring the shipped models and nearest", t0)

    tuned: dict[str, dict] = {}
    phantom_rows: dict[str, dict] = {}
    if args.recipes:
        log(f"[3/4] fine-tuning lite-image: {args.train_patients} real-texture patients from "
            f"slices {TRAIN_Z[0]}–{TRAIN_Z[1] - 1} ({args.val_patients} for validation) + "
            "phantom patients; recipes " + ", ".join(args.recipes))
        train_dir = DATA / f"real-texture-train-p{args.train_patients}-s{args.train_seed}"
        train, seconds, again = texture_cohort(train_dir, args.source, TRAIN_Z,
                                               args.train_patients, args.train_seed, "T",
                                               TextureParams())
        timings.append((f"training cohort ({args.train_patients} patients)", seconds,
                        reused if again else ""))
        phantom = cached_cohort(DATA / "leaderboard-p100-s0", 100, 0, workers=1)
        for name in args.recipes:
            recipe = RECIPES[name]
            tuned[name] = fine_tune(recipe, args, train, phantom, cache)
            timings.append((f"fine-tuning {name} (crops included)",
                            60 * tuned[name]["minutes"], reused if tuned[name]["reused"]
                            else ""))
            log(f"  {name}: {tuned[name]['epochs']} epochs, kept epoch "
                f"{tuned[name]['best_epoch']}, validation F1 "
                f"{pct(tuned[name]['val_metrics'].get('f1', np.nan))}")
            t0 = time.perf_counter()
            for key in cohorts:
                score(key, recipe.label, model_predictor(Path(tuned[name]["checkpoint"]), cache))
            timed(f"scoring fine-tuned {name}", t0)
        if args.phantom_test_patients > 0:
            log(f"[4/4] forgetting check on {args.phantom_test_patients} unseen phantom patients")
            t0 = time.perf_counter()
            test = cached_cohort(DATA / "leaderboard-p30-s101", 30, 101, workers=1)
            test = test.subset(test.patients[:args.phantom_test_patients])
            checkpoints = {"`lite-image` (shipped)": model_path("lite-image", images=True),
                           **{RECIPES[n].label: Path(tuned[n]["checkpoint"]) for n in tuned},
                           "`lite-geometry` (shipped)": model_path("lite-geometry",
                                                                   images=False)}
            for label, ckpt in checkpoints.items():
                phantom_rows[label], _ = scores(test, pair_predictions(
                    test, model_predictor(ckpt, cache)))
                log(f"  {label}: F1 {pct(phantom_rows[label]['f1'])}")
            timed("forgetting check", t0)

    total = time.perf_counter() - started
    if any(note for _, _, note in timings):
        made = sum(seconds or 0.0 for _, seconds, note in timings if note)
        timings.append(("this run", total, ""))
        total += made
    write_report(args, header, cohorts, benches, rows, counts, tuned, phantom_rows, timings,
                 total)
    log(f"done in {total / 60:.1f} min: {args.out / 'real_texture.md'}")
    return 0


#: What the benchmark does not show (written into the report as it is).
LIMITS = (
    "One real CT, and a chest CT rather than an abdominal one: every benchmark background comes "
    "from the same 24 slices (one patient, one scanner, one contrast phase), every training "
    "background from the other 24. Patients differ by box, pose, motion, nodes and scan "
    "effects, not by anatomy; the real-texture validation patients share their slices with the "
    "training patients.",
    "The inserted nodes are the phantom's nodes (same shape, texture and hilum model as the "
    "training phantoms): the benchmark tests robustness to real *background* texture, noise, "
    "kernels, slice thickness and HU offsets, not to the look of real lymph nodes.",
    "The follow-up deformation is a smooth field (no sliding organs, no breathing between "
    "lungs and chest wall, no bowel filling) and the background does not change between scans "
    "apart from the scan effects: real follow-ups differ more.",
    "New and disappeared nodes are few (about 8 % of the nodes, as in the paper's cohort), so "
    "NLR and DLR rest on a few dozen nodes: read their intervals, not only the point values.",
    "`lite-geometry` was fine-tuned on real DeepLesion geometry and `lite-image` was not, and "
    "they trained on different synthetic patients, so the image rows differ from the geometry "
    "row in more than appearance (compare them on unseen phantom patients too: forgetting "
    "table).",
)


def forgetting(phantom_rows: dict) -> list[str]:
    """The forgetting check, one line per fine-tuned model."""
    shipped = phantom_rows.get("`lite-image` (shipped)")
    if shipped is None:
        return []
    return [f"On unseen phantom patients {name} scores F1 {pct(m['f1'])} % (shipped "
            f"`lite-image` {pct(shipped['f1'])} %), NLR {pct(m['nlr'])} % "
            f"({pct(shipped['nlr'])} %), DLR {pct(m['dlr'])} % ({pct(shipped['dlr'])} %)."
            for name, m in phantom_rows.items() if "fine-tuned" in name]


def write_report(args, header, cohorts, benches, rows, counts, tuned, phantom_rows, timings,
                 total) -> None:
    import pandas as pd

    args.out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame([{"cohort": key, "model": name, **{k: m[k] for k, _ in COLUMNS},
                           **{k: v for k, v in m.items() if k.startswith("n_")}}
                          for key in rows for name, m in rows[key].items()])
    write_text_atomic(args.out / "real_texture.csv", frame.to_csv(index=False))
    titles = {"default": "Benchmark half, default motion",
              "wide": "Benchmark half, wide motion (`WIDE`)"}
    diffs, findings, verdicts, widths = [], [], [], []
    for key in rows:
        for name in rows[key]:
            if not name.startswith("`lite-image`"):
                continue
            result = bootstrap_difference(counts[key][name], counts[key][GEOMETRY],
                                          ("f1", "nlr", "dlr"))
            for metric, label in (("f1", "F1"), ("nlr", "NLR"), ("dlr", "DLR")):
                d, lo, hi = result[metric]
                diffs.append(f"| {key} | {name} | {label} | {points(d)} | "
                             f"[{points(lo)}, {points(hi)}] |")
                verdict = ("better than" if lo > 0 else "worse than" if hi < 0 else
                           "not distinguishable from")
                if metric != "f1" and np.isfinite(hi - lo):
                    widths.append(hi - lo)
                if lo > 0 or hi < 0:
                    verdicts.append(f"{name} {verdict} `lite-geometry` in {label} ({key})")
                findings.append(f"{titles[key].split(',')[1].strip()}: {name}: {label} "
                                f"{pct(rows[key][name][metric])} % against "
                                f"{pct(rows[key][GEOMETRY][metric])} % for `lite-geometry` "
                                f"({points(d)} points, 95 % interval [{points(lo)}, "
                                f"{points(hi)}]): {verdict} geometry alone.")
    lines = ["# Real-texture benchmark: appearance on real CT texture", "", *header, "",
             "## The cohorts", "",
             "Lymph-node-like nodes (the phantom's nodes: lobulated ellipsoids of 5–20 mm "
             "short axis, +20…+60 HU with internal texture, hilum, smooth edges) inserted into "
             "the real chest CT of the reference data (`../shared/data/real_ct/"
             "lung1_image.nrrd`, PyRadiomics test data, 512×512×48, 0.57×0.57×5 mm), in fat "
             "and soft tissue; the follow-up is the same real background after a rigid motion "
             "and a smooth deformation, with its own slice thickness, pixel size, kernel blur, "
             "noise and HU offset (`lngraph.synth.generate_texture_cohort`, docs/synth.md, "
             "*Real-texture cohorts*). The CT is split by slice: the benchmark cohorts use "
             f"slices {BENCH_Z[0]}–{BENCH_Z[1] - 1} only, every training and validation "
             f"patient slices {TRAIN_Z[0]}–{TRAIN_Z[1] - 1} only.", ""]
    for key, cohort in cohorts.items():
        lines += [f"**{titles[key]}.**", "",
                  *[f"- {line}" for line in describe(cohort, benches[key][0])], ""]
    lines += ["## Results", "",
              "Metrics in %, pooled over the scan pairs (one per patient); the last column "
              "counts the new and disappeared nodes found out of those there are.", ""]
    for key in rows:
        lines += [f"### {titles[key]}", "", *table(rows[key]), ""]
    lines += ["### Image models minus `lite-geometry`", "",
              "In points, with a 95 % interval from resampling the patients (2,000 rounds):", "",
              "| cohort | model | metric | difference | 95 % interval |", "|---|---|---|---|---|",
              *diffs, ""]
    if tuned:
        any_fit = next(iter(tuned.values()))["settings"]
        lines += ["## Fine-tuning recipes", "",
                  "Common: start from the shipped `lite-image` checkpoint, same `lite` config "
                  f"and augmentation (crop intensity and noise, flips, node drop, rotation, "
                  f"jitter), Adam with a cosine schedule, at most {any_fit['epochs']} epochs, "
                  f"early stopping after {any_fit['patience']} epochs without improvement of "
                  "the validation score, then the decision threshold and the confidence map "
                  "calibrated on the validation patients; "
                  f"{args.train_patients - args.val_patients} real-texture training patients "
                  f"and {args.val_patients} real-texture "
                  "validation patients, all from the TRAINING half; phantom patients from "
                  "`leaderboard-p100-s0` (the shipped model's own cohort). The benchmark half "
                  "is never used for training, validation or calibration.", ""]
        for name, fit in tuned.items():
            val = fit["val_metrics"]
            threshold = (fit.get("calibration") or {}).get("threshold")
            lines.append(f"- **{name}**: {RECIPES[name].describe()}. Ran {fit['epochs']} "
                         f"epochs, kept epoch {fit['best_epoch']} (0-based); validation F1 "
                         f"{pct(val.get('f1', np.nan))} %, NLR {pct(val.get('nlr', np.nan))} "
                         f"%, DLR {pct(val.get('dlr', np.nan))} %; threshold "
                         f"{'not calibrated' if threshold is None else f'{threshold:g}'}; "
                         f"{fit['minutes']:.1f} min (crop extraction included).")
        lines += ["", "Recipe A is the plain recipe and was run first. B was written after "
                  "A's first run, which forgot on the phantom check below and did not beat "
                  "the shipped models on the benchmark: its validation set covers both kinds "
                  "of data (so the epoch and threshold are not fitted to the easier "
                  "real-texture validation pairs alone), it keeps more phantom patients and "
                  "moves less far from the shipped weights. B was fixed after one trial run "
                  "whose benchmark numbers were seen, so B's benchmark rows are not a blind "
                  "test; no other variant was tried.", ""]
    if phantom_rows:
        lines += ["## Forgetting check: unseen phantom patients", "",
                  f"Synthetic `default` cohort, seed 101 (no model saw it), "
                  f"{args.phantom_test_patients} patients:", "", *table(phantom_rows), ""]
    lines += ["## Run time", "",
              *[f"- {name}: " + ("unknown" if seconds is None else f"{seconds / 60:.1f} min")
                + (f" ({note})" if note else "") for name, seconds, note in timings],
              "- total, reused steps counted at the time they took (crops now come from the "
              f"cache): {total / 60:.1f} min", "",
              "## What the numbers say", "",
              "Computed from the tables above (a difference counts when its 95 % interval "
              "excludes 0).", "",
              ("In short: " + "; ".join(verdicts) if verdicts else
               "In short: no image model, shipped or fine-tuned, is distinguishable from "
               "`lite-geometry` in F1, NLR or DLR on the benchmark cohorts: on these "
               "real-texture backgrounds appearance neither helps nor hurts measurably")
              + (f" (the NLR and DLR intervals are up to {max(widths):.0f} points wide: a "
                 "difference of a few nodes cannot be resolved)." if widths else "."), "",
              *[f"- {line}" for line in findings],
              *[f"- {line}" for line in forgetting(phantom_rows)],
              "", "## Limits of this benchmark", "", *[f"- {line}" for line in LIMITS], ""]
    write_text_atomic(args.out / "real_texture.md", "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
