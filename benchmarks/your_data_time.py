"""From a clinic's files to matches: the wall time of the commands ``docs/your-data.md`` gives,
for one patient's pair of real-format scans, with the shipped model.

The pair: the pair with the most nodes of an unseen synthetic ``default`` cohort (seed 101, the
one the model cards report on), written as a clinic would hand it over — two NIfTI CTs
``scans/SCAN.nii.gz`` and two 3D Slicer point lists ``reads/PATIENT_TIMEPOINT.mrk.json``. Each
command runs as a fresh process (imports included) with an empty crop cache:

1. ``lngraph import slicer reads/ cohort --images scans/``
2. ``lngraph match cohort --out matches --figure`` (the shipped ``lite-image``, chosen because
   the scans have images)

and the report is the time of each, their sum (the target is one minute), and what was
written. Writes ``benchmarks/results/your_data_time.md``.

    python benchmarks/your_data_time.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lngraph.bench.report import commit, machine
from lngraph.io.atomic import atomic_path
from lngraph.io.cohort import read_cohort
from lngraph.io.slicer import write_scan_markups

HERE = Path(__file__).resolve().parent
COHORT = HERE / ".data" / "leaderboard-p30-s101"      # made by benchmarks/ship_models.py
RESULTS = HERE / "results" / "your_data_time.md"


def clinic_files(folder: Path, cohort_dir: Path) -> tuple[Path, Path, str]:
    """The cohort's pair with the most nodes as NIfTI files + Slicer markups under
    ``folder``."""
    cohort = read_cohort(cohort_dir)
    pair = max(cohort.pairs(), key=lambda p: len(p.src.nodes) + len(p.dst.nodes))
    reads, scans = folder / "reads", folder / "scans"
    scans.mkdir(parents=True)
    write_scan_markups(reads, [pair.src, pair.dst])
    for scan in (pair.src, pair.dst):
        shutil.copyfile(scan.image, scans / f"{scan.patient_id}_{scan.timepoint}.nii.gz")
    what = (f"patient {pair.src.patient_id}: {len(pair.src.nodes)} and {len(pair.dst.nodes)} "
            "nodes")
    return reads, scans, what


def timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, default=COHORT)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not (args.cohort / "scans.csv").is_file():
        raise SystemExit(f"{args.cohort} not found: run benchmarks/ship_models.py first")
    lngraph = [sys.executable, "-m", "lngraph"]
    rows, written = [], []
    load = os.getloadavg()[0]
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="lngraph-yourdata-") as tmp:
            tmp = Path(tmp)
            reads, scans, what = clinic_files(tmp / "clinic", args.cohort)
            env = {**os.environ, "XDG_CACHE_HOME": str(tmp / "cache")}   # an empty crop cache
            cohort, out = tmp / "cohort", tmp / "matches"
            t_import = timed([*lngraph, "import", "slicer", str(reads), str(cohort), "--images",
                              str(scans)], env)
            t_match = timed([*lngraph, "match", str(cohort), "--out", str(out), "--figure",
                             "--quiet"], env)
            rows.append((t_import, t_match))
            written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    imports, matches = zip(*rows, strict=True)
    totals = [a + b for a, b in rows]
    text = "\n".join([
        "# From your files to matches (docs/your-data.md)", "",
        f"- command: `python benchmarks/your_data_time.py --repeats {args.repeats}`",
        f"- commit: `{commit()}`", f"- machine: {machine()}; load average at the start "
        f"{load:.1f}",
        f"- the pair: {what}, two NIfTI CTs and two Slicer `.mrk.json` files; each command a "
        "fresh process with an empty crop cache; the shipped `lite-image` (the default for "
        "scans with images)", "",
        "| step | command | median s | min–max s |", "|---|---|---|---|",
        f"| 1 | `lngraph import slicer reads/ cohort --images scans/` | "
        f"{statistics.median(imports):.1f} | {min(imports):.1f}–{max(imports):.1f} |",
        f"| 2 | `lngraph match cohort --out matches --figure` | "
        f"{statistics.median(matches):.1f} | {min(matches):.1f}–{max(matches):.1f} |",
        f"| | total (target ≤ 60 s) | {statistics.median(totals):.1f} | "
        f"{min(totals):.1f}–{max(totals):.1f} |", "",
        "Written by step 2: " + ", ".join(f"`{name}`" for name in written), ""])
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
