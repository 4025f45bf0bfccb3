"""Resumable encoding of many images: items are encoded in chunks, and each finished chunk can be kept in a partial
folder (one .npz per chunk, written atomically, plus the job's key), so an interrupted run continues where it stopped.

A partial folder is only reused by the same job (same model file, same items, same chunk size); another job's
chunks are discarded. The folder is removed once the output made from the codes is written.

Progress goes to a `Progress` callback (none by default); warnings (unreadable images, discarded chunks) to the
`logging` logger of this module, under "sadh".
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ContextManager, Iterable, Iterator, Sequence

import numpy as np

from .errors import SadhError

if TYPE_CHECKING:
    from .data import LabeledImages
    from .encoder import Encoder

CHUNK = 1024  # items per chunk: one progress update, one partial file
KEY_NAME = "job.txt"
CHUNK_GLOB = "chunk-*.npz"

log = logging.getLogger(__name__)

# encode_chunk(start, stop) -> (packed codes, ids of the items encoded, failures as (path, message))
ChunkEncoder = Callable[[int, int], "tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]"]
# progress(description, total) -> a context whose value is called with the number of items each step finished
Progress = Callable[[str, int], ContextManager[Callable[[int], None]]]


@contextlib.contextmanager
def no_progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """The default `Progress`: shows nothing."""
    yield lambda done: None


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
        from .atomic import atomic_write_text, make_folder

        self.folder = folder
        if folder.exists() and not folder.is_dir():
            raise SadhError(f"cannot keep partial results in {folder}: it is a file, not a folder")
        key_file = folder / KEY_NAME
        if folder.is_dir() and (not key_file.is_file() or key_file.read_text() != key):
            if any(folder.glob(CHUNK_GLOB)):
                log.warning(f"discarding the chunks in {folder}: another model or other items made them")
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
        from .atomic import atomic_save_npz

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
    total: int, nbytes: int, encode_chunk: ChunkEncoder, what: str, partial: Path | None = None, key: str = "",
    progress: Progress = no_progress,
) -> Encoded:
    """Encode items 0..total-1 chunk by chunk, reporting to `progress`; with `partial`, finished chunks are kept there
    (until `Encoded.discard_partial`) and reused by the next run of the same job (`key`), and a Ctrl-C says so."""
    store = PartialChunks(partial, key) if partial is not None else None
    parts, seconds, encoded = [], 0.0, 0
    with progress(f"encoding {total} {what}", total) as advance:
        try:
            for i, start in enumerate(range(0, total, CHUNK)):
                stop = min(start + CHUNK, total)
                part = store.load(i, nbytes) if store is not None else None
                if part is None:
                    t0 = time.perf_counter()
                    part = encode_chunk(start, stop)
                    seconds, encoded = seconds + time.perf_counter() - t0, encoded + stop - start
                    if store is not None:
                        store.save(i, *part)
                parts.append(part)
                advance(stop - start)
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


def expand_images(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given, folders expanded to their image files (recursively, sorted); SadhError if none."""
    from .data.imagefolder import IMAGE_SUFFIXES

    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise SadhError(f"{item}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
            paths += found
        else:
            paths.append(item)
    if not paths:
        raise SadhError("no images given")
    return paths


def report_failures(failures: list[tuple[str, str]], total: int) -> set[str]:
    """Log a warning for each unreadable image (one line each); SadhError if none of `total` was readable. Returns the
    bad paths."""
    if failures and len(failures) == total:
        raise SadhError(f"none of the {total} images could be read (first: {failures[0][1]})")
    for _, message in failures:
        log.warning(f"skipped {message}")
    return {path for path, _ in failures}


def report_encoded(result: Encoded, total: int) -> None:
    """`report_failures` of a chunked encode; when no image was readable, its partial folder goes too (nothing to resume)."""
    if result.failures and len(result.failures) == total:
        result.discard_partial()
    report_failures(result.failures, total)


def encode_items(
    encoder: Encoder, data: LabeledImages, index: np.ndarray, what: str = "images", partial: Path | None = None, progress: Progress = no_progress
) -> Encoded:
    """Encode items `index` of `data` (LabeledImages) with `encoder` (ids: the dataset indices encoded), resumable
    through the partial folder `partial`. Unreadable files of path-based sets are logged (one line each) and left out."""
    index = np.asarray(index, dtype=np.int64)

    def encode_chunk(start: int, stop: int) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
        part = index[start:stop]
        if data.images is not None:
            return encoder.encode(data.images[part]), part, []
        codes, failed = encoder.encode_files([data.paths[i] for i in part])
        bad = {path for path, _ in failed}
        return codes, np.array([i for i in part if data.paths[i] not in bad], np.int64), failed

    key = ""
    if partial is not None:
        items = file_identities(data.paths[i] for i in index) if data.images is None else pixel_blocks(data.images, index)
        key = job_key(encoder.path, items)
    result = encode_in_chunks(len(index), encoder.bits // 8, encode_chunk, what, partial, key, progress)
    report_encoded(result, len(index))
    return result


def breaks_line(name: str) -> bool:
    """Whether `name` holds a character that ends a line for `str.splitlines` (a file list cannot hold it)."""
    return len(f"{name}x".splitlines()) != 1


def encode_files_to(
    encoder: Encoder, files: Sequence[str | os.PathLike], out: str | os.PathLike, listing: str | os.PathLike, progress: Progress = no_progress
) -> Encoded:
    """Encode image files into packed codes written to `out` (.npy) and the list of the files encoded, one per line, to
    `listing`, both as one step; resumable through OUT.partial. Unreadable files (and names a list cannot hold) are
    logged and left out."""
    from .atomic import atomic_write_all, npy_bytes, written_before_interrupt

    def encode_chunk(start: int, stop: int) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
        unlisted = [(str(f), f"{f}: its name holds a line break, which {listing} (one file per line) cannot hold; rename it")
                    for f in files[start:stop] if breaks_line(str(f))]
        codes, failed = encoder.encode_files([f for f in files[start:stop] if not breaks_line(str(f))])
        bad = {path for path, _ in failed + unlisted}
        return codes, np.array([i for i in range(start, stop) if str(files[i]) not in bad], np.int64), unlisted + failed

    files, out = [Path(f) for f in files], Path(out)
    key = job_key(encoder.path, file_identities(files))
    result = encode_in_chunks(len(files), encoder.bits // 8, encode_chunk, "images", partial_path(out), key, progress)
    report_encoded(result, len(files))
    with written_before_interrupt(f"{out} and {listing} were written completely"):  # never one new, one old
        atomic_write_all({out: npy_bytes(result.codes), listing: b"".join(os.fsencode(files[i]) + b"\n" for i in result.ids)})
        result.discard_partial()
    return result
