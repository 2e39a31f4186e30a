"""Calibration of the graph matcher's match confidence on held-out patients.

A geometry-only synthetic cohort (``lngraph synth OUT --patients N --seed S --no-images``) is
split by patient into training, validation and test patients; ``lite`` is trained with
:func:`lngraph.train.fit_matcher` for a few epochs, which also fits the confidence map
:math:`\\sigma(\\operatorname{logit}(p)/T + b)` on the validation patients
(``protocol.calibrate_confidence``, :func:`lngraph.train.calibrate.fit_confidence`). On the test
patients the script scores the *assigned pairs* (every pair the Hungarian step assigns, kept or
not; :mod:`lngraph.metrics.calibration`) and the kept matches (those at or above the decision
threshold, what ``matches.csv`` holds): expected calibration error (15 equal-width bins) and
mean negative log-likelihood of the raw decision score :math:`p`, of a temperature alone
(:math:`b = 0`, fitted on the same validation patients) and of the stored map. The ECE's
uncertainty is a 95 % percentile bootstrap over test patients (2000 resamples). Decisions are
checked to be the same with and without the map.

Run: ``python benchmarks/calibration.py`` (a few minutes on a CPU; writes
``benchmarks/results/calibration.md``, and with ``--figure PNG`` the test reliability diagram).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import warnings
from datetime import date
from pathlib import Path

import numpy as np

from lngraph import __version__
from lngraph.io import read_cohort, write_text_atomic
from lngraph.metrics.calibration import (
    calibration_summary,
    match_events,
    reliability_curve,
    temperature_scale,
)
from lngraph.models import load_checkpoint, matcher_graphs, predict_graphs, preset
from lngraph.synth import generate_cohort
from lngraph.train import fit_matcher
from lngraph.train.calibrate import decision_key, fit_confidence

RESULTS = Path(__file__).resolve().parent / "results" / "calibration.md"
BOOTSTRAP = 2000


def split(patients: list[str], seed: int, train: float, val: float):
    """Patients shuffled by ``seed``, then cut into training, validation and test shares."""
    order = [str(p) for p in np.random.default_rng(seed).permutation(patients)]
    n_train, n_val = round(train * len(order)), round(val * len(order))
    return order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:]


def patient_events(model, cohort, patients) -> tuple[list, list, list, list]:
    """Per test patient ``(scores, labels)`` of the assigned pairs (uncalibrated), and the
    predictions with and without the confidence map (for the decision check)."""
    pairs = cohort.pairs("consecutive", patients)
    graphs = matcher_graphs(pairs, model.config)
    raw = predict_graphs(model, graphs, threshold=0.0, calibrated=False)
    events = [match_events([(p, r)]) for p, r in zip(pairs, raw, strict=True)]
    owner = [p.src.patient_id for p in pairs]
    by_patient = {}
    for who, (s, y) in zip(owner, events, strict=True):
        by_patient.setdefault(who, []).append((s, y))
    per_patient = [(np.concatenate([s for s, _ in v]), np.concatenate([y for _, y in v]))
                   for v in by_patient.values()]
    kept = predict_graphs(model, graphs)
    kept_raw = predict_graphs(model, graphs, calibrated=False)
    return per_patient, kept, kept_raw, pairs


def bootstrap_ece(per_patient, maps: dict, threshold: float, rng) -> dict:
    """95 % percentile intervals of the ECE of each map over patient resamples:
    ``{(map, events): (low, high)}`` with events ``assigned`` or ``kept``."""
    draws = {key: [] for key in maps}
    n = len(per_patient)
    for _ in range(BOOTSTRAP):
        pick = rng.integers(0, n, n)
        s = np.concatenate([per_patient[i][0] for i in pick])
        y = np.concatenate([per_patient[i][1] for i in pick])
        keep = s >= threshold
        for name, (t, b) in maps.items():
            q = temperature_scale(s, t, b)
            draws[name].append((reliability_curve(q, y).ece,
                                reliability_curve(q[keep], y[keep]).ece))
    out = {}
    for name, values in draws.items():
        values = np.asarray(values)
        for k, events in enumerate(("assigned", "kept")):
            finite = values[:, k][np.isfinite(values[:, k])]
            out[name, events] = tuple(np.percentile(finite, [2.5, 97.5]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=60)
    parser.add_argument("--cohort-seed", type=int, default=3)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--train", type=float, default=0.4, help="share of training patients")
    parser.add_argument("--val", type=float, default=0.2, help="share of validation patients")
    parser.add_argument("--max-epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--figure", type=Path, default=None, metavar="PNG",
                        help="also draw the test reliability diagram")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = generate_cohort(Path(tmp) / "cohort", args.patients, args.cohort_seed,
                                 images=False, progress=False)
        cohort = read_cohort(folder)
        train, val, test = split(cohort.patients, args.split_seed, args.train, args.val)
        config = preset("lite").with_values({"model.geometry_only": True})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = fit_matcher(cohort, config, train_patients=train, val_patients=val,
                                 out_dir=Path(tmp) / "run", max_epochs=args.max_epochs,
                                 seed=args.seed, progress=False)
        model, config, extra = load_checkpoint(result.checkpoint)
    val_pairs = cohort.pairs("consecutive", val)
    t_only = fit_confidence(model, config, val_pairs, bias=False)
    stored = (config.model.score_temperature, config.model.score_bias)
    per_patient, kept, kept_raw, test_pairs = patient_events(model, cohort, test)
    same = all(np.array_equal(a.matches, b.matches) for a, b in zip(kept, kept_raw, strict=True))
    scores = np.concatenate([s for s, _ in per_patient])
    labels = np.concatenate([y for _, y in per_patient])
    threshold = config.flat()[decision_key(config)]
    keep = scores >= threshold
    maps = {"raw p": (1.0, 0.0), "temperature only": (t_only.temperature, 0.0),
            "temperature + bias (stored)": stored}
    intervals = bootstrap_ece(per_patient, maps, threshold, np.random.default_rng(0))
    seconds = time.perf_counter() - start

    rows = []
    for name, (t, b) in maps.items():
        for events, mask in (("assigned", slice(None)), ("kept", keep)):
            s = calibration_summary(scores[mask], labels[mask], t, b)
            lo, hi = intervals[name, events]
            rows.append(f"| {name} | {t:.3g} | {b:.3g} | {events} | {s['n']} | "
                        f"{s['ece']:.3f} [{lo:.3f}, {hi:.3f}] | {s['nll']:.3f} |")
    final = calibration_summary(scores, labels, *stored)
    curve = final["reliability"]
    bins = [f"| {lo:.2f}–{hi:.2f} | {n} | {c:.3f} | {a:.3f} |"
            for lo, hi, n, c, a in zip(curve["edges"][:-1], curve["edges"][1:], curve["count"],
                                       curve["confidence"], curve["accuracy"], strict=True)
            if n]
    conf = extra["confidence"]
    lines = [
        "# Calibrated match confidence (held-out patients)",
        "",
        f"- command: `{' '.join(['python benchmarks/calibration.py', *sys.argv[1:]])}`",
        f"- lngraph {__version__}, run {date.today().isoformat()}; machine: "
        f"{platform.platform()}, {os.cpu_count()} CPUs; {seconds:.0f} s in all",
        f"- data: `lngraph synth --patients {args.patients} --seed {args.cohort_seed} "
        f"--no-images`; patients split (seed {args.split_seed}) {len(train)} training / "
        f"{len(val)} validation / {len(test)} test; consecutive scan pairs",
        f"- model: `lite` geometry-only graph matcher, {args.max_epochs} epochs at most "
        f"(best epoch {result.best_epoch}, seed {args.seed}); decision threshold "
        f"{threshold:g} on p (validation-chosen); confidence map fitted on the validation "
        f"patients' {conf['n']} assigned pairs: T = {stored[0]:.3g}, b = {stored[1]:.3g} "
        f"(validation ECE {conf['ece_raw']:.3f} → {conf['ece']:.3f})",
        f"- test: {len(test_pairs)} scan pairs, {len(scores)} assigned pairs "
        f"({int(labels.sum())} correct), {int(keep.sum())} kept; decisions with and without "
        f"the map identical: {'yes' if same else 'NO'}",
        "",
        "Events: *assigned* = every pair the Hungarian step assigns (one per earlier node with a "
        "partner, kept or not), *kept* = those with p ≥ the threshold (the rows of "
        "`matches.csv`). ECE over 15 equal-width bins, 95 % bootstrap interval over test "
        "patients; NLL = mean negative log-likelihood.",
        "",
        "| score | T | b | events | n | ECE [95 % CI] | NLL |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Reliability of the stored map on the test assigned pairs (non-empty bins):",
        "",
        "| confidence bin | n | mean confidence | accuracy |",
        "|---|---|---|---|",
        *bins,
        "",
    ]
    text = "\n".join(lines)
    write_text_atomic(args.out, text)
    print(text)
    if args.figure is not None:
        from lngraph.viz import reliability_figure

        reliability_figure({"decision score p": final["reliability_raw"],
                            "calibrated confidence": curve}, args.figure,
                           title=f"test assigned pairs ({len(scores)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
