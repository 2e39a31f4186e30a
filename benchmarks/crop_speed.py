"""Crop and view throughput: 20 nodes in a 512×512×150 int16 CT (synthetic noise).

Measures, as the median of a few repeats:

* ``crop_cubes`` (SimpleITK's resampler, one reference grid per node, one thread) in both
  modes, and the same on ITK's default thread count (to justify the single thread);
* ``crop_cubes`` on a volume with twice the slices (cost must follow the nodes, not the volume);
* the same crops by scipy's ``map_coordinates`` on the voxel array (the alternative
  implementation, one thread; same values to float precision);
* ``nine_views`` on the crops;
* SHA-256 of the image file (the cache key's cost per scan).

Run: ``python benchmarks/crop_speed.py`` (writes ``benchmarks/results/crop_speed.md``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from provenance import commit
from scipy import ndimage

from lngraph.data import CropParams, crop_cubes, nine_views
from lngraph.data.cache import image_digest
from lngraph.data.crops import AIR_HU, grid_spacing, window_to_unit
from lngraph.io import ImageGeometry, write_image, write_text_atomic

RESULTS = Path(__file__).resolve().parent / "results" / "crop_speed.md"


def synthetic_ct(slices: int, seed: int = 0) -> sitk.Image:
    """A 512×512×``slices`` int16 volume of noise around soft-tissue HU, 0.78×0.78×2 mm."""
    rng = np.random.default_rng(seed)
    array = rng.normal(40.0, 120.0, size=(slices, 512, 512)).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.78, 0.78, 2.0))
    image.SetOrigin((-200.0, -200.0, -150.0))
    return image


def node_table(image: sitk.Image, n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``n`` centres well inside the image and radii of 3-15 mm."""
    rng = np.random.default_rng(seed)
    index = rng.uniform(0.2, 0.8, size=(n, 3)) * (np.asarray(image.GetSize()) - 1)
    centres = np.array([image.TransformContinuousIndexToPhysicalPoint(u) for u in index])
    return centres, rng.uniform(3.0, 15.0, size=n)


def crop_with_map_coordinates(image: sitk.Image, centres, radii, params: CropParams
                              ) -> np.ndarray:
    """The same crops by scipy's trilinear ``map_coordinates`` on the voxel array (no copy).

    Every node's grid points are mapped to continuous array indices with the image geometry;
    points beyond the outer voxel faces read air, as in ``crop_cubes``.
    """
    geometry = ImageGeometry.from_image(image)
    size = params.size
    offsets = np.arange(size) - (size - 1) / 2
    spacing = grid_spacing(params, len(centres), radii)
    # the world → array map is affine: apply it to the centres and to one step per world axis
    steps = np.linalg.inv(geometry.index_to_world_matrix)[::-1][None] * spacing[:, None, :]
    along_z, along_y, along_x = (steps[:, :, w].T[:, :, None] * offsets for w in (2, 1, 0))
    coords = (geometry.world_to_array(centres).T[:, :, None, None, None]
              + along_z[:, :, :, None, None] + along_y[:, :, None, :, None]
              + along_x[:, :, None, None, :]).reshape(3, -1)
    array = sitk.GetArrayViewFromImage(image)
    values = ndimage.map_coordinates(array, coords, order=1, mode="nearest", output=np.float32)
    outside = np.any((coords < -0.5) | (coords > np.array(array.shape)[:, None] - 0.5), axis=0)
    values[outside] = AIR_HU
    return window_to_unit(values, params.window).reshape(len(centres), size, size, size)


def crop_with_itk_threads(image: sitk.Image, centres, radii, params: CropParams) -> np.ndarray:
    """``crop_cubes`` with ``sitk.Resample`` on ITK's default number of threads per node."""
    size = params.size
    cubes = []
    for centre, spacing in zip(centres, grid_spacing(params, len(centres), radii), strict=True):
        reference = sitk.Image([size] * 3, sitk.sitkFloat32)
        reference.SetSpacing(tuple(spacing))
        reference.SetOrigin(tuple(centre - spacing * (size - 1) / 2))
        cubes.append(sitk.GetArrayFromImage(sitk.Resample(
            image, reference, sitk.Transform(), sitk.sitkLinear, AIR_HU, sitk.sitkFloat32)))
    return window_to_unit(np.stack(cubes), params.window)


def median_seconds(repeats: int, calls: dict) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds of each ``name -> (fn, args, kwargs)``.

    The calls are interleaved, so a change of machine load during the run affects them alike;
    CPU time (of all this process's threads) is reported too because wall time on a shared
    machine includes waiting for other processes.
    """
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, (fn, args, kwargs) in calls.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn(*args, **kwargs)
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {name: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t))
            for name, t in times.items()}



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--slices", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()

    image = synthetic_ct(args.slices)
    tall = synthetic_ct(2 * args.slices)
    centres, radii = node_table(image, args.nodes)
    n = args.nodes
    rows = []
    for mode in ("fixed", "radius"):
        params = CropParams(mode=mode)
        options = params.as_dict()
        ours = crop_cubes(image, centres, radii, **options)
        difference = max(float(np.abs(ours - other(image, centres, radii, params)).max())
                         for other in (crop_with_map_coordinates, crop_with_itk_threads))
        t = median_seconds(args.repeats, {
            "ours": (crop_cubes, (image, centres, radii), options),
            "tall": (crop_cubes, (tall, centres, radii), options),
            "threads": (crop_with_itk_threads, (image, centres, radii, params), {}),
            "scipy": (crop_with_map_coordinates, (image, centres, radii, params), {}),
            "views": (nine_views, (ours,), {}),
        })
        cells = [f"{n / t[k][0]:.0f} ({n / t[k][1]:.0f})"
                 for k in ("ours", "tall", "threads", "scipy", "views")]
        rows.append((mode, *cells, f"{difference:.1e}"))

    with tempfile.TemporaryDirectory() as tmp:
        path = write_image(image, Path(tmp) / "ct.nrrd", compress=False)
        megabytes = path.stat().st_size / 1e6
        t_hash = median_seconds(args.repeats, {"hash": (image_digest, (path,), {})})["hash"][0]

    command = " ".join(["python benchmarks/crop_speed.py", *(sys.argv[1:] if argv is None
                                                             else argv)])
    lines = [
        "# Crop throughput",
        "",
        f"- command: `{command}`",
        f"- commit: `{commit()}`",
        f"- machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs",
        f"- data: {n} nodes in a 512×512×{args.slices} int16 volume (synthetic noise), "
        f"size 24, median of {args.repeats} interleaved repeats",
        f"- load average before the run: {load:.2f} (the machine may be shared)",
        "- each cell: per second by wall time (by this process's CPU time); crops unless said "
        "otherwise",
        "",
        f"| mode | crop_cubes (1 thread) | same, 512×512×{2 * args.slices} volume "
        f"| same on {threads} ITK threads | scipy map_coordinates, 1 thread "
        "| nine_views (cubes/s) | max abs difference to the two alternatives |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", f"Cache key: SHA-256 of the {megabytes:.0f} MB uncompressed image file in "
              f"{t_hash * 1e3:.0f} ms ({megabytes / t_hash:.0f} MB/s).", ""]
    text = "\n".join(lines)
    print(text)
    write_text_atomic(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
