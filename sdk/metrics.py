"""Retrieval metrics for hash codes (deep-hashing conventions), numpy only.

Codes: uint8 arrays are packed codes (n, bits/8); anything else (±1 floats, {0,1} ints, bools of shape
(n, bits)) is packed with `pack_codes`. Labels: multi-hot (n, classes); a database item is relevant to a
query when they share at least one label (mAP, precision); the graded metrics (NDCG, ACG, WAP) take the
number of labels they share as its relevance. Ranking: by Hamming distance, ties broken by database index
(stable). Queries are processed in chunks, so 1,000 queries x 100,000 codes stay within a few hundred MB.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .codes import as_array, pack_codes
from .errors import SadhError
from .hamming_scan import to_planes
from .popcount import popcount

CHUNK_PAIRS = 1 << 22  # query x database pairs per chunk
MULTI_LABEL_TOPK = 5000  # mAP@K for a multi-label set that no protocol below names (the NUS-WIDE / MS-COCO one)
PROTOCOL_TOPK: dict[str, tuple[int | None, tuple[str, ...]]] = {  # protocol: (mAP cut-off, None = all; names it goes by)
    "fashion-mnist-mosaic": (1000, ("fashionmnistmosaic",)),  # 20,000-item database: ~5 % of it, as 5,000 of NUS-WIDE's
    "NUS-WIDE": (5000, ("nuswide",)),
    "MS-COCO": (5000, ("coco",)),
    "MIRFlickr": (None, ("mirflickr", "flickr25k")),
    "VOC": (None, ("voc",)),
}
GRADED_REPORT = (("ndcg", 100), ("ndcg", 1000), ("acg", 100), ("wap", 1000))  # the graded metrics reports lead with
GRADED_TOPKS = tuple(sorted({k for _, k in GRADED_REPORT}))  # reports give every graded metric at these cut-offs


def multi_label(labels: np.ndarray) -> bool:
    """Whether some row has several labels (unlabelled rows do not make data multi-label)."""
    return bool(np.any(_labels(labels, None, "labels").sum(1) > 1))


def topk_protocol(labels: np.ndarray, name: str | None = None) -> tuple[int | None, str]:
    """The conventional mAP cut-off (None = all) for data called `name` with these labels, and where it comes from:
    all for single-label data, the PROTOCOL_TOPK entry whose name `name` contains (case, spaces, '-' and '_'
    ignored) for multi-label data, else MULTI_LABEL_TOPK."""
    if not multi_label(labels):
        return None, "single-label data: the whole database"
    plain = "".join(ch for ch in (name or "").lower() if ch.isalnum())
    for protocol, (topk, names) in PROTOCOL_TOPK.items():
        if any(n in plain for n in names):
            return topk, f"the {protocol} protocol"
    return MULTI_LABEL_TOPK, f"multi-label data of no known protocol ({', '.join(PROTOCOL_TOPK)})"


def default_topk(labels: np.ndarray, name: str | None = None) -> int | None:
    """The conventional mAP cut-off (None = all) for data called `name` with these labels (see topk_protocol)."""
    return topk_protocol(labels, name)[0]


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


@dataclass(frozen=True)
class GradedResult:
    """NDCG@topk, ACG@topk and WAP@topk (relevance: the number of labels shared), their per-query values, and the
    tie-aware NDCG and ACG: the expectations when items at equal distance come in uniformly random order.

    DCG@K = sum over positions j <= K of (2^rel_j - 1) / log2(j + 1); NDCG@K = DCG@K / IDCG@K, IDCG@K being the DCG@K
    of the database sorted by rel (0 for a query that shares no label with any item; it still counts).
    ACG@K = (1/K) sum of rel_j over j <= K. WAP@K = (1/R_K) sum of ACG@j over j <= K with rel_j > 0, R_K being the
    number of such j (0 if none). Tie-aware: an item in a tie group spanning positions a..b gets the mean discount
    of those positions, positions beyond K counting 0 (exact by linearity; IDCG does not depend on the order).
    """

    ndcg: float
    acg: float
    wap: float
    ndcg_per_query: np.ndarray
    acg_per_query: np.ndarray
    wap_per_query: np.ndarray
    tie_aware_ndcg: float
    tie_aware_acg: float
    tie_aware_ndcg_per_query: np.ndarray
    tie_aware_acg_per_query: np.ndarray
    topk: int


def packed_codes(codes: np.ndarray, what: str = "codes") -> np.ndarray:
    """Codes as these metrics take them, packed: 2-D uint8 codes as they are, other 2-D codes (±1, bits) packed with
    pack_codes; SadhError naming `what` for any other shape (one code too: give it as one row)."""
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
    query_codes: np.ndarray, db_codes: np.ndarray, query_labels: np.ndarray, db_labels: np.ndarray, graded: bool = False
) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """Yield (distances (c, N) int16, relevance (c, N), bits) per chunk of queries; relevance is bool (shares a
    label), or with `graded` the number of labels shared (int16)."""
    q, db = packed_codes(query_codes, "query codes"), packed_codes(db_codes, "database codes")
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
        rel = np.zeros((c, db.shape[0]), np.int16 if graded else np.bool_)
        for w in range(dw.shape[0]):
            both = dw[w][None, :] & qw[w, s : s + step, None]
            if graded:
                rel += popcount(both)
            else:
                rel |= both != 0
        yield dist, rel, bits


def _distance_keys(dist: np.ndarray, bits: int) -> np.ndarray:
    """Each pair's (query row, distance) bin: row * (bits + 1) + distance, int64 (c, N)."""
    return dist.astype(np.int64) + (np.arange(dist.shape[0]) * (bits + 1))[:, None]


def _histograms(dist: np.ndarray, rel: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query and distance 0..bits: number of items and of relevant items, int64 (c, bits + 1) each."""
    c = dist.shape[0]
    key = _distance_keys(dist, bits) * 2 + rel
    h = np.bincount(key.ravel(), minlength=2 * c * (bits + 1)).reshape(c, bits + 1, 2)
    return h.sum(axis=2), h[:, :, 1]


def _ranked(dist: np.ndarray, values: np.ndarray, k: int) -> np.ndarray:
    """`values` (c, N) of each query's top k items, ranked by distance, ties by database index: (c, k)."""
    return np.take_along_axis(values, np.argsort(dist, axis=1, kind="stable")[:, :k], axis=1)


def _topk(topk: int | None, n: int) -> int:
    """Validate topk (None = whole database)."""
    if topk is None:
        return n
    if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) or topk < 1:
        raise SadhError(f"topk must be a positive integer or None, got {topk!r}")
    return min(int(topk), n)


def _ap(rel: np.ndarray, gain: np.ndarray | None = None) -> np.ndarray:
    """AP of ranked relevance rows (c, K): mean of P@r over relevant ranks r; 0 when none is relevant. With `gain`
    (c, K), the mean of gain's running average (its sum over ranks <= r, divided by r) instead: WAP."""
    cum = np.cumsum(rel if gain is None else gain, axis=1, dtype=np.int32)
    hits = rel.sum(axis=1)
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
        aps.append(_ap(_ranked(dist, rel, k)))
        ties.append(_tie_aware_ap(*_histograms(dist, rel, bits), k, harmonic))
    if not aps:
        raise SadhError("no queries given")
    ap, tie = np.concatenate(aps), np.concatenate(ties)
    return MAPResult(float(ap.mean()), ap, float(tie.mean()), tie, k)


def _ns(ns: np.ndarray, what: str) -> np.ndarray:
    """Validate a list of cut-offs (positive integers), as a 1-D array."""
    ns = np.atleast_1d(np.asarray(ns))
    if not np.issubdtype(ns.dtype, np.integer) or ns.ndim != 1 or not ns.size or ns.min() < 1:
        raise SadhError(f"{what} must be positive integers, got {ns!r}")
    return ns


def _check_ns(ns: np.ndarray, database: int) -> None:
    """SadhError when a cut-off exceeds the database size."""
    if ns.max() > database:
        raise SadhError(f"n={int(ns.max())} exceeds the database size {database}")


def precision_at_n(
    query_codes: np.ndarray, db_codes: np.ndarray, query_labels: np.ndarray, db_labels: np.ndarray, ns: np.ndarray
) -> np.ndarray:
    """Mean precision of the top n (ties by database index) for each n in `ns`, as float64 (len(ns),)."""
    ns = _ns(ns, "ns")
    total, count = np.zeros(ns.size), 0
    for dist, rel, _ in _pairs(query_codes, db_codes, query_labels, db_labels):
        _check_ns(ns, dist.shape[1])
        cum = np.cumsum(_ranked(dist, rel, ns.max()), axis=1, dtype=np.int32)
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


def _span(cum: np.ndarray, start: np.ndarray, count: np.ndarray, k: np.ndarray | int) -> np.ndarray:
    """Sum of a per-position weight over positions start+1 .. start+count that lie within the top k, where cum[j] is
    the weight's sum over positions 1..j (arrays broadcast)."""
    return cum[np.minimum(start + count, k)] - cum[np.minimum(start, k)]


def _gains(shared: np.ndarray) -> np.ndarray:
    """Gain 2^rel - 1 for rel = 0 .. the most labels shared in `shared`."""
    return np.exp2(np.arange(int(shared.max()) + 1)) - 1.0


def _discounts(database: int) -> np.ndarray:
    """The DCG discount 1/log2(j + 1) summed over positions 1..j, for j = 0..database."""
    return np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, database + 2)))])


def _ideal_dcg(shared: np.ndarray, gains: np.ndarray, discounts: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """IDCG@k per query and k: DCG@k of the database sorted by labels shared, most first; (c, len(ks))."""
    c, levels = shared.shape[0], len(gains)
    key = (shared.astype(np.int64) + (np.arange(c) * levels)[:, None]).ravel()
    counts = np.bincount(key, minlength=c * levels).reshape(c, levels)[:, ::-1]  # most labels shared first
    start = np.cumsum(counts, axis=1) - counts
    return (gains[::-1, None] * _span(discounts, start[..., None], counts[..., None], ks)).sum(axis=1)


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0."""
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def graded_metrics(
    query_codes: np.ndarray, db_codes: np.ndarray, query_labels: np.ndarray, db_labels: np.ndarray, topk: int | None = None
) -> GradedResult:
    """NDCG, ACG and WAP @topk (None = whole database) with relevance = labels shared, plain and tie-aware (GradedResult)."""
    parts: list[tuple[np.ndarray, ...]] = []
    for dist, shared, bits in _pairs(query_codes, db_codes, query_labels, db_labels, graded=True):
        n = dist.shape[1]
        k = _topk(topk, n)
        if not parts:
            discounts = _discounts(n)
        gains = _gains(shared)
        ranked = _ranked(dist, shared, k)
        ideal = _ideal_dcg(shared, gains, discounts, np.array([k]))[:, 0]
        dcg = gains[ranked] @ np.diff(discounts[: k + 1])
        acg = ranked.sum(axis=1) / k
        wap = _ap(ranked > 0, ranked)
        # tie-aware: per distance group, its items' summed gain (relevance) times the group's mean discount (share in the top k)
        key = _distance_keys(dist, bits).ravel()
        groups = dist.shape[0] * (bits + 1)
        sizes, gain_sums, rel_sums = (
            np.bincount(key, weights=w, minlength=groups).reshape(dist.shape[0], bits + 1)
            for w in (None, gains[shared].ravel(), shared.ravel().astype(np.float64))
        )
        start = np.cumsum(sizes, axis=1) - sizes
        tie_dcg = (_divide(_span(discounts, start, sizes, k), sizes) * gain_sums).sum(axis=1)
        tie_acg = (_divide(_span(np.arange(n + 1), start, sizes, k), sizes) * rel_sums).sum(axis=1) / k
        parts.append((_divide(dcg, ideal), acg, wap, _divide(tie_dcg, ideal), tie_acg))
    if not parts:
        raise SadhError("no queries given")
    ndcg, acg, wap, tie_ndcg, tie_acg = (np.concatenate(p) for p in zip(*parts))
    return GradedResult(
        float(ndcg.mean()), float(acg.mean()), float(wap.mean()), ndcg, acg, wap, float(tie_ndcg.mean()), float(tie_acg.mean()),
        tie_ndcg, tie_acg, k,
    )


def ndcg_at_k(
    query_codes: np.ndarray, db_codes: np.ndarray, query_labels: np.ndarray, db_labels: np.ndarray, ks: np.ndarray
) -> np.ndarray:
    """Mean NDCG@k (relevance = labels shared, ties by database index) for each k in `ks`, as float64 (len(ks),)."""
    ks = _ns(ks, "ks")
    total, count = np.zeros(ks.size), 0
    for dist, shared, _ in _pairs(query_codes, db_codes, query_labels, db_labels, graded=True):
        _check_ns(ks, dist.shape[1])
        if not count:
            discounts = _discounts(dist.shape[1])
        gains = _gains(shared)
        dcg = np.cumsum(gains[_ranked(dist, shared, ks.max())] * np.diff(discounts[: ks.max() + 1]), axis=1)[:, ks - 1]
        total += _divide(dcg, _ideal_dcg(shared, gains, discounts, ks)).sum(axis=0)
        count += dist.shape[0]
    if not count:
        raise SadhError("no queries given")
    return total / count
