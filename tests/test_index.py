"""HammingIndex: exactness against brute force, file format, errors, concurrency, random operation sequences."""
import contextlib
import os
import tempfile
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import sadh.sdk.formats.index_file as index_file
import sadh.sdk.hamming_scan as scan_mod
import sadh.sdk.index as index_mod
from sadh.sdk.errors import SadhError
from sadh.sdk.formats.index_file import save_arrays
from sadh.sdk.hamming_scan import to_planes
from sadh.sdk.index import HammingIndex
from sadh.sdk.mih import MultiIndexHashingIndex

BITS = [8, 16, 24, 32, 48, 64, 96, 128, 256]


def brute_knn(db, ids, q, k, bits):
    """Reference: sort every code by (distance, insertion position); pad with bits+1 / -1."""
    d = np.unpackbits(db[None, :, :] ^ q[:, None, :], axis=2).sum(-1) if len(db) else np.zeros((len(q), 0), int)
    D = np.full((len(q), k), bits + 1)
    I = np.full((len(q), k), -1)
    for i in range(len(q)):
        order = sorted(range(len(db)), key=lambda j: (d[i, j], j))[:k]
        D[i, : len(order)] = d[i, order]
        I[i, : len(order)] = ids[order]
    return D, I


def brute_range(db, ids, q, r):
    """Reference radius search as a list of (distances, ids) per query."""
    d = np.unpackbits(db[None, :, :] ^ q[:, None, :], axis=2).sum(-1)
    out = []
    for i in range(len(q)):
        order = sorted((j for j in range(len(db)) if d[i, j] <= r), key=lambda j: (d[i, j], j))
        out.append((d[i, order], ids[order]))
    return out


def codes_with_duplicates(rng, n, bits):
    x = rng.integers(0, 256, (n, bits // 8), dtype=np.uint8)
    x[n // 2 : n // 2 + n // 5] = x[: n // 5]  # exact duplicates: ties broken by insertion order
    return x


@pytest.fixture(params=["default", "tiny"])
def blocks(request, monkeypatch):
    """Run with the real block sizes and with tiny ones that force many blocks and threshold updates."""
    if request.param == "tiny":
        monkeypatch.setattr(scan_mod, "BLOCK_ELEMS", 96)
        monkeypatch.setattr(scan_mod, "MIN_DB_BLOCK", 16)


@pytest.mark.parametrize("bits", BITS)
def test_search_and_range_equal_brute_force(bits, blocks):
    rng = np.random.default_rng(bits)
    db = codes_with_duplicates(rng, 300, bits)
    q = np.concatenate([rng.integers(0, 256, (9, bits // 8), dtype=np.uint8), db[:3]])
    index = HammingIndex(bits)
    ids = rng.permutation(10_000)[:300].astype(np.int64)
    assert np.array_equal(index.add(db, ids), ids)
    for k in (1, 5, 64, 300, 310):
        for some in (q, q[:1], q[-1:], q[8:12]):  # a batch, a camera frame, an exact duplicate, a few
            D, I = index.search(some, k)
            eD, eI = brute_knn(db, ids, some, k, bits)
            assert D.dtype == np.int32 and I.dtype == np.int64
            assert np.array_equal(D, eD) and np.array_equal(I, eI), (k, len(some))
    for r in (0, bits // 4, bits // 2 - 2, bits):
        lims, D, I = index.range_search(q, r)
        for i, (ed, ei) in enumerate(brute_range(db, ids, q, r)):
            assert np.array_equal(D[lims[i] : lims[i + 1]], ed) and np.array_equal(I[lims[i] : lims[i + 1]], ei)


def test_heavy_ties_stay_exact_and_bounded(blocks):
    """Trained codes repeat exactly: ties must not pile up as candidates, and results stay exact."""
    rng = np.random.default_rng(7)
    centres = rng.integers(0, 256, (3, 4), dtype=np.uint8)
    db = centres[rng.integers(0, 3, 600)]
    q = np.concatenate([centres, rng.integers(0, 256, (2, 4), dtype=np.uint8)])
    index = HammingIndex(32)
    ids = index.add(db)
    for k in (1, 7, 250):
        D, I = index.search(q, k)
        eD, eI = brute_knn(db, ids, q, k, 32)
        assert np.array_equal(D, eD) and np.array_equal(I, eI), k
    rows, _, _ = scan_mod.scan(index.snapshot().planes, scan_mod.to_planes(q, 32), 32, k=7)
    # each exact centre match has ~200 duplicates at distance 0, but only the first 7 can matter
    assert np.bincount(rows, minlength=len(q))[:3].max() < 100


@pytest.mark.parametrize("bits", [8, 32, 64, 128])
def test_nearest_distances(bits, blocks):
    rng = np.random.default_rng(bits)
    db = rng.integers(0, 256, (300, bits // 8), dtype=np.uint8)
    q = np.concatenate([db[:3], rng.integers(0, 256, (7, bits // 8), dtype=np.uint8)])
    got = scan_mod.nearest_distances(scan_mod.to_planes(db, bits), scan_mod.to_planes(q, bits), bits)
    assert np.array_equal(got, np.unpackbits(db[None] ^ q[:, None], axis=2).sum(-1).min(axis=1))
    empty = scan_mod.to_planes(db[:0], bits)
    assert np.array_equal(scan_mod.nearest_distances(empty, scan_mod.to_planes(q, bits), bits), np.full(10, bits + 1))


@pytest.mark.parametrize("bits", [16, 64, 96])
def test_remove_keeps_insertion_order(bits, blocks):
    rng = np.random.default_rng(7)
    db = codes_with_duplicates(rng, 200, bits)
    index = HammingIndex(bits)
    index.add(db[:120])
    index.add(db[120:])  # auto ids continue at 120
    gone = rng.choice(200, 70, replace=False)
    assert index.remove(np.concatenate([gone, gone[:5]])) == 70
    keep = np.setdiff1d(np.arange(200), gone)
    assert np.array_equal(index.ids, keep) and np.array_equal(index.codes, db[keep])
    q = rng.integers(0, 256, (6, bits // 8), dtype=np.uint8)
    D, I = index.search(q, 40)
    eD, eI = brute_knn(db[keep], keep, q, 40, bits)
    assert np.array_equal(D, eD) and np.array_equal(I, eI)
    new = index.add(db[:3])
    assert np.array_equal(new, [keep.max() + 1, keep.max() + 2, keep.max() + 3])


def test_id_rules():
    index = HammingIndex(16)
    x = np.zeros((3, 2), np.uint8)
    assert list(index.add(x)) == [0, 1, 2]
    with pytest.raises(SadhError, match="already"):
        index.add(x[:1], [2])
    with pytest.raises(SadhError, match="duplicates"):
        index.add(x[:2], [7, 7])
    with pytest.raises(SadhError, match="integers"):
        index.add(x[:2], [1.5, 2.5])
    with pytest.raises(SadhError, match="integers"):
        index.add(x[:2], [5])
    with pytest.raises(SadhError, match="not in the index"):
        index.remove([1, 99])
    assert len(index) == 3  # a failed remove removes nothing
    assert index.remove([]) == 0
    with pytest.raises(SadhError, match=r"ids must be >= 0 \(-1 marks padding in search results\), got -5"):
        index.add(x[:2], [4, -5])  # a real id -1 could not be told from padding
    assert list(index.add(x[:1])) == [3] and len(index) == 4
    with pytest.raises(ValueError):
        index.ids[0] = 1


def test_reconstruct_returns_the_codes_stored_under_ids():
    rng = np.random.default_rng(3)
    db = rng.integers(0, 256, (50, 12), dtype=np.uint8)
    index = HammingIndex(96)
    index.add(db, np.arange(50) * 3)
    index.remove([6])
    assert np.array_equal(index.reconstruct([147, 0, 9, 9]), db[[49, 0, 3, 3]])
    assert np.array_equal(MultiIndexHashingIndex.over(index).reconstruct(np.int64(30)), db[[10]])
    assert index.reconstruct([]).shape == (0, 12)
    with pytest.raises(SadhError, match="id 6 is not in the index"):
        index.reconstruct([0, 6])


def test_remove_checks_ids_like_add():
    index = HammingIndex(16)
    index.add(np.zeros((3, 2), np.uint8))
    bad_ids = [([1.9], "integers"), (["a"], "integers"), (None, "integers"), ([np.nan], "integers"), ([[1, 2]], "1-D"),
               ([[1], [1, 2]], "ragged"), (np.array([2**64 - 1], np.uint64), "int64")]
    for bad, match in bad_ids:
        with pytest.raises(SadhError, match=match):
            index.remove(bad)
    assert list(index.ids) == [0, 1, 2]  # nothing was removed
    assert index.remove(np.int64(1)) == 1 and index.remove([2, 2]) == 1


def test_auto_ids_never_overflow():
    index = HammingIndex(16)
    index.add(np.zeros((1, 2), np.uint8), [np.iinfo(np.int64).max])
    with pytest.raises(SadhError, match="exceed int64"):
        index.add(np.zeros((1, 2), np.uint8))
    assert len(index) == 1


def test_absurd_k_fails_before_allocating(monkeypatch):
    index = HammingIndex(16)
    index.add(np.ones((400, 2), np.uint8))
    q = np.zeros((2, 2), np.uint8)
    for k in (10**13, 2**63):
        with pytest.raises(SadhError, match="k=.*memory"):
            index.search(q, k)
    monkeypatch.setattr(index_mod, "physical_memory", lambda: 1 << 20)
    D, I = index.search(q, 20_000)  # 480 kB, within half of 1 MiB: k > len(index) pads
    assert (I[:, 400:] == -1).all() and (D[:, 400:] == 17).all() and (I[:, :400] >= 0).all()
    with pytest.raises(SadhError, match="memory"):
        index.search(q, 50_000)  # 1.2 MB


def test_empty_index_zero_queries_and_bad_arguments():
    index = HammingIndex(32)
    q = np.zeros((2, 4), np.uint8)
    D, I = index.search(q, 3)
    assert (D == 33).all() and (I == -1).all()
    lims, D, I = index.range_search(q, 5)
    assert list(lims) == [0, 0, 0] and D.size == I.size == 0
    index.add(np.ones((4, 4), np.uint8))
    D, I = index.search(np.zeros((0, 4), np.uint8), 3)
    assert D.shape == (0, 3) and I.shape == (0, 3)
    assert index.search(q[0], 1)[1].shape == (1, 1)
    for bad in (lambda: index.search(q, 0), lambda: index.search(q, -1), lambda: index.search(q, 2.0)):
        with pytest.raises(SadhError, match="k must"):
            bad()
    with pytest.raises(SadhError, match="bytes per code"):
        index.search(np.zeros((2, 8), np.uint8), 1)
    with pytest.raises(SadhError, match="uint8"):
        index.search(q.astype(np.int64), 1)
    with pytest.raises(SadhError, match="radius"):
        index.range_search(q, -1)
    with pytest.raises(SadhError, match="bytes per code"):
        index.add(np.zeros((1, 3), np.uint8))
    for bits in (0, 12, 2048, 8.0, True):
        with pytest.raises(SadhError, match="multiple of 8"):
            HammingIndex(bits)


@pytest.mark.parametrize("bits", [24, 64, 128])
@pytest.mark.parametrize("mmap", [False, True])
def test_save_load_roundtrip(tmp_path, bits, mmap):
    rng = np.random.default_rng(1)
    db = codes_with_duplicates(rng, 150, bits)
    index = HammingIndex(bits)
    index.add(db, rng.permutation(1000)[:150])
    index.remove(index.ids[:10])
    index.save(tmp_path / "a.idx")
    loaded = HammingIndex.load(tmp_path / "a.idx", mmap=mmap)
    q = rng.integers(0, 256, (5, bits // 8), dtype=np.uint8)
    assert loaded.bits == bits and np.array_equal(loaded.ids, index.ids) and np.array_equal(loaded.codes, index.codes)
    for a, b in zip(loaded.search(q, 20), index.search(q, 20)):
        assert np.array_equal(a, b)
    loaded.add(db[:2])  # a mapped index copies into memory on write
    loaded.remove(loaded.ids[:3])
    assert len(loaded) == len(index) - 1
    if mmap:
        assert HammingIndex.load(tmp_path / "a.idx", mmap=True, verify=True).bits == bits


def test_empty_index_roundtrip(tmp_path):
    HammingIndex(8).save(tmp_path / "e.idx")
    for mmap in (False, True):
        loaded = HammingIndex.load(tmp_path / "e.idx", mmap=mmap)
        assert len(loaded) == 0 and list(loaded.add(np.zeros((1, 1), np.uint8))) == [0]


def _one_line_error(fn, match):
    with pytest.raises(SadhError, match=match) as e:
        fn()
    assert "\n" not in str(e.value)


def test_corrupt_truncated_foreign_files(tmp_path):
    index = HammingIndex(64)
    index.add(np.random.default_rng(0).integers(0, 256, (50, 8), dtype=np.uint8))
    good = tmp_path / "good.idx"
    index.save(good)
    data = good.read_bytes()
    cases = {
        "flip.idx": (data[:500] + bytes([data[500] ^ 1]) + data[501:], "checksum"),  # a code byte
        "trunc.idx": (data[:-3], "truncated"),
        "long.idx": (data + b"\0", "truncated"),
        "foreign.idx": (b"PK\x03\x04" + data[4:], "not a sadh index"),
        "empty.idx": (b"", "not a sadh index"),
        "version.idx": (data[:7] + bytes([9]) + data[8:], "version 9"),
        "bits.idx": (data[:8] + (12).to_bytes(2, "little") + data[10:], "corrupt index header"),
        "id.idx": (data[:64] + bytes([data[64] ^ 1]) + data[65:], "checksum"),  # an id byte: ids are digested too
        "header.idx": (data[:8] + (56).to_bytes(2, "little") + data[10:], "checksum"),  # 56 bits: same words, same size
        "flags.idx": (data[:12] + (1).to_bytes(4, "little") + data[16:], "corrupt index header"),
    }
    for name, (content, match) in cases.items():
        (tmp_path / name).write_bytes(content)
        _one_line_error(lambda: HammingIndex.load(tmp_path / name), match)
    _one_line_error(lambda: HammingIndex.load(tmp_path / "flip.idx", mmap=True, verify=True), "checksum")
    assert len(HammingIndex.load(tmp_path / "flip.idx", mmap=True)) == 50  # mmap skips the checksum by default
    _one_line_error(lambda: HammingIndex.load(tmp_path / "missing.idx"), "cannot read")
    save_arrays(tmp_path / "dup.idx", 64, np.array([3, 3], np.int64), to_planes(np.zeros((2, 8), np.uint8), 64))  # digest is valid
    _one_line_error(lambda: HammingIndex.load(tmp_path / "dup.idx"), "duplicate ids")


class _FailingFile:
    """Wraps a file; the second write raises, as a full disk would."""

    def __init__(self, f):
        self.f, self.calls = f, 0

    def write(self, data):
        self.calls += 1
        if self.calls == 2:
            raise OSError("disk full")
        return self.f.write(data)


def test_failed_save_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "idx.bin"
    old = HammingIndex(16)
    old.add(np.arange(20, dtype=np.uint8).reshape(10, 2))
    old.save(path)
    before = path.read_bytes()
    real = index_file.atomic_open

    @contextlib.contextmanager
    def failing_open(p, mode="wb", size=None):
        with real(p, mode, size) as f:
            yield _FailingFile(f)

    monkeypatch.setattr(index_file, "atomic_open", failing_open)
    new = HammingIndex(16)
    new.add(np.zeros((30, 2), np.uint8))
    with pytest.raises(OSError, match="disk full"):
        new.save(path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["idx.bin", "idx.bin.lock"]
    assert np.array_equal(HammingIndex.load(path).codes, old.codes)


def test_concurrent_searches_equal_serial(monkeypatch):
    monkeypatch.setattr(scan_mod, "BLOCK_ELEMS", 1024)
    monkeypatch.setattr(scan_mod, "MIN_DB_BLOCK", 64)
    rng = np.random.default_rng(5)
    index = HammingIndex(32)
    index.add(rng.integers(0, 256, (3000, 4), dtype=np.uint8))
    queries = [rng.integers(0, 256, (7, 4), dtype=np.uint8) for _ in range(8)]
    serial = [index.search(q, 25) for q in queries]
    results = [None] * len(queries)

    def work(i):
        for _ in range(3):
            results[i] = index.search(queries[i], 25)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(queries))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (a, b), (c, d) in zip(results, serial):
        assert np.array_equal(a, c) and np.array_equal(b, d)


def test_searches_during_writes_see_whole_states():
    rng = np.random.default_rng(6)
    batches = [rng.integers(0, 256, (400, 2), dtype=np.uint8) for _ in range(6)]
    q = rng.integers(0, 256, (5, 2), dtype=np.uint8)
    index, states = HammingIndex(16), []
    for b in batches:  # the result after each whole write
        index.add(b)
        states.append(index.search(q, 30))
    index = HammingIndex(16)
    index.add(batches[0])
    seen, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            seen.append(index.search(q, 30))

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for b in batches[1:]:
        index.add(b)
    stop.set()
    for t in threads:
        t.join()
    assert seen
    for D, I in seen:
        assert any(np.array_equal(D, s[0]) and np.array_equal(I, s[1]) for s in states)


class IndexMachine(RuleBasedStateMachine):
    """Random add/remove/search/save/load sequences checked against a list-of-(id, code) model."""

    cls = HammingIndex
    bits = 16

    def __init__(self):
        super().__init__()
        self.index = self.cls(self.bits)
        self.model = []  # (id, code bytes) in insertion order
        self.rng = np.random.default_rng(0)

    @rule(n=st.integers(0, 40), explicit=st.booleans(), seed=st.integers(0, 2**16))
    def add(self, n, explicit, seed):
        rng = np.random.default_rng(seed)
        codes = rng.integers(0, 4, (n, self.bits // 8), dtype=np.uint8)  # few values: many ties
        if explicit:
            used = {i for i, _ in self.model}
            ids = np.array([i for i in rng.permutation(500) if i not in used][:n], np.int64)
            got = self.index.add(codes, ids)
        else:
            got = self.index.add(codes)
            start = max((i for i, _ in self.model), default=-1) + 1
            assert list(got) == list(range(start, start + n))
        self.model += list(zip(got.tolist(), codes))

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def remove(self, data):
        victims = data.draw(st.lists(st.sampled_from([i for i, _ in self.model]), max_size=10))
        assert self.index.remove(victims) == len(set(victims))
        self.model = [(i, c) for i, c in self.model if i not in set(victims)]

    @rule(k=st.integers(1, 60), seed=st.integers(0, 2**16), radius=st.integers(0, 16))
    def search(self, k, seed, radius):
        q = np.random.default_rng(seed).integers(0, 4, (3, self.bits // 8), dtype=np.uint8)
        db = np.array([c for _, c in self.model], np.uint8).reshape(-1, self.bits // 8)
        ids = np.array([i for i, _ in self.model], np.int64)
        D, I = self.index.search(q, k)
        eD, eI = brute_knn(db, ids, q, k, self.bits)
        assert np.array_equal(D, eD) and np.array_equal(I, eI)
        lims, D, I = self.index.range_search(q, radius)
        if len(db):
            for i, (ed, ei) in enumerate(brute_range(db, ids, q, radius)):
                assert np.array_equal(D[lims[i] : lims[i + 1]], ed) and np.array_equal(I[lims[i] : lims[i + 1]], ei)

    @rule(mmap=st.booleans())
    def save_load(self, mmap):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "i.idx")
            self.index.save(path)
            self.index = self.cls.load(path, mmap=mmap)  # a mapping outlives the unlinked file (POSIX)
        self.index.add(np.zeros((0, self.bits // 8), np.uint8))

    @invariant()
    def same_ids(self):
        assert list(self.index.ids) == [i for i, _ in self.model]


TestIndexMachine = IndexMachine.TestCase
TestIndexMachine.settings = settings(max_examples=25, stateful_step_count=15, deadline=None, suppress_health_check=list(HealthCheck))


def test_adds_larger_than_a_conversion_chunk_keep_every_code_and_id():
    rng = np.random.default_rng(7)
    first, second = (rng.integers(0, 256, (n, 8), dtype=np.uint8) for n in (index_mod.ADD_CHUNK + 5, index_mod.ADD_CHUNK * 2 + 1))
    index = HammingIndex(64)
    assert np.array_equal(index.add(first), np.arange(len(first)))  # assigned ids
    given = rng.permutation(len(second)) * 3 + len(first)  # explicit ids, unsorted
    assert np.array_equal(index.add(second, given), given)
    assert np.array_equal(index.codes, np.concatenate([first, second]))
    picks = np.concatenate([[0, len(first) - 1], given[[0, -1, len(given) // 2]]])
    assert np.array_equal(index.reconstruct(picks), np.concatenate([first[[0, -1]], second[[0, -1, len(given) // 2]]]))
    D, I = index.search(second[[3]], 1)
    assert D[0, 0] == 0 and I[0, 0] == given[3]
