"""Speed of the matcher a config builds: inference per pair, ``lngraph match``, training.

The model is ``build_matcher(config)``: the :class:`~lngraph.models.GraphMatcher`
(``model.architecture: graph``; ``lite``, the default) or the
:class:`~lngraph.models.AsymmetricMatcher` (``asymmetric``; ``paper``). Three studies, each the
median of a few repeats, wall time and this process's CPU time:

1. **Inference latency per pair** at n × n nodes (default 20, 50, 100, 200), on synthetic pair
   graphs (random centres in a 200 mm box, radii 3–15 mm, random crops). First the
   **alignment** (:func:`~lngraph.data.geometry.pair_shifts`, numpy/SciPy), computed once per
   pair when the graph is built (``src.shift``), not in the forward pass, and apart from it
   the rotation search that the rigid alignment adds where its refinement accepts no fit
   (:func:`~lngraph.matching.alignment.search_rigid`, run on the same pair). Then, on a graph
   that already holds crops and shifts, the stages of the forward pass and the decision:

   - graph matcher: the crop encoders and tokens of both scans (``model.tokens``); the layers
     and heads (aligned positions, ``model.layers`` × (intra-scan layer, cross-graph
     attention), the assignment heads); the assignment
     (:func:`~lngraph.matching.batched.batched_assignment` on the last head's probabilities:
     Hungarian + threshold, SciPy);
   - asymmetric matcher: the crop encoders; SEAG + the cosine similarity S; the position prior;
     the SCB head (configs with SCB only); the assignment;

   and the **whole predict**, ``to_predictions(model.match(graph))`` (forward, assignment,
   conversion to :class:`~lngraph.io.matches.PairPrediction`). The same for the geometry-only
   model (geometry encoder and whole predict). Untrained weights: speed does not depend on
   them.
2. **``lngraph match`` end to end** on two 512×512×150 int16 volumes (``.nii.gz``, synthetic
   noise) with 20 nodes each, an untrained model saved with ``save_checkpoint``: as a
   subprocess (``python -m lngraph match``: interpreter and imports included, what a user
   waits for) and in-process (reading the images, crops with a cold cache, alignment, predict,
   outputs), with and without ``--figure``. In the same run and on the same inputs, a
   **floor**: a fresh ``python -c`` process that imports torch, torch_geometric and SimpleITK
   and reads the two images with ``SimpleITK.ReadImage``, nothing else; the floor and the
   subprocess without figure alternate within each repeat, so load changes hit both. Then
   where the time over the floor goes: the imports the floor does not make (``python -X
   importtime``, by the lngraph module that imports them) and the in-process work besides
   reading the images (``lngraph.io.read_image``'s checks apart). Also the import time of
   ``lngraph.cli.main`` and ``lngraph.models`` in fresh processes, as context.
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
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from provenance import commit
from torch_geometric.data import Batch, HeteroData

from lngraph.cli import main as cli_main
from lngraph.data.geometry import pair_shifts
from lngraph.data.graph import pair_to_heterodata
from lngraph.io import (
    NodeTable,
    Scan,
    ScanPair,
    atomic_path,
    read_image,
    write_image,
    write_text_atomic,
)
from lngraph.matching.alignment import search_rigid
from lngraph.matching.batched import batched_assignment
from lngraph.models import (
    AsymmetricMatcher,
    GraphMatcher,
    Matcher,
    MatcherConfig,
    alignment_params,
    build_matcher,
    preset,
    save_checkpoint,
    to_predictions,
)
from lngraph.models.asymmetric_matcher import (
    MatcherOutput,
    ScanFeatures,
)

RESULTS = Path(__file__).resolve().parent / "results"
BOX_MM = 200.0
#: Targets of the issue: whole predict per pair, lite, one CPU thread (seconds).
TARGETS = {20: 0.050, 200: 1.0}
#: ``lngraph match`` subprocess (no figure) over the floor process.
RATIO_TARGET = 1.3
#: The floor process: interpreter, torch + PyG + SimpleITK imports, reading the two images.
FLOOR = ("import sys, torch, torch_geometric, SimpleITK as sitk\n"
         "for path in sys.argv[1:]:\n    sitk.ReadImage(path)")
#: The latency table's stage columns of each architecture, (stage, header), between the
#: alignment and the whole predict.
STAGE_COLUMNS = {
    "graph": (("encoders", "crop encoders + tokens"), ("layers", "layers + heads"),
              ("assignment", "assignment")),
    "asymmetric": (("encoders", "crop encoders"), ("seag_similarity", "SEAG + S"),
                   ("position_prior", "position prior"), ("scb_head", "SCB head"),
                   ("assignment", "assignment")),
}
#: Import-time rows: ``python -c`` code and a note.
IMPORTS = (("import lngraph.cli.main", "what `lngraph --help` pays"),
           ("import lngraph.models", "the inference path (torch, PyG, SciPy, lngraph.data)"),
           ("import torch, torch_geometric, SimpleITK", "the floor's imports"))


def synthetic_scan_pair(n_src: int, n_dst: int, seed: int = 0) -> ScanPair:
    """The later scan is the earlier one moved a few mm (plus or minus nodes)."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform(-BOX_MM / 2, BOX_MM / 2, size=(max(n_src, n_dst), 3))
    short = rng.uniform(6.0, 30.0, size=len(pos))

    def scan(scan_id: str, n: int, shift: float) -> Scan:
        nodes = NodeTable.from_arrays(pos[:n] + shift + rng.normal(0, 2, (n, 3)), short[:n],
                                      track_id=[f"L{k}" for k in range(n)])
        return Scan("P", scan_id, "1" if scan_id == "a" else "2", None, nodes)

    return ScanPair(scan("a", n_src, 0.0), scan("b", n_dst, 5.0))


def pair_alignment(pair: ScanPair, config: MatcherConfig) -> np.ndarray | None:
    """The pair's alignment shifts (``None`` without the position prior), no cache."""
    params = alignment_params(config)
    return None if params is None else pair_shifts(pair.src.nodes.pos, pair.dst.nodes.pos,
                                                   params)


def synthetic_pair(n_src: int, n_dst: int, config: MatcherConfig, seed: int = 0
                   ) -> HeteroData:
    """A pair graph as ``matcher_graphs`` builds it: random crops of the config's size (unless
    geometry-only) and the alignment shifts (with the position prior)."""
    pair = synthetic_scan_pair(n_src, n_dst, seed)
    shifts = pair_alignment(pair, config)
    if config.model.geometry_only:
        return pair_to_heterodata(pair, shifts=shifts)
    rng = np.random.default_rng(seed + 1)

    def crops(n: int):
        s = config.crops.size
        return (rng.random((n, s, s, s), dtype=np.float32),
                rng.random((n, 9, s, s), dtype=np.float32))

    return pair_to_heterodata(pair, crops(n_src), crops(n_dst), shifts)


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


def alignment_times(n: int, config: MatcherConfig, repeats: int
                    ) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds of one n × n pair's alignment shifts (graph build)."""
    params = alignment_params(config)
    if params is None:
        return {}
    pair = synthetic_scan_pair(n, n)
    pair_alignment(pair, config)  # warm-up
    samples = {"alignment": [timed(torch.device("cpu"), pair_alignment, pair, config)[1:]
                             for _ in range(repeats)]}
    if params.rotation_search:     # (only ever set with rigid)
        src, dst = pair.src.nodes.pos, pair.dst.nodes.pos
        samples["rotation_search"] = [
            timed(torch.device("cpu"), search_rigid, src, dst, params.gate_mm)[1:]
            for _ in range(repeats)]
    return median_times(samples)


# Graph matcher stages (GraphMatcher.forward cut after the tokens) ---------------------------
def tokens_both(model: GraphMatcher, data) -> tuple[tuple[ScanFeatures, torch.Tensor], ...]:
    """Both scans' encoder outputs and tokens (crop or geometry encoders, appearance + size)."""
    return model.tokens(data, "src"), model.tokens(data, "dst")


def graph_stages(model: GraphMatcher, data, stage: Callable):
    """One pass of the graph matcher's stages through ``stage``; returns the matches."""
    src, dst = stage("encoders", tokens_both, model, data)
    out = stage("layers", model.propagate, data, src, dst)
    return stage("assignment", batched_assignment, out.score, src_mask=out.src_mask,
                 dst_mask=out.dst_mask, threshold=model.config.model.similarity_threshold)


# Asymmetric matcher stages ----------------------------------------------------------------------
def encode_both(model: AsymmetricMatcher, data) -> tuple[ScanFeatures, ScanFeatures]:
    return model.encode(data["src"]), model.encode(data["dst"])


def seag_similarity(model: AsymmetricMatcher, data, src: ScanFeatures, dst: ScanFeatures):
    """SEAG context of both scans and the padded similarity S with the node masks."""
    return model.similarity(model.context(data, "src", src), model.context(data, "dst", dst),
                            src.batch, dst.batch, 1)


def position_prior(model: AsymmetricMatcher, data, src: ScanFeatures, dst: ScanFeatures,
                   similarity, src_mask, dst_mask) -> MatcherOutput:
    """The matching score (S fused with the aligned distances), as the forward pass returns
    it (no SCB candidates: :meth:`AsymmetricMatcher.match` passes none)."""
    logits = model.match_logits(data, similarity, src, dst)
    score = torch.sigmoid(logits) if model.config.model.position_prior else similarity
    return MatcherOutput(src, dst, similarity, logits, score, src_mask, dst_mask,
                         src.batch.new_zeros((2, 0)), similarity.new_zeros((0, 9)))


def asymmetric_stages(model: AsymmetricMatcher, data, stage: Callable):
    """One pass of the asymmetric matcher's stages through ``stage``; returns the matches."""
    m = model.config.model
    src, dst = stage("encoders", encode_both, model, data)
    similarity, src_mask, dst_mask = stage("seag_similarity", seag_similarity, model, data,
                                           src, dst)
    out = stage("position_prior", position_prior, model, data, src, dst, similarity,
                src_mask, dst_mask)
    decision = stage("scb_head", model.scb_decision, out) if model.use_scb else None
    return stage("assignment", batched_assignment, out.score, src_mask=out.src_mask,
                 dst_mask=out.dst_mask,
                 threshold=m.scb_threshold if model.use_scb else m.similarity_threshold,
                 decision=decision, reassign=model.use_scb and m.scb_reassign)


def whole_predict(model: Matcher, data):
    return to_predictions(model.match(data))


@torch.no_grad()
def inference_stages(model: Matcher, data, device: torch.device, repeats: int
                     ) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds of each stage of ``to_predictions(model.match(data))`` on
    one pair graph that already holds its crops and shifts (stages by architecture)."""
    model.eval()
    data = data.to(device)
    samples: dict[str, list[tuple[float, float]]] = {}

    def stage(name: str, fn: Callable, *args, **kwargs):
        result, wall, cpu = timed(device, lambda: fn(*args, **kwargs))
        samples.setdefault(name, []).append((wall, cpu))
        return result

    stages = graph_stages if isinstance(model, GraphMatcher) else asymmetric_stages
    whole_predict(model, data)  # warm-up (allocations, kernels)
    for _ in range(repeats):
        matches = stages(model, data, stage)
        stage("to_predictions", to_predictions, matches)
        stage("predict_total", whole_predict, model, data)
    return median_times(samples)


def training_throughput(config: MatcherConfig, device: torch.device, steps: int,
                        nodes: int = 10) -> tuple[float, float]:
    """Training pairs per second (by wall, by CPU time) over ``steps`` optimiser steps."""
    torch.manual_seed(0)
    model = build_matcher(config).to(device).train()
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


def run_child(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of a child process (raises if it fails)."""
    wall, cpu = time.perf_counter(), child_cpu_seconds()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command[:4])} … failed:\n{done.stderr}")
    return time.perf_counter() - wall, child_cpu_seconds() - cpu


def child_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}


def import_tree(command: list[str], env: dict[str, str]) -> dict[str, tuple[float, str]]:
    """Per module a child imports (``python -X importtime``): its self import time (s) and
    the nearest ``lngraph`` module above it in the import tree (``""`` if none)."""
    done = subprocess.run([command[0], "-X", "importtime", *command[1:]], capture_output=True,
                          text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command[:4])} … failed:\n{done.stderr}")
    rows = []   # (self µs, depth, module), children before their parent
    for line in done.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if line.startswith("import time:") and len(parts) == 3 and parts[0].strip().isdigit():
            name = parts[2].rstrip()
            rows.append((int(parts[0]), len(name) - len(name.lstrip()), name.strip()))
    out: dict[str, tuple[float, str]] = {}
    for k, (micro, depth, name) in enumerate(rows):
        importer = ""
        for _, up_depth, up in rows[k + 1:]:
            if up_depth < depth:
                depth = up_depth
                if up.startswith("lngraph"):
                    importer = up
                    break
        out[name] = (micro / 1e6, importer)
    return out


def import_excess(match: Callable[[int], list[str]], floor: list[str], env: dict[str, str],
                  repeats: int) -> tuple[float, dict[tuple[str, str], float]]:
    """The self import time (s, under ``-X importtime``, median of ``repeats``) of the modules
    the command ``match(repeat)`` imports and ``floor`` does not: in all, and by (importing
    lngraph module, top-level package)."""
    totals, parts = [], {}
    for r in range(repeats):
        ours, base = import_tree(match(r), env), import_tree(floor, env)
        extra = Counter()
        for name, (seconds, importer) in ours.items():
            if name not in base:
                extra[(importer or name, name.split(".")[0])] += seconds
        totals.append(sum(extra.values()))
        for key in set(extra) | set(parts):
            parts.setdefault(key, [0.0] * r).append(extra.get(key, 0.0))
    return statistics.median(totals), {k: statistics.median(v) for k, v in parts.items()}


def match_end_to_end(config: MatcherConfig, device: torch.device, repeats: int, folder: Path
                     ) -> tuple[dict[str, tuple[float, float]], list[float], dict]:
    """Median (wall, CPU) seconds of ``lngraph match`` on the two volumes, four ways, and of
    the floor process; the subprocess / floor wall-time ratio of each repeat; and where the
    time over the floor goes (:func:`import_excess`, and this process's time to read the two
    images, which the in-process run also pays)."""
    torch.manual_seed(0)
    checkpoint = save_checkpoint(folder / "model.ckpt", build_matcher(config), config)
    inputs = write_match_inputs(folder)
    images = [inputs[inputs.index(f"--{name}-image") + 1] for name in ("src", "dst")]
    env = child_env()

    def argv(out: Path, figure: bool) -> list[str]:
        return ["match", "--model", str(checkpoint), *inputs, "--device", device.type,
                "--out", str(out)] + (["--figure"] if figure else [])

    samples: dict[str, list[tuple[float, float]]] = {}
    ratios = []   # (wall ratio, CPU ratio) of each repeat
    for r in range(repeats):
        # The floor and the plain subprocess back to back, in alternating order.
        pair = {}
        for way in (("floor", "subprocess") if r % 2 == 0 else ("subprocess", "floor")):
            command = ([sys.executable, "-c", FLOOR, *images] if way == "floor" else
                       [sys.executable, "-m", "lngraph", *argv(folder / f"sub{r}0", False)])
            pair[way] = run_child(command, env)
            samples.setdefault(way, []).append(pair[way])
        ratios.append((pair["subprocess"][0] / pair["floor"][0],
                       pair["subprocess"][1] / pair["floor"][1]))
        samples.setdefault("subprocess --figure", []).append(run_child(
            [sys.executable, "-m", "lngraph", *argv(folder / f"sub{r}1", True)], env))
        for figure in (False, True):
            suffix = " --figure" if figure else ""
            _, w, c = timed(device, cli_main.main, argv(folder / f"in{r}{int(figure)}", figure))
            samples.setdefault(f"in-process{suffix}", []).append((w, c))
    profile_repeats = min(repeats, 3)
    total, parts = import_excess(
        lambda r: [sys.executable, "-m", "lngraph", *argv(folder / f"profile{r}", False)],
        [sys.executable, "-c", FLOOR, *images], env, profile_repeats)
    cpu = torch.device("cpu")
    reads, checked = [], []
    for _ in range(profile_repeats):
        reads.append(timed(cpu, lambda: [sitk.ReadImage(p) for p in images])[1])
        checked.append(timed(cpu, lambda: [read_image(p) for p in images])[1])
    profile = {"imports": total, "parts": parts, "read": statistics.median(reads),
               "read_image": statistics.median(checked), "repeats": profile_repeats}
    return median_times(samples), ratios, profile


def import_times(repeats: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds of fresh ``python -c`` processes that only import
    (:data:`IMPORTS`), interleaved."""
    env = child_env()
    samples: dict[str, list[tuple[float, float]]] = {}
    for _ in range(repeats):
        for code, _ in IMPORTS:
            samples.setdefault(code, []).append(run_child([sys.executable, "-c", code], env))
    return median_times(samples)


def stage_notes(model: Matcher) -> str:
    """What the latency table's stage columns of ``model``'s architecture time."""
    m = model.config.model
    if isinstance(model, GraphMatcher):
        cross = (f"cross-graph `PositionalAttentionConv` from the {m.cross_k} nearest "
                 "nodes of the other scan (all when it has at most that many)"
                 + (", with edge values" if m.cross_edge_values else "")
                 if m.use_cross else "no cross-graph layer")
        return ("Crop encoders + tokens: 3D ResNet on the cubes, 2D ResNet on the nine views, "
                "appearance + size tokens, both scans (`model.tokens`). Layers + heads: the "
                f"rest of the forward pass (`model.propagate`, evaluation mode), aligned "
                f"positions, {m.layers} × (intra-scan `{m.self_layer}` layer on both scans, "
                f"{cross}; one operator call each, on the union of both scans' nodes), the "
                "deciding assignment head (dual-softmax × matchability) and the "
                "node masks. Assignment: `batched_assignment` on the "
                "last head's probabilities (Hungarian + threshold, SciPy, the only step on the "
                "host).")
    return ("Crop encoders: 3D ResNet on the cubes, 2D ResNet on the nine views (and the SCB "
            "tokens with SCB), both scans. SEAG + S: graph context of both scans and the "
            "cosine similarity. Position prior: aligned centre distances from the stored "
            "shifts, fused with S into the matching score (pure torch). SCB head (configs "
            f"with SCB only; `{model.config.name}` has it {'on' if model.use_scb else 'off'}): "
            "first assignment on the score, then the head on the assigned pairs. Assignment: "
            "`batched_assignment` (Hungarian + threshold, SciPy, the only step on the host).")


def machine(device: torch.device) -> str:
    text = f"{platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs"
    if device.type == "cuda":
        text += f", {torch.cuda.get_device_name(device)}"
    return text


def ms(seconds: float) -> str:
    return f"{1000 * seconds:.1f}"


def verdict(met: bool) -> str:
    return "**met**" if met else "**not met**"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="lite",
                        help="preset name (lite, paper) or a YAML config file")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--sizes", default="20,50,100,200",
                        help="nodes per scan of the latency study, comma-separated")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--match-repeats", type=int, default=7,
                        help="repeats of the lngraph match study and of the import times")
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--skip-match", action="store_true",
                        help="leave out the lngraph match study and the import times")
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
    load = os.getloadavg()
    command = "python benchmarks/model_speed.py " + " ".join(argv or sys.argv[1:])
    started = time.perf_counter()

    rows: list[dict] = []

    def record(study, nodes, component, wall, cpu, repeats, ratio=""):
        rows.append({"study": study, "config": config.name, "device": device.type,
                     "nodes": nodes, "component": component, "wall_ms": round(1000 * wall, 3),
                     "cpu_ms": round(1000 * cpu, 3), "repeats": repeats, "ratio": ratio})

    torch.manual_seed(0)
    image_model = build_matcher(config).to(device)
    geometry_model = build_matcher(geometry).to(device)
    latency = []
    for n in (int(v) for v in args.sizes.split(",")):
        stages = {**alignment_times(n, config, args.repeats),
                  **inference_stages(image_model, synthetic_pair(n, n, config), device,
                                     args.repeats)}
        geo = inference_stages(geometry_model, synthetic_pair(n, n, geometry), device,
                               args.repeats)
        for name, (wall, cpu) in stages.items():
            record("latency", n, name, wall, cpu, args.repeats)
        for name, (wall, cpu) in geo.items():
            record("latency_geometry_only", n, name, wall, cpu, args.repeats)
        latency.append((n, stages, geo))
        align = stages.get("alignment", (0.0, 0.0))[0]
        print(f"{n}x{n}: alignment {ms(align)} ms, predict {ms(stages['predict_total'][0])} "
              f"ms, geometry-only {ms(geo['predict_total'][0])} ms", flush=True)

    match_times, ratios, imports, profile = {}, [], {}, {}
    if not args.skip_match:
        with tempfile.TemporaryDirectory(prefix="lngraph-speed-") as folder:
            match_times, ratios, profile = match_end_to_end(config, device, args.match_repeats,
                                                            Path(folder))
        for name, (wall, cpu) in match_times.items():
            record("lngraph_match", 20, name, wall, cpu, args.match_repeats)
        for k, clock in enumerate(("wall", "CPU")):
            record("lngraph_match", 20, f"subprocess / floor, {clock} time (median of "
                   "per-repeat ratios)", 0, 0, args.match_repeats,
                   round(statistics.median(r[k] for r in ratios), 3))
        record("lngraph_match", 20, "imports over the floor (-X importtime self time)",
               profile["imports"], 0, profile["repeats"])
        for (importer, package), seconds in sorted(profile["parts"].items(),
                                                   key=lambda kv: -kv[1]):
            if seconds < 0.001:
                continue
            record("lngraph_match_imports", 20, f"{importer} -> {package}", seconds, 0,
                   profile["repeats"])
        record("lngraph_match", 20, "reading both images (SimpleITK, in-process)",
               profile["read"], 0, profile["repeats"])
        record("lngraph_match", 20, "reading both images (lngraph.io.read_image, in-process)",
               profile["read_image"], 0, profile["repeats"])
        print("lngraph match: " + ", ".join(f"{k} {v[0]:.2f} s" for k, v in
                                            match_times.items())
              + f"; subprocess/floor {statistics.median(r[0] for r in ratios):.2f} (wall), "
              f"{statistics.median(r[1] for r in ratios):.2f} (CPU)", flush=True)
        imports = import_times(args.match_repeats)
        for name, (wall, cpu) in imports.items():
            record("imports", "", name, wall, cpu, args.match_repeats)
        print("imports: " + ", ".join(f"{k} {v[0]:.2f} s" for k, v in imports.items()),
              flush=True)

    train = training_throughput(config, device, args.train_steps)
    train_geo = training_throughput(geometry, device, args.train_steps)
    record("training", 10, "pairs_per_second", train[0], train[1], args.train_steps)
    record("training_geometry_only", 10, "pairs_per_second", train_geo[0], train_geo[1],
           args.train_steps)
    print(f"training: {train[0]:.3g} pairs/s, geometry-only {train_geo[0]:.3g} pairs/s")
    load_after = os.getloadavg()

    architecture = config.model.architecture
    columns = STAGE_COLUMNS[architecture]
    encoder = "geometry encoder + tokens" if architecture == "graph" else "geometry encoder"
    lines = [
        f"# Matcher speed ({config.name} config, {architecture} matcher, {device.type})", "",
        f"- command: `{command.strip()}`",
        f"- commit: `{commit()}` (working tree may hold uncommitted changes)",
        f"- machine: {machine(device)}; torch {torch.__version__}, {args.threads} torch "
        "thread(s)",
        f"- load average (1, 5, 15 min) before the run: "
        f"{', '.join(f'{v:.2f}' for v in load)}; after it: "
        f"{', '.join(f'{v:.2f}' for v in load_after)} (the machine may be shared: wall time "
        "includes waiting for other processes, CPU time does not); the run took "
        f"{time.perf_counter() - started:.0f} s",
        "- untrained weights (speed does not depend on them); each cell: median wall time "
        "(this process's CPU time)", "",
        "## Inference latency per pair (ms)", "",
        "| nodes | alignment (graph build) | rotation search (when it runs) | "
        + " | ".join(header for _, header in columns)
        + f" | whole predict | {encoder} | geometry-only predict |",
        "|---" * (len(columns) + 6) + "|",
    ]

    def cell(table, key):
        return f"{ms(table[key][0])} ({ms(table[key][1])})" if key in table else "—"

    for n, stages, geo in latency:
        cells = ([cell(stages, "alignment"), cell(stages, "rotation_search")]
                 + [cell(stages, key) for key, _ in columns]
                 + [cell(stages, "predict_total"), cell(geo, "encoders"),
                    cell(geo, "predict_total")])
        lines.append(f"| {n}×{n} | " + " | ".join(cells) + " |")
    lines += [
        "", "Alignment (graph build): `pair_shifts`, the robust translation and per-node local "
        "shifts between the two scans' centres (numpy/SciPy), computed once per pair when the "
        "graph is built (`matcher_graphs`, stored as `src.shift`, cached with the crops) and "
        "needed by the position prior of both models (geometry-only too); it is not part of "
        "the forward pass any more, so it is not in *whole predict*. Rotation search: "
        "`search_rigid` on the same pair, the extra work of the rigid alignment on a pair "
        "whose rigid refinement accepts no fit (a turn of 10–15° that the translation "
        "misses); the pairs here do not need it, so it is not in *alignment*. "
        "The other columns run on a graph that already holds crops and shifts. "
        f"{stage_notes(image_model)} Whole predict: "
        "`to_predictions(model.match(graph))`, i.e. the forward pass, the assignment and the "
        "conversion to `PairPrediction`. Synthetic pairs: random centres in a 200 mm box, "
        "random crops."]
    sizes = {n: stages for n, stages, _ in latency}
    target_lines = []
    for n, limit in TARGETS.items():
        if n not in sizes:
            continue
        predict = sizes[n]["predict_total"][0]
        total = predict + sizes[n].get("alignment", (0.0, 0.0))[0]
        target_lines.append(
            f"- {n}×{n}: whole predict {ms(predict)} ms against ≤ {ms(limit)} ms: "
            f"{verdict(predict <= limit)}; with the alignment of graph build added "
            f"{ms(total)} ms: {verdict(total <= limit)} (the {dict(columns)['encoders']} alone: "
            f"{ms(sizes[n]['encoders'][0])} ms)")
    if target_lines:
        lines += ["", "### Targets (lite, one CPU thread)", ""]
        if (config.name, device.type, args.threads) != ("lite", "cpu", 1):
            lines += [f"(This run is `{config.name}` on {device.type} with {args.threads} "
                      "thread(s): the targets are stated for lite on one CPU thread.)", ""]
        lines += target_lines + [
            "- for reference, the earlier default (the asymmetric `lite` matcher) before the "
            "alignment refactor (commit `380dd06`, alignment inside the forward pass) took "
            "50.3 ms at 20×20 and 1260.6 ms at 200×200 for the whole predict on another VM "
            "instance (that commit's `benchmarks/results/model_speed.md`); the crop encoders "
            "vary by ±20 % between runs on this shared 2-CPU machine"]
    if match_times:
        ratio = statistics.median(r[0] for r in ratios)
        cpu_ratio = statistics.median(r[1] for r in ratios)
        of_medians = match_times["subprocess"][0] / match_times["floor"][0]
        lines += ["", "## `lngraph match` end to end (s)", "",
                  "Two 512×512×150 int16 `.nii.gz` volumes (noise), 20 nodes each, untrained "
                  f"`{config.name}` checkpoint (`save_checkpoint`), crops computed (cold cache), "
                  f"median of {args.match_repeats} repeats; each cell: wall (CPU of the "
                  "process).", "",
                  "| run | without figure | with `--figure` |", "|---|---|---|"]
        for way, label in (("subprocess", "`python -m lngraph match` (interpreter and imports "
                            "included)"), ("in-process", "in-process (`lngraph.cli.main`)")):
            plain, fig = match_times[way], match_times[f"{way} --figure"]
            lines.append(f"| {label} | {plain[0]:.2f} ({plain[1]:.2f}) | "
                         f"{fig[0]:.2f} ({fig[1]:.2f}) |")
        floor = match_times["floor"]
        lines.append(f"| floor: `python -c` importing torch, torch_geometric, SimpleITK and "
                     f"reading both images | {floor[0]:.2f} ({floor[1]:.2f}) | — |")
        lines += ["", f"**`lngraph match` / floor** (subprocess without figure over the floor, "
                  f"wall time): median of the per-repeat ratios **{ratio:.2f}×** "
                  f"(repeats: {', '.join(f'{w:.2f}' for w, _ in ratios)}; ratio of the medians "
                  f"{of_medians:.2f}×); target ≤ {RATIO_TARGET}×: "
                  f"{verdict(ratio <= RATIO_TARGET)}. By CPU time (less sensitive to other "
                  f"processes on a shared machine): **{cpu_ratio:.2f}×** (repeats: "
                  f"{', '.join(f'{c:.2f}' for _, c in ratios)}), "
                  f"{verdict(cpu_ratio <= RATIO_TARGET)}.",
                  "", "The floor and the subprocess run back to back in each repeat, in "
                  "alternating order, on the same files, so load changes hit both. The floor is "
                  "what no implementation of `lngraph match` can avoid: the interpreter, the "
                  "torch + PyG + SimpleITK imports and decompressing both volumes."]
        if profile:
            excess = match_times["subprocess"][0] - floor[0]
            runtime = match_times["in-process"][0] - profile["read"]
            by_importer: dict[str, Counter] = {}
            for (importer, package), seconds in profile["parts"].items():
                by_importer.setdefault(importer, Counter())[package] += seconds
            ranked = sorted(by_importer.items(), key=lambda kv: -sum(kv[1].values()))
            lines += ["", "### Where the time over the floor goes", "",
                      f"The subprocess takes {excess:.2f} s more than the floor (medians). "
                      f"Measured in the same run:", "",
                      f"- **imports the floor does not make**: {profile['imports']:.2f} s "
                      "(self time of those modules under `python -X importtime`, which inflates "
                      f"imports somewhat; median of {profile['repeats']}), by the lngraph "
                      "module that imports them:"]
            for importer, packages in ranked[:6]:
                listed = ", ".join(f"{p} {v:.2f}" for p, v in packages.most_common(4))
                more = sum(packages.values()) - sum(v for _, v in packages.most_common(4))
                lines.append(f"  - `{importer}`: {sum(packages.values()):.2f} s ({listed}"
                             + (f", others {more:.2f}" if more >= 0.005 else "") + ")")
            rest = sum(sum(p.values()) for _, p in ranked[6:])
            if rest >= 0.005:
                lines.append(f"  - everything else: {rest:.2f} s")
            lines += [f"- **work besides reading the images**: {runtime:.2f} s (the in-process "
                      f"run, {match_times['in-process'][0]:.2f} s, less reading both volumes "
                      f"with SimpleITK here, {profile['read']:.2f} s), of which "
                      f"**{profile['read_image'] - profile['read']:.2f} s** are "
                      "`lngraph.io.read_image`'s checks beyond ITK's read (reading both volumes "
                      f"with it here: {profile['read_image']:.2f} s); the rest: loading the "
                      "checkpoint and building the model, node tables, SHA-256 of both images "
                      "for the crop cache key, crops and views, alignment, predict, markups "
                      "and `matches.csv`",
                      f"- unaccounted: {excess - profile['imports'] - runtime:.2f} s (noise "
                      "between runs, `-X importtime` overhead)"]
        if imports:
            lines += ["", "Import time of fresh processes (context; `python -c CODE`, median "
                      f"of {args.match_repeats}, interleaved):", "",
                      "| code | what | wall s | CPU s |", "|---|---|---|---|"]
            lines += [f"| `{code}` | {note} | {imports[code][0]:.2f} | {imports[code][1]:.2f} |"
                      for code, note in IMPORTS]
    lines += ["", "## Training throughput", "",
              f"Forward, loss, backward, Adam step; batches of {config.optim.batch_size} pairs of "
              f"10×10 nodes (graphs with crops and shifts), {args.train_steps} steps after one "
              "warm-up step.", "",
              "| model | pairs/s by wall time | pairs/s by CPU time |", "|---|---|---|",
              f"| {config.name} (crops) | {train[0]:.3g} | {train[1]:.3g} |",
              f"| {config.name}, geometry-only | {train_geo[0]:.3g} | {train_geo[1]:.3g} |", ""]
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
