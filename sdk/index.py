"""Exact Hamming k-NN and radius search over packed binary codes (numpy only).

Codes are stored as word planes: one contiguous array per machine word (uint32 when bits <= 32,
else uint64, the last word zero-padded), so a search is XOR + popcount over long runs of memory.
Queries x database are scanned in cache-sized blocks; each query keeps a running distance
threshold (the k-th smallest distance seen so far), so only a few candidates per block survive;
database blocks start at MIN_DB_BLOCK codes and double, so the threshold is tight early.

Ordering: results are sorted by (distance, insertion order); ids removed and re-added count as new.

Concurrency: searches never take a lock and always read one immutable snapshot of the index;
writers (add/remove) serialise on an internal lock, append beyond the snapshot or build new arrays,
then publish a new snapshot. So searches may run in any number of threads, even while a writer runs
(they see the index before or after that write, never half of it).

File format (little-endian): a 64-byte header = magic b"SADHIDX", format version (u8, 1), bits (u16),
word bytes (u16, 4 or 8), flags (u32, 0), count (u64), blake2b-128 digest of the header fields + payload,
zero padding; then ids (count x int64), then the word planes (words x count x word bytes), so ids and planes
can be memory-mapped. Saving writes a temporary file and renames it, so a failed save leaves the old file.

Writers of one file serialise (`sadh.sdk.locking.writer_lock`, held by `save`; hold it yourself from `load` to `save`
to make a read-modify-write one step); `save` over the file an index was loaded from refuses when another writer
changed that file since, so an update is never lost silently.
"""
from __future__ import annotations

import hashlib
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .atomic import atomic_open, remove_stale_temps, resolved
from .codes import asarray, bits_fit, check_bits, check_packed
from .errors import SadhError
from .locking import writer_lock
from .popcount import popcount

BLOCK_ELEMS = 1 << 17  # query x database pairs per block: the uint64 XOR buffer stays ~1 MiB
MIN_DB_BLOCK = 4096  # with BLOCK_ELEMS: at most 32 queries x >= 4096 codes (measured best); the first block's width
RESULT_ENTRY_BYTES = 12  # one k-NN result entry: int32 distance + int64 id
FALLBACK_MEMORY = 16 << 30  # assumed physical memory where os.sysconf cannot tell
ADD_CHUNK = 1 << 16  # codes converted to word planes at a time by add (bounds its temporaries)
PRUNE_AFTER = 2  # prune once 2 k new candidates per query piled up (vs 4: trained codes -25 %, 128 bits -12 %; measured)

_MAGIC = b"SADHIDX"
_VERSION = 1
_HEADER = struct.Struct("<7sBHHIQ16s")  # magic, version, bits, word bytes, flags, count, blake2b-128
_HEADER_SIZE = 64


def word_dtype(bits: int) -> np.dtype:
    """Word type of the code planes: uint32 for codes of at most 32 bits, else uint64."""
    return np.dtype("<u4") if bits <= 32 else np.dtype("<u8")


def word_count(bits: int) -> int:
    """Number of word planes of `bits`-bit codes (the last word zero-padded)."""
    return -(-bits // (8 * word_dtype(bits).itemsize))


def to_planes(packed: np.ndarray, bits: int) -> np.ndarray:
    """Packed uint8 (n, bits/8) -> word planes (words, n), last word zero-padded."""
    wd = word_dtype(bits)
    nwords = word_count(bits)
    padded = np.zeros((packed.shape[0], nwords * wd.itemsize), np.uint8)
    padded[:, : packed.shape[1]] = packed
    return np.ascontiguousarray(padded.view(wd).T)


def from_planes(planes: np.ndarray, bits: int) -> np.ndarray:
    """Word planes (words, n) -> packed uint8 (n, bits/8)."""
    rows = np.ascontiguousarray(planes.T)
    return rows.view(np.uint8).reshape(rows.shape[0], rows.shape[1] * rows.itemsize)[:, : bits // 8].copy()


def dist_dtype(bits: int) -> np.dtype:
    """Smallest unsigned type that holds a distance 0..bits."""
    return np.dtype(np.uint8) if bits < 256 else np.dtype(np.uint16)


def scan(
    planes: np.ndarray, queries: np.ndarray, bits: int, k: int | None = None, radius: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidates (query row, distance, position) of all pairs within `radius`, or a superset of each query's k nearest.

    With `radius`, exactly the pairs at distance <= radius. With `k`, a superset of each query's first k
    pairs in (distance, position) order. Each query keeps a strict limit: once it holds k candidates, a later
    (higher) position must be strictly closer than the k-th to matter, so exact duplicates (trained codes)
    cannot pile up. Rows index the columns of `queries` (words, q).
    """
    n = planes.shape[1]
    nq = queries.shape[1]
    dd = dist_dtype(bits)
    qb, nb = _block_shape(n, nq)
    xbuf, abuf, sbuf, mbuf = (_scratch(i, qb * nb, dt) for i, dt in enumerate((planes.dtype, dd, dd, np.bool_)))
    out_r, out_d, out_p = [], [], []
    for q0 in range(0, nq, qb):
        qs = queries[:, q0 : q0 + qb]
        m = qs.shape[1]
        lim = np.full((m, 1), bits + 1 if radius is None else min(radius, bits) + 1, dd)  # keep distance < lim
        rs, ds, ps = [], [], []
        pending = 0
        for p0, w in db_blocks(n, nb):
            acc = _block_distances(planes[:, p0 : p0 + w], qs, xbuf, abuf, sbuf)
            if k is not None and p0 == 0 and w >= k:  # start from each query's k-th distance in the first block
                np.minimum(lim[:, 0], _block_kth(acc, k, bits) + 1, out=lim[:, 0], casting="unsafe")
            mask = mbuf[: m * w].reshape(m, w)
            np.less(acc, lim, out=mask)
            idx = np.flatnonzero(mask)
            if not idx.size:
                continue
            r, c = np.divmod(idx, w)
            rs.append(r)
            ds.append(abuf[idx])
            ps.append(c + p0)
            pending += idx.size
            if k is not None and pending >= PRUNE_AFTER * m * k:
                r, d, p, limit = prune(np.concatenate(rs), np.concatenate(ds), np.concatenate(ps), m, k, bits)
                rs, ds, ps = [r], [d], [p]
                np.minimum(lim[:, 0], limit, out=lim[:, 0], casting="unsafe")
                pending = 0
        if rs:
            out_r.append(np.concatenate(rs) + q0)
            out_d.append(np.concatenate(ds))
            out_p.append(np.concatenate(ps))
    if not out_r:
        return np.empty(0, np.int64), np.empty(0, dd), np.empty(0, np.int64)
    return np.concatenate(out_r), np.concatenate(out_d), np.concatenate(out_p)


def nearest_distances(planes: np.ndarray, queries: np.ndarray, bits: int) -> np.ndarray:
    """Per query (column of `queries`): the distance to its nearest code in `planes`, bits + 1 when there is none."""
    n, nq = planes.shape[1], queries.shape[1]
    qb, nb = _block_shape(n, nq)
    bufs = [_scratch(i, qb * nb, dt) for i, dt in enumerate((planes.dtype, dist_dtype(bits), dist_dtype(bits)))]
    out = np.full(nq, bits + 1, np.int64)
    for q0 in range(0, nq, qb):
        qs = queries[:, q0 : q0 + qb]
        for p0 in range(0, n, nb):
            acc = _block_distances(planes[:, p0 : p0 + nb], qs, *bufs)
            np.minimum(out[q0 : q0 + qb], acc.min(axis=1), out=out[q0 : q0 + qb])
    return out


def _block_shape(n: int, nq: int) -> tuple[int, int]:
    """(queries, codes) per block: about BLOCK_ELEMS pairs, at least MIN_DB_BLOCK codes wide."""
    qb = max(1, min(nq, BLOCK_ELEMS // MIN_DB_BLOCK))
    return qb, min(max(MIN_DB_BLOCK, BLOCK_ELEMS // qb), max(n, 1))


def db_blocks(n: int, nb: int) -> Iterator[tuple[int, int]]:
    """(start, width) of the database blocks: MIN_DB_BLOCK codes first, then doubling up to nb."""
    p0, w = 0, min(MIN_DB_BLOCK, nb)
    while p0 < n:
        yield p0, min(w, n - p0)
        p0 += w
        w = min(2 * w, nb)


def prune(
    rows: np.ndarray, dist: np.ndarray, pos: np.ndarray, nq: int, k: int, bits: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each query row's first k candidates in (distance, position) order, and the limit for later positions.

    Candidates must come in increasing position order per row. A row holding >= k candidates gets its k-th
    distance as a strict limit: a later (higher) position must be closer to rank among the first k, so exact
    duplicates (trained codes) cannot pile up. Other rows keep everything and get limit bits + 1.
    Linear time: a distance histogram per row, then only the ties at the k-th distance are ranked.
    """
    hist = np.bincount(rows * (bits + 1) + dist, minlength=nq * (bits + 1)).reshape(nq, bits + 1)
    kth = kth_from_histogram(hist, k, bits)
    cum = np.cumsum(hist, axis=1)
    full = cum[:, -1] >= k
    room = k - (cum[np.arange(nq), kth] - hist[np.arange(nq), kth])  # places left for ties at the k-th distance
    keep = dist < kth[rows]
    tie = np.flatnonzero(dist == kth[rows])
    order = np.argsort(rows[tie], kind="stable")
    tie_rows = rows[tie][order]
    keep[tie[order]] = np.arange(tie.size) - np.searchsorted(tie_rows, tie_rows) < room[tie_rows]
    return rows[keep], dist[keep], pos[keep], np.where(full, kth, bits + 1)


_SCRATCH = threading.local()


def _scratch(slot: int, size: int, dtype: np.dtype) -> np.ndarray:
    """A per-thread reusable buffer (fresh large arrays cost page faults on every search)."""
    bufs = _SCRATCH.__dict__.setdefault("bufs", {})
    buf = bufs.get(slot)
    if buf is None or buf.size < size or buf.dtype != dtype:
        buf = bufs[slot] = np.empty(size, dtype)
    return buf[:size]


def _block_distances(blk: np.ndarray, qs: np.ndarray, xbuf: np.ndarray, abuf: np.ndarray, sbuf: np.ndarray) -> np.ndarray:
    """Distances (queries, codes) between query planes qs and database planes blk, in the flat buffer abuf."""
    m, w = qs.shape[1], blk.shape[1]
    tmp, acc, part = (buf[: m * w].reshape(m, w) for buf in (xbuf, abuf, sbuf))
    for j in range(blk.shape[0]):
        np.bitwise_xor(blk[j][None, :], qs[j][:, None], out=tmp)
        popcount(tmp, out=acc if j == 0 else part)
        if j:
            np.add(acc, part, out=acc)
    return acc


def _block_kth(acc: np.ndarray, k: int, bits: int) -> np.ndarray:
    """Per row of a distance block (rows, codes): the k-th smallest distance (an upper bound of the final one)."""
    m = acc.shape[0]
    keys = acc + (np.arange(m, dtype=np.int32) * (bits + 1))[:, None]
    return kth_from_histogram(np.bincount(keys.ravel(), minlength=m * (bits + 1)).reshape(m, bits + 1), k, bits)


def kth_distance(rows: np.ndarray, dist: np.ndarray, nq: int, k: int, bits: int) -> np.ndarray:
    """Per query row: the k-th smallest candidate distance, or `bits` when a row has fewer than k candidates."""
    return kth_from_histogram(np.bincount(rows * (bits + 1) + dist, minlength=nq * (bits + 1)).reshape(nq, bits + 1), k, bits)


def kth_from_histogram(hist: np.ndarray, k: int, bits: int) -> np.ndarray:
    """Per row of a distance histogram (rows, bits + 1): the k-th smallest distance, or `bits` below k entries."""
    cum = np.cumsum(hist, axis=1)
    return np.where(cum[:, -1] >= k, np.argmax(cum >= k, axis=1), bits)


def order_candidates(rows: np.ndarray, dist: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort candidates by (query row, distance, position); one int64 key when it cannot overflow (10x faster)."""
    if not rows.size:
        return rows, dist, pos
    span, npos = int(dist.max()) + 1, int(pos.max()) + 1
    if (int(rows.max()) + 1) * span * npos < 2**62:
        order = np.argsort((rows * span + dist) * npos + pos)
    else:
        order = np.lexsort((pos, dist, rows))
    return rows[order], dist[order], pos[order]


def topk_from_candidates(
    rows: np.ndarray, dist: np.ndarray, pos: np.ndarray, ids: np.ndarray, nq: int, k: int, bits: int
) -> tuple[np.ndarray, np.ndarray]:
    """First k candidates per query (sorted) as (D int32 (nq,k), I int64 (nq,k)), padded with bits+1 / -1."""
    keep = dist <= kth_distance(rows, dist, nq, k, bits)[rows]
    rows, dist, pos = order_candidates(rows[keep], dist[keep], pos[keep])
    D = np.full((nq, k), bits + 1, np.int32)
    I = np.full((nq, k), -1, np.int64)
    rank = np.arange(rows.size) - np.searchsorted(rows, rows)
    sel = rank < k
    D[rows[sel], rank[sel]] = dist[sel]
    I[rows[sel], rank[sel]] = ids[pos[sel]]
    return D, I


def range_from_candidates(rows: np.ndarray, dist: np.ndarray, pos: np.ndarray, ids: np.ndarray, nq: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidates -> faiss-style (lims int64 (nq+1,), D int32, I int64), each query's slice sorted."""
    rows, dist, pos = order_candidates(rows, dist, pos)
    lims = np.searchsorted(rows, np.arange(nq + 1)).astype(np.int64)
    return lims, dist.astype(np.int32), ids[pos]


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


def physical_memory() -> int:
    """Bytes of physical memory (os.sysconf), or FALLBACK_MEMORY where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return FALLBACK_MEMORY


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
        """Create an empty index for codes of `bits` bits (a multiple of 8, 8..MAX_INDEX_BITS)."""
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
            if self._file is not None and resolved(path) == self._file[0] and _file_digest(path) != self._file[1]:
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


def _digest(header_fields: bytes, ids: np.ndarray, planes: np.ndarray) -> bytes:
    """blake2b-128 over the header fields, ids and planes."""
    h = hashlib.blake2b(header_fields, digest_size=16)
    h.update(memoryview(np.ascontiguousarray(ids)).cast("B"))
    for plane in planes:
        h.update(memoryview(np.ascontiguousarray(plane)).cast("B"))
    return h.digest()


def save_arrays(
    path: str | os.PathLike, bits: int, ids: np.ndarray, planes: np.ndarray, before_replace: Callable[[str], None] | None = None
) -> bytes:
    """Write header + ids (int64 LE) + planes (words x n, LE) atomically; return the digest. `before_replace(digest hex)`
    runs once the new file is complete, before it replaces `path`."""
    fields = _HEADER.pack(_MAGIC, _VERSION, bits, planes.dtype.itemsize, 0, ids.size, b"")[:-16]
    digest = _digest(fields, ids, planes)
    with atomic_open(path, "wb", size=_file_size(bits, ids.size)) as f:
        f.write((fields + digest).ljust(_HEADER_SIZE, b"\0"))
        f.write(memoryview(np.ascontiguousarray(ids, "<i8")).cast("B"))
        for plane in planes:
            f.write(memoryview(np.ascontiguousarray(plane)).cast("B"))
        f.flush()
        if before_replace is not None:
            before_replace(digest.hex())
    return digest


def _file_size(bits: int, count: int) -> int:
    """Bytes of an index file of `count` codes of `bits` bits."""
    return _HEADER_SIZE + 8 * count + word_count(bits) * word_dtype(bits).itemsize * count


def _file_digest(path: str | os.PathLike) -> bytes | None:
    """The digest in the header of the index file at `path` (None: no such file, or not a valid one)."""
    try:
        return read_header(path).digest
    except SadhError:
        return None


@dataclass(frozen=True)
class FileHeader:
    """The validated header of an index file: code length, number of codes, blake2b-128 digest, the digested fields."""

    bits: int
    count: int
    digest: bytes
    fields: bytes


def read_header(path: str | os.PathLike) -> FileHeader:
    """Read and validate the header of a file written by `save_arrays` (also its size); the payload is not read."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(_HEADER_SIZE)
    except OSError as e:
        raise SadhError(f"{path}: cannot read index file ({e.strerror})") from None
    if len(head) < _HEADER_SIZE or not head.startswith(_MAGIC):
        raise SadhError(f"{path}: not a sadh index file (bad magic)")
    magic, version, bits, wbytes, flags, count, digest = _HEADER.unpack(head[: _HEADER.size])
    if version != _VERSION:
        raise SadhError(f"{path}: unsupported index format version {version} (this build reads {_VERSION})")
    if not bits_fit(bits) or wbytes != word_dtype(bits).itemsize or flags:
        raise SadhError(f"{path}: corrupt index header (bits={bits}, word bytes={wbytes}, flags={flags})")
    expected = _file_size(bits, count)
    if size != expected:
        raise SadhError(f"{path}: truncated or corrupt index file ({size} bytes, expected {expected})")
    return FileHeader(bits, count, digest, head[: _HEADER.size - 16])


def load_arrays(path: str | os.PathLike, mmap: bool, verify: bool) -> tuple[FileHeader, np.ndarray, np.ndarray]:
    """Read and validate a file written by `save_arrays`: (header, ids, planes); with `mmap` ids and planes are mapped.

    What opening needs in memory (the sorted ids and their positions; with mmap=False also ids and planes) must fit
    in the physical memory, else SadhError, before anything is read (a header may claim any count)."""
    path = Path(path)
    header = read_header(path)
    bits, count = header.bits, header.count
    wd, nwords = word_dtype(bits), word_count(bits)
    need = 2 * 8 * count + (0 if mmap else _file_size(bits, count))
    if need > physical_memory():
        raise SadhError(
            f"{path}: opening its {count} codes needs {need / 2**30:.4g} GiB of memory, more than this machine has "
            f"({physical_memory() / 2**30:.4g} GiB){'' if mmap else '; open it memory-mapped (mmap=True) to need less'}"
        )
    offset = _HEADER_SIZE + 8 * count
    if mmap and count:
        ids = np.memmap(path, "<i8", "r", offset=_HEADER_SIZE, shape=(count,))
        planes = np.memmap(path, wd, "r", offset=offset, shape=(nwords, count))
    else:
        ids = np.fromfile(path, "<i8", count, offset=_HEADER_SIZE).astype(np.int64)
        planes = np.fromfile(path, wd, nwords * count, offset=offset).reshape(nwords, count)
    if verify and _digest(header.fields, ids, planes) != header.digest:
        raise SadhError(f"{path}: index file checksum mismatch (corrupt file)")
    return header, ids, planes
