"""Bit counts of unsigned integer arrays: numpy's `bitwise_count` (numpy >= 2.0) or an exact fallback for numpy 1.x.

JetPack 6 (Jetson) pins numpy 1.2x, which has no `np.bitwise_count`; the fallback is the classic SWAR count
(pairs, nibbles, bytes, then one multiply that sums the bytes into the top one), in chunks, in place on two
per-thread scratch arrays; see bench/index_bench.py's "popcount" section for its speed against the native ufunc.
"""
from __future__ import annotations

import threading

import numpy as np

CHUNK = 1 << 16  # elements per pass: two reused scratch arrays of <= 512 KiB (fresh ones cost a page fault per 4 KiB)
_SCRATCH = threading.local()


def popcount_swar(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Set bits of each element of unsigned integer `x` (uint8..uint64) as uint8, or written into `out`; exact."""
    x = np.asarray(x)
    if x.dtype.kind != "u":
        raise TypeError(f"popcount needs unsigned integers, got {x.dtype}")
    width = x.dtype.itemsize
    m1, m2, m4, ones = (x.dtype.type(int(pattern * width, 16)) for pattern in ("55", "33", "0f", "01"))
    flat = np.ascontiguousarray(x).reshape(-1)
    direct = out is not None and out.flags.c_contiguous and out.shape == x.shape
    counts = out.reshape(-1) if direct else np.empty(flat.size, np.uint8)
    bufs = _SCRATCH.__dict__.setdefault("bufs", {})
    t_buf, u_buf = bufs.setdefault(x.dtype, (np.empty(CHUNK, x.dtype), np.empty(CHUNK, x.dtype)))
    for start in range(0, flat.size, CHUNK):
        v = flat[start : start + CHUNK]
        t, u = t_buf[: v.size], u_buf[: v.size]
        np.right_shift(v, 1, out=t)
        np.bitwise_and(t, m1, out=t)
        np.subtract(v, t, out=t)  # 2-bit fields: count of their bits
        np.right_shift(t, 2, out=u)
        np.bitwise_and(u, m2, out=u)
        np.bitwise_and(t, m2, out=t)
        np.add(t, u, out=t)  # 4-bit fields
        np.right_shift(t, 4, out=u)
        np.add(t, u, out=t)
        np.bitwise_and(t, m4, out=t)  # bytes
        np.multiply(t, ones, out=t)  # the top byte now holds the sum of all bytes
        np.right_shift(t, 8 * (width - 1), out=t)
        np.copyto(counts[start : start + CHUNK], t, casting="unsafe")  # a count <= 64 fits any integer type
    if direct:
        return out
    if out is None:
        return counts.reshape(x.shape)
    np.copyto(out, counts.reshape(x.shape), casting="unsafe")
    return out


popcount = getattr(np, "bitwise_count", popcount_swar)  # the fast path where numpy has it
