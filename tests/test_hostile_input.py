"""Hostile data gets one-line errors and is never interpreted: names that hold line breaks, terminal escapes or rich
markup; images that decode to huge frames; corrupt headers and sidecars; symlink loops; broken models."""
from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from sadh.sdk.data.images import read_image
from sadh.sdk.encoder import Encoder
from sadh.sdk.errors import ModelError, SadhError
from sadh.sdk.formats import model as md
from sadh.sdk.index import HammingIndex
from sadh.sdk import Sidecar, sidecar_path
from cli_run import assert_user_error, cli, table_rows
from tiny_model import export_tiny, tiny_metadata

ESC_TITLE = "\x1b]0;pwned\x07"  # sets the terminal's title
PER_CLASS = 4


def _png(path: Path, seed: int = 0, size: int = 28) -> Path:
    """A random size x size PNG at `path` (any name: written as bytes, not through OpenCV's path handling)."""
    image = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    path.write_bytes(cv2.imencode(".png", image)[1].tobytes())
    return path


def png_bomb(path: Path, width: int, height: int) -> Path:
    """A small PNG that decodes to width x height RGBA pixels (all zero: it compresses ~1000 : 1)."""
    packer = zlib.compressobj(9)
    row = b"\0" * (4 * width + 1)  # filter byte + pixels
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, Path]:
    """A tiny model and a class-folder dataset whose class and file names hold markup and terminal escapes, indexed."""
    d = tmp_path_factory.mktemp("hostile")
    export_tiny(d / "model.onnx", bits=32)
    names = {"odd[": ["x].png", "[bold]x.png", "a.png", "b.png"], ESC_TITLE: ["\x1b[2Jclear.png", "c.png", "d.png", "e.png"]}  # odd[/x].png
    for k, (cls, files) in enumerate(names.items()):
        (d / "images" / cls).mkdir(parents=True)
        for j, name in enumerate(files):
            _png(d / "images" / cls / name, seed=10 * k + j)
    out = cli("index", "build", "-m", d / "model.onnx", "--data", d / "images", "--role", "all", "--query-per-class", "1",
              "--train-per-class", "1", "-o", d / "db.sidx")
    assert out.returncode == 0, out.stderr
    return {"dir": d, "model": d / "model.onnx", "index": d / "db.sidx", "images": d / "images"}


def _no_raw_controls(out: subprocess.CompletedProcess) -> None:
    """Nothing a command printed holds an escape or bell character from the data."""
    for stream in (out.stdout, out.stderr):
        assert "\x1b" not in stream and "\x07" not in stream, stream


def test_names_are_shown_escaped_and_never_read_as_markup(hostile, tmp_path):
    info = cli("index", "info", hostile["index"])
    assert info.returncode == 0, info.stderr
    _no_raw_controls(info)
    assert "\\x1b]0;pwned\\x07" in info.stdout and "odd[" in info.stdout  # class names, as written, escaped
    query = hostile["images"] / "odd[" / "x].png"
    found = cli("search", "-i", hostile["index"], query, "-k", "8")
    assert found.returncode == 0, found.stderr  # (was a rich MarkupError)
    _no_raw_controls(found)
    shown = " ".join(cell for row in table_rows(found.stdout) for cell in row)
    assert "odd[/x].png" in shown and "[bold]x.png" in shown and "\\x1b[2Jclear.png" in shown and f"{query}:" in found.stdout
    added = cli("index", "add", _png(tmp_path / "new.png", 99), "-i", hostile["index"], "--label", "[/]", "-l", ESC_TITLE)
    assert added.returncode == 0, added.stderr
    _no_raw_controls(added)
    info = cli("index", "info", hostile["index"])  # the label was stored as given and is shown as text
    assert info.returncode == 0 and "[/]" in info.stdout, info.stderr
    assert Sidecar.load(sidecar_path(hostile["index"])).class_names[-1] == "[/]"


def test_warnings_and_errors_show_names_escaped(hostile, tmp_path):
    broken = tmp_path / f"{ESC_TITLE}broken.png"
    broken.write_bytes(b"not a png")
    out = cli("encode", "-m", hostile["model"], broken, _png(tmp_path / "ok.png"), "-o", tmp_path / "c.npy")
    assert out.returncode == 0, out.stderr
    _no_raw_controls(out)
    assert "\\x1b]0;pwned\\x07broken.png" in out.stderr
    failed = cli("encode", "-m", tmp_path / f"{ESC_TITLE}.onnx", broken, "-o", tmp_path / "c.npy")
    assert failed.returncode == 2 and "\\x1b]0;pwned" in failed.stderr, failed.stderr
    _no_raw_controls(failed)


def test_the_file_list_of_encode_stays_row_for_row(hostile, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for j, name in enumerate(["a.png", "b\nc.png", "d\u2028e.png", "f.png"]):
        _png(folder / name, j)
    out = cli("encode", "-m", hostile["model"], folder, "-o", tmp_path / "codes.npy")
    assert out.returncode == 0, out.stderr
    codes, listed = np.load(tmp_path / "codes.npy"), (tmp_path / "codes.txt").read_text().splitlines()
    assert listed == [str(folder / "a.png"), str(folder / "f.png")] and len(codes) == 2
    assert out.stderr.count("its name holds a line break") == 2, out.stderr
    np.testing.assert_array_equal(codes, Encoder(hostile["model"]).encode_files(listed)[0])


def test_a_list_file_refuses_names_it_cannot_hold(tmp_path):
    from sadh.sdk.data import LabeledImages, write_list_file

    data = LabeledImages(labels=np.eye(2, dtype=np.uint8), class_names=["a", "b"], paths=[str(tmp_path / "x y.png"), str(tmp_path / "z.png")])
    with pytest.raises(SadhError, match="image path 'x y.png' holds white space"):
        write_list_file(tmp_path / "list.txt", data, tmp_path)
    assert not (tmp_path / "list.txt").exists()


def big_endian_tiff(path: Path, width: int, height: int) -> Path:
    """The header and image directory of a big-endian TIFF (width a SHORT, height a LONG), with no pixels."""
    entries = struct.pack(">HHIHH", 256, 3, 1, width, 0) + struct.pack(">HHII", 257, 4, 1, height)
    path.write_bytes(b"MM\x00*" + struct.pack(">IH", 8, 2) + entries + struct.pack(">I", 0))
    return path


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    bomb = png_bomb(tmp_path / "bomb.png", 2000, 2000)  # 17 kB on disk, 16 MB decoded
    assert bomb.stat().st_size < 50_000
    tiff = tmp_path / "bomb.tiff"  # its image directory comes after the pixels
    cv2.imwrite(str(tiff), np.zeros((2000, 2000), np.uint8))
    monkeypatch.setenv("OPENCV_IO_MAX_IMAGE_PIXELS", "1000000")
    decoded = []
    monkeypatch.setattr(cv2, "imdecode", lambda *a: decoded.append(a))
    for image, size in [(bomb, "2000 x 2000"), (tiff, "2000 x 2000"), (big_endian_tiff(tmp_path / "mm.tif", 1200, 900), "1200 x 900")]:
        with pytest.raises(SadhError, match=rf"{image.name}: a {size} image is over the limit of 1000000 pixels per decoded image"):
            read_image(image)
    assert not decoded  # refused from their headers


def test_the_pixel_limit_has_a_default_the_user_can_change(tmp_path):
    from sadh.sdk.image_limits import DEFAULT_MAX_IMAGE_PIXELS

    show = "import os, sadh.sdk; print(os.environ['OPENCV_IO_MAX_IMAGE_PIXELS'])"
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    assert subprocess.run([sys.executable, "-c", show], capture_output=True, text=True, env=env).stdout.strip() == str(DEFAULT_MAX_IMAGE_PIXELS)
    tiff = tmp_path / "big.tiff"
    cv2.imwrite(str(tiff), np.zeros((2000, 2000), np.uint8))
    code = f"from sadh.sdk.data.images import read_image\ntry:\n    read_image({str(tiff)!r})\nexcept Exception as e:\n    print(e)"
    read = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**env, "OPENCV_IO_MAX_IMAGE_PIXELS": "1000000"})
    assert "is over the limit of 1000000 pixels per decoded image" in read.stdout, read.stdout + read.stderr


def test_a_batch_of_files_is_bounded_by_pixels(hostile, tmp_path, monkeypatch):
    files = [_png(tmp_path / f"{j}.png", j, size=50) for j in range(6)]  # 2500 pixels each
    monkeypatch.setenv("OPENCV_IO_MAX_IMAGE_PIXELS", "5000")
    encoder = Encoder(hostile["model"], max_batch=64)
    batches: list[int] = []
    real = Encoder.encode
    monkeypatch.setattr(Encoder, "encode", lambda self, frames: (batches.append(sum(f.size // 3 for f in frames)), real(self, frames))[1])
    codes, failures = encoder.encode_files(files)
    assert len(codes) == 6 and not failures and batches and max(batches) <= 5000, batches


def test_a_header_claiming_more_codes_than_memory_holds_is_one_line(tmp_path):
    from sadh.sdk.memory import physical_memory

    count = 1 << 36  # 768 GB of ids and codes in a sparse file of the size the header implies
    assert 16 * count > physical_memory()
    path = tmp_path / "huge.sidx"
    HammingIndex(32).save(path)
    head = bytearray(path.read_bytes()[:64])
    head[16:24] = struct.pack("<Q", count)
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(64 + 12 * count)
    for mmap in (True, False):
        with pytest.raises(SadhError, match="needs .* GiB of memory, more than this machine has"):
            HammingIndex.load(path, mmap=mmap)
    assert_user_error(cli("index", "info", path), "GiB of memory")


def test_a_deeply_nested_sidecar_is_one_line(tmp_path):
    path = tmp_path / "db.sidx"
    HammingIndex(16).save(path)
    sidecar_path(path).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(SadhError, match="not a sadh index sidecar .*nested too deeply"):
        Sidecar.load(sidecar_path(path))
    assert_user_error(cli("index", "info", path), "nested too deeply")


def test_a_sidecar_must_list_the_index_ids_once(tmp_path):
    path = tmp_path / "db.sidx"
    index = HammingIndex(16)
    index.add(np.zeros((3, 2), np.uint8))
    index.save(path)
    rows = {"labels": [[0], [1], [0]], "class_names": ["a", "b"], "index_digest": None}  # no digest: written before digests
    sidecar_path(path).write_text(json.dumps({"ids": [0, 1, 5], **rows}))
    with pytest.raises(SadhError, match="stale index sidecar"):
        Sidecar.load(sidecar_path(path))
    sidecar_path(path).write_text(json.dumps({"ids": [0, 1, 1], **rows}))
    with pytest.raises(SadhError, match="sidecar lists id 1 more than once"):
        Sidecar.load(sidecar_path(path))
    sidecar_path(path).write_text(json.dumps({"ids": [2, 0, 1], **rows}))
    assert Sidecar.load(sidecar_path(path)).label_names(0) == ["b"]  # the same ids in another order are fine


def test_symlink_loops_as_input_or_output_are_one_line(hostile, tmp_path):
    loop, other = tmp_path / "loop.png", tmp_path / "other.png"
    loop.symlink_to(other)
    other.symlink_to(loop)
    good = _png(tmp_path / "good.png")
    assert_user_error(cli("encode", "-m", hostile["model"], loop, "-o", tmp_path / "c.npy"), "loop of symbolic links")
    assert_user_error(cli("encode", "-m", hostile["model"], good, "-o", loop), "loop of symbolic links")


def _wider_codes_model(path: Path) -> Path:
    """A model whose `codes` output is 33 wide while its metadata says 32 bits."""
    export_tiny(path, bits=33, metadata=False)
    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, tiny_metadata(32))
    onnx.save(proto, str(path))
    return path


def test_a_model_of_the_wrong_code_width_is_blamed_and_leaves_nothing(hostile, tmp_path):
    model = _wider_codes_model(tmp_path / "wide.onnx")
    out = cli("encode", "-m", model, _png(tmp_path / "a.png"), _png(tmp_path / "b.png", 1), "-o", tmp_path / "c.npy")
    assert_user_error(out, "the model outputs 33-bit codes but its metadata says 32")
    assert "none of the" not in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "wide.onnx"]  # no empty .partial folder


def test_a_float_packed_output_is_refused(tmp_path):
    path = tmp_path / "float-packed.onnx"
    export_tiny(path, bits=32, packed=True)
    proto = onnx.load(str(path))
    producer = next(n for n in proto.graph.node if md.PACKED_OUTPUT in n.output)
    producer.output[list(producer.output).index(md.PACKED_OUTPUT)] = "packed_uint8"
    proto.graph.node.append(onnx.helper.make_node("Cast", ["packed_uint8"], [md.PACKED_OUTPUT], to=onnx.TensorProto.FLOAT))
    next(o for o in proto.graph.output if o.name == md.PACKED_OUTPUT).type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    onnx.save(proto, str(path))
    with pytest.raises(ModelError, match="'packed' output is float32, not uint8"):
        Encoder(path).encode(np.zeros((28, 28, 3), np.uint8))


def test_a_folder_given_as_the_model_is_named_a_folder(tmp_path):
    with pytest.raises(SadhError, match="is a folder, not a model file"):
        Encoder(tmp_path)


def test_a_model_input_without_a_shape_is_said_in_words(tmp_path):
    path = tmp_path / "noshape.onnx"
    export_tiny(path, bits=32)
    proto = onnx.load(str(path))
    proto.graph.input[0].type.tensor_type.ClearField("shape")
    onnx.save(proto, str(path))
    with pytest.raises(SadhError, match="the model input has no declared shape but"):
        Encoder(path)


def test_a_pickled_checkpoint_gets_our_line_only(tmp_path):
    pickled = tmp_path / "legacy.pt"
    pickled.write_bytes(pickle.dumps({"format": "sadh-checkpoint-1"}, protocol=4))  # torch warns about the protocol
    assert_user_error(cli("export", pickled, "-o", tmp_path / "out"), "not a readable sadh checkpoint")


def test_an_export_of_nan_weights_says_so_before_any_parity_line(tmp_path):
    import torch

    from sadh.export.api import export_model
    from test_export import write_checkpoint

    ckpt = write_checkpoint(tmp_path / "m.pt")
    state = torch.load(ckpt, weights_only=True)
    state["model"] = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state["model"].items()}
    torch.save(state, ckpt)
    lines: list[str] = []
    with pytest.raises(SadhError, match="NaN or inf"):
        export_model(ckpt, tmp_path / "out", parity_images=16, log=lines.append)
    assert not any("parity" in line for line in lines), lines
