"""Resumable encoding: items are encoded in chunks, and each finished chunk can be kept in a partial folder
(one .npz per chunk, written atomically, plus the job's key), so an interrupted run continues where it stopped.

A partial folder is only reused by the same job (same model file, same items, same chunk size); another job's
chunks are discarded. The folder is removed once every chunk is done.
"""
from __future__ import annotations

import hashlib
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from ..sdk.errors import SadhError
from .options import warn

CHUNK = 1024  # items per chunk: one progress update, one partial file
KEY_NAME = "job.txt"
CHUNK_GLOB = "chunk-*.npz"

# encode_chunk(start, stop) -> (packed codes, ids of the items encoded, failures as (path, message))
ChunkEncoder = Callable[[int, int], "tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]"]


@dataclass(frozen=True)
class Encoded:
    """The codes of the items that could be read, their ids, the failures, and how much of it this run encoded."""

    codes: np.ndarray
    ids: np.ndarray
    failures: list[tuple[str, str]]
    seconds: float  # encoding time of this run
    encoded: int  # items this run encoded (chunks kept from an interrupted run are not counted)
    partial: PartialChunks | None = None  # where the chunks are kept until the caller has written its output

    def discard_partial(self) -> None:
        """Delete the kept chunks: call once the output made from these codes is written."""
        if self.partial is not None:
            self.partial.remove()

    @property
    def ms_per_item(self) -> float | None:
        """Milliseconds per item encoded by this run (None when every chunk came from an interrupted run)."""
        return 1000 * self.seconds / self.encoded if self.encoded else None


def partial_path(out: Path) -> Path:
    """The partial folder kept beside output `out` while it is being encoded: OUT.partial."""
    return out.with_name(out.name + ".partial")


def job_key(model: Path, items: Iterable[bytes]) -> str:
    """A digest of the model file's bytes, the chunk size and what identifies the items, in order."""
    h = hashlib.sha256(f"chunk {CHUNK}\n".encode())
    with open(model, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    for item in items:
        h.update(len(item).to_bytes(8, "little"))
        h.update(item)
    return h.hexdigest()


def file_identities(paths: Iterable[str | os.PathLike]) -> Iterator[bytes]:
    """Per file: its path, size and modification time (a file replaced in place is another item); missing: the path."""
    for path in paths:
        try:
            st = os.stat(path)
            yield f"{path}\0{st.st_size}\0{st.st_mtime_ns}".encode()
        except OSError:
            yield f"{path}\0missing".encode()


def pixel_blocks(images: np.ndarray, index: np.ndarray, rows: int = 4096) -> Iterator[bytes]:
    """The pixels of images[index], block by block (in-memory sets: the same names can hold other pixels)."""
    for start in range(0, len(index), rows):
        yield np.ascontiguousarray(images[index[start : start + rows]]).tobytes()


class PartialChunks:
    """Finished chunks of one job in `folder`; chunks of another job found there are discarded."""

    def __init__(self, folder: Path, key: str) -> None:
        """Open (or start) the partial folder of the job named by `key`."""
        from ..sdk.atomic import atomic_write_text, make_folder

        self.folder = folder
        if folder.exists() and not folder.is_dir():
            raise SadhError(f"cannot keep partial results in {folder}: it is a file, not a folder")
        key_file = folder / KEY_NAME
        if folder.is_dir() and (not key_file.is_file() or key_file.read_text() != key):
            if any(folder.glob(CHUNK_GLOB)):
                warn(f"discarding the chunks in {folder}: another model or other items made them")
            self.remove()
        if not key_file.is_file():
            make_folder(folder)
            try:
                atomic_write_text(key_file, key)
            except SadhError:  # e.g. a full disk: leave no empty folder
                self.remove()
                raise

    def _path(self, i: int) -> Path:
        return self.folder / f"chunk-{i:06d}.npz"

    def load(self, i: int, nbytes: int) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]] | None:
        """Chunk i as (codes, ids, failures), or None if it is missing or unreadable (then it is encoded again)."""
        try:
            with np.load(self._path(i), allow_pickle=False) as z:
                codes, ids = z["codes"], z["ids"]
                failures = list(zip(z["failed_paths"].tolist(), z["failed_messages"].tolist()))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
        if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[1] != nbytes or ids.shape != (len(codes),):
            return None
        return codes, ids.astype(np.int64), failures

    def save(self, i: int, codes: np.ndarray, ids: np.ndarray, failures: list[tuple[str, str]]) -> None:
        """Keep chunk i (atomically: a chunk file is whole or absent)."""
        from ..sdk.atomic import atomic_save_npz

        paths, messages = (list(c) for c in zip(*failures)) if failures else ([], [])
        atomic_save_npz(
            self._path(i), codes=codes, ids=ids, failed_paths=np.array(paths, dtype=str), failed_messages=np.array(messages, dtype=str)
        )

    def remove(self) -> None:
        """Delete the chunk files and the key, then the folder if nothing else is in it."""
        for path in [*self.folder.glob(CHUNK_GLOB), self.folder / KEY_NAME]:
            path.unlink(missing_ok=True)
        try:
            self.folder.rmdir()
        except OSError:
            pass  # the user's own files are in it: leave them


def encode_in_chunks(
    total: int, nbytes: int, encode_chunk: ChunkEncoder, what: str, partial: Path | None = None, key: str = ""
) -> Encoded:
    """Encode items 0..total-1 chunk by chunk with a progress bar; with `partial`, finished chunks are kept there
    (until `Encoded.discard_partial`) and reused by the next run of the same job (`key`), and Ctrl-C says so."""
    from rich.console import Console
    from rich.progress import Progress

    store = PartialChunks(partial, key) if partial is not None else None
    parts, seconds, encoded = [], 0.0, 0
    starts = range(0, total, CHUNK)
    console = Console(stderr=True)  # a live bar on a terminal; nothing in a log or pipe (it left blank lines there)
    with Progress(transient=True, console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task(f"encoding {total} {what}", total=total)
        try:
            for i, start in enumerate(starts):
                stop = min(start + CHUNK, total)
                part = store.load(i, nbytes) if store is not None else None
                if part is None:
                    t0 = time.perf_counter()
                    part = encode_chunk(start, stop)
                    seconds, encoded = seconds + time.perf_counter() - t0, encoded + stop - start
                    if store is not None:
                        store.save(i, *part)
                parts.append(part)
                progress.advance(task, stop - start)
        except KeyboardInterrupt:
            if store is None:
                raise
            done = min(len(parts) * CHUNK, total)
            raise KeyboardInterrupt(f"{done} of {total} {what} encoded are kept in {partial}; re-run the same command to continue") from None
        except Exception:  # e.g. a model error: a partial folder holding no chunk has nothing to resume
            if store is not None and not any(store.folder.glob(CHUNK_GLOB)):
                store.remove()
            raise
    if not parts:
        return Encoded(np.zeros((0, nbytes), np.uint8), np.zeros(0, np.int64), [], seconds, encoded, store)
    codes, ids, failures = zip(*parts)
    return Encoded(
        np.concatenate(codes), np.concatenate(ids).astype(np.int64), [f for fs in failures for f in fs], seconds, encoded, store
    )
