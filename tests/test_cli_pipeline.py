"""`sadh-cli pipeline --quick`: the whole chain (train, export FP32 + INT8, index, evaluate) and its resume."""
from __future__ import annotations

import json

import numpy as np
import pytest

from sadh.sdk.encoder import Encoder
from sadh.sdk.index import HammingIndex
from sadh.sdk.retriever import Sidecar, sidecar_path
from cli_run import assert_user_error, cli


@pytest.mark.slow
def test_pipeline_quick_end_to_end_and_resume(tmp_path, fashion_mnist):
    run = tmp_path / "run"
    out = cli("pipeline", "--quick", "--out", run)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "report:" in out.stdout and "reusing" not in out.stdout
    summary = json.loads((run / "report" / "summary.json").read_text())
    rows = {r["name"]: r for r in summary["rows"]}
    assert list(rows) == ["torch (training)", "ONNX fp32", "ONNX int8-cpu", "ONNX int8-qdq"]
    torch_map = rows["torch (training)"]["map"]
    assert 0.1 < torch_map <= 1
    assert abs(rows["ONNX fp32"]["map"] - torch_map) < 0.02  # same network, same queries and database subset
    for name in ("ONNX int8-cpu", "ONNX int8-qdq"):
        assert abs(rows[name]["map"] - torch_map) < 0.1
        assert rows[name]["size_mb"] < rows["ONNX fp32"]["size_mb"]
    for precision in ("fp32", "int8-cpu", "int8-qdq"):
        for name in ("metrics.json", "pr_curve.png", "precision_at_n.png", "retrieval_grid.png"):
            assert (run / "report" / precision / name).is_file()
    assert (run / "report" / "pr_curve.png").is_file() and (run / "report" / "precision_at_n.png").is_file()

    index_path = run / "index" / "int8-cpu.sidx"
    index, side = HammingIndex.load(index_path), Sidecar.load(sidecar_path(index_path))
    assert len(index) == len(side.ids) == 400 and side.dataset["data"] == "fashion-mnist"
    encoder = Encoder(rows["ONNX int8-cpu"]["model"])
    some = np.array(side.ids[:16])
    np.testing.assert_array_equal(index.codes[:16], encoder.encode(fashion_mnist.images[some]))
    assert [fashion_mnist.class_names[c] for c in side.labels[0]] == side.label_names(side.ids[0])

    again = cli("pipeline", "--quick", "--out", run)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "reusing finished training" in again.stdout and "reusing the export" in again.stdout
    rerun = {r["name"]: r for r in json.loads((run / "report" / "summary.json").read_text())["rows"]}
    assert rerun["ONNX fp32"]["map"] == rows["ONNX fp32"]["map"]


def test_pipeline_bad_bits(tmp_path):
    assert_user_error(cli("pipeline", "--quick", "--bits", "12", "--out", tmp_path / "r"), "bits")
