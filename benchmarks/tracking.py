"""Multi-scan tracking (``lngraph track``): quality of synchronised tracks against chaining,
and cost as the scans per patient grow.

Part 1 (quality): an unseen geometry-only synthetic cohort of follow-up series (default 30
patients, 4 scans each, seed 2024; the tracking threshold was chosen on seed 101, the shipped
geometry model trained on seed 11 and the DLS pairs). Each pairwise matcher — ``nearest`` and a
geometry-only ``lite`` model (the shipped ``lite-geometry`` when installed, else ``--model``) —
matches every scan pair once; its matchings are turned into tracks by ``sync`` (all pairs) and
by ``chain`` (consecutive pairs), and the tracks are scored (:mod:`lngraph.metrics.tracking`):
IDF1, ID switches per 100 ground-truth tracks, fragmentations and merges per 100, pairwise
precision / recall / F1 over all scan pairs. The matcher's own pairwise matchings of all pairs
(not consistent) are scored too, for reference.

Part 2 (cost): for 3…10 scans per patient, a small cohort (default 5 patients) is tracked
with ``nearest`` — in process, stage by stage (pairwise matching, synchronisation, writing
the outputs with figures), and as a ``lngraph track`` process (wall time and peak resident
memory, imports included).

Part 3 (real geometry): the DeepLesion DLS patients with three or more studies
(``../shared/data/dls/valid.json``): ``nearest`` on all of them, and the shipped
``lite-geometry`` beside ``nearest`` on those held out of its training.

Run: ``python benchmarks/tracking.py [--model RUN/model.ckpt]`` (writes
``benchmarks/results/tracking.md``).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from lngraph.baselines import Nearest
from lngraph.cli.track import track_cohort, track_ids, write_outputs
from lngraph.data.folds import holdout_split
from lngraph.io.cohort import Cohort, read_cohort, write_cohort
from lngraph.io.dls import read_dls
from lngraph.io.errors import InputError
from lngraph.matching.tracks import DEFAULT_THRESHOLD, link_predictions
from lngraph.metrics import evaluate_predictions
from lngraph.metrics.tracking import evaluate_tracks
from lngraph.models import load_checkpoint, predict_pairs
from lngraph.models.zoo import model_path
from lngraph.synth import generate_cohort

RESULTS = Path(__file__).resolve().parent / "results" / "tracking.md"
DLS = Path(__file__).resolve().parents[2] / "shared" / "data" / "dls" / "valid.json"


def dls_series(folder: Path, dls_file: Path) -> tuple[Cohort, Cohort] | None:
    """The DLS patients with three or more studies, and those of them held out of the shipped
    ``lite-geometry``'s training (``benchmarks/ship_models.py``: ``holdout_split`` of all DLS
    patients, 20 %, seed 0); ``None`` without the DLS file."""
    if not dls_file.is_file():
        return None
    dls = read_cohort(write_cohort(folder / "dls", read_dls(dls_file)))
    _, held_out = holdout_split(dls.patients, 0.2, seed=0)
    series = [p for p in dls.patients if len(dls.scans_of(p)) >= 3]
    return dls.subset(series), dls.subset([p for p in series if p in set(held_out)])


def dls_lines(rows_all: list[dict], rows_held: list[dict], n_all: int, n_held: int
              ) -> list[str]:
    lines = ["## DLS patients with three or more studies (real geometry)", "",
             f"`nearest` on all {n_all} such patients; `lite-geometry` and `nearest` on the "
             f"{n_held} of them held out of `lite-geometry`'s training (the shipped model saw "
             "the others).", "", "| patients | matcher | tracks | IDF1 % | ID switches / 100 "
             "tracks | pairwise P % | pairwise R % | pairwise F1 % |",
             "|---|---|---|---|---|---|---|---|"]
    for label, rows in ((f"all {n_all}", rows_all), (f"held-out {n_held}", rows_held)):
        for r in rows:
            lines.append(f"| {label} | {r['matcher']} | {r['mode']} | {_pct(r['idf1'])} | "
                         f"{_num(r['idsw'])} | {_pct(r['precision'])} | {_pct(r['recall'])} | "
                         f"{_pct(r['f1'])} |")
    return lines
#: Wrapper that runs ``lngraph`` and prints the process's peak resident memory (kB) last.
PEAK_RSS = ("import resource, sys\nfrom lngraph.cli.main import main\nrc = main(sys.argv[1:])\n"
            "print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
            "sys.exit(rc)\n")


def matchers(model: Path | None):
    """``[(name, predict(pairs) -> predictions)]``: nearest, and the geometry model."""
    nearest = Nearest()
    out = [("nearest", lambda pairs: [nearest.predict(p) for p in pairs])]
    try:
        path, label = model_path("lite-geometry", images=False), "lite-geometry (shipped)"
    except InputError:
        path, label = model, "geometry-only lite (--model)"
    if path is not None:
        net, _, _ = load_checkpoint(path)
        out.append((label, lambda pairs: predict_pairs(net, pairs)))
    return out


def quality(cohort_dir, model: Path | None, only: str | None = None) -> list[dict]:
    """Rows of the quality table for a cohort folder (or :class:`Cohort`); ``only`` keeps
    the matcher of that name only."""
    cohort = cohort_dir if isinstance(cohort_dir, Cohort) else read_cohort(cohort_dir)
    pairs = cohort.pairs("all")
    consecutive = {(p.src.scan_id, p.dst.scan_id) for p in cohort.pairs("consecutive")}
    rows = []
    for name, predict in matchers(model):
        if only is not None and name != only:
            continue
        t = time.perf_counter()
        predictions = dict(zip(((p.src.scan_id, p.dst.scan_id) for p in pairs),
                               predict(pairs), strict=True))
        seconds = time.perf_counter() - t
        raw = evaluate_predictions(cohort, predictions)
        rows.append({"matcher": name, "mode": "pairwise only (inconsistent)", "idf1": None,
                     "idsw": None, "frag": None, "merge": None, "precision": raw["precision"],
                     "recall": raw["recall"], "f1": raw["f1"], "seconds": seconds})
        for mode in ("chain", "sync"):
            used = predictions if mode == "sync" else {k: v for k, v in predictions.items()
                                                       if k in consecutive}
            t = time.perf_counter()
            tracks = track_cohort(cohort, used, mode=mode)
            seconds = time.perf_counter() - t
            m = evaluate_tracks(cohort, track_ids(cohort, tracks))["cohort"]
            rows.append({"matcher": name, "mode": mode, "idf1": m["idf1"],
                         "idsw": m["id_switches_per_100"], "frag": m["fragmentations_per_100"],
                         "merge": m["merges_per_100"], "precision": m["precision"],
                         "recall": m["recall"], "f1": m["f1"], "seconds": seconds,
                         "gt_tracks": m["n_gt_tracks"], "nodes": m["n_nodes"]})
    return rows


def cost(scans: range, patients: int, seed: int, folder: Path) -> list[dict]:
    nearest = Nearest()
    rows = []
    for n in scans:
        root = generate_cohort(folder / f"c{n}", patients, seed, timepoints=n, images=False,
                               progress=False)
        cohort = read_cohort(root)
        pairs = cohort.pairs("all")
        t0 = time.perf_counter()
        predictions = {(p.src.scan_id, p.dst.scan_id): nearest.predict(p) for p in pairs}
        t1 = time.perf_counter()
        sync_s, sync_mb = synchronisation_cost(cohort, predictions)
        tracks = track_cohort(cohort, predictions, mode="sync")
        t2 = time.perf_counter()
        write_outputs(folder / f"out{n}", cohort, tracks, figures=True)
        t3 = time.perf_counter()
        t = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", PEAK_RSS, "track", str(root), "--out",
                               str(folder / f"cli{n}"), "--method", "nearest", "--quiet"],
                              capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t
        peak_kb = int(done.stdout.strip().splitlines()[-1].split()[1])
        nodes = [sum(len(s.nodes) for s in cohort.scans_of(p)) for p in cohort.patients]
        rows.append({"scans": n, "pairs": len(pairs), "nodes_per_patient": float(np.mean(nodes)),
                     "match_s": (t1 - t0) / patients, "sync_s": float(np.median(sync_s)),
                     "sync_max_s": float(np.max(sync_s)), "sync_mb": float(np.max(sync_mb)),
                     "write_s": (t3 - t2) / patients, "cli_s": wall, "peak_mb": peak_kb / 1024})
    return rows


def synchronisation_cost(cohort, predictions, repeats: int = 3):
    """Per patient: the fastest of ``repeats`` synchronisations (s) and the peak memory the
    synchronisation allocates (MB, tracemalloc; numpy's arrays included)."""
    seconds, megabytes = [], []
    for patient in cohort.patients:
        scans = cohort.scans_of(patient)
        index = {s.scan_id: k for k, s in enumerate(scans)}
        mine = {(index[a], index[b]): p for (a, b), p in predictions.items() if a in index}
        sizes = [len(s.nodes) for s in scans]
        best = np.inf
        for _ in range(repeats):
            t = time.perf_counter()
            link_predictions(sizes, mine)
            best = min(best, time.perf_counter() - t)
        tracemalloc.start()
        link_predictions(sizes, mine)
        megabytes.append(tracemalloc.get_traced_memory()[1] / 2 ** 20)
        tracemalloc.stop()
        seconds.append(best)
    return seconds, megabytes


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _num(value) -> str:
    return "–" if value is None else f"{value:.1f}"


def report(args, quality_rows, cost_rows, load: float, commit: str) -> str:
    first = next(r for r in quality_rows if "gt_tracks" in r)
    model = f" --model {args.model}" if args.model else ""
    lines = [
        "# Multi-scan tracking (`lngraph track`)", "",
        f"- command: `python benchmarks/tracking.py{model}`",
        f"- commit: `{commit}`",
        f"- machine: {platform.platform()}, {os.cpu_count()} CPUs; load average before the "
        f"run {load:.2f} (the machine may be shared)",
        f"- cohort: `lngraph synth --patients {args.patients} --seed {args.seed} --timepoints "
        f"{args.timepoints} --no-images` (default preset; unseen: the threshold τ = "
        f"{DEFAULT_THRESHOLD} was chosen on seed 101; the shipped geometry model was trained "
        "on seed 11 and the DLS pairs, a --model one on its own cohort): "
        f"{first['gt_tracks']} ground-truth tracks, {first['nodes']} nodes",
        f"- geometry model: {args.model_note}",
        "- every matcher matches all scan pairs once; `chain` uses the consecutive ones, "
        "`sync` all of them", "",
        "## Quality", "",
        "| matcher | tracks | IDF1 % | ID switches / 100 tracks | fragmentations / 100 | "
        "merges / 100 | pairwise P % | pairwise R % | pairwise F1 % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in quality_rows:
        lines.append(f"| {r['matcher']} | {r['mode']} | {_pct(r['idf1'])} | {_num(r['idsw'])} "
                     f"| {_num(r['frag'])} | {_num(r['merge'])} | {_pct(r['precision'])} | "
                     f"{_pct(r['recall'])} | {_pct(r['f1'])} |")
    lines += [
        "", "Pairwise P/R/F1 count node pairs over *all* scan pairs of a patient (for the "
        "`pairwise only` rows: the matcher's own matchings of every pair, which need not be "
        "consistent).", "",
        "## Cost as the scans per patient grow", "",
        f"`nearest`, {args.cost_patients} patients per cohort, geometry only. In process, "
        "per patient: pairwise matching of all pairs (mean s), synchronisation (median and "
        "largest s, best of 3; peak memory it allocates, tracemalloc), writing the outputs "
        "(tracks.csv, matches.csv, markups, figure; mean s). Then one `lngraph track --method "
        "nearest` process over the whole cohort: wall time and peak resident memory (imports "
        "of torch and the baselines included: most of both).", "",
        "| scans | pairs / patient | nodes / patient | match s | sync s (median / max) | "
        "sync MB | write s | `lngraph track` s | process peak MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in cost_rows:
        per = r["scans"] * (r["scans"] - 1) // 2
        lines.append(f"| {r['scans']} | {per} | {r['nodes_per_patient']:.0f} | "
                     f"{r['match_s']:.3f} | {r['sync_s']:.3f} / {r['sync_max_s']:.3f} | "
                     f"{r['sync_mb']:.1f} | {r['write_s']:.2f} | {r['cli_s']:.1f} | "
                     f"{r['peak_mb']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=30)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--timepoints", default="4")
    parser.add_argument("--model", type=Path, default=None,
                        help="geometry-only checkpoint when lite-geometry is not shipped")
    parser.add_argument("--model-note", default="the shipped lite-geometry",
                        help="how the --model checkpoint was made (for the report)")
    parser.add_argument("--cost-patients", type=int, default=5)
    parser.add_argument("--cost-scans", default="3-10", help="range A-B of scans per patient")
    parser.add_argument("--no-git", action="store_true", help="do not ask git for the commit")
    parser.add_argument("--dls-file", type=Path, default=DLS, help="DLS pair JSON")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    if args.no_git:
        commit = "not recorded"
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from provenance import commit as git_commit

        commit = git_commit()
    low, high = (int(v) for v in args.cost_scans.split("-"))
    with tempfile.TemporaryDirectory() as tmp:
        root = generate_cohort(Path(tmp) / "eval", args.patients, args.seed,
                               timepoints=args.timepoints, images=False, progress=False)
        quality_rows = quality(root, args.model)
        for r in quality_rows:
            print(f"{r['matcher']:40s} {r['mode']:30s} IDF1 {_pct(r['idf1'])} IDSW/100 "
                  f"{_num(r['idsw'])} frag/100 {_num(r['frag'])} F1 {_pct(r['f1'])}", flush=True)
        cost_rows = cost(range(low, high + 1), args.cost_patients, args.seed, Path(tmp))
        for r in cost_rows:
            print(r, flush=True)
        dls = dls_series(Path(tmp), args.dls_file)
        if dls is not None:
            series, held = dls
            dls_text = dls_lines(quality(series, args.model, only="nearest"),
                                 quality(held, args.model), len(series.patients),
                                 len(held.patients))
        else:
            dls_text = ["## DLS", "", f"Not measured: the DLS pairs are not at {args.dls_file}."]
    text = report(args, quality_rows, cost_rows, load, commit) + "\n" + \
        "\n".join(dls_text) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
