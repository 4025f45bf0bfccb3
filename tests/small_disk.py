"""Test helper: a folder on a (nearly) full disk, to check what every write does when the disk fills up.

Where this process may mount one (root), the folder is a real tmpfs of DISK_BYTES; elsewhere the disk is simulated
where sadh writes: `sadh.sdk.atomic` sees DISK_BYTES minus what the folder holds as free space, and a write that
would go past it fails with ENOSPC, as a real disk's would. Tests then run the code in this process (CliRunner).
"""
from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from sadh.sdk import atomic

DISK_BYTES = 1 << 20


class SmallDisk:
    """A folder on a disk of DISK_BYTES (`real`: a tmpfs); `fill(free)` leaves only `free` bytes of it free."""

    def __init__(self, folder: Path, real: bool) -> None:
        self.folder, self.real = folder, real

    def used(self) -> int:
        """Bytes the files in the folder take (the simulated disk's measure)."""
        return sum(p.stat().st_size for p in self.folder.rglob("*") if p.is_file())

    def free(self) -> int:
        """Bytes still free on the disk."""
        if not self.real:
            return DISK_BYTES - self.used()
        st = os.statvfs(self.folder)
        return st.f_bavail * st.f_frsize

    def fill(self, free: int) -> None:
        """Add a filler file so that about `free` bytes stay free."""
        filler = self.folder / "filler"
        size = (filler.stat().st_size if filler.exists() else 0) + self.free() - free
        with open(filler, "wb") as f:
            f.truncate(0)
            f.write(b"\0" * max(size, 0))

    def names(self) -> list[str]:
        """The names of the files in the folder, filler left out (temporary files would show here)."""
        return sorted(str(p.relative_to(self.folder)) for p in self.folder.rglob("*") if p.name != "filler")


def _mount_tmpfs(folder: Path) -> bool:
    """Mount a tmpfs of DISK_BYTES on `folder`; whether that worked."""
    if os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


def _simulate(disk: SmallDisk, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make sadh's writes in `disk.folder` behave as on a disk of DISK_BYTES."""
    real_free, real_open = atomic.free_bytes, open
    inside = lambda p: Path(os.path.abspath(p)).is_relative_to(disk.folder)  # noqa: E731

    def free_bytes(folder: str | os.PathLike) -> int | None:
        return disk.free() if inside(folder) else real_free(folder)

    class Limited:
        def __init__(self, f) -> None:
            self.f = f

        def write(self, data) -> int:
            if disk.used() + len(memoryview(data).cast("B")) > DISK_BYTES:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            n = self.f.write(data)
            self.f.flush()
            return n

        def __getattr__(self, name: str):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.f.close()

    def limited_open(path, mode="r", *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        return Limited(f) if "b" in mode and inside(path) and set(mode) & set("wa+") else f

    monkeypatch.setattr(atomic, "free_bytes", free_bytes)
    monkeypatch.setattr(atomic, "open", limited_open, raising=False)


@pytest.fixture
def small_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmallDisk]:
    """A SmallDisk in tmp_path: a real tmpfs where one can be mounted, else simulated (see the module docstring)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    real = _mount_tmpfs(folder)
    disk = SmallDisk(folder, real)
    if not real:
        _simulate(disk, monkeypatch)
    try:
        yield disk
    finally:
        if real:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)
