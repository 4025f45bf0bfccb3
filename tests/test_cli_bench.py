"""`sadh-cli bench`: writes a JSON report of encoder and search timings (values checked for sanity, not speed)."""
from __future__ import annotations

import json

import numpy as np

from sadh.sdk.index import HammingIndex
from cli_run import assert_user_error, cli
from tiny_model import export_tiny


def test_bench_writes_json(tmp_path):
    model = tmp_path / "model.onnx"
    export_tiny(model, bits=16)
    index = HammingIndex(16)
    index.add(np.random.default_rng(1).integers(0, 256, (500, 2), dtype=np.uint8))
    index.save(tmp_path / "i.sidx")
    out = cli("bench", "-m", model, "-i", tmp_path / "i.sidx", "--frame", "320x240", "--out", tmp_path / "b.json")
    assert out.returncode == 0, out.stderr
    r = json.loads((tmp_path / "b.json").read_text())
    assert r["bits"] == 16 and r["precision"] == "fp32" and r["encoder"]["frame"] == "320x240 BGR"
    assert r["encoder"]["latency_ms_median"] > 0 and r["encoder"]["throughput_images_per_s"] > 0
    assert r["search"]["codes"] == 500 and r["search"]["single_query_us"] > 0
    assert r["search_mih"]["codes"] == 500 and r["search_mih"]["batched_us_per_query"] > 0 and r["search_mih"]["tables_s"] > 0
    assert "wrote" in out.stdout and "with MIH (--mih)" in out.stdout


def test_bench_bad_input(tmp_path):
    model = tmp_path / "model.onnx"
    export_tiny(model, bits=16)
    assert_user_error(cli("bench", "-m", model, "--frame", "big"), "bad --frame")
    assert_user_error(cli("bench", "-m", model, "--frame", "100000x100000"), "each side must be 1 to 8192 pixels")
    assert_user_error(cli("bench", "-m", model, "--out", tmp_path / ("x" * 300 + ".json")), "file name too long")
    HammingIndex(16).save(tmp_path / "empty.sidx")
    assert_user_error(cli("bench", "-m", model, "-i", tmp_path / "empty.sidx"), "holds no codes, so there is no search to time")
    HammingIndex(32).save(tmp_path / "i32.sidx")
    assert_user_error(cli("bench", "-m", model, "-i", tmp_path / "i32.sidx"), "32-bit codes")
    before = model.read_bytes()
    assert_user_error(cli("bench", "-m", model, "--out", model), "is also --model")
    assert model.read_bytes() == before
    assert_user_error(cli("bench", "-m", model, "--out", tmp_path), "it is a folder, not a file")
