"""MultiIndexHashingIndex: same results as brute force / the flat index, on the MIH path and on the flat fallback."""
import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from test_index import BITS, IndexMachine, brute_knn, brute_range

import sadh.sdk.mih as mih_mod
from sadh.sdk.errors import SadhError
from sadh.sdk.index import HammingIndex
from sadh.sdk.mih import MultiIndexHashingIndex, flip_masks


def clustered(rng, n, bits, centres=6, p=0.05):
    """Codes near a few centres (so MIH finds neighbours at small radii), with some exact duplicates."""
    c = rng.integers(0, 2, (centres, bits)).astype(bool)
    x = c[rng.integers(0, centres, n)] ^ (rng.random((n, bits)) < p)
    packed = np.packbits(x, axis=1)
    packed[n // 2 : n // 2 + n // 10] = packed[: n // 10]
    return packed


def never_fall_back(monkeypatch):
    """Make the cost limits unreachable, so every query runs MIH rounds to the end."""
    for name in ("PROBE_COST", "DIRECT_PROBE_COST", "CANDIDATE_COST"):
        monkeypatch.setattr(mih_mod, name, 0)


@pytest.fixture(params=["mih-only", "default"])
def probing(request, monkeypatch):
    """'mih-only' never falls back to the flat scan; 'default' uses the real cost limits."""
    if request.param == "mih-only":
        never_fall_back(monkeypatch)
    return request.param


@pytest.mark.parametrize("bits", BITS)
def test_search_and_range_equal_brute_force(bits, probing):
    rng = np.random.default_rng(bits)
    db = clustered(rng, 400, bits)
    q = np.concatenate([clustered(rng, 6, bits), rng.integers(0, 256, (2, bits // 8), dtype=np.uint8)])
    if probing == "mih-only" and bits > 64:
        q = q[:6]  # random queries on wide codes would enumerate millions of probes
    index = MultiIndexHashingIndex(bits)
    ids = rng.permutation(5000)[:400]
    index.add(db, ids)
    for k in (1, 10, 60) + ((403,) if probing == "default" or bits <= 16 else ()):
        D, I = index.search(q, k)
        eD, eI = brute_knn(db, ids, q, k, bits)
        assert np.array_equal(D, eD) and np.array_equal(I, eI), k
    for r in (0, 3, bits // 8, bits // 3):
        lims, D, I = index.range_search(q, r)
        for i, (ed, ei) in enumerate(brute_range(db, ids, q, r)):
            assert np.array_equal(D[lims[i] : lims[i + 1]], ed) and np.array_equal(I[lims[i] : lims[i + 1]], ei), r


@pytest.mark.parametrize(
    ("bits", "m", "force"), [(24, 2, True), (24, 3, True), (56, 4, True), (64, 5, True), (24, 3, False), (96, 2, False), (40, 1, False)]
)
def test_uneven_substrings_match_flat(bits, m, force, monkeypatch):
    if force:  # only with narrow substrings: enumerating flips of 40+ bit substrings is astronomically slow
        never_fall_back(monkeypatch)
    rng = np.random.default_rng(m)
    db = clustered(rng, 300, bits, p=0.03)
    q = clustered(rng, 5, bits, p=0.03)
    flat, index = HammingIndex(bits), MultiIndexHashingIndex(bits, m)
    flat.add(db)
    index.add(db)
    index.remove([3, 4, 150])
    flat.remove([3, 4, 150])
    for a, b in zip(index.search(q, 25), flat.search(q, 25)):
        assert np.array_equal(a, b)
    for a, b in zip(index.range_search(q, bits // 6), flat.range_search(q, bits // 6)):
        assert np.array_equal(a, b)


def test_random_queries_go_straight_to_the_flat_scan(monkeypatch):
    """Random-like queries (k-th neighbour far away) skip MIH probing; clustered ones are probed; both exact."""
    rng = np.random.default_rng(3)
    db = np.concatenate([clustered(rng, 30_000, 64), rng.integers(0, 256, (30_000, 8), dtype=np.uint8)])
    near = np.unpackbits(db[:5], axis=1) ^ (rng.random((5, 64)) < 0.03)  # next to the clustered codes
    q = np.concatenate([np.packbits(near, axis=1), rng.integers(0, 256, (5, 8), dtype=np.uint8)])
    index = MultiIndexHashingIndex(64)
    ids = index.add(db)
    probed = []
    real_probe = MultiIndexHashingIndex._probe
    monkeypatch.setattr(MultiIndexHashingIndex, "_probe", lambda self, t, qsub, active, s, j: probed.append(active.copy()) or real_probe(self, t, qsub, active, s, j))
    D, I = index.search(q, 20)
    eD, eI = brute_knn(db, ids, q, 20, 64)
    assert np.array_equal(D, eD) and np.array_equal(I, eI)
    assert set(np.concatenate(probed)) == set(range(5))  # only the clustered queries were probed


def test_tables_follow_writes_and_files(tmp_path):
    rng = np.random.default_rng(2)
    db = clustered(rng, 500, 64)
    q = clustered(rng, 4, 64)
    index, flat = MultiIndexHashingIndex(64), HammingIndex(64)
    for part in (db[:200], db[200:]):
        index.add(part)
        flat.add(part)
        assert all(np.array_equal(a, b) for a, b in zip(index.search(q, 30), flat.search(q, 30)))
    index.remove(np.arange(0, 500, 3))
    flat.remove(np.arange(0, 500, 3))
    assert all(np.array_equal(a, b) for a, b in zip(index.search(q, 30), flat.search(q, 30)))
    flat.save(tmp_path / "f.idx")
    for mmap in (False, True):
        loaded = MultiIndexHashingIndex.load(tmp_path / "f.idx", mmap=mmap)
        assert np.array_equal(loaded.ids, flat.ids) and np.array_equal(loaded.codes, flat.codes)
        assert all(np.array_equal(a, b) for a, b in zip(loaded.search(q, 30), flat.search(q, 30)))
    index.save(tmp_path / "m.idx")
    assert (tmp_path / "m.idx").read_bytes() == (tmp_path / "f.idx").read_bytes()


def test_over_shares_the_flat_index_storage():
    rng = np.random.default_rng(4)
    db, q = clustered(rng, 300, 32), clustered(rng, 4, 32)
    flat = HammingIndex(32)
    flat.add(db[:200])
    index = MultiIndexHashingIndex.over(flat, m=2)
    assert index.m == 2 and len(index) == 200
    assert all(np.array_equal(a, b) for a, b in zip(index.search(q, 20), flat.search(q, 20)))
    flat.add(db[200:])  # written through the flat index: the MIH tables follow
    index.remove(np.arange(0, 300, 4))  # written through MIH: the flat index sees it
    assert len(flat) == len(index) == 225
    assert all(np.array_equal(a, b) for a, b in zip(index.search(q, 20), brute_knn(flat.codes, flat.ids, q, 20, 32)))


def test_bad_arguments():
    for bits, m in ((64, 0), (64, 9), (128, 1), (16, 1.5)):
        with pytest.raises(SadhError, match="m must"):
            MultiIndexHashingIndex(bits, m)
    index = MultiIndexHashingIndex(32)
    D, I = index.search(np.zeros((2, 4), np.uint8), 2)  # empty index: padded rows
    assert (D == 33).all() and (I == -1).all()
    index.add(np.zeros((3, 4), np.uint8))
    with pytest.raises(SadhError, match="k must"):
        index.search(np.zeros((1, 4), np.uint8), 0)
    with pytest.raises(SadhError, match="bytes per code"):
        index.range_search(np.zeros((1, 8), np.uint8), 1)


def test_ids_and_k_rules_match_the_flat_index():
    index = MultiIndexHashingIndex(32)
    index.add(np.zeros((3, 4), np.uint8), [0, 1, np.iinfo(np.int64).max])
    for bad in ([1.9], np.array([2**64 - 1], np.uint64), None):
        with pytest.raises(SadhError, match="ids must"):
            index.remove(bad)
    with pytest.raises(SadhError, match="exceed int64"):
        index.add(np.zeros((1, 4), np.uint8))
    with pytest.raises(SadhError, match="memory"):
        index.search(np.zeros((1, 4), np.uint8), 10**13)
    assert list(index.ids) == [0, 1, np.iinfo(np.int64).max]


def test_flip_masks():
    masks = flip_masks(6, 2)
    assert len(masks) == 15 and len(set(masks.tolist())) == 15
    assert all(bin(int(v)).count("1") == 2 and int(v) < 64 for v in masks)
    assert flip_masks(6, 0).tolist() == [0]


class MIHMachine(IndexMachine):
    """The same random operation sequences as the flat index, on the MIH index."""

    cls = MultiIndexHashingIndex


TestMIHMachine = MIHMachine.TestCase
TestMIHMachine.settings = settings(max_examples=20, stateful_step_count=15, deadline=None, suppress_health_check=list(HealthCheck))
