"""Speed of the asymmetric matcher: inference per pair, ``lngraph match`` end to end, training.

Three studies, each the median of a few repeats, wall time and this process's CPU time:

1. **Inference latency per pair** at n × n nodes (default 20, 50, 100, 200), on synthetic pair
   graphs (random centres in a 200 mm box, radii 3–15 mm, random crops), split into the crop
   encoders (3D cube + 2D views + SCB tokens, both scans), SEAG + similarity, the SCB head on
   the Hungarian pairs, the assignment (Hungarian + SCB rule, :func:`scb_correct`) and the
   whole ``AsymmetricMatcher.predict``; the same for the geometry-only model (geometry encoder
   and whole predict). Weights are untrained: speed does not depend on them.
2. **``lngraph match`` end to end** on two 512×512×150 int16 volumes (``.nii.gz``, synthetic
   noise) with 20 nodes each, an untrained model saved with ``save_checkpoint``: as a
   subprocess (``python -m lngraph match``: interpreter and imports included, what a user
   waits for) and in-process (reading the images, crops with a cold cache, predict, outputs),
   with and without ``--figure``.
3. **Training throughput**: forward, loss, backward and Adam step on batches of
   ``config.optim.batch_size`` pairs of 10 × 10 nodes (about a synthetic ``default`` pair), pairs/s.

Run: ``python benchmarks/model_speed.py`` (CPU, ``lite``, one torch thread) writes
``benchmarks/results/model_speed.md`` and ``.csv``; ``--config paper --device cuda`` times the
paper config on a GPU (``model_speed_paper_cuda.md``).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from provenance import commit
from torch_geometric.data import Batch

from lngraph.cli import main as cli_main
from lngraph.data.graph import pair_to_heterodata
from lngraph.io import NodeTable, Scan, ScanPair, atomic_path, write_image, write_text_atomic
from lngraph.matching.scb_rule import scb_correct
from lngraph.models import AsymmetricMatcher, MatcherConfig, preset
from lngraph.train import save_checkpoint

RESULTS = Path(__file__).resolve().parent / "results"
BOX_MM = 200.0


def synthetic_pair(n_src: int, n_dst: int, config: MatcherConfig, seed: int = 0):
    """A pair graph: the later scan is the earlier one moved a few mm (plus or minus nodes),
    with random crops of the config's size."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform(-BOX_MM / 2, BOX_MM / 2, size=(max(n_src, n_dst), 3))
    short = rng.uniform(6.0, 30.0, size=len(pos))

    def scan(scan_id: str, n: int, shift: float) -> Scan:
        nodes = NodeTable.from_arrays(pos[:n] + shift + rng.normal(0, 2, (n, 3)), short[:n],
                                      track_id=[f"L{k}" for k in range(n)])
        return Scan("P", scan_id, "1" if scan_id == "a" else "2", None, nodes)

    def crops(n: int):
        s = config.crops.size
        return (rng.random((n, s, s, s), dtype=np.float32),
                rng.random((n, 9, s, s), dtype=np.float32))

    pair = ScanPair(scan("a", n_src, 0.0), scan("b", n_dst, 5.0))
    if config.model.geometry_only:
        return pair_to_heterodata(pair)
    return pair_to_heterodata(pair, crops(n_src), crops(n_dst))


def timed(device: torch.device, fn: Callable, *args):
    """``(fn(*args), wall s, CPU s)``, synchronising a GPU before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def median_times(samples: dict[str, list[tuple[float, float]]]) -> dict[str, tuple[float, float]]:
    return {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
            for k, v in samples.items()}


def encode_both(model: AsymmetricMatcher, data):
    return model.encode(data["src"]), model.encode(data["dst"])


def seag_similarity(model: AsymmetricMatcher, data, src, dst) -> np.ndarray:
    similarity, _, _ = model.similarity(model.context(data, "src", src),
                                        model.context(data, "dst", dst), src.batch, dst.batch, 1)
    return similarity[0].double().cpu().numpy()


@torch.no_grad()
def inference_stages(model: AsymmetricMatcher, data, device: torch.device, repeats: int
                     ) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds of each stage of ``model.predict`` on one pair graph."""
    model.eval()
    data = data.to(device)
    samples: dict[str, list[tuple[float, float]]] = {}

    def stage(name: str, fn: Callable, *args):
        result, wall, cpu = timed(device, fn, *args)
        samples.setdefault(name, []).append((wall, cpu))
        return result

    c = model.config.model
    threshold = c.scb_threshold if model.use_scb else c.similarity_threshold
    model.predict(data)  # warm-up (allocations, kernels)
    for _ in range(repeats):
        src, dst = stage("encoders", encode_both, model, data)
        similarity = stage("seag_similarity", seag_similarity, model, data, src, dst)
        scb = stage("scb_head", model.scb_scores, src, dst, [similarity])[0] \
            if model.use_scb else None
        stage("assignment", scb_correct, similarity, scb, threshold)
        stage("predict_total", model.predict, data)
    return median_times(samples)


def training_throughput(config: MatcherConfig, device: torch.device, steps: int,
                        nodes: int = 10) -> tuple[float, float]:
    """Training pairs per second (by wall, by CPU time) over ``steps`` optimiser steps."""
    torch.manual_seed(0)
    model = AsymmetricMatcher(config).to(device).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=config.optim.lr)
    batch = Batch.from_data_list([synthetic_pair(nodes, nodes, config, seed=s)
                                  for s in range(config.optim.batch_size)]).to(device)

    def step():
        optimiser.zero_grad()
        model.loss(batch, model(batch))["total"].backward()
        optimiser.step()

    def run_steps():
        for _ in range(steps):
            step()

    step()  # warm-up
    _, wall, cpu = timed(device, run_steps)
    pairs = steps * config.optim.batch_size
    return pairs / wall, pairs / cpu


def synthetic_ct(seed: int, slices: int = 150) -> sitk.Image:
    """A 512×512×``slices`` int16 volume of noise around soft-tissue HU, 0.78×0.78×2 mm."""
    rng = np.random.default_rng(seed)
    image = sitk.GetImageFromArray(rng.normal(40.0, 120.0, (slices, 512, 512)).astype(np.int16))
    image.SetSpacing((0.78, 0.78, 2.0))
    image.SetOrigin((-200.0, -200.0, -150.0))
    return image


def write_match_inputs(folder: Path, nodes: int = 20) -> list[str]:
    """Two volumes and two node tables in ``folder``; returns the ``lngraph match`` inputs."""
    rng = np.random.default_rng(2)
    pos = rng.uniform([-120, -120, -100], [120, 120, 100], size=(nodes, 3))
    args = []
    for k, name in enumerate(("src", "dst")):
        image = write_image(synthetic_ct(k), folder / f"{name}.nii.gz")
        moved = pos + (0 if k == 0 else rng.normal(0, 3, size=pos.shape) + [4, -3, 6])
        lines = ["node_id,x,y,z,short_axis_mm,long_axis_mm"] + [
            f"{name}{i},{x:.2f},{y:.2f},{z:.2f},{s:.1f},{1.3 * s:.1f}"
            for i, ((x, y, z), s) in enumerate(zip(moved, rng.uniform(6, 25, nodes),
                                                   strict=True))]
        table = write_text_atomic(folder / f"{name}.csv", "\n".join(lines) + "\n")
        args += [f"--{name}-image", str(image), f"--{name}-nodes", str(table)]
    return args


def child_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def match_end_to_end(config: MatcherConfig, device: torch.device, repeats: int, folder: Path
                     ) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds of ``lngraph match`` on the two volumes, four ways."""
    torch.manual_seed(0)
    checkpoint = save_checkpoint(folder / "model.ckpt", AsymmetricMatcher(config), config)
    inputs = write_match_inputs(folder)
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}

    def argv(out: Path, figure: bool) -> list[str]:
        return ["match", "--model", str(checkpoint), *inputs, "--device", device.type,
                "--out", str(out)] + (["--figure"] if figure else [])

    samples: dict[str, list[tuple[float, float]]] = {}
    for r in range(repeats):
        for figure in (False, True):
            suffix = " --figure" if figure else ""
            wall, cpu = time.perf_counter(), child_cpu_seconds()
            done = subprocess.run([sys.executable, "-m", "lngraph",
                                   *argv(folder / f"sub{r}{int(figure)}", figure)],
                                  capture_output=True, text=True, env=env)
            if done.returncode:
                raise RuntimeError(f"lngraph match failed:\n{done.stderr}")
            samples.setdefault(f"subprocess{suffix}", []).append(
                (time.perf_counter() - wall, child_cpu_seconds() - cpu))
            _, w, c = timed(device, cli_main.main, argv(folder / f"in{r}{int(figure)}", figure))
            samples.setdefault(f"in-process{suffix}", []).append((w, c))
    return median_times(samples)



def machine(device: torch.device) -> str:
    text = f"{platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs"
    if device.type == "cuda":
        text += f", {torch.cuda.get_device_name(device)}"
    return text


def ms(seconds: float) -> str:
    return f"{1000 * seconds:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="lite",
                        help="preset name (lite, paper) or a YAML config file")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--sizes", default="20,50,100,200",
                        help="nodes per scan of the latency study, comma-separated")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--match-repeats", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--skip-match", action="store_true",
                        help="leave out the lngraph match study")
    parser.add_argument("--out", type=Path, help="Markdown file (default "
                        "benchmarks/results/model_speed[_CONFIG_DEVICE].md; .csv beside it)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = (preset(args.config) if not args.config.endswith((".yaml", ".yml"))
              else MatcherConfig.from_yaml(args.config))
    geometry = config.with_values({"model.geometry_only": True})
    default_name = "model_speed" if (config.name, device.type) == ("lite", "cpu") else \
        f"model_speed_{config.name}_{device.type}"
    out = args.out or RESULTS / f"{default_name}.md"
    load = os.getloadavg()[0]
    command = "python benchmarks/model_speed.py " + " ".join(argv or sys.argv[1:])

    rows: list[dict] = []

    def record(study, nodes, component, wall, cpu, repeats):
        rows.append({"study": study, "config": config.name, "device": device.type,
                     "nodes": nodes, "component": component, "wall_ms": round(1000 * wall, 3),
                     "cpu_ms": round(1000 * cpu, 3), "repeats": repeats})

    torch.manual_seed(0)
    image_model = AsymmetricMatcher(config).to(device)
    geometry_model = AsymmetricMatcher(geometry).to(device)
    latency = []
    for n in (int(v) for v in args.sizes.split(",")):
        stages = inference_stages(image_model, synthetic_pair(n, n, config), device,
                                  args.repeats)
        geo = inference_stages(geometry_model, synthetic_pair(n, n, geometry), device,
                               args.repeats)
        for name, (wall, cpu) in stages.items():
            record("latency", n, name, wall, cpu, args.repeats)
        for name, (wall, cpu) in geo.items():
            record("latency_geometry_only", n, name, wall, cpu, args.repeats)
        latency.append((n, stages, geo))
        print(f"{n}x{n}: predict {ms(stages['predict_total'][0])} ms, geometry-only "
              f"{ms(geo['predict_total'][0])} ms", flush=True)

    match_times = {}
    if not args.skip_match:
        with tempfile.TemporaryDirectory(prefix="lngraph-speed-") as folder:
            match_times = match_end_to_end(config, device, args.match_repeats, Path(folder))
        for name, (wall, cpu) in match_times.items():
            record("lngraph_match", 20, name, wall, cpu, args.match_repeats)
        print("lngraph match: " + ", ".join(f"{k} {v[0]:.2f} s" for k, v in
                                            match_times.items()), flush=True)

    train = training_throughput(config, device, args.train_steps)
    train_geo = training_throughput(geometry, device, args.train_steps)
    record("training", 10, "pairs_per_second", train[0], train[1], args.train_steps)
    record("training_geometry_only", 10, "pairs_per_second", train_geo[0], train_geo[1],
           args.train_steps)
    print(f"training: {train[0]:.1f} pairs/s, geometry-only {train_geo[0]:.1f} pairs/s")

    lines = [
        f"# Matcher speed ({config.name} config, {device.type})", "",
        f"- command: `{command.strip()}`",
        f"- commit: `{commit()}` (working tree may hold uncommitted changes)",
        f"- machine: {machine(device)}; torch {torch.__version__}, {args.threads} torch "
        "thread(s)",
        f"- load average before the run: {load:.2f} (the machine may be shared: wall time "
        "includes waiting for other processes, CPU time does not)",
        "- untrained weights (speed does not depend on them); each cell: median wall time "
        "(this process's CPU time)", "",
        "## Inference latency per pair (ms)", "",
        "| nodes | crop encoders | SEAG + similarity | SCB head | assignment | whole predict | "
        "geometry encoder | geometry-only predict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, stages, geo in latency:
        def cell(table, key):
            return f"{ms(table[key][0])} ({ms(table[key][1])})" if key in table else "—"
        lines.append(f"| {n}×{n} | {cell(stages, 'encoders')} | "
                     f"{cell(stages, 'seag_similarity')} | {cell(stages, 'scb_head')} | "
                     f"{cell(stages, 'assignment')} | {cell(stages, 'predict_total')} | "
                     f"{cell(geo, 'encoders')} | {cell(geo, 'predict_total')} |")
    lines += ["", "Crop encoders: 3D ResNet on the cubes, 2D ResNet on the nine views and the "
              "SCB tokens, both scans. SCB head: candidates by Hungarian on S, then the head on "
              "them. Assignment: Hungarian + SCB rule (numpy/scipy). Whole predict also copies "
              "S to the host. Synthetic pairs: random centres in a 200 mm box, random crops."]
    if match_times:
        lines += ["", "## `lngraph match` end to end (s)", "",
                  "Two 512×512×150 int16 `.nii.gz` volumes (noise), 20 nodes each, untrained "
                  f"`{config.name}` checkpoint (`save_checkpoint`), crops computed (cold cache).",
                  "", "| run | without figure | with `--figure` |", "|---|---|---|"]
        for way, label in (("subprocess", "`python -m lngraph match` (interpreter and imports "
                            "included)"), ("in-process", "in-process (`lngraph.cli.main`)")):
            plain, fig = match_times[way], match_times[f"{way} --figure"]
            lines.append(f"| {label} | {plain[0]:.2f} ({plain[1]:.2f}) | "
                         f"{fig[0]:.2f} ({fig[1]:.2f}) |")
    lines += ["", "## Training throughput", "",
              f"Forward, loss, backward, Adam step; batches of {config.optim.batch_size} pairs of "
              f"10×10 nodes, {args.train_steps} steps after one warm-up step.", "",
              "| model | pairs/s by wall time | pairs/s by CPU time |", "|---|---|---|",
              f"| {config.name} (crops) | {train[0]:.1f} | {train[1]:.1f} |",
              f"| {config.name}, geometry-only | {train_geo[0]:.1f} | {train_geo[1]:.1f} |", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, "\n".join(lines))
    with atomic_path(out.with_suffix(".csv")) as tmp, \
            open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"written {out} and {out.with_suffix('.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
