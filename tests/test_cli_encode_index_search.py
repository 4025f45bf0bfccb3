"""`sadh-cli encode`, `index build|info` and `search` on a class-folder dataset and Fashion-MNIST, with a tiny model."""
from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest

from typer.testing import CliRunner

from sadh.cli.app import app
from sadh.sdk.encoder import Encoder
from sadh.sdk.index import HammingIndex
from sadh.sdk import Sidecar, sidecar_path
from sadh.sdk.data import Split
from cli_run import assert_user_error, cli, table_rows
from test_cli_eval import hint, tiny_model_of
from tiny_model import export_tiny

PER_CLASS = 6


@pytest.fixture(scope="module")
def setup(tmp_path_factory, fashion_small) -> dict[str, Path]:
    """A tiny model and a class-folder dataset of PER_CLASS Fashion-MNIST PNGs per class."""
    d = tmp_path_factory.mktemp("cli")
    export_tiny(d / "model.onnx", bits=32, dataset="images")  # trained on a folder of this name, as the one below
    cls = fashion_small.labels.argmax(1)
    for c, name in enumerate(fashion_small.class_names):
        folder = d / "images" / name.replace("/", "-")
        folder.mkdir(parents=True)
        for j, i in enumerate(np.flatnonzero(cls == c)[:PER_CLASS]):
            cv2.imwrite(str(folder / f"{j}.png"), fashion_small.image(i))
    return {"dir": d, "model": d / "model.onnx", "images": d / "images"}


def test_encode_folder_and_files(setup, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    shirt = next((setup["images"] / "Shirt").iterdir())
    out = cli("encode", "--model", setup["model"], setup["images"], shirt, tmp_path / "broken.png", "--out", tmp_path / "codes.npy",
              "--batch-size", "7")  # train's name for --batch; 7 leaves a short last batch
    assert out.returncode == 0, out.stderr
    assert "broken.png" in out.stderr and "next:" not in out.stdout  # index build cannot use codes.npy
    codes = np.load(tmp_path / "codes.npy")
    listed = (tmp_path / "codes.txt").read_text().splitlines()
    assert codes.shape == (10 * PER_CLASS + 1, 4) and codes.dtype == np.uint8 and len(listed) == len(codes)
    enc = Encoder(setup["model"])
    np.testing.assert_array_equal(codes, enc.encode([cv2.imread(p, cv2.IMREAD_UNCHANGED) for p in listed]))
    np.testing.assert_array_equal(codes[-1], codes[listed.index(str(shirt))])


def test_index_build_info_search_on_folder(setup, tmp_path):
    index = tmp_path / "an index.sidx"
    split = ["--query-per-class", "1", "--train-per-class", "1"]
    out = cli("index", "build", "--model", setup["model"], "--data", setup["images"], *split, "--out", index)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"wrote {index}: ") and "warning: no training split beside" in out.stderr  # no split line
    assert hint(out.stdout) == ["sadh-cli", "search", "--index", str(index), "--model", str(setup["model"]), "IMAGE_OR_FOLDER", "-k", "10"]
    hindex = HammingIndex.load(index)
    side = Sidecar.load(sidecar_path(index))
    assert len(hindex) == 10 * (PER_CLASS - 2) == len(side.ids)
    np.testing.assert_array_equal(hindex.ids, side.ids)
    enc = Encoder(setup["model"])
    np.testing.assert_array_equal(hindex.codes, enc.encode_files(side.paths)[0])
    assert side.label_names(side.ids[0]) == [Path(side.paths[0]).parent.name]
    assert all(Path(p).is_absolute() for p in side.paths)  # `search` shows real files from any working folder

    info = cli("index", "info", index)
    assert info.returncode == 0 and str(len(hindex)) in info.stdout and "32" in info.stdout
    assert "image files, e.g." in info.stdout
    assert cli("index", "info", "-i", index).stdout == info.stdout  # -i, as search and index add take it
    assert_user_error(cli("index", "info", index, "-i", index), "give the index file once")

    query = side.paths[5]
    found = cli("search", "--index", index, query, "-k", "3")  # the model comes from the sidecar
    assert found.returncode == 0, found.stderr
    piped = cli("search", "--index", index, query, "-k", "3", columns=None)
    assert any(side.paths[5] in line for line in piped.stdout.splitlines())  # a pipe gets whole paths, not 80 columns
    first = table_rows(found.stdout)[0]
    assert first[:4] == ["1", str(side.ids[5]), "0", side.label_names(side.ids[5])[0]]  # found itself at distance 0
    (tmp_path / "0 broken.png").write_bytes(b"not a png")  # sorts first: the tables must still be titled by their query
    mixed = cli("search", "--index", index, tmp_path / "0 broken.png", query, "-k", "3", columns=None)
    assert mixed.returncode == 0 and "0 broken.png" in mixed.stderr
    titles = [line.strip() for line in mixed.stdout.splitlines() if "nearest of" in line]
    assert titles == [f"{query}: 3 nearest of {len(hindex)}"] and table_rows(mixed.stdout)[0][:3] == ["1", str(side.ids[5]), "0"]
    everything = cli("search", "--index", index, query, "-k", 10**12)  # k beyond the index: every item, once
    assert everything.returncode == 0, everything.stderr
    assert len(table_rows(everything.stdout)) == len(hindex)
    for flat in (found, everything):  # multi-index hashing: the same tables, row for row
        args = flat.args[flat.args.index("search"):]
        mih = cli(*args, "--mih")
        assert mih.returncode == 0, mih.stderr
        assert mih.stdout == flat.stdout

    flipped = bytearray(index.read_bytes())
    flipped[-1] ^= 1  # a code bit: the header still parses, only the checksum can tell
    index.write_bytes(bytes(flipped))
    corrupt = cli("index", "info", index)
    assert corrupt.returncode == 2 and "checksum mismatch" in corrupt.stderr and "Traceback" not in corrupt.stderr


def test_search_and_add_refuse_a_model_of_other_trained_weights(setup, tmp_path):
    built, retrained = tmp_path / "built.onnx", tmp_path / "retrained.onnx"
    export_tiny(built, weights="a" * 32)
    export_tiny(retrained, weights="b" * 32)  # same bits and file name pattern: only the weights digest tells them apart
    index = tmp_path / "db.sidx"
    split = ["--query-per-class", "1", "--train-per-class", "1"]
    assert cli("index", "build", "--model", built, "--data", setup["images"], *split, "--out", index).returncode == 0
    assert Sidecar.load(sidecar_path(index)).weights == "a" * 32
    shirt = next((setup["images"] / "Shirt").iterdir())
    for args in (("search", "--index", index, shirt), ("index", "add", "--index", index, shirt)):
        assert_user_error(cli(*args, "--model", retrained), "holds other trained weights than the model that built")
    built.write_bytes(retrained.read_bytes())  # retrained in place: the sidecar's model path now holds other weights
    assert_user_error(cli("search", "--index", index, shirt), "holds other trained weights than the model that built")


def test_index_build_uses_the_model_training_split(setup, tmp_path):
    # 6 images per class: the default split (100 queries + 500 training per class) cannot be made, the model's split can
    trained = Split(np.arange(0, 60, 6), np.arange(1, 60, 6), np.setdiff1d(np.arange(60), np.r_[0:60:6, 1:60:6]))
    model = tiny_model_of(tmp_path / "best.onnx", "images", trained)
    index = tmp_path / "photos.sidx"
    out = cli("index", "build", "-m", model, "--data", setup["images"], "--out", index)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"split: the model's training split {tmp_path / 'best.split.npz'} (--split FILE to use another)\nwrote ")
    assert "warning: images has classes Ankle boot, Bag, Coat, Dress, ... (10 in all) but the model was trained on class0" in out.stderr
    side = Sidecar.load(sidecar_path(index))
    assert side.ids == trained.database.tolist() and side.dataset["split"] == str(tmp_path / "best.split.npz")


def test_index_build_skips_unreadable_files(setup, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(setup["images"], images)
    (images / "Bag" / "zz-corrupt.png").write_bytes(b"\x89PNG broken")
    index = tmp_path / "skip.sidx"
    split = ["--query-per-class", "1", "--train-per-class", "1"]
    out = cli("index", "build", "-m", setup["model"], "--data", images, *split, "--role", "all", "--out", index)
    assert out.returncode == 0, out.stderr
    assert "warning: skipped" in out.stderr and "zz-corrupt.png" in out.stderr
    side = Sidecar.load(sidecar_path(index))
    assert len(HammingIndex.load(index)) == 10 * PER_CLASS == len(side.paths)
    assert not any(p.endswith("zz-corrupt.png") for p in side.paths)


def test_index_build_fashion_mnist_role(setup, tmp_path):
    index = tmp_path / "fm.sidx"
    out = cli("index", "build", "-m", setup["model"], "--role", "query", "--query-per-class", "3", "--out", index)
    assert out.returncode == 0, out.stderr
    side = Sidecar.load(sidecar_path(index))
    assert side.paths is None and side.dataset["data"] == "fashion-mnist" and side.dataset["role"] == "query"
    assert len(HammingIndex.load(index)) == 30 == len(set(side.ids))


def test_bad_inputs_exit_2(setup, tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00" * 64)
    assert_user_error(cli("encode", "--model", tmp_path / "none.onnx", setup["images"]), "model file not found")
    assert_user_error(cli("encode", "--model", garbage, setup["images"]), "not a loadable ONNX model")
    assert_user_error(cli("encode", "--model", setup["model"], tmp_path / "missing.png", "--out", tmp_path / "c.npy"), "none of the 1")
    assert not (tmp_path / "c.npy.partial").exists()  # nothing was encoded: no partial folder to resume from
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_user_error(cli("encode", "--model", setup["model"], empty), "no image files")
    assert_user_error(cli("index", "build", "-m", setup["model"], "--role", "bogus"), "unknown role")
    assert_user_error(cli("index", "info", garbage), "not a sadh index file")
    assert_user_error(cli("search", "--index", garbage, setup["images"]), "not a sadh index file")
    shirt = next((setup["images"] / "Shirt").iterdir())
    HammingIndex(32).save(tmp_path / "empty.sidx")
    searched = cli("search", "--index", tmp_path / "empty.sidx", "--model", setup["model"], shirt)
    assert searched.returncode == 0 and f"warning: {tmp_path / 'empty.sidx'} holds no codes" in searched.stderr, searched.stderr
    moved, one = tmp_path / "moved.sidx", HammingIndex(32)
    one.add(np.zeros((1, 4), np.uint8))
    one.save(moved)
    Sidecar(ids=[0], labels=[[0]], class_names=["a"], model=str(tmp_path / "gone.onnx")).save(sidecar_path(moved))
    assert_user_error(cli("search", "--index", moved, shirt), f"the model its sidecar names, {tmp_path / 'gone.onnx'}, is not there")


def test_outputs_that_collide_or_replace_inputs_are_refused(setup, tmp_path):
    image = next((setup["images"] / "Bag").iterdir())
    model = tmp_path / "m.onnx"
    shutil.copy(setup["model"], model)
    before = model.read_bytes()
    # the file list defaults to OUT with .txt: the same file as --out c.txt
    assert_user_error(cli("encode", "-m", model, image, "--out", tmp_path / "c.txt"), "same file")
    assert_user_error(cli("encode", "-m", model, image, "--out", tmp_path / "c.npy", "--paths-out", tmp_path / "c.npy"), "same file")
    assert_user_error(cli("index", "build", "-m", model, "--out", model), "is also --model")
    assert model.read_bytes() == before
    assert_user_error(cli("index", "build", "-m", model, "--out", tmp_path), "it is a folder, not a file")
    assert_user_error(cli("encode", "-m", model, image, "--out", model / "c.npy"), "is a file, not a folder")
    (tmp_path / "i.sidx.partial").write_text("not a folder")
    assert_user_error(cli("index", "build", "-m", model, "--out", tmp_path / "i.sidx"), "cannot write")
    (tmp_path / "i.sidx.partial").unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]



def test_index_add_and_remove_keep_index_and_sidecar_together(setup, tmp_path):
    index = tmp_path / "db.sidx"
    split = ["--query-per-class", "1", "--train-per-class", "1"]
    assert cli("index", "build", "-m", setup["model"], "--data", setup["images"], *split, "--out", index).returncode == 0
    before = Sidecar.load(sidecar_path(index))
    new = tmp_path / "new"
    new.mkdir()
    for name in ("Bag", "Shirt"):  # two query images (not in the index): the camera enrols them
        shutil.copy(next(p for p in sorted((setup["images"] / name).iterdir()) if str(p) not in before.paths), new / f"{name}.png")
    (new / "broken.png").write_bytes(b"not a png")
    out = cli("index", "add", new, "--index", index, "--label", "Shirt", "-l", "Bag")
    assert out.returncode == 0, out.stderr
    first = max(before.ids) + 1
    assert f"added 2 images to {index} as ids {first}..{first + 1}; it holds {len(before.ids) + 2} codes" in out.stdout
    assert "broken.png" in out.stderr
    side = Sidecar.load(sidecar_path(index))  # refused if it did not match the rewritten index
    assert side.ids == before.ids + [first, first + 1] and side.paths[-2:] == [str(new / "Bag.png"), str(new / "Shirt.png")]
    assert side.label_names(first) == ["Bag", "Shirt"]
    found = cli("search", "--index", index, new / "Shirt.png", "-k", "100")  # the tiny model's codes tie: find its row
    (row,) = [r for r in table_rows(found.stdout) if r[1] == str(first + 1)]
    assert row[2:4] == ["0", "Bag,Shirt"]

    gone = cli("index", "remove", str(first + 1), str(before.ids[3]), "--index", index)
    assert gone.returncode == 0, gone.stderr
    assert f"removed 2 ids from {index}; it holds {len(before.ids)} codes" in gone.stdout
    side, hindex = Sidecar.load(sidecar_path(index)), HammingIndex.load(index)
    assert side.ids == hindex.ids.tolist() == [i for i in before.ids if i != before.ids[3]] + [first]
    assert side.paths[-1] == str(new / "Bag.png") and before.paths[3] not in side.paths
    np.testing.assert_array_equal(hindex.codes[-1], Encoder(setup["model"]).encode_files([new / "Bag.png"])[0][0])

    hat = cli("index", "add", new / "Shirt.png", "--index", index, "-l", "Hat", "-l", "Shirt", "-l", "Hat")  # a new class
    assert hat.returncode == 0, hat.stderr
    assert f"new classes in {index}: Hat (known before: {', '.join(before.class_names)})" in hat.stdout
    side = Sidecar.load(sidecar_path(index))
    assert side.class_names == before.class_names + ["Hat"] and side.label_names(side.ids[-1]) == ["Shirt", "Hat"]
    assert cli("index", "remove", str(side.ids[-1]), "--index", index).returncode == 0
    again = cli("index", "add", new / "Bag.png", new / "Bag.png", "--index", index)  # enrolled already (Shirt was removed)
    assert_user_error(again, "nothing to add: every file given is already in")
    kept = index.read_bytes(), sidecar_path(index).read_text()
    assert_user_error(cli("index", "remove", str(first + 1), "--index", index), f"id {first + 1} is not in the index; nothing was removed")
    too_big = "9" * 23  # beyond int64: refused in sadh's words, not numpy's overflow
    assert_user_error(cli("index", "remove", too_big, "--index", index), f"id {too_big} is not in the index (ids are 64-bit integers)")
    assert_user_error(cli("index", "add", new / "Shirt.png", "--index", index, "--label", " "), "--label takes a class name")
    other = tmp_path / "other.onnx"
    export_tiny(other, bits=16)
    assert_user_error(cli("index", "add", new / "Bag.png", "--index", index, "-m", other), "holds 32-bit codes but")
    assert (index.read_bytes(), sidecar_path(index).read_text()) == kept  # refused changes leave both files as they were


def test_index_add_refuses_an_index_of_dataset_items(setup, tmp_path):
    index = tmp_path / "fm.sidx"
    assert cli("index", "build", "-m", setup["model"], "--role", "query", "--query-per-class", "1", "--out", index).returncode == 0
    image = next((setup["images"] / "Bag").iterdir())
    assert_user_error(cli("index", "add", image, "--index", index), "indexes items of fashion-mnist (query), not files")


def test_ctrl_c_while_index_remove_writes_finishes_the_pair_and_says_so(tmp_path, monkeypatch, python_sigint):
    path, index = tmp_path / "db.sidx", HammingIndex(32)
    index.add(np.arange(12, dtype=np.uint8).reshape(3, 4))
    index.save(path)
    Sidecar(ids=[0, 1, 2], labels=[[0], [1], [0]], class_names=["a", "b"]).save(sidecar_path(path))
    real_save = HammingIndex.save

    def interrupted_save(self, target, before_replace=None):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C lands while the index is written
        real_save(self, target, before_replace)

    monkeypatch.setattr(HammingIndex, "save", interrupted_save)
    result = CliRunner().invoke(app, ["index", "remove", "1", "-i", str(path)])
    assert result.exit_code == 130
    assert result.stderr.splitlines()[-1] == f"interrupted; {path} and its sidecar were written with 1 ids removed; nothing to re-run"
    assert HammingIndex.load(path).ids.tolist() == [0, 2] and Sidecar.load(sidecar_path(path)).ids == [0, 2]
