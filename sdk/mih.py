"""Multi-index hashing (Norouzi et al.): exact Hamming k-NN and radius search that probes substring tables.

Codes are split into m byte-aligned substrings (default 16 bits each); each substring has a sorted
table (values, the positions that hold them, and the codes in that order). Pigeonhole: a code within
distance r of the query matches it within floor(r / m) bits on at least one substring. Search runs steps
(radius s, substring j) in order, each probing every value exactly s bits from the query's substring j;
after step (s, j) every code within m * s + j has been found, so k-NN stops once a query's k-th distance
is within that bound and radius search after radius floor(r / m): results are exact and ordered exactly
like `HammingIndex` (distance, then insertion order). A pair is kept only by the step that finds it first
(decided from its substring distances), so no deduplication sort is needed. Queries whose probes would
touch too much of the database (random-like data, huge radii) use the flat scan instead, which is then
cheaper: k-NN queries are routed up front by a predicted cost (their nearest code in a sample gives the
radius they need), and any query moves over as soon as its MIH work so far exceeds a flat scan.

Storage, ids, add/remove, save/load and the concurrency rules are those of `HammingIndex` (same file
format); the tables are rebuilt lazily on the first search after a change (in memory, also when mmapped).
"""
from __future__ import annotations

import functools
import itertools
import math
import os
import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .codes import check_packed
from .errors import SadhError
from .hamming_scan import (
    from_planes,
    kth_from_histogram,
    nearest_distances,
    range_from_candidates,
    scan,
    to_planes,
    topk_from_candidates,
    word_dtype,
)
from .index import HammingIndex, Snapshot, check_k, check_radius
from .popcount import popcount

# Measured costs in units of one code of the flat scan. A k-NN query whose predicted MIH cost exceeds n goes to the
# flat scan at once; any query moves there (abandoning its MIH work) as soon as its MIH cost so far would exceed n.
PROBE_COST = 256  # one bucket lookup by binary search
DIRECT_PROBE_COST = 24  # one bucket lookup in a direct table
DIRECT_BITS = 16  # substrings this narrow get a direct table of bucket starts (2^16 + 1 entries)
CANDIDATE_COST = 64  # one candidate pair
SAMPLE = 16384  # at most this many evenly spaced database codes predict each k-NN query's k-th distance


@functools.lru_cache(maxsize=256)
def flip_masks(width: int, s: int) -> np.ndarray:
    """All `width`-bit masks with exactly s bits set, as uint64."""
    if s == 0:
        masks = np.zeros(1, np.uint64)
    else:
        combos = np.array(list(itertools.combinations(range(width), s)), np.int64)
        masks = np.bitwise_or.reduce(np.uint64(1) << combos.astype(np.uint64), axis=1)
    masks.flags.writeable = False
    return masks


def _plane_masks(start: int, size: int, wbytes: int) -> list[tuple[int, int]]:
    """(word, mask) pairs selecting code bytes start .. start+size-1 in little-endian word planes."""
    masks: dict[int, int] = {}
    for b in range(start, start + size):
        masks[b // wbytes] = masks.get(b // wbytes, 0) | 0xFF << 8 * (b % wbytes)
    return sorted(masks.items())


def _cat(arrays: list, dtype: type) -> np.ndarray:
    """Concatenate a possibly empty list of 1-D arrays as `dtype`."""
    return np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.zeros(0, dtype)


@dataclass(frozen=True)
class _Tables:
    """Substring tables for one snapshot: per substring, sorted values, the positions that hold them, the
    code planes in that same order (so a bucket's codes are read contiguously), and for substrings of at most
    DIRECT_BITS bits each value's first index (a bucket is two reads instead of two binary searches); the
    planes of an evenly spaced sample of the codes; and, per MIH step, the predicted cumulative cost of a query
    and the distance it covers (see `_predicted_cost`)."""

    snap: Snapshot
    values: tuple
    positions: tuple
    planes: tuple
    starts: tuple
    sample: np.ndarray
    step_cost: np.ndarray
    step_reach: np.ndarray


class MultiIndexHashingIndex:
    """Exact Hamming index with multi-index hashing; same API and results as `HammingIndex`."""

    def __init__(self, bits: int, m: int | None = None) -> None:
        """Create an empty index; `m` substrings (default: 16-bit substrings), each at most 64 bits wide."""
        self._flat = HammingIndex(bits)
        self.bits, self.nbytes = self._flat.bits, self._flat.nbytes
        m = -(-self.nbytes // 2) if m is None else m
        if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or not -(-self.nbytes // 8) <= m <= self.nbytes:
            raise SadhError(f"m must be an integer between {-(-self.nbytes // 8)} and {self.nbytes} for {self.bits}-bit codes, got {m!r}")
        self.m = int(m)
        sizes = [len(g) for g in np.array_split(np.arange(self.nbytes), self.m)]
        self._starts = np.cumsum([0] + sizes[:-1])
        self._widths = [8 * g for g in sizes]
        self._parts = [_plane_masks(st, g, word_dtype(self.bits).itemsize) for st, g in zip(self._starts, sizes)]
        self._cache_lock = threading.Lock()
        self._cache: _Tables | None = None

    def __len__(self) -> int:
        """Number of stored codes."""
        return len(self._flat)

    @property
    def ids(self) -> np.ndarray:
        """Ids in insertion order (read-only view)."""
        return self._flat.ids

    @property
    def codes(self) -> np.ndarray:
        """Packed uint8 codes (n, bits/8) in insertion order (a copy)."""
        return self._flat.codes

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The packed codes stored under `ids`; see `HammingIndex.reconstruct`."""
        return self._flat.reconstruct(ids)

    def add(self, codes: np.ndarray, ids: np.ndarray | None = None) -> np.ndarray:
        """Append codes; same rules as `HammingIndex.add`."""
        return self._flat.add(codes, ids)

    def remove(self, ids: np.ndarray) -> int:
        """Remove ids; same rules as `HammingIndex.remove`."""
        return self._flat.remove(ids)

    @property
    def file_digest(self) -> str | None:
        """Digest of the file last loaded or saved; see `HammingIndex.file_digest`."""
        return self._flat.file_digest

    def save(self, path: str | os.PathLike, before_replace: Callable[[str], None] | None = None) -> None:
        """Write the index (the `HammingIndex` file format; tables are not stored); see `HammingIndex.save`."""
        self._flat.save(path, before_replace)

    @classmethod
    def load(cls, path: str | os.PathLike, mmap: bool = False, verify: bool | None = None, m: int | None = None) -> "MultiIndexHashingIndex":
        """Read an index file written by either index class; see `HammingIndex.load`."""
        return cls.over(HammingIndex.load(path, mmap=mmap, verify=verify), m)

    @classmethod
    def over(cls, flat: HammingIndex, m: int | None = None) -> "MultiIndexHashingIndex":
        """A MIH index sharing `flat`'s storage (no copy): writes through either one are seen by both."""
        index = cls(flat.bits, m)
        index._flat = flat
        return index

    def _tables(self) -> _Tables:
        """Substring tables for the current snapshot (built on first use, then cached)."""
        snap = self._flat.snapshot()
        with self._cache_lock:
            if self._cache is None or self._cache.snap is not snap:
                subs = self._substrings(from_planes(snap.planes, self.bits))
                perms = tuple(np.argsort(col, kind="stable") for col in subs)
                values = tuple(col[p] for col, p in zip(subs, perms))
                starts = tuple(
                    np.searchsorted(v, np.arange((1 << w) + 1)) if w <= DIRECT_BITS else None for v, w in zip(values, self._widths)
                )
                planes = tuple(np.ascontiguousarray(snap.planes[:, p]) for p in perms)
                sample = snap.planes[:, np.linspace(0, snap.ids.size - 1, min(SAMPLE, snap.ids.size)).astype(np.intp)]
                steps = self._steps(max(self._widths))
                step_cost = np.cumsum([
                    self._step_probe_cost(starts, s, j)
                    + snap.ids.size * math.comb(self._widths[j], s) / 2 ** self._widths[j] * CANDIDATE_COST
                    for s, j in steps
                ])
                step_reach = np.array([self.m * s + j for s, j in steps])  # all codes within this found after the step
                self._cache = _Tables(snap, values, perms, planes, starts, sample, step_cost, step_reach)
            return self._cache

    def _substrings(self, packed: np.ndarray) -> np.ndarray:
        """Substring values (m, n) in the smallest unsigned type that holds them, bytes read big-endian."""
        out = np.zeros((self.m, packed.shape[0]), np.uint64)
        for j, (start, width) in enumerate(zip(self._starts, self._widths)):
            for b in range(width // 8):
                out[j] = (out[j] << np.uint64(8)) | packed[:, start + b]
        return out.astype(np.min_scalar_type((1 << max(self._widths)) - 1))

    def _probe(self, t: _Tables, qsub: np.ndarray, active: np.ndarray, s: int, j: int):
        """Buckets of table j whose value is exactly s bits from each active query's substring.

        Returns per-probe (query row, first sorted index, count) and each active query's total count.
        """
        masks = flip_masks(self._widths[j], s).astype(qsub.dtype)
        probes = (qsub[j, active][:, None] ^ masks[None, :]).ravel()
        if t.starts[j] is not None:
            lo = t.starts[j][probes]
            cnts = t.starts[j][probes.astype(np.intp) + 1] - lo
        else:
            lo = np.searchsorted(t.values[j], probes, "left")
            cnts = np.searchsorted(t.values[j], probes, "right") - lo
        return np.repeat(active, masks.size), lo, cnts, cnts.reshape(active.size, masks.size).sum(axis=1)

    def _owned(self, t: _Tables, qplanes: np.ndarray, probe: tuple, s: int, j: int):
        """Expand probes of table j at radius s to (rows, dist, pos), keeping only pairs no earlier step found.

        Step (s, j) finds exactly the pairs with substring j at distance s; a pair was found earlier iff some
        substring is within s - 1, or a substring j' < j is within s.
        """
        rows, los, cnts = probe
        f = np.repeat(los - (np.cumsum(cnts) - cnts), cnts) + np.arange(int(cnts.sum()))
        r = np.repeat(rows, cnts)
        xs = [plane[f] ^ qplane[r] for plane, qplane in zip(t.planes[j], qplanes)]
        seen = np.zeros(r.size, np.bool_)
        for jj in range(j) if s == 0 else (jj for jj in range(self.m) if jj != j):  # no substring is within -1
            sub = sum(popcount(xs[w] & xs[w].dtype.type(mask)) for w, mask in self._parts[jj])
            seen |= sub <= s if jj < j else sub < s
        new = ~seen
        dist = sum(popcount(x[new]).astype(np.int32) for x in xs)
        return r[new], dist, t.positions[j][f[new]]

    def _steps(self, last: int) -> list[tuple[int, int]]:
        """MIH steps (radius s, table j) up to radius `last`, in the order they run."""
        return [(s, j) for s in range(last + 1) for j in range(self.m) if s <= self._widths[j]]

    def _step_probe_cost(self, starts: tuple, s: int, j: int) -> int:
        """Cost of the bucket lookups of step (s, j) in tables with these direct `starts`, in flat-scan codes."""
        return math.comb(self._widths[j], s) * (DIRECT_PROBE_COST if starts[j] is not None else PROBE_COST)

    def _predicted_cost(self, t: _Tables, qplanes: np.ndarray, k: int) -> np.ndarray:
        """Per query: predicted MIH cost (flat-scan codes) to reach its k-th distance.

        The k-th distance is predicted by the nearest of about n / k evenly spaced codes; candidates per step
        are those of uniform random codes, which underestimates clustered data, so the prediction only sends
        random-like queries straight to the flat scan.
        """
        n = t.snap.ids.size
        sample = np.ascontiguousarray(t.sample[:, :: -(-t.sample.shape[1] * k // n)])  # at most n / k codes
        kth = nearest_distances(sample, qplanes, self.bits)  # a query is done after the first step reaching its k-th
        return t.step_cost[np.minimum(np.searchsorted(t.step_reach, kth), len(t.step_reach) - 1)]

    def _run(self, qp: np.ndarray, k: int | None, radius: int | None):
        """MIH steps (radius s, table j) for all queries; returns (tables, MIH candidates, rows that need the flat scan).

        After step (s, j) every code within m s + j of a query has been found, so a k-NN query is done once
        its k-th distance is at most that; a radius query is done after all tables at radius floor(radius / m).
        """
        t = self._tables()
        n, nq = t.snap.ids.size, qp.shape[0]
        qsub = self._substrings(qp)
        qplanes = to_planes(qp, self.bits)
        active, flat_rows, found = np.arange(nq), [], []
        if k is not None and n:
            routed = self._predicted_cost(t, qplanes, k) > n
            flat_rows.append(active[routed])
            active = active[~routed]
        hist = np.zeros((nq, self.bits + 1), np.int64)  # per query: found codes per distance
        cost = np.zeros(nq, np.int64)  # per query: MIH work so far, in flat-scan codes
        last = max(self._widths) if radius is None else min(radius // self.m, max(self._widths))
        for s, j in self._steps(last):
            if not active.size:
                break
            step_cost = self._step_probe_cost(t.starts, s, j)
            if step_cost > n:  # more probes than the flat scan costs, for every query
                flat_rows.append(active)
                active = active[:0]
                break
            probe = self._probe(t, qsub, active, s, j)
            cost[active] += step_cost + probe[3] * CANDIDATE_COST
            heavy = cost[active] > n
            if heavy.any():
                flat_rows.append(active[heavy])
                keep = np.repeat(~heavy, probe[0].size // active.size)
                probe, active = tuple(a[keep] for a in probe[:3]), active[~heavy]
            rows, dist, pos = self._owned(t, qplanes, probe[:3], s, j)
            if k is not None:
                hist += np.bincount(rows * (self.bits + 1) + dist, minlength=hist.size).reshape(hist.shape)
                kth = kth_from_histogram(hist, k, self.bits)
                keep = dist <= kth[rows]  # farther than an upper bound of the k-th distance: never a result
                rows, dist, pos = rows[keep], dist[keep], pos[keep]
                active = active[kth[active] > self.m * s + j]
            found.append((rows, dist, pos))
        # Queries still active here probed every substring value, so all their codes were found.
        flat = np.concatenate(flat_rows) if flat_rows else np.zeros(0, np.int64)
        return t, found, flat

    def _merge(self, t: _Tables, qp: np.ndarray, found: list, flat: np.ndarray, k: int | None, radius: int | None):
        """Combine MIH candidates with flat-scan candidates for the rows routed to the flat scan."""
        snap = t.snap
        rows = [f[0] for f in found]
        dist = [f[1] for f in found]
        pos = [f[2] for f in found]
        if flat.size:
            is_flat = np.zeros(qp.shape[0], np.bool_)
            is_flat[flat] = True
            keep = [~is_flat[r] for r in rows]
            rows, dist, pos = ([a[kp] for a, kp in zip(arrs, keep)] for arrs in (rows, dist, pos))
            r, d, p = scan(snap.planes, to_planes(qp[flat], self.bits), self.bits, k=k, radius=radius)
            rows, dist, pos = rows + [flat[r]], dist + [d.astype(np.int32)], pos + [p]
        return snap, _cat(rows, np.int64), _cat(dist, np.int32), _cat(pos, np.int64)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact k nearest codes per query, (D int32 (q,k), I int64 (q,k)); same results and k rules as `HammingIndex.search`."""
        qp = check_packed(queries, self.nbytes, what="queries")
        k = check_k(k, qp.shape[0])
        t, found, flat = self._run(qp, k, None)
        snap, rows, dist, pos = self._merge(t, qp, found, flat, k, None)
        return topk_from_candidates(rows, dist, pos, snap.ids, qp.shape[0], k, self.bits)

    def range_search(self, queries: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All codes within distance <= radius as (lims, D, I); same results as `HammingIndex.range_search`."""
        radius = min(check_radius(radius), self.bits)
        qp = check_packed(queries, self.nbytes, what="queries")
        t, found, flat = self._run(qp, None, radius)
        snap, rows, dist, pos = self._merge(t, qp, found, flat, None, radius)
        keep = dist <= radius
        return range_from_candidates(rows[keep], dist[keep], pos[keep], snap.ids, qp.shape[0])
