"""Readers: IDX, list files, class folders, image files, and the dataset resolver."""
from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from sadh.sdk.data import (
    SplitSizes,
    find_fashion_mnist,
    load_dataset,
    load_dataset_split,
    load_fashion_mnist,
    read_idx,
    read_image,
    read_image_folder,
    read_list_file,
    write_list_file,
)
from sadh.sdk.errors import SadhError
from sadh.train.config import TrainConfig


IDX_TYPES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.float32): 0x0D}


def _idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, IDX_TYPES[arr.dtype], arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path: Path, compress: bool) -> None:
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = _idx_bytes(arr)
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")
    path.write_bytes(gzip.compress(raw) if compress else raw)
    np.testing.assert_array_equal(read_idx(path), arr)


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"\x00\x00\x08", "bad magic"),
        (b"PK\x03\x04 not idx", "bad magic"),
        (bytes([0, 0, 0x08, 2]) + struct.pack(">2I", 3, 3) + b"\x00" * 8, "truncated or corrupt"),
        (bytes([0, 0, 0x08, 3]) + b"\x00\x00", "truncated IDX header"),
        (b"\x1f\x8b\x08\x00garbage", "corrupt gzip"),
    ],
)
def test_idx_rejects_bad_files(tmp_path: Path, raw: bytes, message: str) -> None:
    path = tmp_path / "bad.idx"
    path.write_bytes(raw)
    with pytest.raises(SadhError, match=message):
        read_idx(path)


def test_idx_corrupt_deflate_stream(tmp_path: Path) -> None:
    raw = bytearray(gzip.compress(_idx_bytes(np.arange(3000, dtype=np.uint8) % 7)))
    raw[20:28] = bytes(b ^ 0xFF for b in raw[20:28])
    (tmp_path / "bad.gz").write_bytes(bytes(raw))
    with pytest.raises(SadhError, match="bad.gz: corrupt gzip data"):
        read_idx(tmp_path / "bad.gz")


FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _write_fashion(folder: Path, **override: np.ndarray) -> Path:
    """The four Fashion-MNIST IDX files, gzipped, with 3 train and 2 test items; `override` replaces some."""
    arrays = {
        "train_images": np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28),
        "train_labels": np.array([0, 9, 4], np.uint8),
        "test_images": np.full((2, 28, 28), 7, np.uint8),
        "test_labels": np.array([3, 1], np.uint8),
        **override,
    }
    for key, arr in arrays.items():
        (folder / f"{FASHION_FILES[key]}.gz").write_bytes(gzip.compress(_idx_bytes(arr)))
    return folder


def test_fashion_mnist_from_small_idx_files(tmp_path: Path) -> None:
    data = load_fashion_mnist(_write_fashion(tmp_path))
    assert data.images.shape == (5, 28, 28) and data.labels.argmax(1).tolist() == [0, 9, 4, 3, 1]


SWAPPED = {"test_images": np.array([3, 1], np.uint8), "test_labels": np.full((2, 28, 28), 7, np.uint8)}


@pytest.mark.parametrize(
    "override, message",
    [
        (SWAPPED, r"t10k-images-idx3-ubyte.gz: expected uint8 28x28 images, got uint8 data of shape \(2,\)"),
        ({"test_labels": np.array([3, 1], np.float32)}, "t10k-labels-idx1-ubyte.gz: expected one uint8 label"),
        ({"test_labels": np.array([3, -1], np.int8)}, "t10k-labels-idx1-ubyte.gz: expected one uint8 label"),
        ({"train_labels": np.array([0, 10, 4], np.uint8)}, r"train-labels-idx1-ubyte.gz: label 10 out of range 0..9"),
        ({"train_images": np.zeros((3, 784), np.uint8)}, r"train-images-idx3-ubyte.gz: .*shape \(3, 784\)"),
        ({"train_labels": np.array([0, 9], np.uint8)}, "holds 3 images but .*train-labels-idx1-ubyte.gz holds 2"),
    ],
)
def test_fashion_mnist_rejects_wrong_files(tmp_path: Path, override: dict, message: str) -> None:
    with pytest.raises(SadhError, match=message):
        load_fashion_mnist(_write_fashion(tmp_path, **override))


def test_fashion_mnist_is_real(fashion_mnist) -> None:
    assert len(fashion_mnist) == 70000 and fashion_mnist.images.shape[1:] == (28, 28)
    assert (fashion_mnist.labels.sum(0) == 7000).all()
    assert 60 < fashion_mnist.images.mean() < 90  # real clothing pictures, not noise or zeros


def test_fashion_mnist_missing_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(SadhError, match="apt-get install dataset-fashion-mnist"):
        find_fashion_mnist(tmp_path)


def _write_images(root: Path, names: list[str]) -> None:
    for i, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / name), np.full((8, 10, 3), i * 20, np.uint8))


def test_list_file(tmp_path: Path) -> None:
    _write_images(tmp_path, ["img/a.png", "img/b.png"])
    (tmp_path / "list.txt").write_text("img/a.png 1 0 1\n\n# comment\nimg/b.png 0 1 0\n")
    data = read_list_file(tmp_path / "list.txt")
    assert data.labels.tolist() == [[1, 0, 1], [0, 1, 0]] and data.multi_label
    assert data.image(1).shape == (8, 10, 3) and int(data.image(1)[0, 0, 0]) == 20
    write_list_file(tmp_path / "copy.txt", data, tmp_path)
    assert read_list_file(tmp_path / "copy.txt").paths == data.paths


@pytest.mark.parametrize(
    "content, message",
    [
        ("img/a.png 1 0\nimg/b.png 1 0 1\n", r"list.txt:2: 3 label columns, most lines have 2"),
        ("img/a.png 1 0 1\nimg/b.png 1 0\nimg/a.png 0 1\n", r"list.txt:1: 3 label columns, most lines have 2"),  # the first is odd
        ("img/a.png 1 2\n", r"list.txt:1: label value '2' is not 0 or 1"),
        ("img/a.png\n", r"list.txt:1: expected 'image_path label0"),
        ("img/missing.png 1 0\n", r"list.txt:1: image .*missing.png does not exist"),
        ("\n# nothing\n", "has no entries"),
    ],
)
def test_list_file_errors_name_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    _write_images(tmp_path, ["img/a.png", "img/b.png"])
    (tmp_path / "list.txt").write_text(content)
    with pytest.raises(SadhError, match=message):
        read_list_file(tmp_path / "list.txt")


def test_image_folder(tmp_path: Path) -> None:
    _write_images(tmp_path, ["cat/1.png", "cat/2.jpg", "dog/x.png"])
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    data = read_image_folder(tmp_path)
    assert data.class_names == ["cat", "dog"]
    assert data.labels.argmax(1).tolist() == [0, 0, 1] and not data.multi_label


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(SadhError, match="no class sub-folders"):
        read_image_folder(tmp_path)
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(SadhError, match="no image files"):
        read_image_folder(tmp_path)


def test_read_image_errors(tmp_path: Path) -> None:
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(SadhError, match="corrupt.jpg: not a readable image"):
        read_image(tmp_path / "corrupt.jpg")
    with pytest.raises(SadhError, match="empty.png: not a readable image"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(SadhError, match="nope.png: image file not found"):
        read_image(tmp_path / "nope.png")
    png = bytearray(cv2.imencode(".png", np.zeros((4, 4), np.uint8))[1].tobytes())
    png[16:24] = struct.pack(">II", 50000, 50000)  # IHDR width, height: OpenCV raises instead of returning None
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    (tmp_path / "huge.png").write_bytes(bytes(png))
    with pytest.raises(SadhError, match=r"^.*huge.png: a 50000 x 50000 image is over the limit of \d+ pixels per decoded image"):
        read_image(tmp_path / "huge.png")


def test_text_files_from_windows_and_other_encodings(tmp_path: Path) -> None:
    names = [f"img/{k}.png" for k in range(6)]
    _write_images(tmp_path, names)
    lines = "".join(f"{n} {1 - k % 2} {k % 2}\r\n" for k, n in enumerate(names))
    (tmp_path / "list.txt").write_bytes(lines.encode("utf-8-sig"))  # Windows Notepad: a BOM and CRLF line ends
    (tmp_path / "names.txt").write_bytes("cat\r\ndog\r\n".encode("utf-8-sig"))
    sizes = SplitSizes(query_per_class=1, train_per_class=1)
    data, _ = load_dataset(str(tmp_path / "list.txt"), class_names_file=tmp_path / "names.txt", sizes=sizes)
    assert data.paths[0].endswith("img/0.png") and data.class_names == ["cat", "dog"]
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\ndog\n".encode("latin-1"))
    with pytest.raises(SadhError, match=r"^.*latin1.txt: class names are not UTF-8 text$"):
        load_dataset(str(tmp_path / "list.txt"), class_names_file=tmp_path / "latin1.txt", sizes=sizes)


def test_resolver_list_folder_with_split(tmp_path: Path) -> None:
    names = [f"i/{k}.png" for k in range(6)]
    _write_images(tmp_path, names)
    (tmp_path / "test.txt").write_text("i/0.png 1 0\n")
    (tmp_path / "train.txt").write_text("i/1.png 0 1\ni/2.png 1 1\n")
    (tmp_path / "database.txt").write_text("i/3.png 1 0\ni/4.png 0 1\ni/5.png 1 0\n")
    data, split = load_dataset(str(tmp_path))
    assert len(data) == 6 and split.query.tolist() == [0] and split.train.tolist() == [1, 2]
    assert data.paths[split.database[0]].endswith("3.png")


def test_resolver_multilabel_list_sizes(tmp_path: Path) -> None:
    names = [f"i/{k}.png" for k in range(12)]
    _write_images(tmp_path, names)
    (tmp_path / "all.txt").write_text("".join(f"{n} 1 {k % 2}\n" for k, n in enumerate(names)))
    data, split = load_dataset(str(tmp_path / "all.txt"), sizes=SplitSizes(query_total=2, train_total=4))
    assert (len(split.query), len(split.train), len(split.database)) == (2, 4, 6)
    split.check_disjoint(len(data))


def test_a_multi_label_set_too_small_for_its_totals_says_why(tmp_path: Path) -> None:
    names = [f"i/{k}.png" for k in range(12)]
    _write_images(tmp_path, names)
    (tmp_path / "all.txt").write_text("".join(f"{n} {int(k % 3 == 0)} {int(k % 3 == 1)}\n" for k, n in enumerate(names)))  # some unlabelled
    with pytest.raises(SadhError, match=r"^cannot split 12 items into 20 queries and 60 training items with a database left "
                                         r"\(items with no label or several make this a multi-label set.*--split FILE$"):
        load_dataset(str(tmp_path / "all.txt"), sizes=SplitSizes(query_per_class=2, train_per_class=6, query_total=20, train_total=60))


def test_resolver_unknown(tmp_path: Path) -> None:
    with pytest.raises(SadhError, match=r"unknown dataset .*nothing-here' \(no such file or folder\)"):
        load_dataset(str(tmp_path / "nothing-here"))


def test_resolver_refuses_options_the_dataset_does_not_read(tmp_path: Path) -> None:
    names = [f"c{k % 2}/{k}.png" for k in range(6)]
    _write_images(tmp_path / "folder", names)
    (tmp_path / "all.txt").write_text("".join(f"folder/{n} {1 - k % 2} {k % 2}\n" for k, n in enumerate(names)))
    (tmp_path / "names.txt").write_text("a\nb\n")
    with pytest.raises(SadhError, match=r"^--class-names does not apply to fashion-mnist: its only dataset option is --data-dir$"):
        load_dataset("fashion-mnist", class_names_file=tmp_path / "names.txt")
    with pytest.raises(SadhError, match=r"^--image-root and --class-names do not apply to .*folder: a class-folder dataset takes no"):
        load_dataset(str(tmp_path / "folder"), image_root=tmp_path, class_names_file=tmp_path / "names.txt")
    with pytest.raises(SadhError, match=r"^--data-dir does not apply to .*all.txt: list files take --image-root and --class-names$"):
        load_dataset(str(tmp_path / "all.txt"), data_dir=tmp_path)
    data, _ = load_dataset(str(tmp_path / "all.txt"), image_root=tmp_path, class_names_file=tmp_path / "names.txt",
                           sizes=SplitSizes(query_per_class=1, train_per_class=1))
    assert data.class_names == ["a", "b"] and len(data) == 6


def test_saved_settings_with_options_the_dataset_does_not_read_still_load(tmp_path: Path) -> None:
    """Runs saved before such options were refused (e.g. --class-names with fashion-mnist) still export and resume."""
    (tmp_path / "names.txt").write_text("\n".join(f"n{i}" for i in range(10)) + "\n")
    data, split = TrainConfig(class_names=str(tmp_path / "names.txt"), image_root=str(tmp_path)).load()
    assert data.name == "fashion-mnist" and len(split.query) == 1000
    with pytest.raises(SadhError, match="do not apply to fashion-mnist"):
        load_dataset_split("fashion-mnist", image_root=tmp_path, class_names_file=tmp_path / "names.txt")
