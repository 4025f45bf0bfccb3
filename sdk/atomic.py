"""Atomic file writes: write to a temporary file beside the target, fsync, then rename.

A path that cannot be written (a folder, under a file, no permission) is a SadhError naming it and why."""
from __future__ import annotations

import contextlib
import glob
import io
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np

from .errors import SadhError


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_read_umask()  # read once at import: os.umask can only be read by setting it


def unwritable_reason(path: str | os.PathLike, folder: bool = False) -> str | None:
    """Why `path` cannot be written as a file (or used as an output folder), found without writing; None if it can."""
    target = Path(path)
    try:
        if target.exists() and target.is_dir() != folder:
            return "it is a folder, not a file" if target.is_dir() else "it is a file, not a folder"
        start = target if folder else target.parent
        nearest = next(p for p in (start, *start.parents) if p.exists())  # "." or "/" at the latest
    except OSError as e:  # e.g. a name longer than the file system allows
        return (e.strerror or str(e)).lower()
    if not nearest.is_dir():
        return f"{nearest} is a file, not a folder"
    if not os.access(nearest, os.W_OK | os.X_OK):
        return f"no permission to write in {nearest}"
    return None


@contextlib.contextmanager
def _write_errors(target: Path, folder: bool = False) -> Iterator[None]:
    """Turn an OSError of the block into a SadhError naming `target` and the reason."""
    try:
        yield
    except OSError as e:
        reason = unwritable_reason(target, folder) or (e.strerror or str(e))
        raise SadhError(f"cannot write {target}: {reason}") from e


def make_folder(path: str | os.PathLike) -> Path:
    """Create folder `path` and its parents if missing (SadhError naming the path and why it cannot be)."""
    folder = Path(path)
    with _write_errors(folder, folder=True):
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files `atomic_open` left for `path` when a process was killed (kill -9, power loss) while
    writing it; only for a path no other process writes now. Returns what was deleted."""
    target = Path(path)
    stale = sorted(target.parent.glob(f".{glob.escape(target.name)}.*.tmp")) if target.parent.is_dir() else []
    for p in stale:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return stale


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary file beside `path` for the block to write by any means (e.g. a numpy memmap); it is synced to disk
    and replaces `path` only if the block finishes, else it is deleted."""
    target = Path(path)
    with _write_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
    try:
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600 files; give the file the usual permissions
        yield Path(tmp)
        with _write_errors(target):
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file for writing that replaces `path` only if the block finishes."""
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        yield f


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write one array as .npy atomically (never pickled)."""
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def atomic_save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write named arrays as .npz atomically (never pickled: object arrays are refused)."""
    arrays = {name: np.asarray(a) for name, a in arrays.items()}
    pickled = [name for name, a in arrays.items() if a.dtype.hasobject]
    if pickled:
        raise SadhError(f"cannot write {path}: {', '.join(pickled)} would need pickling")
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold a SIGINT (Ctrl-C) or SIGTERM that arrives during the block until it ends, then deliver it to its previous
    handler (SIGINT by default: raise KeyboardInterrupt; `sadh-cli` handles SIGTERM the same way). Only in the main
    thread, and for the signals that have a Python handler."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    deferred = [s for s, handler in previous.items() if callable(handler)]
    held: list[tuple[int, Any]] = []
    for s in deferred:
        signal.signal(s, lambda signum, frame: held.append((signum, frame)))
    try:
        yield
    finally:
        for s in deferred:
            signal.signal(s, previous[s])
    if held:
        previous[held[0][0]](*held[0])
