"""How the matcher's cost grows with the number of nodes per scan.

For ``n`` nodes in each scan of a pair (``n1 = n2 = n``), with a preset config (``lite`` by
default) on random crops, this measures the median time of the parts of its model.

The graph matcher (``lite``, ``full``):

* **encoders (tokens)** — the 3D encoder on ``n`` cubes and the 2D encoder on ``9 n`` views
  of each scan, and the token sums (∝ n);
* **layers + head** — the intra-scan attention over each scan's ``n (n - 1)`` edges, the
  cross-graph attention over each node's ``min(cross_k, n)`` nearest aligned nodes of the
  other scan (the ``n1 × n2`` distances to find them), and the dense ``n1 × n2`` assignment
  head (∝ n² at most);
* **Hungarian**, **alignment (graph build)**, **inference** and **training step** as below.

The paper's asymmetric matcher (``paper``):

* **SE encoders** — the 3D encoder on ``n`` cubes and the 2D encoder on ``9 n`` views (∝ n);
* **SEAG + S** — both scans' fully connected SEAG layers (``n (n - 1)`` edges each) and the
  ``n1 × n2`` cosine similarity (∝ n²);
* **SCB, all pairs** (configs with SCB only) — the SCB head on every ``(src, dst)`` pair,
  nine token-set combinations each (``9 n1 n2`` cross attentions: what training computes,
  ∝ n1·n2);
* **Hungarian** — ``scipy.optimize.linear_sum_assignment`` on the ``n1 × n2`` similarity
  (O(n³) worst case, negligible at these sizes);
* **alignment (graph build)** — :func:`~lngraph.data.geometry.pair_shifts`, the alignment
  shifts the position prior needs (numpy/SciPy), computed once per pair when the graph is
  built, not in the forward pass (configs with the position prior only);
* **inference** — ``to_predictions(model.match(graph))`` on a graph that holds its crops and
  shifts: encoders, SEAG, the matching score, SCB on the pairs the first assignment picks
  (with SCB), the batched assignment and the conversion;
* **training step** — forward (SCB on all pairs, with SCB), the four losses, backward.

On the CPU it also measures what filling the crop cache costs per scan besides the crops
(``benchmarks/results/crop_speed.md`` has those): reading a 512×512×150 int16 volume as
``.nii.gz`` and as compressed ``.nrrd`` (noise, which compresses worse than CT), and the
SHA-256 of the file that keys the cache.

Each row also gives the exponent ``k`` of a least-squares fit ``time ∝ n^k`` over the sizes.
On the CPU (one thread) the time is this process's CPU time (wall time on a shared machine
includes waiting); on a GPU it is wall time between CUDA synchronisations.

Run: ``python benchmarks/scaling.py`` (writes ``benchmarks/results/scaling.md``);
``python benchmarks/scaling.py --device cuda --config paper --out
benchmarks/results/scaling_gpu.md`` for a GPU.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from provenance import commit

from lngraph.data.cache import image_digest
from lngraph.data.geometry import pair_shifts
from lngraph.data.graph import pair_to_heterodata
from lngraph.io import read_image, write_image, write_text_atomic
from lngraph.io.cohort import NodeTable, Scan, ScanPair
from lngraph.matching.assignment import hungarian_max
from lngraph.models import (
    AsymmetricMatcher,
    GraphMatcher,
    Matcher,
    alignment_params,
    build_matcher,
    to_predictions,
)
from lngraph.models.asymmetric_matcher import all_pair_candidates
from lngraph.models.config import PRESETS, MatcherConfig, preset

RESULTS = Path(__file__).resolve().parent / "results" / "scaling.md"
SIZES = (8, 16, 32, 64, 128)


def random_scan_pair(n: int, seed: int = 0) -> ScanPair:
    """``n`` nodes per scan (all matched), 30 mm spread."""
    rng = np.random.default_rng(seed)
    tracks = np.array([f"t{k}" for k in range(n)], object)
    return ScanPair(*[Scan("p", f"s{t}", str(t), None, NodeTable.from_arrays(
        rng.normal(0, 30, (n, 3)), rng.uniform(6, 20, n), track_id=tracks)) for t in range(2)])


def shifts_of(pair: ScanPair, config: MatcherConfig) -> np.ndarray | None:
    """The pair's alignment shifts (``None`` without the position prior), no cache."""
    params = alignment_params(config)
    return None if params is None else pair_shifts(pair.src.nodes.pos, pair.dst.nodes.pos,
                                                   params)


def random_pair(n: int, config: MatcherConfig, seed: int = 0):
    """The pair graph of :func:`random_scan_pair`, with random crops and the alignment
    shifts, as ``matcher_graphs`` builds it."""
    pair = random_scan_pair(n, seed)
    rng = np.random.default_rng(seed + 1)
    size = config.crops.size
    crops = [(rng.random((n, size, size, size), dtype=np.float32),
              rng.random((n, 9, size, size), dtype=np.float32)) for _ in range(2)]
    return pair_to_heterodata(pair, *crops, shifts_of(pair, config))


def seconds(fn, repeats: int, device: torch.device) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls after one warm-up call: CPU time of
    this process on the CPU, synchronised wall time on a GPU."""
    cuda = device.type == "cuda"
    clock = time.perf_counter if cuda else time.process_time
    fn()
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize(device)
        start = clock()
        fn()
        if cuda:
            torch.cuda.synchronize(device)
        times.append(clock() - start)
    return statistics.median(times)


def common_parts(model: Matcher, data, pair: ScanPair, sim: np.ndarray, repeats: int
                 ) -> dict[str, float]:
    """Hungarian, alignment (with the position prior) and inference of either model."""
    device = next(model.parameters()).device
    out = {"Hungarian": seconds(lambda: hungarian_max(sim), repeats, device)}
    if alignment_params(model.config) is not None:
        out["alignment (graph build)"] = seconds(lambda: shifts_of(pair, model.config),
                                                 repeats, torch.device("cpu"))
    out["inference"] = seconds(lambda: to_predictions(model.match(data)), repeats, device)
    return out


def train_seconds(model: Matcher, data, repeats: int) -> float:
    """A training step: forward, losses, backward (no update: the learning rate is 0)."""
    optimiser = torch.optim.SGD(model.parameters(), lr=0.0)

    def train_step():
        optimiser.zero_grad()
        model.loss(data, model(data))["total"].backward()

    return seconds(train_step, repeats, next(model.parameters()).device)


def measure_graph(model: GraphMatcher, n: int, repeats: int) -> dict[str, float]:
    """The graph matcher's parts (module docstring) on a pair of ``n`` nodes per scan."""
    device = next(model.parameters()).device
    data = random_pair(n, model.config, seed=n).to(device)
    with torch.no_grad():
        tokens = model.tokens(data, "src"), model.tokens(data, "dst")
        sim = model.propagate(data, *tokens).score[0].double().cpu().numpy()
        out = {"encoders (tokens)": seconds(
                   lambda: (model.tokens(data, "src"), model.tokens(data, "dst")), repeats,
                   device),
               "layers + head": seconds(lambda: model.propagate(data, *tokens), repeats,
                                        device),
               **common_parts(model, data, random_scan_pair(n, seed=n), sim, repeats)}
    out["training step"] = train_seconds(model, data, repeats)
    return out


def measure(model: AsymmetricMatcher, n: int, repeats: int) -> dict[str, float]:
    """The asymmetric matcher's parts (module docstring) on a pair of ``n`` nodes per
    scan."""
    device = next(model.parameters()).device
    data = random_pair(n, model.config, seed=n).to(device)
    with torch.no_grad():
        src, dst = model.encode(data["src"]), model.encode(data["dst"])
        h_src, h_dst = model.context(data, "src", src), model.context(data, "dst", dst)
        sim = model.similarity(h_src, h_dst, src.batch, dst.batch, 1)[0][0].double().cpu()
    sim = sim.numpy()
    candidates = all_pair_candidates(src.batch, dst.batch)

    def encoders():
        model.encode(data["src"])
        model.encode(data["dst"])

    def seag():
        h1, h2 = model.context(data, "src", src), model.context(data, "dst", dst)
        model.similarity(h1, h2, src.batch, dst.batch, 1)

    with torch.no_grad():
        out = {"SE encoders": seconds(encoders, repeats, device),
               "SEAG + S": seconds(seag, repeats, device)}
        if model.use_scb:
            out["SCB, all pairs"] = seconds(
                lambda: model.scb(src.tokens, dst.tokens, candidates), repeats, device)
        out.update(common_parts(model, data, random_scan_pair(n, seed=n), sim, repeats))
    out["training step"] = train_seconds(model, data, repeats)
    return out


def scan_io(repeats: int) -> list[str]:
    """Markdown rows: wall and CPU seconds to read a 512×512×150 int16 volume and to hash it."""
    rng = np.random.default_rng(0)
    image = sitk.GetImageFromArray(rng.normal(40, 120, (150, 512, 512)).astype(np.int16))
    image.SetSpacing((0.78, 0.78, 2.0))
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in ("ct.nii.gz", "ct.nrrd"):
            path = write_image(image, Path(folder) / name)
            megabytes = path.stat().st_size / 1e6
            for what, fn in (("read_image", read_image), ("SHA-256 (cache key)", image_digest)):
                walls, cpus = [], []
                for _ in range(repeats):
                    wall, cpu = time.perf_counter(), time.process_time()
                    fn(path)
                    walls.append(time.perf_counter() - wall)
                    cpus.append(time.process_time() - cpu)
                rows.append(f"| {what} | `{name}` ({megabytes:.0f} MB) | "
                            f"{statistics.median(walls):.2f} | {statistics.median(cpus):.2f} |")
    return rows


def exponent(sizes, seconds) -> float:
    """Slope of log(time) against log(n)."""
    return float(np.polyfit(np.log(sizes), np.log(np.maximum(seconds, 1e-9)), 1)[0])



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--config", choices=tuple(PRESETS), default="lite")
    parser.add_argument("--device", default="cpu", help="cpu (one thread) or cuda")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    load = os.getloadavg()[0]
    model = build_matcher(preset(args.config)).eval().to(device)
    parts_of = measure_graph if isinstance(model, GraphMatcher) else measure
    table = {n: parts_of(model, n, args.repeats) for n in args.sizes}
    parts = list(table[args.sizes[0]])
    if device.type == "cuda":
        where = f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
        cell = "median wall milliseconds between CUDA synchronisations"
    else:
        where = f"torch {torch.__version__} on 1 CPU thread"
        cell = "median CPU milliseconds of this process"
    sizes = " ".join(str(n) for n in args.sizes)
    lines = [
        "# How cost grows with the nodes per scan",
        "",
        f"- command: `python benchmarks/scaling.py --sizes {sizes} --repeats {args.repeats} "
        f"--config {args.config} --device {args.device}`",
        f"- commit: `{commit()}`",
        f"- machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs; {where}",
        f"- model: `{args.config}` config, {type(model).__name__} "
        f"({sum(p.numel() for p in model.parameters())} parameters), random "
        f"{model.config.crops.size}³ crops, one pair with n nodes in each "
        "scan, all matched",
        f"- load average before the run: {load:.2f} (the machine may be shared)",
        f"- each cell: {cell}; k: fitted exponent, time ∝ n^k",
        "",
        "| part | " + " | ".join(f"n = {n}" for n in args.sizes) + " | k |",
        "|---|" + "---|" * (len(args.sizes) + 1),
    ]
    for part in parts:
        times = [table[n][part] for n in args.sizes]
        k = f"{exponent(args.sizes, times):.2f}" if len(set(args.sizes)) > 1 else "—"
        lines.append(f"| {part} | " + " | ".join(f"{1000 * t:.1f}" for t in times)
                     + f" | {k} |")
    if device.type == "cpu":
        lines += ["", "Per scan, besides the crops (median of "
                  f"{args.repeats}; ITK's default threads):", "",
                  "| step | file | wall s | CPU s |", "|---|---|---|---|", *scan_io(args.repeats)]
    write_text_atomic(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
