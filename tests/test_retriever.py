"""Retriever (encoder + index, saved together), the index sidecar, and the retrieval grid image."""
from __future__ import annotations

import json

import numpy as np
import pytest

from sadh.sdk.encoder import Encoder
from sadh.sdk.errors import SadhError
from sadh.sdk.grid import BORDER, IRRELEVANT_BGR, LINE_HEIGHT, RELEVANT_BGR, legend_strip, retrieval_grid, text_width, wrap_caption
from sadh.sdk.formats.index_file import save_arrays
from sadh.sdk.formats.index_sidecar import Sidecar
from sadh.sdk.formats.records import sidecar_path
from sadh.sdk.formats.retriever_folder import MANIFEST_NAME
from sadh.sdk.hamming_scan import to_planes
from sadh.sdk.index import HammingIndex
from sadh.sdk.mih import MultiIndexHashingIndex
from sadh.sdk.retriever import Retriever, load_index
from test_mih import never_fall_back
from tiny_model import export_tiny


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> Encoder:
    path = tmp_path_factory.mktemp("retr") / "model.onnx"
    export_tiny(path, bits=32)
    return Encoder(path)


def test_add_query_save_load(encoder, fashion_small, tmp_path):
    r = Retriever(encoder)
    images = fashion_small.images[:60]
    ids = r.add_images(images, ids=np.arange(60) * 7)
    assert len(r) == 60 and ids.tolist() == (np.arange(60) * 7).tolist()
    codes = encoder.encode(images)
    for j in (0, 13, 59):
        dist, found = r.query(images[j], k=5)
        index_dist, index_ids = r.index.search(codes[j : j + 1], 5)
        np.testing.assert_array_equal(dist, index_dist[0])  # the order of index.search: distances, then ids
        np.testing.assert_array_equal(found, index_ids[0])
        assert dist[0] == 0 and len(found) == 5 and np.all(np.diff(dist) >= 0)
        first_same = int(np.flatnonzero((codes == codes[j]).all(1))[0])  # ties go to the earliest insertion
        assert found[0] == 7 * first_same
    r.save(tmp_path / "r")
    assert json.loads((tmp_path / "r" / MANIFEST_NAME).read_text())["bits"] == 32
    loaded = Retriever.load(tmp_path / "r")
    for j in (3, 40):
        np.testing.assert_array_equal(loaded.query(images[j], 8)[1], r.query(images[j], 8)[1])
    _, few = Retriever(encoder).query(images[0], k=3)
    assert few.size == 0  # empty index: nothing, not -1 padding


def test_query_keeps_negative_ids_of_an_older_index_file(encoder, fashion_small, tmp_path):
    codes = encoder.encode(fashion_small.images[:2])
    save_arrays(tmp_path / "old.sidx", 32, np.array([-1, 4], np.int64), to_planes(codes, 32))  # add() now refuses -1
    dist, found = Retriever(encoder, HammingIndex.load(tmp_path / "old.sidx")).query(fashion_small.images[0], k=5)
    assert found.tolist()[:1] == [-1] and sorted(found.tolist()) == [-1, 4] and dist[0] == 0  # only padding is dropped


def test_retriever_errors(encoder, tmp_path):
    with pytest.raises(SadhError, match="64-bit codes"):
        Retriever(encoder, HammingIndex(64))
    with pytest.raises(SadhError, match="not a saved retriever"):
        Retriever.load(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(SadhError, match="not a sadh retriever manifest"):
        Retriever.load(tmp_path)
    Retriever(encoder).save(tmp_path / "r")
    manifest = json.loads((tmp_path / "r" / MANIFEST_NAME).read_text())
    for bad, words in (({"model": 5}, "model must be str"), ({"index": None, "bits": "32"}, "index must be str, got None; bits must be a code length"),
                       ({"bits": 16}, "records 16-bit codes but its index holds 32-bit codes")):
        (tmp_path / "r" / MANIFEST_NAME).write_text(json.dumps({**manifest, **bad}))
        with pytest.raises(SadhError, match=f"{MANIFEST_NAME}: .*{words}"):
            Retriever.load(tmp_path / "r")


def test_a_saved_retriever_finds_its_model_when_it_moved(encoder, tmp_path):
    model = tmp_path / "models" / "model.onnx"
    model.parent.mkdir()
    model.write_bytes(encoder.path.read_bytes())
    Retriever(Encoder(model)).save(tmp_path / "r")
    model.rename(tmp_path / "elsewhere.onnx")
    with pytest.raises(SadhError, match="model.onnx: model file not found"):
        Retriever.load(tmp_path / "r")
    assert Retriever.load(tmp_path / "r", model=tmp_path / "elsewhere.onnx").encoder.path == tmp_path / "elsewhere.onnx"
    (tmp_path / "elsewhere.onnx").rename(tmp_path / "r" / "model.onnx")  # copied to a device together with its folder
    assert Retriever.load(tmp_path / "r").encoder.path == tmp_path / "r" / "model.onnx"


def test_a_saved_retriever_passes_over_a_retrained_model_at_its_recorded_path(tmp_path):
    recorded, retrained, other = tmp_path / "model.onnx", tmp_path / "retrained.onnx", tmp_path / "other.onnx"
    export_tiny(recorded, weights="a" * 32)
    export_tiny(retrained, weights="b" * 32)
    Retriever(Encoder(recorded)).save(tmp_path / "r")
    assert json.loads((tmp_path / "r" / MANIFEST_NAME).read_text())["weights"] == "a" * 32
    (tmp_path / "r" / "model.onnx").write_bytes(recorded.read_bytes())  # the copy made for the device
    recorded.write_bytes(retrained.read_bytes())  # then the model at the recorded path was retrained
    assert Retriever.load(tmp_path / "r").encoder.path == tmp_path / "r" / "model.onnx"
    (tmp_path / "r" / "model.onnx").unlink()
    with pytest.raises(SadhError, match="other trained weights than .*model.onnx hold .*pass the model that built it"):
        Retriever.load(tmp_path / "r")
    with pytest.raises(SadhError, match="other trained weights than .*retrained.onnx hold"):
        Retriever.load(tmp_path / "r", model=retrained)
    export_tiny(other, weights=False)  # exported before weights were recorded: nothing to compare
    assert Retriever.load(tmp_path / "r", model=other).encoder.weights is None


@pytest.mark.parametrize("probing", ["mih-only", "default"])
def test_mih_retriever_matches_flat_and_keeps_its_kind(encoder, fashion_small, tmp_path, monkeypatch, probing):
    if probing == "mih-only":
        never_fall_back(monkeypatch)  # the tiny model's codes are random-like: without this MIH would take the flat scan
    flat, mih = Retriever(encoder), Retriever(encoder, MultiIndexHashingIndex(encoder.bits))
    images = fashion_small.images[:80]
    for r in (flat, mih):
        r.add_images(images, ids=np.arange(80) * 3)
    for j in (0, 17, 79):
        for k in (1, 5, 200):
            for a, b in zip(mih.query(images[j], k), flat.query(images[j], k)):
                np.testing.assert_array_equal(a, b)
    mih.save(tmp_path / "m")
    flat.save(tmp_path / "f")
    assert json.loads((tmp_path / "m" / MANIFEST_NAME).read_text())["index_kind"] == "mih"
    assert isinstance(Retriever.load(tmp_path / "m").index, MultiIndexHashingIndex)  # the recorded kind
    assert type(Retriever.load(tmp_path / "f").index) is HammingIndex
    assert type(Retriever.load(tmp_path / "m", index_kind="flat").index) is HammingIndex  # same file, other kind
    loaded = Retriever.load(tmp_path / "f", index_kind="mih", mmap=True)
    assert isinstance(loaded.index, MultiIndexHashingIndex)
    np.testing.assert_array_equal(loaded.query(images[9], 7)[1], flat.query(images[9], 7)[1])
    legacy = json.loads((tmp_path / "m" / MANIFEST_NAME).read_text())
    del legacy["index_kind"]  # saved before kinds were recorded: the flat index, as then
    (tmp_path / "m" / MANIFEST_NAME).write_text(json.dumps(legacy))
    assert type(Retriever.load(tmp_path / "m").index) is HammingIndex


def test_bad_index_kind_is_one_line(encoder, tmp_path):
    Retriever(encoder).save(tmp_path)
    for bad in ("MIH", "faiss", 3):
        with pytest.raises(SadhError, match=r"^unknown index kind .*: use 'flat' or 'mih'$"):
            Retriever.load(tmp_path, index_kind=bad)
    with pytest.raises(SadhError, match="unknown index kind 'hnsw'"):
        load_index(tmp_path / "index.sidx", "hnsw")
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    for bad in ("ivf", ["mih"]):
        (tmp_path / MANIFEST_NAME).write_text(json.dumps({**manifest, "index_kind": bad}))
        with pytest.raises(SadhError, match=rf"{MANIFEST_NAME}: not a sadh retriever manifest \(index_kind must be 'flat' or 'mih', got .*\)$"):
            Retriever.load(tmp_path)


def test_sidecar_roundtrip_and_errors(tmp_path):
    side = Sidecar(ids=[5, 9], labels=[[0], [1, 2]], class_names=["a", "b", "c"], paths=["x.png", "y.png"])
    side.save(sidecar_path(tmp_path / "i.sidx"))
    back = Sidecar.load(tmp_path / "i.sidx.json")
    assert back.label_names(9) == ["b", "c"] and back.path(5) == "x.png" and back.describe(9) == "b,c y.png"
    assert back.label_names(77) == [] and back.path(77) is None
    with pytest.raises(SadhError, match="2 ids but 1 labels"):
        Sidecar(ids=[1, 2], labels=[[0]], class_names=["a"])
    with pytest.raises(SadhError, match="outside 0..0"):
        Sidecar(ids=[1], labels=[[3]], class_names=["a"])
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(SadhError, match="not a sadh index sidecar"):
        Sidecar.load(tmp_path / "bad.json")


def test_query_takes_exactly_one_frame(encoder, fashion_small):
    r = Retriever(encoder)
    r.add_images(fashion_small.images[:5])
    for many in (fashion_small.images[:2], [fashion_small.image(0)] * 2):
        with pytest.raises(SadhError, match="one frame, got 2"):
            r.query(many)
    with pytest.raises(SadhError, match="expected a frame"):
        r.query(np.zeros((28, 28, 2), np.uint8))  # not 28 frames of 28x2
    np.testing.assert_array_equal(r.query(fashion_small.images[:1], 3)[1], r.query(fashion_small.image(0), 3)[1])


def test_a_sidecar_of_a_later_version_loads_without_the_fields_it_does_not_know(tmp_path):
    good = {"ids": [1, 2], "labels": [[0], [1]], "class_names": ["a", "b"], "paths": None, "dataset": None, "model": "m.onnx"}
    (tmp_path / "s.json").write_text(json.dumps({**good, "added_later": {"x": 1}}))
    assert Sidecar.load(tmp_path / "s.json").label_names(2) == ["b"]


def test_stale_sidecar_is_refused(tmp_path):
    index = HammingIndex(16)
    index.add(np.zeros((2, 2), np.uint8), [5, 9])
    path = tmp_path / "i.sidx"
    index.save(path)
    side = Sidecar(ids=[5, 9], labels=[[0], [1]], class_names=["a", "b"], paths=["x.png", "y.png"])
    side.save(sidecar_path(path))
    assert Sidecar.load(sidecar_path(path)).path(9) == "y.png"
    index.remove([9])
    index.add(np.ones((1, 2), np.uint8), [9])  # rebuilt: same ids, other items
    index.save(path)
    with pytest.raises(SadhError, match="stale index sidecar"):
        Sidecar.load(sidecar_path(path))
    legacy = json.loads(sidecar_path(path).read_text())
    del legacy["index_digest"]  # written before sidecars recorded the digest: the count is still checked
    sidecar_path(path).write_text(json.dumps(legacy))
    assert Sidecar.load(sidecar_path(path)).path(5) == "x.png"
    index.add(np.ones((1, 2), np.uint8))
    index.save(path)
    with pytest.raises(SadhError, match="2 ids; the index holds 3 codes"):
        Sidecar.load(sidecar_path(path))


@pytest.mark.parametrize(("field", "value"), [("model", 5), ("ids", ["a", "b"]), ("labels", [0, [1]]), ("paths", "x.png"),
                                              ("class_names", [1, 2]), ("dataset", [1]), ("index_digest", 7), ("ids", [True, 2])])
def test_sidecar_fields_are_type_checked(tmp_path, field, value):
    good = {"ids": [1, 2], "labels": [[0], [1]], "class_names": ["a", "b"], "paths": None, "dataset": None, "model": "m.onnx"}
    (tmp_path / "s.json").write_text(json.dumps({**good, field: value}))
    with pytest.raises(SadhError, match=f"not a sadh index sidecar .*{field} must be"):
        Sidecar.load(tmp_path / "s.json")


def test_grid_borders(fashion_small):
    queries = [fashion_small.image(0), fashion_small.image(30)]
    results = [[fashion_small.image(i) for i in range(1, 4)], [fashion_small.image(i) for i in range(31, 33)]]
    relevant = np.array([[True, False, True], [False, True, False]])
    tile = 40
    grid = retrieval_grid(queries, results, relevant, tile=tile)
    top = legend_strip(10, None).shape[0]  # the colour key above the rows
    assert grid.dtype == np.uint8 and grid.shape[0] == top + 2 * tile + BORDER and grid.ndim == 3
    corner = lambda row, col: tuple(int(v) for v in grid[top + row * (tile + BORDER) + 1, tile + 12 + col * tile + 1])  # noqa: E731
    assert corner(0, 0) == RELEVANT_BGR and corner(0, 1) == IRRELEVANT_BGR and corner(1, 1) == RELEVANT_BGR
    assert corner(1, 2) == (255, 255, 255)  # no third result for query 2
    with pytest.raises(SadhError, match="one result list per query"):
        retrieval_grid(queries, results[:1], relevant)


def test_grid_shows_distances_and_whole_label_names_below_each_tile(fashion_small):
    queries = [fashion_small.image(0), fashion_small.image(30)]
    results = [[fashion_small.image(i) for i in range(1, 4)], [fashion_small.image(i) for i in range(31, 33)]]
    relevant = np.array([[True, False, True], [False, True, False]])
    long = "T-shirt/top, Ankle boot, Sandal"  # a multi-label item: every name, wrapped, none cut short
    captions = [["Bag", "Bag", long, "Bag"], ["Coat", "Coat", "Coat"]]
    tile = 64
    grid = retrieval_grid(queries, results, relevant, captions, distances=[[0, 3, 5], [1, 2]], tile=tile, title="a title")
    assert text_width(long) > 2 * (tile - 4)  # in any font: three lines of names or more
    lines = 1 + len(wrap_caption(long, tile - 4))  # "d=5" above the wrapped names
    band = lines * LINE_HEIGHT + 4
    top = legend_strip(10, "a title").shape[0]
    assert grid.shape[0] == top + 2 * (tile + band) + BORDER
    under = grid[top + tile : top + tile + band]  # the caption band of the first row
    for x in (0, tile + 12, tile + 12 + 2 * tile):  # the query, its first and its third result
        assert (under[:, x : x + tile] < 100).any()  # dark text on the white band
    second = grid[top + tile + band + BORDER + tile : top + 2 * (tile + band) + BORDER]  # the second row's band
    assert (second[:, tile + 12 : tile + 12 + tile] < 100).any() and (second[:, tile + 12 + 2 * tile :] == 255).all()  # 2 results
    assert (grid[:top] < 100).any() and legend_strip(10, "a title").shape[0] > legend_strip(10, None).shape[0]
    assert retrieval_grid(queries, results, relevant, captions, tile).shape == retrieval_grid(queries, results, relevant, captions,
                                                                                             tile=tile).shape  # tile: 5th
    with pytest.raises(SadhError, match="distances must hold one per result of each query"):
        retrieval_grid(queries, results, relevant, distances=[[0, 3], [1, 2]])
    with pytest.raises(SadhError, match="captions must hold one for the query, then one per result"):
        retrieval_grid(queries, results, relevant, [["Bag"] * 3, ["Coat"] * 3])
