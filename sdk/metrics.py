"""Retrieval metrics for hash codes (deep-hashing conventions), numpy only.

Codes: uint8 arrays are packed codes (n, bits/8); anything else (±1 floats, {0,1} ints, bools of shape
(n, bits)) is packed with `pack_codes`. Labels: multi-hot (n, classes); a database item is relevant to a
query when they share at least one label. Ranking: by Hamming distance, ties broken by database index
(stable). Queries are processed in chunks, so 1,000 queries x 100,000 codes stay within a few hundred MB.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .codes import as_array, pack_codes
from .errors import SadhError
from .index import to_planes
from .popcount import popcount

CHUNK_PAIRS = 1 << 22  # query x database pairs per chunk
MULTI_LABEL_TOPK = 5000  # the usual mAP@K for multi-label sets (NUS-WIDE, MS-COCO)


def default_topk(labels: np.ndarray) -> int | None:
    """mAP cut-off by convention: all (None) for single-label data (unlabelled rows allowed), 5000 for multi-label data."""
    labels = _labels(labels, None, "labels")
    return MULTI_LABEL_TOPK if np.any(labels.sum(1) > 1) else None


@dataclass(frozen=True)
class MAPResult:
    """mAP@topk and per-query APs, with the tie-aware variants alongside.

    Tie-aware AP (McFee & Lanckriet 2012) treats items at equal distance as in uniformly random order: the
    expected sum of P@j over relevant ranks j <= topk divided by the expected number of relevant items in the
    top k. For topk = None (the whole database) that is exactly the expected AP; for a cut-off inside a tied
    group it is a ratio of expectations, which can differ from the expected AP@k by a lot when few items are
    relevant (one relevant item among 5 tied ones: 1.0 at topk = 1, where the expected AP@1 is 0.2).
    """

    map: float
    ap: np.ndarray
    tie_aware_map: float
    tie_aware_ap: np.ndarray
    topk: int


def _packed(codes: np.ndarray, what: str) -> np.ndarray:
    """uint8 codes are taken as packed; others are packed with pack_codes."""
    codes = as_array(codes, what)
    if codes.dtype == np.uint8:
        if codes.ndim != 2 or codes.shape[1] == 0:
            raise SadhError(f"packed {what} must be 2-D uint8 (n, bits/8), got shape {codes.shape}")
        return codes
    if codes.ndim != 2:
        raise SadhError(f"{what} must be 2-D (n, bits), got shape {codes.shape}")
    return pack_codes(codes)


def _labels(labels: np.ndarray, n: int | None, what: str) -> np.ndarray:
    """Validate multi-hot labels (n, classes; any n when None) of 0/1 ints or floats, or bools; return them as bool."""
    rows = "n" if n is None else f"n={n}"
    labels = as_array(labels, what)
    if labels.ndim != 2 or (n is not None and labels.shape[0] != n) or labels.shape[1] == 0:
        raise SadhError(f"{what} must be multi-hot ({rows}, classes), got shape {labels.shape}")
    if labels.dtype == np.bool_:
        return labels
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)):
        raise SadhError(f"{what} must be 0/1 integers, floats or bools, got dtype {labels.dtype}")
    relevant = labels == 1
    bad = ~relevant & (labels != 0)
    if bad.any():
        raise SadhError(f"{what} must be multi-hot 0/1 values, found {labels[bad][0].item()!r}")
    return relevant


def _label_words(labels: np.ndarray) -> np.ndarray:
    """Bool labels (n, classes) as bit sets: uint64 words (words, n)."""
    packed = np.packbits(labels, axis=1)
    padded = np.zeros((labels.shape[0], -(-packed.shape[1] // 8) * 8), np.uint8)
    padded[:, : packed.shape[1]] = packed
    return np.ascontiguousarray(padded.view(np.uint64).T)


def _pairs(
    query_codes: np.ndarray, db_codes: np.ndarray, query_labels: np.ndarray, db_labels: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """Yield (distances (c, N) int16, relevance (c, N) bool, bits) per chunk of queries."""
    q, db = _packed(query_codes, "query codes"), _packed(db_codes, "database codes")
    if q.shape[1] != db.shape[1]:
        raise SadhError(f"query codes have {q.shape[1] * 8} bits but database codes have {db.shape[1] * 8}")
    if db.shape[0] == 0:
        raise SadhError("the database is empty")
    bits = q.shape[1] * 8
    ql, dl = _labels(query_labels, q.shape[0], "query labels"), _labels(db_labels, db.shape[0], "database labels")
    if ql.shape[1] != dl.shape[1]:
        raise SadhError(f"query labels have {ql.shape[1]} classes but database labels have {dl.shape[1]}")
    qp, dp, qw, dw = to_planes(q, bits), to_planes(db, bits), _label_words(ql), _label_words(dl)
    step = max(1, CHUNK_PAIRS // db.shape[0])
    for s in range(0, q.shape[0], step):
        c = min(step, q.shape[0] - s)
        dist = np.zeros((c, db.shape[0]), np.int16)
        for w in range(dp.shape[0]):
            dist += popcount(dp[w][None, :] ^ qp[w, s : s + step, None])
        rel = np.zeros((c, db.shape[0]), np.bool_)
        for w in range(dw.shape[0]):
            rel |= (dw[w][None, :] & qw[w, s : s + step, None]) != 0
        yield dist, rel, bits


def _histograms(dist: np.ndarray, rel: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query and distance 0..bits: number of items and of relevant items, int64 (c, bits + 1) each."""
    c = dist.shape[0]
    key = (dist.astype(np.int64) + (np.arange(c) * (bits + 1))[:, None]) * 2 + rel
    h = np.bincount(key.ravel(), minlength=2 * c * (bits + 1)).reshape(c, bits + 1, 2)
    return h.sum(axis=2), h[:, :, 1]


def _topk(topk: int | None, n: int) -> int:
    """Validate topk (None = whole database)."""
    if topk is None:
        return n
    if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) or topk < 1:
        raise SadhError(f"topk must be a positive integer or None, got {topk!r}")
    return min(int(topk), n)


def _ap(rel: np.ndarray) -> np.ndarray:
    """AP of ranked relevance rows (c, K): mean of P@r over relevant ranks r; 0 when none is relevant."""
    cum = np.cumsum(rel, axis=1, dtype=np.int32)
    hits = cum[:, -1]
    num = np.where(rel, cum / np.arange(1, rel.shape[1] + 1, dtype=np.float64), 0.0).sum(axis=1)
    return np.where(hits > 0, num / np.maximum(hits, 1), 0.0)


def _tie_aware_ap(n_t: np.ndarray, r_t: np.ndarray, k: int, harmonic: np.ndarray) -> np.ndarray:
    """Tie-aware AP@k (see MAPResult): items at equal distance in uniformly random order (McFee & Lanckriet 2012).

    Per distance group t (n_t items, r_t relevant, N/R items/relevant before it) and rank j in the group,
    P(rel at j) = r_t/n_t and E[relevant up to j | rel at j] = R + 1 + (j - N - 1)(r_t - 1)/(n_t - 1).
    The expected sum of P@j over relevant j <= k is divided by the expected number of relevant items in
    the top k (exact expectation for k = N, where that number is fixed).
    """
    n_t, r_t = n_t.astype(np.float64), r_t.astype(np.float64)
    end = np.cumsum(n_t, axis=1)
    start = end - n_t
    before = np.cumsum(r_t, axis=1) - r_t
    inside = np.clip(k - start, 0, n_t)  # ranks start+1 .. start+inside of each group lie in the top k
    hsum = harmonic[(start + inside).astype(np.int64)] - harmonic[start.astype(np.int64)]
    share = np.divide(r_t, n_t, out=np.zeros_like(r_t), where=n_t > 0)
    within = np.divide(r_t - 1, n_t - 1, out=np.zeros_like(r_t), where=n_t > 1)
    num = share * ((before + 1) * hsum + within * (inside - (start + 1) * hsum))
    expected_hits = (share * inside).sum(axis=1)
    return np.divide(num.sum(axis=1), expected_hits, out=np.zeros(n_t.shape[0]), where=expected_hits > 0)


def mean_average_precision(
    query_codes: np.ndarray, db_codes: np.ndarray, query_labels: np.ndarray, db_labels: np.ndarray, topk: int | None = None
) -> MAPResult:
    """mAP@topk (None = whole database): AP = (1/R_K) sum of P@r over relevant ranks r <= K; 0 if none; all queries count."""
    harmonic = None
    aps, ties = [], []
    for dist, rel, bits in _pairs(query_codes, db_codes, query_labels, db_labels):
        k = _topk(topk, dist.shape[1])
        if harmonic is None:
            harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, dist.shape[1] + 1))])
        order = np.argsort(dist, axis=1, kind="stable")[:, :k]
        aps.append(_ap(np.take_along_axis(rel, order, axis=1)))
        ties.append(_tie_aware_ap(*_histograms(dist, rel, bits), k, harmonic))
    if not aps:
        raise SadhError("no queries given")
    ap, tie = np.concatenate(aps), np.concatenate(ties)
    return MAPResult(float(ap.mean()), ap, float(tie.mean()), tie, k)


def precision_at_n(
    query_codes: np.ndarray, db_codes: np.ndarray, query_labels: np.ndarray, db_labels: np.ndarray, ns: np.ndarray
) -> np.ndarray:
    """Mean precision of the top n (ties by database index) for each n in `ns`, as float64 (len(ns),)."""
    ns = np.atleast_1d(np.asarray(ns))
    if not np.issubdtype(ns.dtype, np.integer) or ns.ndim != 1 or not ns.size or ns.min() < 1:
        raise SadhError(f"ns must be positive integers, got {ns!r}")
    total, count = np.zeros(ns.size), 0
    for dist, rel, _ in _pairs(query_codes, db_codes, query_labels, db_labels):
        if ns.max() > dist.shape[1]:
            raise SadhError(f"n={int(ns.max())} exceeds the database size {dist.shape[1]}")
        order = np.argsort(dist, axis=1, kind="stable")[:, : ns.max()]
        cum = np.cumsum(np.take_along_axis(rel, order, axis=1), axis=1, dtype=np.int32)
        total += (cum[:, ns - 1] / ns).sum(axis=0)
        count += dist.shape[0]
    if not count:
        raise SadhError("no queries given")
    return total / count


def precision_recall_by_radius(
    query_codes: np.ndarray, db_codes: np.ndarray, query_labels: np.ndarray, db_labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall of Hamming-ball retrieval for radius 0..bits, each float64 (bits + 1,).

    Precision at radius r is averaged over the queries that retrieve at least one item at r; recall over the
    queries that have at least one relevant item in the database. NaN where no query qualifies.
    """
    sums = None
    for dist, rel, bits in _pairs(query_codes, db_codes, query_labels, db_labels):
        got, hit = (np.cumsum(h, axis=1) for h in _histograms(dist, rel, bits))
        relevant = rel.sum(axis=1)[:, None]
        part = np.stack([
            (hit / np.maximum(got, 1) * (got > 0)).sum(axis=0),
            (got > 0).sum(axis=0),
            (hit / np.maximum(relevant, 1) * (relevant > 0)).sum(axis=0),
            np.broadcast_to(relevant > 0, hit.shape).sum(axis=0),
        ])
        sums = part if sums is None else sums + part
    if sums is None:
        raise SadhError("no queries given")
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums[0] / sums[1], sums[2] / sums[3]
