"""Retrieval metrics against slow, obviously correct references and hand-computed cases."""
import itertools

import numpy as np
import pytest

import sadh.sdk.metrics as metrics_mod
from sadh.sdk.codes import pack_codes
from sadh.sdk.errors import SadhError
from sadh.sdk.metrics import graded_metrics, mean_average_precision, ndcg_at_k, precision_at_n, precision_recall_by_radius


def ranked(q, db, ql, dl):
    """Per query: (distances, relevance) of the database sorted by (distance, index)."""
    d = (q[:, None, :] != db[None, :, :]).sum(-1)
    rel = (ql[:, None, :] & dl[None, :, :]).any(-1)
    out = []
    for i in range(len(q)):
        order = sorted(range(len(db)), key=lambda j: (d[i, j], j))
        out.append((d[i, order], rel[i, order]))
    return out


def ref_ap(relseq, k):
    hits, total = 0, 0.0
    for r, x in enumerate(relseq[:k], 1):
        if x:
            hits += 1
            total += hits / r
    return total / hits if hits else 0.0


def ref_tie_aware(dist, relseq, k):
    """E[sum of P@r over relevant r <= k] / E[relevant in top k], over all orders within tie groups."""
    groups = [list(np.flatnonzero(dist == t)) for t in np.unique(dist)]
    nums, hits = [], []
    for perm in itertools.product(*[itertools.permutations(g) for g in groups]):
        seq = relseq[[j for g in perm for j in g]]
        nums.append(sum(seq[:r].sum() / r for r in range(1, k + 1) if seq[r - 1]))
        hits.append(seq[:k].sum())
    return np.mean(nums) / np.mean(hits) if np.mean(hits) else 0.0


def random_data(seed, nq, ndb, bits, classes):
    rng = np.random.default_rng(seed)
    q = rng.integers(0, 2, (nq, bits)).astype(bool)
    db = rng.integers(0, 2, (ndb, bits)).astype(bool)
    ql = rng.random((nq, classes)) < 0.25
    dl = rng.random((ndb, classes)) < 0.25
    return q, db, ql, dl


@pytest.mark.parametrize(("bits", "classes", "topk"), [(8, 3, None), (8, 3, 17), (16, 70, None), (16, 5, 1), (24, 4, 60), (8, 2, 1000)])
def test_map_and_precision_match_reference(bits, classes, topk, monkeypatch):
    monkeypatch.setattr(metrics_mod, "CHUNK_PAIRS", 500)  # several query chunks
    q, db, ql, dl = random_data(bits + classes, 30, 60, bits, classes)
    res = mean_average_precision(q, db, ql, dl, topk=topk)
    k = min(topk or 60, 60)
    expected = [ref_ap(rel, k) for _, rel in ranked(q, db, ql, dl)]
    assert res.topk == k and np.allclose(res.ap, expected) and np.isclose(res.map, np.mean(expected))
    ns = [1, 5, 60]
    prec = precision_at_n(q, db, ql, dl, ns)
    assert np.allclose(prec, [np.mean([rel[:n].mean() for _, rel in ranked(q, db, ql, dl)]) for n in ns])


@pytest.mark.parametrize("topk", [None, 3, 5])
def test_tie_aware_is_the_expectation_over_tie_orders(topk):
    for seed in range(6):
        q, db, ql, dl = random_data(seed, 4, 7, 8, 2)
        db[1:4] = db[0]  # a big tie group
        res = mean_average_precision(q, db, ql, dl, topk=topk)
        expected = [ref_tie_aware(d, rel, topk or 7) for d, rel in ranked(q, db, ql, dl)]
        assert np.allclose(res.tie_aware_ap, expected)


def test_tie_aware_equals_plain_without_ties():
    q = np.array([[0, 0, 0, 0, 0, 0, 0, 0]])
    db = np.array([[1] * k + [0] * (8 - k) for k in (3, 0, 5, 1)])
    res = mean_average_precision(q, db, np.array([[1, 0]]), np.array([[1, 0], [0, 1], [1, 1], [0, 1]]))
    # ranks by distance: item1 (irrelevant), item3 (irrelevant), item0 (rel), item2 (rel): AP = (1/3 + 2/4) / 2
    assert np.isclose(res.map, (1 / 3 + 2 / 4) / 2) and np.isclose(res.tie_aware_map, res.map)


def test_hand_computed_with_ties_and_last_item():
    q = np.zeros((1, 8), bool)
    db = np.zeros((4, 8), bool)
    db[1, 0] = db[2, 0] = True  # distances 0, 1, 1, 2
    db[3, :2] = True
    ql = np.array([[1, 0]])
    dl = np.array([[1, 0], [0, 1], [1, 1], [0, 1]])
    res = mean_average_precision(q, db, ql, dl)
    assert np.isclose(res.map, (1 + 2 / 3) / 2)
    # tie group {1, 2}: item 2 (relevant) is at rank 2 or 3 with equal chance
    assert np.isclose(res.tie_aware_map, (1 + 0.5 * (2 / 2) + 0.5 * (2 / 3)) / 2)
    only_last = mean_average_precision(q, db, np.array([[0, 1]]), np.array([[1, 0], [1, 0], [1, 0], [0, 1]]))
    assert np.isclose(only_last.map, 1 / 4)  # the whole database: the last item counts
    none = mean_average_precision(q, db, np.array([[0, 1]]), np.array([[1, 0], [1, 0], [1, 0], [0, 1]]), topk=3)
    assert none.map == 0.0 and none.tie_aware_map == 0.0


def test_queries_without_relevant_items_count_as_zero():
    q = np.zeros((2, 8), bool)
    db = np.zeros((3, 8), bool)
    res = mean_average_precision(q, db, np.array([[1, 0], [0, 1]]), np.array([[1, 0]] * 3))
    assert list(res.ap) == [1.0, 0.0] and res.map == 0.5


def test_precision_recall_by_radius_matches_reference():
    q, db, ql, dl = random_data(9, 25, 50, 8, 3)
    ql[0] = False  # a query with nothing relevant: excluded from recall
    prec, rec = precision_recall_by_radius(q, db, ql, dl)
    d = (q[:, None, :] != db[None, :, :]).sum(-1)
    rel = (ql[:, None, :] & dl[None, :, :]).any(-1)
    for r in range(9):
        got = d <= r
        p = [(got[i] & rel[i]).sum() / got[i].sum() for i in range(25) if got[i].any()]
        rc = [(got[i] & rel[i]).sum() / rel[i].sum() for i in range(25) if rel[i].any()]
        assert (np.isnan(prec[r]) and not p) or np.isclose(prec[r], np.mean(p))
        assert np.isclose(rec[r], np.mean(rc))
    assert np.isclose(rec[8], 1.0)


def test_radius_precision_is_nan_when_nothing_is_retrieved():
    q = np.zeros((1, 8), bool)
    db = np.ones((2, 8), bool)
    prec, rec = precision_recall_by_radius(q, db, np.array([[1]]), np.array([[1], [0]]))
    assert np.isnan(prec[:8]).all() and prec[8] == 0.5 and rec[7] == 0 and rec[8] == 1


def test_packed_and_sign_inputs_agree():
    q, db, ql, dl = random_data(4, 10, 40, 16, 3)
    a = mean_average_precision(q, db, ql, dl, topk=10)
    b = mean_average_precision(pack_codes(q), pack_codes(db), ql, dl, topk=10)
    c = mean_average_precision(np.where(q, 0.7, -0.2), np.where(db, 1.0, -1.0), ql.astype(int), dl.astype(float), topk=10)
    assert np.array_equal(a.ap, b.ap) and np.array_equal(a.ap, c.ap)


def test_bad_inputs():
    q, db, ql, dl = random_data(0, 3, 5, 8, 2)
    cases = [
        (lambda: mean_average_precision(q, np.zeros((5, 2, 8), bool), ql, dl), "2-D"),
        (lambda: mean_average_precision(q, np.zeros((5, 16), bool), ql, dl), "bits"),
        (lambda: mean_average_precision(q, db, ql[:2], dl), "query labels"),
        (lambda: mean_average_precision(q, db, ql, np.ones((5, 3))), "classes"),
        (lambda: mean_average_precision(q, db, ql, dl, topk=0), "topk"),
        (lambda: mean_average_precision(q[:0], db, ql[:0], dl), "no queries"),
        (lambda: mean_average_precision(q, db[:0], ql, dl[:0]), "empty"),
        (lambda: precision_at_n(q, db, ql, dl, [6]), "exceeds"),
        (lambda: precision_at_n(q, db, ql, dl, [0]), "ns"),
        (lambda: mean_average_precision([[1, -1], [1]], db, ql, dl), "query codes must be an array of equal-length rows, got a ragged"),
        (lambda: mean_average_precision(q, db, [[1, 0], [1]], dl), "query labels must be an array of equal-length rows"),
    ]
    for fn, match in cases:
        with pytest.raises(SadhError, match=match):
            fn()


@pytest.mark.parametrize("metric", [
    lambda q, db, ql, dl: mean_average_precision(q, db, ql, dl),
    lambda q, db, ql, dl: precision_at_n(q, db, ql, dl, [1]),
    lambda q, db, ql, dl: precision_recall_by_radius(q, db, ql, dl),
])
def test_labels_must_be_finite_zero_one(metric):
    q, db, ql, dl = random_data(1, 5, 20, 8, 3)
    cases = [
        (np.full((5, 3), np.nan), dl, "0/1 values, found nan"),
        (ql.astype(np.uint8) * 2, dl, "found 2"),
        (ql, -dl.astype(int), "database labels must be multi-hot 0/1 values, found -1"),
        (np.where(ql, np.inf, 0.0), dl, "found inf"),
        (ql.astype(str), dl, "dtype"),
        (ql[:, 0], dl, "query labels must be multi-hot"),
        (ql, dl[:-1], "database labels must be multi-hot"),
    ]
    for qlab, dlab, match in cases:
        with pytest.raises(SadhError, match=match):
            metric(q, db, qlab, dlab)
    metric(q, db, ql.astype(np.float32), dl.astype(np.int8))  # 0/1 floats and ints are fine


def test_default_topk_checks_labels():
    assert metrics_mod.default_topk(np.eye(3)) is None and metrics_mod.default_topk([[1, 1], [0, 1]]) == 5000
    assert metrics_mod.default_topk(np.eye(3), "nus-wide") is None  # single-label data: the whole database, whatever its name
    assert metrics_mod.default_topk([[1, 0], [0, 0]]) is None  # an unlabelled row does not make data multi-label
    with pytest.raises(SadhError, match="0/1"):
        metrics_mod.default_topk(np.full((2, 2), np.nan))


@pytest.mark.parametrize(("name", "topk", "protocol"), [
    ("fashion-mnist-mosaic", 1000, "fashion-mnist-mosaic"), ("fashion-mnist-mosaic3", 1000, "fashion-mnist-mosaic"),
    ("NUS_WIDE_21", 5000, "NUS-WIDE"), ("nuswide_81", 5000, "NUS-WIDE"), ("coco", 5000, "MS-COCO"), ("MS-COCO-2014", 5000, "MS-COCO"),
    ("mirflickr", None, "MIRFlickr"), ("Flickr25K", None, "MIRFlickr"), ("voc2012", None, "VOC"), ("VOC 2007", None, "VOC"),
    ("my-photos", 5000, None), (None, 5000, None),
])
def test_multi_label_cut_off_follows_the_named_protocol(name, topk, protocol):
    labels = [[1, 1], [0, 1]]
    source = metrics_mod.topk_protocol(labels, name)[1]
    assert metrics_mod.default_topk(labels, name) == topk
    assert source == f"the {protocol} protocol" if protocol else source.startswith("multi-label data of no known protocol")


def shared_labels(ql, dl):
    return (ql[:, None, :].astype(int) * dl[None, :, :]).sum(-1)


def ref_dcg(rels, k):
    return sum((2.0 ** r - 1) / np.log2(j + 1) for j, r in enumerate(rels[:k], 1))


def ref_graded(q, db, ql, dl, k):
    """Per query (NDCG, ACG, WAP) @k, written out from the definitions."""
    d = (q[:, None, :] != db[None, :, :]).sum(-1)
    shared = shared_labels(ql, dl)
    out = []
    for i in range(len(q)):
        order = sorted(range(len(db)), key=lambda j: (d[i, j], j))
        rels = [int(shared[i, j]) for j in order][:k]
        ideal = ref_dcg(sorted(shared[i].tolist(), reverse=True), k)
        ndcg = ref_dcg(rels, k) / ideal if ideal > 0 else 0.0
        acgs = [sum(rels[:j]) / j for j in range(1, k + 1)]
        positive = [acgs[j] for j in range(k) if rels[j] > 0]
        out.append((ndcg, acgs[-1], sum(positive) / len(positive) if positive else 0.0))
    return np.array(out)


def ref_tie_aware_graded(q, db, ql, dl, k):
    """Per query (E[DCG@k] / IDCG@k, E[ACG@k]) over every order of the items within each distance tie group."""
    d = (q[:, None, :] != db[None, :, :]).sum(-1)
    shared = shared_labels(ql, dl)
    out = []
    for i in range(len(q)):
        groups = [list(np.flatnonzero(d[i] == t)) for t in np.unique(d[i])]
        dcgs, acgs = [], []
        for perm in itertools.product(*[itertools.permutations(g) for g in groups]):
            rels = [int(shared[i, j]) for g in perm for j in g]
            dcgs.append(ref_dcg(rels, k))
            acgs.append(sum(rels[:k]) / k)
        ideal = ref_dcg(sorted(shared[i].tolist(), reverse=True), k)
        out.append((np.mean(dcgs) / ideal if ideal > 0 else 0.0, np.mean(acgs)))
    return np.array(out)


def graded_data(seed, nq, ndb, bits, classes, p=0.4):
    """Random codes with many ties (few bits set) and labels with several per item; some queries share nothing."""
    rng = np.random.default_rng(seed)
    q = rng.random((nq, bits)) < 0.15
    db = rng.random((ndb, bits)) < 0.15
    ql = rng.random((nq, classes)) < p
    dl = rng.random((ndb, classes)) < p
    ql[0] = False  # IDCG = 0: contributes 0 and still counts
    return q, db, ql, dl


@pytest.mark.parametrize(("bits", "classes", "topk"), [(8, 4, None), (8, 6, 17), (16, 3, 1), (8, 70, 25), (24, 5, 1000)])
def test_graded_metrics_match_reference(bits, classes, topk, monkeypatch):
    monkeypatch.setattr(metrics_mod, "CHUNK_PAIRS", 400)  # several query chunks
    q, db, ql, dl = graded_data(bits + classes, 25, 60, bits, classes)
    res = graded_metrics(q, db, ql, dl, topk=topk)
    k = min(topk or 60, 60)
    expected = ref_graded(q, db, ql, dl, k)
    assert res.topk == k and res.ndcg_per_query[0] == 0.0 and expected[:, 0].max() > 0
    np.testing.assert_allclose(np.stack([res.ndcg_per_query, res.acg_per_query, res.wap_per_query], 1), expected)
    assert np.allclose([res.ndcg, res.acg, res.wap], expected.mean(0))
    ks = np.array([1, 7, 60])
    np.testing.assert_allclose(ndcg_at_k(q, db, ql, dl, ks), [ref_graded(q, db, ql, dl, int(j))[:, 0].mean() for j in ks])


@pytest.mark.parametrize("topk", [None, 2, 3, 5])
def test_graded_tie_aware_is_the_expectation_over_tie_orders(topk):
    for seed in range(6):
        q, db, ql, dl = graded_data(seed, 4, 7, 8, 4, p=0.5)
        db[1:5] = db[0]  # a tie group of 5: topk 2 and 3 fall inside it whenever it comes first
        q[1] = db[0]
        res = graded_metrics(q, db, ql, dl, topk=topk)
        expected = ref_tie_aware_graded(q, db, ql, dl, topk or 7)
        np.testing.assert_allclose(np.stack([res.tie_aware_ndcg_per_query, res.tie_aware_acg_per_query], 1), expected)
        assert np.isclose(res.tie_aware_ndcg, expected[:, 0].mean()) and np.isclose(res.tie_aware_acg, expected[:, 1].mean())


def test_graded_hand_computed():
    q = np.zeros((1, 8), bool)
    db = np.zeros((3, 8), bool)
    db[1:, 0] = True  # distances 0, 1, 1
    ql = np.array([[1, 1, 0]])
    dl = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1]])  # shares 1, 2, 0 labels
    res = graded_metrics(q, db, ql, dl, topk=2)
    dcg, ideal = 1 + 3 / np.log2(3), 3 + 1 / np.log2(3)
    assert np.isclose(res.ndcg, dcg / ideal) and np.isclose(res.acg, 3 / 2) and np.isclose(res.wap, (1 + 3 / 2) / 2)
    # items 1 and 2 tie at positions 2..3; only position 2 is inside the top 2: each gets half its discount
    assert np.isclose(res.tie_aware_ndcg, (1 + 0.5 * 3 / np.log2(3)) / ideal) and np.isclose(res.tie_aware_acg, (1 + 0.5 * 2) / 2)


def test_graded_metrics_of_single_label_data_are_the_binary_ones():
    rng = np.random.default_rng(3)
    q, db = rng.random((30, 8)) < 0.3, rng.random((80, 8)) < 0.3
    ql, dl = np.eye(5, dtype=bool)[rng.integers(0, 5, 30)], np.eye(5, dtype=bool)[rng.integers(0, 5, 80)]
    for k in (1, 10, 80):
        res = graded_metrics(q, db, ql, dl, topk=k)
        binary = mean_average_precision(q, db, ql, dl, topk=k)
        assert np.allclose(res.wap_per_query, binary.ap)  # rel is 0/1: ACG@j = P@j, so WAP = AP
        assert np.isclose(res.acg, precision_at_n(q, db, ql, dl, [k])[0])  # ACG@K = P@K
        # NDCG is binary NDCG: DCG sums 1/log2(j+1) over relevant ranks, IDCG over the first min(K, R) ranks
        for i, (_, rel) in enumerate(ranked(q, db, ql, dl)):
            ideal = sum(1 / np.log2(j + 1) for j in range(1, min(k, rel.sum()) + 1))
            assert np.isclose(res.ndcg_per_query[i], sum(1 / np.log2(j + 1) for j in np.flatnonzero(rel[:k]) + 1) / ideal)


def test_graded_bad_inputs():
    q, db, ql, dl = graded_data(0, 3, 5, 8, 2)
    for fn, match in [
        (lambda: graded_metrics(q, db, ql, dl, topk=0), "topk"),
        (lambda: graded_metrics(q[:0], db, ql[:0], dl), "no queries"),
        (lambda: graded_metrics(q, db, ql, np.full((5, 2), 2)), "0/1"),
        (lambda: ndcg_at_k(q, db, ql, dl, [6]), "exceeds"),
        (lambda: ndcg_at_k(q, db, ql, dl, [0]), "ks must be positive"),
    ]:
        with pytest.raises(SadhError, match=match):
            fn()
