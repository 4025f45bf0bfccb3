"""Resumable encoding: chunks kept in a partial folder let an interrupted encode / index build continue."""
from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from sadh.cli.app import app
from sadh.sdk import encoding as chunks
from sadh.sdk.encoding import encode_in_chunks, partial_path
from sadh.sdk.encoder import Encoder
from sadh.sdk.index import HammingIndex
from tiny_model import export_tiny

NBYTES = 2


def fake_chunk(calls: list[int], stop_at: int | None = None):
    """A chunk encoder whose codes are a function of the item; records each chunk start; Ctrl-C at chunk `stop_at`."""

    def encode_chunk(start: int, stop: int):
        if stop_at is not None and len(calls) == stop_at:
            raise KeyboardInterrupt
        calls.append(start)
        items = np.arange(start, stop)
        keep = items[items % 7 != 3]  # some items are unreadable
        codes = np.stack([keep % 256, keep // 256], axis=1).astype(np.uint8)
        return codes, keep, [(f"img{i}.png", f"img{i}.png: unreadable") for i in items if i % 7 == 3]

    return encode_chunk


def invoke_with_ctrl_c_after(calls: int, monkeypatch, args: list[str]):
    """Run `sadh-cli ARGS` in process with a Ctrl-C at the encoder's call number `calls` + 1; the encoder is restored after."""
    encode, done = Encoder.encode, []

    def interrupted(self, images):
        if len(done) == calls:
            raise KeyboardInterrupt
        done.append(len(images))
        return encode(self, images)

    with monkeypatch.context() as patch:
        patch.setattr(Encoder, "encode", interrupted)
        return CliRunner().invoke(app, args)


def test_an_interrupted_encode_continues_and_gives_the_same_result(tmp_path, monkeypatch):
    monkeypatch.setattr(chunks, "CHUNK", 10)
    partial = tmp_path / "codes.npy.partial"
    whole = encode_in_chunks(45, NBYTES, fake_chunk([]), "images")
    with pytest.raises(KeyboardInterrupt, match=f"^30 of 45 images encoded are kept in {partial}; re-run the same command"):
        encode_in_chunks(45, NBYTES, fake_chunk([], stop_at=3), "images", partial, "key")
    assert sorted(p.name for p in partial.iterdir()) == ["chunk-000000.npz", "chunk-000001.npz", "chunk-000002.npz", "job.txt"]
    calls: list[int] = []
    resumed = encode_in_chunks(45, NBYTES, fake_chunk(calls), "images", partial, "key")
    assert calls == [30, 40] and resumed.encoded == 15
    assert len(list(partial.glob("chunk-*.npz"))) == 5  # kept until the caller has written its output
    resumed.discard_partial()
    assert not partial.exists()
    np.testing.assert_array_equal(resumed.codes, whole.codes)
    np.testing.assert_array_equal(resumed.ids, whole.ids)
    assert resumed.failures == whole.failures and len(whole.failures) == 6 and whole.encoded == 45


def test_chunks_of_another_job_or_damaged_ones_are_encoded_again(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(chunks, "CHUNK", 10)
    partial = tmp_path / "x.partial"
    with pytest.raises(KeyboardInterrupt):
        encode_in_chunks(30, NBYTES, fake_chunk([], stop_at=2), "images", partial, "model A")
    (partial / "chunk-000001.npz").write_bytes(b"PK\x03\x04 truncated")  # a damaged chunk is redone, not trusted
    calls: list[int] = []
    encode_in_chunks(30, NBYTES, fake_chunk(calls), "images", partial, "model A").discard_partial()
    assert calls == [10, 20]
    with pytest.raises(KeyboardInterrupt):
        encode_in_chunks(30, NBYTES, fake_chunk([], stop_at=2), "images", partial, "model A")
    calls = []
    encode_in_chunks(30, NBYTES, fake_chunk(calls), "images", partial, "model B")
    assert calls == [0, 10, 20] and [r.levelname for r in caplog.records] == ["WARNING"]
    assert "discarding the chunks in" in caplog.records[0].getMessage()
    (tmp_path / "file.partial").write_text("mine")
    with pytest.raises(Exception, match="cannot keep partial results in .*file.partial: it is a file"):
        encode_in_chunks(30, NBYTES, fake_chunk([]), "images", tmp_path / "file.partial", "k")
    assert (tmp_path / "file.partial").read_text() == "mine"


def test_a_kept_partial_is_not_reused_for_other_pixels_behind_the_same_names(tmp_path, monkeypatch):
    monkeypatch.setattr(chunks, "CHUNK", 100)
    model, out = tmp_path / "m.onnx", tmp_path / "db.sidx"
    export_tiny(model, bits=32)
    args = ["index", "build", "-m", str(model), "--data", "fashion-mnist-mosaic", "--role", "query", "--out", str(out)]

    def build(seed: str, target) -> tuple[HammingIndex, str]:
        result = CliRunner().invoke(app, [*args[:-1], str(target), "--seed", seed, "--query-per-class", "25"])
        assert result.exit_code == 0, result.output
        return HammingIndex.load(target), result.stderr

    first = invoke_with_ctrl_c_after(2, monkeypatch, [*args, "--seed", "0", "--query-per-class", "25"])
    assert first.exit_code == 130 and len(list(partial_path(out).glob("chunk-*.npz"))) == 2
    other_seed, said = build("1", out)  # other mosaics under the same dataset name and item numbers
    discarding = f"warning: discarding the chunks in {partial_path(out)}: another model or other items made them\n"
    assert said.count("warning: discarding the chunks") == 1 and discarding in said
    fresh, said = build("1", tmp_path / "fresh.sidx")
    np.testing.assert_array_equal(other_seed.codes, fresh.codes)
    assert "discarding" not in said


def test_index_build_interrupted_by_ctrl_c_continues_on_the_next_run(tmp_path, monkeypatch):
    monkeypatch.setattr(chunks, "CHUNK", 100)
    model, out = tmp_path / "m.onnx", tmp_path / "db.sidx"
    export_tiny(model, bits=32)
    args = ["index", "build", "-m", str(model), "--query-per-class", "5", "--train-per-class", "30", "--role", "train", "--out", str(out)]

    first = invoke_with_ctrl_c_after(2, monkeypatch, args)
    assert first.exit_code == 130
    assert f"interrupted; 200 of 300 images encoded are kept in {partial_path(out)}; re-run the same command" in first.stderr
    assert not out.exists() and len(list(partial_path(out).glob("chunk-*.npz"))) == 2
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    assert not partial_path(out).exists()
    resumed = HammingIndex.load(out)
    fresh = tmp_path / "fresh.sidx"
    assert CliRunner().invoke(app, args[:-1] + [str(fresh)]).exit_code == 0
    np.testing.assert_array_equal(resumed.codes, HammingIndex.load(fresh).codes)
    np.testing.assert_array_equal(resumed.ids, HammingIndex.load(fresh).ids)
