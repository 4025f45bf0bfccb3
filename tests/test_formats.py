"""The on-disk formats (sadh.sdk.formats): files in the layout sadh 0.2 writes load and are written again byte for
byte; every record format is checked by the one validator (one line naming the file and the field); the tiny test
model's metadata is what a real export writes."""
from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import numpy as np
import onnx
import pytest

from sadh.sdk.codes import bits_fit
from sadh.sdk.encoder import Encoder
from sadh.sdk.errors import SadhError
from sadh.sdk.formats import model as md
from sadh.sdk.formats.engine import ENGINE_SIDECAR, EngineMeta
from sadh.sdk.formats.index_sidecar import INDEX_SIDECAR, Sidecar
from sadh.sdk.formats.records import RecordFormat, Rule, sidecar_path
from sadh.sdk.formats.retriever_folder import MANIFEST
from sadh.sdk.index import HammingIndex
from sadh.sdk.mih import MultiIndexHashingIndex
from tiny_model import CLASS_NAMES, export_tiny, tiny_metadata


def _index_bytes_of_sadh_0_2(bits: int, ids: np.ndarray, codes: np.ndarray) -> tuple[bytes, str]:
    """An index file and its sidecar's digest, laid out by hand as docs/formats.md describes the 0.2 format."""
    wbytes = 4 if bits <= 32 else 8
    nwords = -(-bits // (8 * wbytes))
    padded = np.zeros((len(ids), nwords * wbytes), np.uint8)
    padded[:, : codes.shape[1]] = codes
    planes = np.ascontiguousarray(padded.view(f"<u{wbytes}").T).tobytes()
    fields = struct.pack("<7sBHHIQ", b"SADHIDX", 1, bits, wbytes, 0, len(ids))
    digest = hashlib.blake2b(fields + ids.astype("<i8").tobytes() + planes, digest_size=16).digest()
    return (fields + digest).ljust(64, b"\0") + ids.astype("<i8").tobytes() + planes, digest.hex()


@pytest.mark.parametrize("bits", [24, 40])  # uint32 and uint64 word planes
def test_an_index_and_sidecar_in_the_0_2_layout_load_and_are_written_again_byte_for_byte(tmp_path: Path, bits: int) -> None:
    ids = np.array([7, 3, 11], np.int64)
    codes = np.random.default_rng(bits).integers(0, 256, (3, bits // 8), dtype=np.uint8)
    data, digest = _index_bytes_of_sadh_0_2(bits, ids, codes)
    old = tmp_path / "old.sidx"
    old.write_bytes(data)
    side = {"ids": [7, 3, 11], "labels": [[0], [1], [0, 1]], "class_names": ["a", "b"], "paths": ["x.png", "y.png", "z.png"],
            "dataset": None, "model": "m.onnx", "weights": "ab" * 16, "index_digest": digest}
    side_text = json.dumps(side, separators=(",", ":"))
    sidecar_path(old).write_text(side_text)
    for kind in (HammingIndex, MultiIndexHashingIndex):
        index = kind.load(old)
        assert index.bits == bits and index.ids.tolist() == ids.tolist() and np.array_equal(index.codes, codes)
        assert index.search(codes[2], 1)[1].tolist() == [[11]]
    loaded = Sidecar.of_index(old)
    assert loaded is not None and loaded.describe(11) == "a,b z.png" and asdict(loaded) == side
    again = HammingIndex(bits)
    again.add(codes, ids)
    again.save(tmp_path / "new.sidx")
    Sidecar(**{**side, "index_digest": None}).save(sidecar_path(tmp_path / "new.sidx"))
    assert (tmp_path / "new.sidx").read_bytes() == data
    assert sidecar_path(tmp_path / "new.sidx").read_text() == side_text


def _records(tmp_path: Path) -> list:
    """(format, a good record of it) for every JSON record format and the model metadata."""
    meta = tiny_metadata(32)
    engine = EngineMeta("Orin", "10.3.0", "fp32", "m.onnx", "0" * 64, 1, 8, 32, 28, meta)
    side = Sidecar(ids=[1, 2], labels=[[0], [1]], class_names=["a", "b"])
    manifest = {"format": "sadh-retriever/1", "model": "/m.onnx", "index": "index.sidx", "bits": 32, "index_kind": "flat", "weights": None}
    return [(md.MODEL_FORMAT, meta), (ENGINE_SIDECAR, asdict(engine)), (INDEX_SIDECAR, asdict(side)), (MANIFEST, manifest)]


def test_every_format_names_the_file_and_each_bad_field_in_one_line(tmp_path: Path) -> None:
    for fmt, good in _records(tmp_path):
        where = tmp_path / "file"
        assert fmt.check(good, where) == good
        assert fmt.check({**good, "of_a_later_version": 1}, where) == good  # fields it does not declare are left out
        for field in fmt.hints:
            with pytest.raises(SadhError) as bad:
                fmt.check({**good, field: True}, where)  # True is no str, number, list or object of a format
            assert str(bad.value).startswith(f"{where}: not {fmt.name} ({field} must be "), str(bad.value)
            assert "\n" not in str(bad.value)
        for field in fmt.required:
            with pytest.raises(SadhError, match=rf"^{where}: not {fmt.name} \(missing {field}\)"):
                fmt.check({k: v for k, v in good.items() if k != field}, where)
        with pytest.raises(SadhError, match=rf"^{where}: not {fmt.name} \(a JSON list, not an object\)"):
            fmt.check([good], where)


def test_model_metadata_takes_the_one_bits_rule(tmp_path: Path) -> None:
    for bits in ("0", "4", "12", "16", "1024", "1032", "32.0", "-8", " 32", "0x20", "", "３２"):
        meta = {**tiny_metadata(32), md.BITS: bits}
        fits = bits.isascii() and bits.isdigit() and bits_fit(int(bits))
        try:
            assert md.read_model_metadata(meta, "m.onnx").bits == int(bits) and fits, bits
        except SadhError as e:
            assert not fits and str(e).startswith("m.onnx: not an exported sadh model (sadh.bits must be a code length"), bits


def _huge_bits_model(folder: Path) -> Path:
    """The tiny model with a 5000-digit sadh.bits (past Python's int-from-str limit)."""
    model = folder / "huge_bits.onnx"
    export_tiny(model, bits=32, metadata=False)
    proto = onnx.load(str(model))
    onnx.helper.set_model_props(proto, {**tiny_metadata(32), md.BITS: "9" * 5000})
    onnx.save(proto, str(model))
    return model


def test_a_huge_or_odd_field_is_that_fields_one_line_error(tmp_path: Path) -> None:
    """A 5000-digit bits value (past Python's int-from-str limit), a rule whose test breaks, a huge int: each is
    the field's one-line error, never another exception."""
    huge = "9" * 5000
    with pytest.raises(SadhError, match=r"^m.onnx: not an exported sadh model \(sadh.bits must be a code length"):
        md.read_model_metadata({**tiny_metadata(32), md.BITS: huge}, "m.onnx")
    for field, value in ((md.PREPROCESS, '{"input_size": %s}' % huge), (md.CLASS_NAMES, f'["a", {huge}]')):
        with pytest.raises(SadhError, match=rf"^m.onnx: not an exported sadh model \({field} must be ") as bad:
            md.read_model_metadata({**tiny_metadata(32), field: value}, "m.onnx")
        assert len(str(bad.value)) < 1000, str(bad.value)  # the value cut short, not all of its 5000 digits
    with pytest.raises(SadhError, match="sadh.bits must be a code length"):
        Encoder(_huge_bits_model(tmp_path))
    manifest = _records(tmp_path)[-1][1]
    with pytest.raises(SadhError, match=r"\(bits must be a code length .*\)$"):
        MANIFEST.check({**manifest, "bits": 10**5000}, "manifest.json")
    breaking = RecordFormat("a thing", {"n": Annotated[int, Rule("the inverse of a positive int", lambda v: 1 / v > 0)]}, ("n",))
    assert breaking.check({"n": 2}, "t.json") == {"n": 2}
    with pytest.raises(SadhError, match=r"^t.json: not a thing \(n must be the inverse of a positive int, got 0\)$"):
        breaking.check({"n": 0}, "t.json")


@pytest.mark.torch
def test_a_real_export_writes_the_metadata_the_tiny_model_has(tmp_path: Path) -> None:
    """tests/tiny_model.py stands in for exported models in the sdk's tests: its metadata must be what the exporter
    writes (the same keys, the same layout), and the sdk must read both."""
    import onnx

    from sadh.sdk.formats.model import read_stamp
    from sadh.export.onnx_model import export_onnx
    from sadh.train.backbones import backbone_entry
    from sadh.train.checkpoint import ModelInfo
    from sadh.train.model import create_model

    pre = backbone_entry("small_cnn").preprocess()
    info = ModelInfo(32, "small_cnn", 10, list(CLASS_NAMES), pre, "sadh", "fashion-mnist", None)
    export_onnx(create_model("small_cnn", 32, 10).eval(), info, tmp_path / "real.onnx")
    export_tiny(tmp_path / "tiny.onnx", bits=32)
    real, tiny = (read_stamp(onnx.load(str(tmp_path / name))) for name in ("real.onnx", "tiny.onnx"))
    assert list(real) == list(tiny)
    differ = {md.PREPROCESS, md.BACKBONE, md.WEIGHTS}  # the tiny net is another network
    assert {k: v for k, v in real.items() if k not in differ} == {k: v for k, v in tiny.items() if k not in differ}
    for name, meta in (("real.onnx", real), ("tiny.onnx", tiny)):
        read = md.read_model_metadata(meta, name)
        assert (read.bits, read.class_names) == (32, CLASS_NAMES)
        encoder = Encoder(tmp_path / name)
        assert encoder.bits == 32 and encoder.metadata == meta and encoder.weights == meta[md.WEIGHTS]


@pytest.mark.torch  # the CLI needs the full install
def test_the_cli_refuses_a_huge_bits_field_in_one_line(tmp_path: Path) -> None:
    """`sadh-cli encode` with a model whose sadh.bits has 5000 digits: exit 2 and one line, no traceback."""
    from cli_run import assert_user_error, cli

    assert_user_error(cli("encode", "q.png", "-m", _huge_bits_model(tmp_path)), "sadh.bits must be a code length")
