"""On-disk cache of each scan's crops and views (docs/design.md, *Crops and views*).

One ``.npz`` file per scan and crop setting, under a cache folder (by default the user's
cache, ``$XDG_CACHE_HOME/lngraph/crops`` or ``~/.cache/lngraph/crops``, see
:func:`default_cache_dir`), named ``<scan_id>-<hash>.npz`` with the hash of the crop parameters
and the image content (so cohorts that share scan ids keep separate entries), and holding
``cubes [N, S, S, S]``, ``views [N, 9, S, S]`` (float32) and the entry's key.

**Key.** SHA-256 of: a format version, the SHA-256 of the image's *content* (every byte of the
file, or of every file of a DICOM series folder, names included), the node table's centres and
radii (float64 bytes, in row order) and the crop parameters. An entry whose stored key differs
from the current one is recomputed and overwritten, so a changed image, node table or
parameter invalidates it. The image is hashed by content rather than by size and modification
time because timestamps are coarse (a file rewritten within one clock tick keeps its mtime)
and are lost or kept arbitrarily by copies; hashing runs at about 1 GB/s, cheaper than reading
and decompressing the image for a recomputation. A corrupt entry is recomputed too. Entries
are written atomically (temporary file + rename), so parallel writers and interrupted runs
never leave a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import zipfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm.auto import tqdm

from lngraph.data.crops import CropParams, crop_cubes
from lngraph.data.views import nine_views
from lngraph.io.atomic import atomic_path
from lngraph.io.cohort import Cohort, Scan
from lngraph.io.errors import InputError
from lngraph.io.image import image_exists, image_files, read_image

#: Bumped whenever the crop or view computation changes, so old entries are recomputed.
CACHE_VERSION = 1
_CHUNK = 1 << 20


@dataclass(frozen=True, eq=False)
class ScanCrops:
    """A scan's crops, row ``n`` for node ``n`` of its node table.

    Args:
        cubes: ``float32 [N, S, S, S]`` in ``[0, 1]``, numpy order ``(z, y, x)``.
        views: ``float32 [N, 9, S, S]`` (:func:`~lngraph.data.nine_views`).
        key: the cache key the crops belong to.
        from_cache: whether they were read from the cache rather than computed.
    """

    cubes: np.ndarray
    views: np.ndarray
    key: str
    from_cache: bool


def image_digest(path: str | os.PathLike) -> str:
    """SHA-256 of an image file's bytes, or of a DICOM folder's files (names and bytes; only
    the chosen series' files for ``FOLDER#SERIESUID``)."""
    if not image_exists(path):
        raise InputError(path, "image not found")
    files = image_files(path)
    single = len(files) == 1 and files[0] == Path(path)
    digest = hashlib.sha256()
    for file in files:
        if not single:
            digest.update(file.name.encode() + b"\0")
        with open(file, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def params_digest(params: CropParams) -> str:
    """SHA-256 of the crop parameters (with the cache version)."""
    text = json.dumps({"version": CACHE_VERSION, **params.as_dict()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def cache_key(image_sha256: str, scan: Scan, params: CropParams) -> str:
    """The key of a scan's entry: image content, node centres and radii, crop parameters."""
    digest = hashlib.sha256()
    digest.update(image_sha256.encode())
    digest.update(params_digest(params).encode())
    digest.update(np.ascontiguousarray(scan.nodes.pos, dtype="<f8").tobytes())
    digest.update(np.ascontiguousarray(scan.nodes.radius_mm, dtype="<f8").tobytes())
    return digest.hexdigest()


def entry_path(cache_dir: str | os.PathLike, scan_id: str, params: CropParams,
               image_sha256: str = "") -> Path:
    """Where a scan's entry for ``params`` lives: ``<scan id>-<hash>.npz``, the scan id made
    file-name safe (and at most 64 characters) and the hash of the crop parameters and the
    image content, so that scans of different cohorts that share an id (every synthetic cohort
    has a ``P0001_T0``) keep separate entries in the shared cache folder; a changed node table
    of the same image rewrites its entry in place."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", scan_id)[:64]
    if safe != scan_id:
        safe += "_" + hashlib.sha256(scan_id.encode()).hexdigest()[:8]
    tag = hashlib.sha256(f"{params_digest(params)};{image_sha256}".encode()).hexdigest()[:12]
    return Path(cache_dir) / f"{safe}-{tag}.npz"


def default_cache_dir(cohort: Cohort | None = None) -> Path:
    """The user's crop cache folder, shared by every cohort: ``lngraph/crops`` in the user
    cache directory.

    That directory is ``$XDG_CACHE_HOME`` when set (on any system), else ``~/.cache`` on
    Linux and other Unix systems, ``~/Library/Caches`` on macOS and ``%LOCALAPPDATA%`` on
    Windows. Sharing one folder is safe: an entry's key covers the image content, the node
    table and the crop parameters, and a stale entry is recomputed. ``cohort`` is accepted for
    compatibility and not used; the cache no longer lives in the cohort folder (an output
    folder replaced as a whole would take it along).
    """
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        base = Path(xdg)
    elif sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        base = Path(os.environ["LOCALAPPDATA"])
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path.home() / ".cache"
    return base / "lngraph" / "crops"


def compute_crops(scan: Scan, params: CropParams) -> tuple[np.ndarray, np.ndarray]:
    """Read a scan's image and crop all its nodes: ``(cubes, views)``, no cache."""
    if scan.image is None:
        raise InputError("scans.csv", "the scan has no image; crops need one",
                         what=f"scan {scan.scan_id}")
    image = read_image(scan.image)
    cubes = crop_cubes(image, scan.nodes.pos, scan.nodes.radius_mm, **params.as_dict(),
                       node_ids=[f"{n} of scan {scan.scan_id}" for n in scan.nodes.node_id],
                       source=scan.image)
    return cubes, nine_views(cubes).astype(np.float32, copy=False)


def _load(path: Path, key: str) -> ScanCrops | None:
    try:
        with np.load(path) as entry:
            if str(entry["key"]) != key:
                return None
            return ScanCrops(entry["cubes"], entry["views"], key, from_cache=True)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def scan_crops(scan: Scan, params: CropParams | None = None, *,
               cache_dir: str | os.PathLike | None = None) -> ScanCrops:
    """A scan's crops and views, from the cache when its entry is current.

    Args:
        scan: the scan (with an image).
        params: the crop setting (default :class:`CropParams`, the ``lite`` crops).
        cache_dir: the cache folder; ``None`` computes without caching.

    Raises:
        InputError: the scan has no image, the image is missing or unreadable, or a node lies
            outside it.
    """
    params = CropParams() if params is None else params
    if scan.image is None or cache_dir is None:
        cubes, views = compute_crops(scan, params)
        return ScanCrops(cubes, views, key="", from_cache=False)
    image_sha256 = image_digest(scan.image)
    key = cache_key(image_sha256, scan, params)
    path = entry_path(cache_dir, scan.scan_id, params, image_sha256)
    if path.is_file() and (hit := _load(path, key)) is not None:
        return hit
    cubes, views = compute_crops(scan, params)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, cubes=cubes, views=views, key=np.array(key))
    return ScanCrops(cubes, views, key, from_cache=False)


def _worker_init() -> None:
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)


def _fill(scan: Scan, params: CropParams, cache_dir: Path) -> bool:
    return scan_crops(scan, params, cache_dir=cache_dir).from_cache


def precompute_crops(cohort: Cohort, params: CropParams | None = None, *,
                     cache_dir: str | os.PathLike | None = None, workers: int = 1,
                     progress: bool = True) -> dict[str, bool]:
    """Fill the cache for every scan of ``cohort``, in ``workers`` processes.

    Args:
        cohort: a cohort with images.
        params: the crop setting (default :class:`CropParams`, the ``lite`` crops).
        cache_dir: the cache folder (default :func:`default_cache_dir`).
        workers: worker processes (1 = in this process).
        progress: show a tqdm progress bar.

    Returns:
        ``scan_id -> True`` where the entry was already current, ``False`` where computed.
    """
    params = CropParams() if params is None else params
    cache_dir = default_cache_dir(cohort) if cache_dir is None else Path(cache_dir)
    scans = list(cohort.scans.values())
    for scan in scans:
        if scan.image is None:
            raise InputError("scans.csv", "the scan has no image; crops need one",
                             what=f"scan {scan.scan_id}")
    done: dict[str, bool] = {}
    with tqdm(total=len(scans), desc="crops", unit="scan", disable=not progress) as bar:
        if workers <= 1:
            for scan in scans:
                done[scan.scan_id] = scan_crops(scan, params, cache_dir=cache_dir).from_cache
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                     initializer=_worker_init) as pool:
                futures = {pool.submit(_fill, scan, params, cache_dir): scan.scan_id
                           for scan in scans}
                for future in as_completed(futures):
                    done[futures[future]] = future.result()
                    bar.update()
    return {scan.scan_id: done[scan.scan_id] for scan in scans}
