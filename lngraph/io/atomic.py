"""Atomic output: write to a temporary file or folder beside the target, then rename.

:func:`atomic_path` and :func:`write_text_atomic` for files, :func:`atomic_folder` for a whole
output folder, :func:`safe_name` for file names made from ids.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    If the body raises, the temporary file is removed and ``path`` is left untouched, so a
    reader never sees a half-written output.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


#: Longest file-name part :func:`safe_name` returns (well under the usual 255-byte limit, so a
#: suffix such as ``.mrk.json`` or a pair of names still fits).
SAFE_NAME_MAX = 96
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(text: str, max_length: int = SAFE_NAME_MAX) -> str:
    """A file name made from an id (``scan_id``, ``patient_id``) that stays in its folder.

    Characters other than letters, digits, ``.``, ``_`` and ``-`` become ``_``, leading dots
    become ``_`` (no ``.``/``..``, no hidden files) and the result is at most ``max_length``
    characters. When any of this changed the id, ``_`` and 8 hex digits of the id's SHA-256
    are appended, so two different ids never share a name (``"a/b"`` → ``"a_b_…"``, while
    ``"a_b"`` stays ``"a_b"``). Names differing only in case still collide on
    case-insensitive file systems; callers that write many names check for that
    (:func:`unique_name`).
    """
    text = str(text)
    name = _UNSAFE.sub("_", text)
    stripped = name.lstrip(".")
    name = "_" * (len(name) - len(stripped)) + stripped
    if name == text and 0 < len(name) <= max_length:
        return name
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{name[:max(max_length - 9, 0)]}_{digest}"


def unique_name(name: str, key: str, used: set[str]) -> str:
    """``name``, or ``name`` plus a hash of ``key`` when ``used`` already holds it up to case;
    the result is added to ``used`` (case-folded)."""
    if name.casefold() in used:
        digest = hashlib.sha256(str(key).encode("utf-8", "surrogatepass")).hexdigest()[:8]
        name = f"{name}_{digest}"
        while name.casefold() in used:  # pragma: no cover - needs a hash collision
            name += "_"
    used.add(name.casefold())
    return name


def folder_is_empty(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder with nothing in it (hidden files count)."""
    with os.scandir(path) as entries:
        return next(entries, None) is None


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a new, empty temporary folder beside ``path``; on success it becomes ``path``.

    The temporary folder is a hidden sibling (same parent, so the final rename stays on one
    file system): ``.<name>.<random>.tmp``. When the body returns, an existing ``path`` is
    renamed aside, the temporary folder renamed onto ``path`` and the old folder deleted;
    Ctrl-C is held back during these renames. When the body raises anything (an error,
    ``KeyboardInterrupt``, ``SystemExit``), the temporary folder is deleted and ``path`` is
    left as it was. A reader therefore sees the old folder or the complete new one, never a
    mixture; only a process killed outright (``SIGKILL``, power loss) leaves a hidden
    ``.<name>.*.tmp`` folder behind, which is safe to delete.

    A ``path`` that is a symbolic link is resolved first: the folder it points to is replaced,
    the link stays.

    Args:
        path: the output folder.
        overwrite: replace an existing non-empty ``path``; without it, such a folder is
            refused before anything is written. An empty folder is always replaced.

    Raises:
        InputError: ``path`` exists and is not a folder, or is a non-empty folder and
            ``overwrite`` is false (the message suggests ``--overwrite``).
    """
    from lngraph.io.errors import InputError

    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    if path.exists() and not path.is_dir():
        raise InputError(path, "exists and is not a folder; give a folder to write into")
    if path.is_dir() and not overwrite and not folder_is_empty(path):
        raise InputError(path, "already exists and is not empty; pass --overwrite to replace "
                         "it, or choose another folder")
    parent = path.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name[:100]}.", suffix=".tmp", dir=parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; outputs get the usual permissions
    try:
        yield tmp
        with _sigint_held():
            _swap(tmp, path)
    finally:
        if tmp.exists():
            with _sigint_held():
                shutil.rmtree(tmp, ignore_errors=True)


def _swap(new: Path, path: Path) -> None:
    """Rename ``new`` onto ``path``, moving an existing ``path`` aside and deleting it."""
    if not path.exists():
        os.replace(new, path)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{path.name[:100]}.", suffix=".old",
                                  dir=path.absolute().parent))
    os.rmdir(aside)  # only the unique name is wanted
    os.replace(path, aside)
    try:
        os.replace(new, path)
    except BaseException:
        os.replace(aside, path)
        raise
    shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """Delay a Ctrl-C (``SIGINT``) until the block is done (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is None or previous == signal.SIG_IGN:  # a handler not set from Python: keep it
        yield
        return
    caught = []
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        if callable(previous):
            previous(signal.SIGINT, None)
        else:  # SIG_DFL: the default action, now that the block is done
            os.kill(os.getpid(), signal.SIGINT)
