"""Atomic file writes: write to a temporary file beside the target, fsync, then rename.

A path that cannot be written (a folder, under a file, no permission) is a SadhError naming it and why. A full disk
(or quota) is a SadhError naming the path, the space the file needs and the space free: a write of known size is
refused before it starts when the disk lacks the room, any other fails when the disk fills; either way the previous
file stays as it was and the temporary file is removed."""
from __future__ import annotations

import contextlib
import errno
import glob
import io
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import IO, Any, Iterator, Mapping

import numpy as np

from .errors import SadhError


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_read_umask()  # read once at import: os.umask can only be read by setting it
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # no room on the disk, over the quota, over the file size limit


def resolved(path: str | os.PathLike) -> Path:
    """`path` made absolute with its symbolic links followed; SadhError for a loop of links (it leads to no file)."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError):  # RuntimeError: Python < 3.13's word for a loop
        raise SadhError(f"{path}: a loop of symbolic links (it leads to no file)") from None


def unwritable_reason(path: str | os.PathLike, folder: bool = False) -> str | None:
    """Why `path` cannot be written as a file (or used as an output folder), found without writing; None if it can."""
    target = Path(path)
    try:
        if target.is_symlink() and not target.exists():
            with contextlib.suppress(FileNotFoundError):  # a dangling link is written through, a loop is not
                os.stat(target)
    except OSError as e:
        return f"it is a loop of symbolic links ({(e.strerror or str(e)).lower()})"
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


def free_bytes(folder: str | os.PathLike) -> int | None:
    """Bytes an unprivileged process may still write in `folder`'s file system (None where it cannot be told)."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _size_text(n: int) -> str:
    """A byte count for people: 12.3 MB, 4.0 kB, 17 bytes."""
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB" if n >= 1e3 else f"{n} bytes"


def disk_full_error(target: Path, need: int | None, written: int = 0) -> SadhError:
    """The one-line error of a write of `need` bytes (None: unknown; `written` of them went out) that found no room."""
    free = free_bytes(target.parent)
    needs = (f"needs {_size_text(need)}" if need is not None else f"needs more than the {_size_text(written)} written" if written
             else "needs more room")
    room = "" if free is None else f", {_size_text(free)} free"
    return SadhError(f"cannot write {target}: no space left on the disk ({needs}{room} in {target.parent}); "
                     "free some space and run again, the previous file is unchanged")


def _disk_full(e: BaseException) -> bool:
    """Whether `e` (or the error it was raised from, as libraries re-raise) is a full disk or quota."""
    while e is not None:
        if isinstance(e, OSError) and e.errno in DISK_FULL:
            return True
        e = e.__cause__ or e.__context__
    return False


@contextlib.contextmanager
def _write_errors(target: Path, folder: bool = False) -> Iterator[None]:
    """Turn an OSError of the block into a SadhError naming `target` and the reason (a full disk is left to the caller)."""
    try:
        yield
    except OSError as e:
        if e.errno in DISK_FULL:
            raise
        reason = unwritable_reason(target, folder) or (e.strerror or str(e))
        raise SadhError(f"cannot write {target}: {reason}") from e


def make_folder(path: str | os.PathLike) -> Path:
    """Create folder `path` and its parents if missing (SadhError naming the path and why it cannot be)."""
    folder = Path(path)
    try:
        with _write_errors(folder, folder=True):
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a full disk
        raise disk_full_error(folder, None) from e
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
def atomic_path(path: str | os.PathLike, size: int | None = None) -> Iterator[Path]:
    """A temporary file beside `path` for the block to write by any means (e.g. a numpy memmap); it is synced to disk
    and replaces `path` only if the block finishes, else it is deleted. With `size` (the bytes it will hold), a disk
    without that much room is refused before the block runs; a disk that fills is a SadhError either way."""
    target = Path(path)
    with _write_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        free = free_bytes(target.parent)
        if size is not None and free is not None and size > free:
            raise disk_full_error(target, size)
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        except OSError as e:
            if e.errno in DISK_FULL:
                raise disk_full_error(target, size) from None
            raise
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
        sync_folder(target.parent)
    except BaseException as e:
        written = _file_size(tmp)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if _disk_full(e):
            raise disk_full_error(target, size, written) from None
        raise


def _file_size(path: str) -> int:
    """Size of a file in bytes, 0 when it is gone."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def sync_folder(folder: str | os.PathLike) -> None:
    """fsync a folder, so the renames in it survive a power loss (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems do not sync folders; the rename itself is done
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", size: int | None = None) -> Iterator[IO]:
    """Open a temporary file for writing that replaces `path` only if the block finishes (`size`: see `atomic_path`)."""
    with atomic_path(path, size) as tmp, open(tmp, mode) as f:
        yield f


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_open(path, "wb", size=len(data)) as f:
        f.write(data)


def atomic_write_all(files: Mapping[str | os.PathLike, bytes]) -> None:
    """Write several files (path -> content) atomically, none replaced before all are written in full: a full disk or
    any other error while writing leaves every one of them as it was."""
    with contextlib.ExitStack() as written:
        for path, data in files.items():
            written.enter_context(atomic_open(path, "wb", size=len(data))).write(data)


def npy_bytes(array: np.ndarray) -> bytes:
    """One array as the bytes of a .npy file (never pickled)."""
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


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


@contextlib.contextmanager
def written_before_interrupt(done: str) -> Iterator[None]:
    """Run a block of writes with Ctrl-C / SIGTERM held (`interrupts_deferred`); one that arrived meanwhile then raises
    KeyboardInterrupt saying `done` instead of asking for a re-run (the outputs are complete and consistent)."""
    try:
        with interrupts_deferred():
            yield
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"{done}; nothing to re-run") from None
