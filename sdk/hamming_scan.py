"""The Hamming scan kernel: codes as word planes in memory, and blocked XOR + popcount search over them (numpy only).

Codes are stored as word planes: one contiguous array per machine word (uint32 when bits <= 32,
else uint64, the last word zero-padded), so a search is XOR + popcount over long runs of memory.
Queries x database are scanned in cache-sized blocks; each query keeps a running distance
threshold (the k-th smallest distance seen so far), so only a few candidates per block survive;
database blocks start at MIN_DB_BLOCK codes and double, so the threshold is tight early.
Candidates are ordered by (distance, position): `HammingIndex` and `MultiIndexHashingIndex` build on this.
"""
from __future__ import annotations

import threading
from typing import Iterator

import numpy as np

from .popcount import popcount

BLOCK_ELEMS = 1 << 17  # query x database pairs per block: the uint64 XOR buffer stays ~1 MiB
MIN_DB_BLOCK = 4096  # with BLOCK_ELEMS: at most 32 queries x >= 4096 codes (measured best); the first block's width
PRUNE_AFTER = 2  # prune once 2 k new candidates per query piled up (vs 4: trained codes -25 %, 128 bits -12 %; measured)


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
