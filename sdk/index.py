"""`HammingIndex`: exact Hamming k-NN and radius search over packed binary codes with int64 ids (numpy only).

The codes are held as word planes and searched by the blocked scan of `sadh.sdk.hamming_scan`; the file is the
index file format of `sadh.sdk.formats.index_file`.

Ordering: results are sorted by (distance, insertion order); ids removed and re-added count as new.

Concurrency: searches never take a lock and always read one immutable snapshot of the index;
writers (add/remove) serialise on an internal lock, append beyond the snapshot or build new arrays,
then publish a new snapshot. So searches may run in any number of threads, even while a writer runs
(they see the index before or after that write, never half of it).

Writers of one file serialise (`sadh.sdk.locking.writer_lock`, held by `save`; hold it yourself from `load` to `save`
to make a read-modify-write one step); `save` over the file an index was loaded from refuses when another writer
changed that file since, so an update is never lost silently.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .atomic import remove_stale_temps, resolved
from .codes import asarray, check_bits, check_packed
from .errors import SadhError
from .formats.index_file import file_digest, load_arrays, save_arrays
from .hamming_scan import from_planes, range_from_candidates, scan, to_planes, topk_from_candidates, word_count, word_dtype
from .locking import writer_lock
from .memory import physical_memory

RESULT_ENTRY_BYTES = 12  # one k-NN result entry: int32 distance + int64 id
ADD_CHUNK = 1 << 16  # codes converted to word planes at a time by add (bounds its temporaries)


def check_k(k: int, nq: int) -> int:
    """Return k if it is a positive integer whose (nq, k) k-NN result fits in memory, else raise SadhError.

    The result takes RESULT_ENTRY_BYTES per entry, padding included; it may use at most half the physical
    memory (FALLBACK_MEMORY where that is unknown), so an absurd k fails here instead of in the allocator.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise SadhError(f"k must be a positive integer, got {k!r}")
    need, limit = nq * int(k) * RESULT_ENTRY_BYTES, physical_memory() // 2
    if need > limit:
        raise SadhError(
            f"k={k} for {nq} queries needs a {need / 2**30:.3g} GiB result, more than half of this machine's memory "
            f"({2 * limit / 2**30:.3g} GiB); rows beyond the index size are only padding, so pass a smaller k"
        )
    return int(k)


def check_ids(ids: np.ndarray, n: int | None = None) -> np.ndarray:
    """Return ids (a scalar or 1-D integers within int64; `n` of them when given) as int64, else raise SadhError."""
    count = "" if n is None else f"{n} "
    try:
        given = asarray(ids)
    except ValueError:
        raise SadhError(f"ids must be {count}integers in a 1-D list or array, got a ragged sequence") from None
    ids = given[None] if given.ndim == 0 else given
    if ids.size == 0 and ids.ndim == 1:
        ids = ids.astype(np.int64)
    if not np.issubdtype(ids.dtype, np.integer) or ids.ndim != 1 or (n is not None and ids.size != n):
        raise SadhError(f"ids must be {count}integers in a 1-D list or array, got dtype {given.dtype} shape {given.shape}")
    if ids.dtype == np.uint64 and ids.size and ids.max() > np.iinfo(np.int64).max:
        raise SadhError(f"ids must fit in int64, got {int(ids.max())}")
    return ids.astype(np.int64)


def check_radius(radius: int) -> int:
    """Return radius if it is a non-negative integer, else raise SadhError."""
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise SadhError(f"radius must be a non-negative integer, got {radius!r}")
    return int(radius)


@dataclass(frozen=True)
class Snapshot:
    """An immutable view of the index: planes (words, n), ids in insertion order, ids sorted + their positions."""

    planes: np.ndarray
    ids: np.ndarray
    sorted_ids: np.ndarray
    sorted_pos: np.ndarray


class HammingIndex:
    """Exact flat Hamming index over packed codes with int64 ids; see the module docstring."""

    def __init__(self, bits: int) -> None:
        """Create an empty index for codes of `bits` bits (`sadh.sdk.codes.check_bits`: a multiple of 8, at most
        MAX_INDEX_BITS)."""
        self.bits = check_bits(bits)
        self.nbytes = self.bits // 8
        self._nwords = word_count(self.bits)
        self._lock = threading.Lock()
        self._planes_buf = np.zeros((self._nwords, 0), word_dtype(self.bits))
        self._ids_buf = np.zeros(0, np.int64)
        empty = np.zeros(0, np.int64)
        self._snap = Snapshot(self._planes_buf, empty, empty, empty)
        self._file: tuple[Path, bytes] | None = None  # (file, digest) this index was last loaded from or saved to

    def __len__(self) -> int:
        """Number of stored codes."""
        return self._snap.ids.size

    @property
    def ids(self) -> np.ndarray:
        """Ids in insertion order (read-only view)."""
        v = self._snap.ids.view()
        v.flags.writeable = False
        return v

    @property
    def codes(self) -> np.ndarray:
        """Packed uint8 codes (n, bits/8) in insertion order (a copy)."""
        return from_planes(self._snap.planes, self.bits)

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The packed codes (len(ids), bits/8) stored under `ids`, like faiss's reconstruct_batch; an unknown id raises SadhError."""
        ids = check_ids(ids)
        snap = self._snap
        present = _present(snap, ids)
        if not present.all():
            raise SadhError(f"id {int(ids[~present][0])} is not in the index")
        return from_planes(snap.planes[:, snap.sorted_pos[np.searchsorted(snap.sorted_ids, ids)]], self.bits)

    def snapshot(self) -> Snapshot:
        """The current immutable snapshot (for readers that need a consistent view)."""
        return self._snap

    def add(self, codes: np.ndarray, ids: np.ndarray | None = None) -> np.ndarray:
        """Append packed codes (n, bits/8) with unique new ids >= 0 (int64; default: max id + 1, ...); return the ids."""
        codes = check_packed(codes, self.nbytes)
        m = codes.shape[0]
        with self._lock:
            snap = self._snap
            new_ids = self._check_new_ids(snap, ids, m)
            n = snap.ids.size
            if not m:
                return new_ids
            if n + m > self._ids_buf.size:  # the snapshot always views a prefix of the buffers
                cap = max(n + m, 2 * n, 1024)
                planes_buf = np.zeros((self._nwords, cap), self._planes_buf.dtype)
                planes_buf[:, :n] = snap.planes
                ids_buf = np.zeros(cap, np.int64)
                ids_buf[:n] = snap.ids
                self._planes_buf, self._ids_buf = planes_buf, ids_buf
            for s in range(0, m, ADD_CHUNK):  # converted a chunk at a time: no full-size temporary copies
                chunk = codes[s : s + ADD_CHUNK]
                self._planes_buf[:, n + s : n + s + len(chunk)] = to_planes(chunk, self.bits)
            self._ids_buf[n : n + m] = new_ids
            if ids is None:  # assigned ids are sorted and above every stored one: append, no sort or insert
                sorted_ids = np.concatenate([snap.sorted_ids, new_ids])
                sorted_pos = np.concatenate([snap.sorted_pos, np.arange(n, n + m, dtype=np.int64)])
            else:
                order = np.argsort(new_ids, kind="stable")
                at = np.searchsorted(snap.sorted_ids, new_ids[order])
                sorted_ids = np.insert(snap.sorted_ids, at, new_ids[order])
                sorted_pos = np.insert(snap.sorted_pos, at, n + order)
            self._snap = Snapshot(self._planes_buf[:, : n + m], self._ids_buf[: n + m], sorted_ids, sorted_pos)
        return new_ids.copy()

    @staticmethod
    def _check_new_ids(snap: Snapshot, ids: np.ndarray | None, m: int) -> np.ndarray:
        """Validate (or assign) ids for m new codes."""
        if ids is None:
            start = int(snap.sorted_ids[-1]) + 1 if snap.sorted_ids.size else 0
            if start + m - 1 > np.iinfo(np.int64).max:
                raise SadhError(
                    f"cannot assign {m} new ids after the largest id {start - 1}: they would exceed int64; pass ids explicitly"
                )
            return np.arange(start, start + m, dtype=np.int64)
        ids = check_ids(ids, m)
        if ids.size and ids.min() < 0:
            raise SadhError(f"ids must be >= 0 (-1 marks padding in search results), got {int(ids.min())}")
        if np.unique(ids).size != m:
            raise SadhError("ids passed to add() contain duplicates")
        present = _present(snap, ids)
        if present.any():
            raise SadhError(f"id {int(ids[present][0])} is already in the index; remove it first")
        return ids

    def remove(self, ids: np.ndarray) -> int:
        """Remove the given ids (duplicates counted once); return how many. Unknown ids raise SadhError and remove nothing."""
        ids = np.unique(check_ids(ids))
        with self._lock:
            snap = self._snap
            present = _present(snap, ids)
            if not present.all():
                raise SadhError(f"id {int(ids[~present][0])} is not in the index; nothing was removed")
            if not ids.size:
                return 0
            where = np.searchsorted(snap.sorted_ids, ids)
            keep = np.ones(snap.ids.size, np.bool_)
            keep[snap.sorted_pos[where]] = False
            newpos = np.cumsum(keep) - 1
            self._planes_buf = np.ascontiguousarray(snap.planes[:, keep])
            self._ids_buf = snap.ids[keep]
            self._snap = Snapshot(
                self._planes_buf,
                self._ids_buf,
                np.delete(snap.sorted_ids, where),
                newpos[np.delete(snap.sorted_pos, where)],
            )
        return int(ids.size)

    def _queries(self, queries: np.ndarray) -> np.ndarray:
        """Validate packed queries and convert them to word planes."""
        return to_planes(check_packed(queries, self.nbytes, what="queries"), self.bits)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """k nearest codes per query: (D int32 (q,k), I int64 (q,k)), sorted by (distance, insertion order).

        When fewer than k codes are stored, the rest of each row holds id -1 and distance bits + 1. The (q, k)
        result, padding included, must fit in half the physical memory (see `check_k`), else SadhError.
        """
        q = self._queries(queries)
        k = check_k(k, q.shape[1])
        snap = self._snap
        rows, dist, pos = scan(snap.planes, q, self.bits, k=k)
        return topk_from_candidates(rows, dist, pos, snap.ids, q.shape[1], k, self.bits)

    def range_search(self, queries: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All codes within Hamming distance <= radius (inclusive), faiss-style (lims, D, I).

        Query i's results are D[lims[i]:lims[i+1]], I[lims[i]:lims[i+1]], sorted by (distance, insertion order).
        """
        radius = check_radius(radius)
        q = self._queries(queries)
        snap = self._snap
        rows, dist, pos = scan(snap.planes, q, self.bits, radius=min(radius, self.bits))
        return range_from_candidates(rows, dist, pos, snap.ids, q.shape[1])

    @property
    def file_digest(self) -> str | None:
        """Digest (hex) of the file this index was last loaded from or saved to (None: neither); changes since in
        memory do not change it."""
        return None if self._file is None else self._file[1].hex()

    def save(self, path: str | os.PathLike, before_replace: Callable[[str], None] | None = None) -> None:
        """Write the index atomically (header, ids, code planes, blake2b checksum) holding the file's writer lock; see `load`.

        Over the file this index was loaded from, SadhError when another writer changed it since (nothing is written).
        `before_replace(digest hex)` runs once the new file is complete, before it replaces `path`.
        """
        snap = self._snap
        with writer_lock(path):
            if self._file is not None and resolved(path) == self._file[0] and file_digest(path) != self._file[1]:
                raise SadhError(
                    f"{path} was changed by another writer since this index was loaded from it; load it again and repeat "
                    "the change (hold sadh.sdk.locking.writer_lock from load to save to make it one step)"
                )
            remove_stale_temps(path)  # of writers killed while saving it (no other writer runs now)
            digest = save_arrays(path, self.bits, snap.ids, snap.planes, before_replace)
        self._file = (resolved(path), digest)

    @classmethod
    def load(cls, path: str | os.PathLike, mmap: bool = False, verify: bool | None = None) -> "HammingIndex":
        """Read an index written by `save`; `mmap=True` maps the code planes read-only instead of reading them.

        The checksum is verified by default when reading into memory; with mmap it is skipped unless
        verify=True (that reads the whole file once). Adding to or removing from a mapped index copies
        the codes into memory. A foreign, truncated or corrupt file raises SadhError.
        """
        header, ids, planes = load_arrays(path, mmap, (not mmap) if verify is None else verify)
        index = cls(header.bits)
        order = np.argsort(ids, kind="stable")
        if ids.size and np.any(ids[order][1:] == ids[order][:-1]):
            raise SadhError(f"{path}: corrupt index file (duplicate ids)")
        index._planes_buf, index._ids_buf = planes, ids
        index._snap = Snapshot(planes, ids, ids[order], order)
        index._file = (resolved(path), header.digest)
        return index


def _present(snap: Snapshot, ids: np.ndarray) -> np.ndarray:
    """Boolean mask: which of `ids` are in the snapshot."""
    at = np.minimum(np.searchsorted(snap.sorted_ids, ids), max(snap.sorted_ids.size - 1, 0))
    return snap.sorted_ids[at] == ids if snap.sorted_ids.size else np.zeros(ids.shape, np.bool_)
