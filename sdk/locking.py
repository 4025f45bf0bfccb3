"""One writer at a time per file: an exclusive `fcntl.flock` on a lock file beside it (`db.sidx` -> `db.sidx.lock`).

Writers hold the lock from reading the file to renaming its new version into place, so two processes that both add
to an index cannot lose one another's update; a second writer waits up to LOCK_TIMEOUT seconds (the environment
variable SADH_LOCK_TIMEOUT overrides it), then gets a one-line SadhError. Readers never take it: every write is a
rename of a complete file, so a reader sees the old file or the new one. The lock is re-entrant within a thread and
excludes other threads of the same process too. The kernel drops it when its process dies (kill -9 included); the
lock file itself stays (removing it would let two writers lock two different files).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
import time
from pathlib import Path
from typing import Iterator

from .atomic import make_folder, unwritable_reason
from .errors import SadhError

LOCK_SUFFIX = ".lock"
LOCK_TIMEOUT = 60.0  # seconds a writer waits for another writer of the same file
LOCK_TIMEOUT_ENV = "SADH_LOCK_TIMEOUT"
POLL_SECONDS = 0.05

_guard = threading.Lock()
_held: dict[Path, tuple[threading.RLock, list[int]]] = {}  # lock file -> (thread lock, [flock fd, depth])


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file of `path`: `db.sidx` -> `db.sidx.lock`, beside it."""
    p = Path(path)
    return p.with_name(p.name + LOCK_SUFFIX)


def lock_timeout() -> float:
    """Seconds a writer waits for the lock: SADH_LOCK_TIMEOUT when set (SadhError if it is not a number >= 0), else LOCK_TIMEOUT."""
    text = os.environ.get(LOCK_TIMEOUT_ENV)
    if text is None:
        return LOCK_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise SadhError(f"{LOCK_TIMEOUT_ENV} must be a number of seconds >= 0, got {text!r}")
    return value


@contextlib.contextmanager
def writer_lock(path: str | os.PathLike, timeout: float | None = None) -> Iterator[Path]:
    """Hold the exclusive writer lock of `path` for the block (wait at most `timeout` s, default `lock_timeout()`);
    yields the lock file. SadhError when another writer keeps it longer, or the lock file cannot be made."""
    lock = lock_path(path).absolute()
    wait = lock_timeout() if timeout is None else timeout
    deadline = time.monotonic() + wait
    with _guard:
        thread_lock, state = _held.setdefault(lock, (threading.RLock(), [-1, 0]))
    if not thread_lock.acquire(timeout=wait):
        raise _busy(path, lock, wait)
    try:
        if state[1] == 0:
            state[0] = _flock(path, lock, deadline, wait)
        state[1] += 1
        try:
            yield lock
        finally:
            state[1] -= 1
            if state[1] == 0:
                os.close(state[0])  # closing the descriptor releases the flock
                state[0] = -1
    finally:
        thread_lock.release()


def _flock(path: str | os.PathLike, lock: Path, deadline: float, wait: float) -> int:
    """Open `lock` and take its exclusive flock, polling until `deadline`; return the descriptor."""
    make_folder(lock.parent)  # the file will be written there
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as e:
        reason = unwritable_reason(path) or f"cannot create its lock file {lock} ({e.strerror})"
        raise SadhError(f"cannot write {path}: {reason}") from None
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise SadhError(f"cannot lock {path} for writing: {e.strerror}") from None
        if time.monotonic() >= deadline:
            os.close(fd)
            raise _busy(path, lock, wait)
        time.sleep(POLL_SECONDS)


def _busy(path: str | os.PathLike, lock: Path, wait: float) -> SadhError:
    """The error of a writer that waited `wait` s for another one."""
    return SadhError(
        f"{path} is being written by another process (it holds {lock}); waited {wait:g} s: try again when it is done "
        f"(or set {LOCK_TIMEOUT_ENV} to wait longer)"
    )
