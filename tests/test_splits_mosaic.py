"""Split builders (counts, disjointness, determinism, save/load) and the mosaic benchmark."""
from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest

from sadh.sdk.data import (
    Split,
    load_dataset,
    load_dataset_split,
    make_mosaic_dataset,
    split_by_size,
    split_per_class,
)
from sadh.sdk.data.sources import MOSAICS
from sadh.sdk.errors import SadhError


def test_cifar_protocol_on_fashion_mnist(fashion_mnist) -> None:
    data, split = load_dataset("fashion-mnist")
    assert (len(split.query), len(split.train), len(split.database)) == (1000, 5000, 64000)
    split.check_disjoint(len(data))
    for role, per_class in (("query", 100), ("train", 500)):
        assert (data.labels[getattr(split, role)].sum(0) == per_class).all()


def test_split_is_seeded(fashion_mnist) -> None:
    a = split_per_class(fashion_mnist.labels, 10, 50, seed=1)
    b = split_per_class(fashion_mnist.labels, 10, 50, seed=1)
    c = split_per_class(fashion_mnist.labels, 10, 50, seed=2)
    assert np.array_equal(a.train, b.train) and not np.array_equal(a.train, c.train)


def test_split_save_load(tmp_path: Path) -> None:
    split = split_by_size(100, 10, 20, 30, seed=3)
    split.save(tmp_path / "split.npz")
    back = Split.load(tmp_path / "split.npz")
    for role in ("query", "train", "database"):
        assert np.array_equal(getattr(split, role), getattr(back, role))
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(SadhError, match="not a sadh split file"):
        Split.load(tmp_path / "bad.npz")


def test_split_records_the_data_it_was_made_for(tmp_path: Path, fashion_small) -> None:
    a, split = make_mosaic_dataset(fashion_small, 5, 5, 5, seed=1)
    b, _ = make_mosaic_dataset(fashion_small, 5, 5, 5, seed=2)  # same name and size, other mosaics
    split.made_for(a.labels).save(tmp_path / "split.npz")
    back = Split.load(tmp_path / "split.npz", n_items=len(b))
    assert back.fits(a.labels) is True and back.fits(b.labels) is False
    assert back.fits(a.labels[:, ::-1]) is False and back.fits(a.labels[:-1]) is False
    split.save(tmp_path / "old.npz")  # a split file without a fingerprint, as written before they existed
    assert Split.load(tmp_path / "old.npz").fits(a.labels) is None


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


GOOD = {"query": np.array([0, 1]), "train": np.array([2, 3]), "database": np.array([4, 5])}


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"", "not a sadh split file"),
        (b"img/a.png 1 0\n", r"not a sadh split file \(not an \.npz archive\)$"),  # a list file: no advice to unpickle it
        (b"SADHIDX\x01" + bytes(56), r"not a sadh split file \(not an \.npz archive\)$"),  # an index file
        (_npz(**GOOD)[:-40], "not a sadh split file"),
        (_npy(np.arange(6)), r"not a sadh split file \(a single array"),
        (_npz(query=GOOD["query"]), r"no train/database array"),
        (_npz(**{**GOOD, "train": np.array([2.9, 3.0])}), "the train split holds float64 values, not integer"),
        (_npz(**{**GOOD, "query": np.array([[0, 1]])}), "the query split is a 2-D array"),
        (_npz(**{**GOOD, "database": np.array([4, None], dtype=object)}), r"not a sadh split file \(its database array holds Python objects"),
        (_npz(**GOOD, fingerprint=np.array(None, dtype=object)), r"not a sadh split file \(its fingerprint array holds Python objects"),
        (_npz(**{**GOOD, "database": np.array([4, 6])}), "out of range for a dataset of 6 items"),
        (_npz(**{**GOOD, "database": np.array([3, 4])}), "overlap"),
    ],
)
def test_split_load_rejects_bad_files(tmp_path: Path, raw: bytes, message: str) -> None:
    path = tmp_path / "bad.npz"
    path.write_bytes(raw)
    with pytest.raises(SadhError, match=f"bad.npz: .*{message}") as refused:
        Split.load(path, n_items=6)
    assert "allow_pickle" not in str(refused.value)  # no advice to unpickle a file sadh did not write


def test_saved_split_is_used_without_building_the_default(tmp_path: Path) -> None:
    for k in range(12):
        cv2.imwrite(str(tmp_path / f"{k}.png"), np.full((4, 4, 3), k, np.uint8))
    (tmp_path / "list.txt").write_text("".join(f"{k}.png {k % 2} {1 - k % 2}\n" for k in range(12)))
    saved = Split(np.array([0, 1]), np.array([2, 3, 4, 5]), np.arange(6, 12))
    saved.save(tmp_path / "s.npz")
    # the default 100 queries + 500 training per class would not fit 6 items per class
    data, split = load_dataset_split(str(tmp_path / "list.txt"), split_file=tmp_path / "s.npz")
    assert len(data) == 12 and np.array_equal(split.train, saved.train)
    with pytest.raises(SadhError, match=r"class 0 \(class0\) has 6 items"):
        load_dataset_split(str(tmp_path / "list.txt"))
    Split(np.array([0]), np.array([1]), np.array([12])).save(tmp_path / "big.npz")
    with pytest.raises(SadhError, match="big.npz: split indices out of range for a dataset of 12 items"):
        load_dataset_split(str(tmp_path / "list.txt"), split_file=tmp_path / "big.npz")


def test_split_errors(fashion_small) -> None:
    with pytest.raises(SadhError, match="class 0 has 20 items"):
        split_per_class(fashion_small.labels, 10, 10)
    with pytest.raises(SadhError, match=r"class 0 \(T-shirt/top\) has 20 items.*--split FILE"):
        split_per_class(fashion_small.labels, 10, 10, class_names=fashion_small.class_names)
    with pytest.raises(SadhError, match=r"^cannot split 10 items into 5 queries and 6 training items with a database left$"):
        split_by_size(10, 5, 6)
    with pytest.raises(SadhError, match="the train split is empty"):
        Split(np.arange(3), np.arange(0), np.arange(3, 5))
    with pytest.raises(SadhError, match="overlap"):
        Split(np.arange(3), np.arange(2, 4), np.arange(5, 7)).check_disjoint(10)


def test_multi_label_needs_size_split() -> None:
    labels = np.array([[1, 1], [1, 0], [0, 1]], np.uint8)
    with pytest.raises(SadhError, match="single-label"):
        split_per_class(labels, 1, 1)


@pytest.mark.parametrize("name", sorted(MOSAICS))
def test_mosaic_labels_match_pasted_items(fashion_small, name) -> None:
    settings = MOSAICS[name]
    grid, least, most = settings["grid"], settings.get("min_classes", 1), settings["max_classes"]
    data, split = make_mosaic_dataset(fashion_small, n_query=20, n_train=40, n_database=60, seed=5, **settings)
    assert len(data) == 120 and data.images.shape[1:] == (28 * grid, 28 * grid)
    split.check_disjoint(len(data))
    counts = data.labels.sum(1)
    assert counts.min() == least and counts.max() == most  # 120 draws of Uniform{least..most} reach both ends
    # every non-empty cell is an exact copy of a source item of a labelled class, and every labelled class appears
    source_cls = fashion_small.labels.argmax(1)
    lookup = {fashion_small.images[i].tobytes(): source_cls[i] for i in range(len(fashion_small))}
    for img, lab in zip(data.images, data.labels):
        seen = set()
        for r in range(grid):
            for q in range(grid):
                cell = img[r * 28 : (r + 1) * 28, q * 28 : (q + 1) * 28]
                if cell.any():
                    seen.add(int(lookup[cell.tobytes()]))
        assert seen == set(np.flatnonzero(lab).tolist())


def test_builtin_3x3_mosaic_set(fashion_mnist) -> None:
    data, split = load_dataset("fashion-mnist-mosaic3")
    assert data.name == "fashion-mnist-mosaic3" and data.images.shape[1:] == (84, 84)
    assert (len(split.query), len(split.train), len(split.database)) == (1000, 5000, 20000)
    split.check_disjoint(len(data))
    counts = data.labels.sum(1)
    assert counts.min() == 2 and counts.max() == 6
    shared = data.labels[split.query[:100]].astype(int) @ data.labels[split.database].T.astype(int)
    assert set(np.unique(shared).tolist()) == set(range(7))  # query/database pairs share 0..6 labels
    two, _ = load_dataset("fashion-mnist-mosaic")
    assert two.name == "fashion-mnist-mosaic" and two.images.shape[1:] == (56, 56) and two.labels.sum(1).min() == 1


def test_bad_mosaic_class_counts(fashion_small) -> None:
    for settings in (dict(min_classes=0), dict(min_classes=5, max_classes=4), dict(grid=2, min_classes=5, max_classes=6)):
        with pytest.raises(SadhError, match="bad mosaic settings"):
            make_mosaic_dataset(fashion_small, 5, 5, 5, **settings)


def test_mosaic_is_seeded(fashion_small) -> None:
    a, _ = make_mosaic_dataset(fashion_small, 5, 5, 5, seed=1)
    b, _ = make_mosaic_dataset(fashion_small, 5, 5, 5, seed=1)
    c, _ = make_mosaic_dataset(fashion_small, 5, 5, 5, seed=2)
    assert np.array_equal(a.images, b.images) and not np.array_equal(a.images, c.images)
