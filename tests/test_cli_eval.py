"""`sadh-cli eval`: metrics.json with sane values that match an independent computation, and the three PNGs."""
from __future__ import annotations

import json

import cv2
import numpy as np

from sadh.cli.eval_cmd import grid_queries
from sadh.sdk.data import SplitSizes, database_subset, load_dataset
from sadh.sdk.encoder import Encoder
from sadh.sdk.metrics import mean_average_precision
from cli_run import assert_user_error, cli
from tiny_model import export_tiny

QUERY_PER_CLASS = 5
DATABASE = 800


def test_eval_report(tmp_path):
    model = tmp_path / "model.onnx"
    export_tiny(model, bits=32)
    out = cli("eval", "-m", model, "--query-per-class", QUERY_PER_CLASS, "--database", DATABASE, "--out", tmp_path / "rep")
    assert out.returncode == 0, out.stderr
    assert "mAP@" in out.stdout and "metrics.json" in out.stdout
    for name in ("pr_curve.png", "precision_at_n.png", "retrieval_grid.png"):
        image = cv2.imread(str(tmp_path / "rep" / name))
        assert image is not None and min(image.shape[:2]) > 200, name
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert m["queries"] == 10 * QUERY_PER_CLASS and m["database"] == DATABASE and m["bits"] == 32
    assert 0.1 < m["map"] <= 1 and abs(m["map"] - m["map_tie_aware"]) < 0.1
    p = np.array(m["precision_at_n"]["precision"])
    assert m["precision_at_n"]["n"][0] == 1 and np.all((p >= 0) & (p <= 1))
    recall = np.array(m["pr_by_radius"]["recall"], dtype=float)
    assert len(recall) == 33 and np.all(np.diff(recall) >= -1e-12) and recall[-1] == 1.0
    assert m["encode_ms_per_image"] > 0 and m["search_us_per_query"] > 0

    data, split = load_dataset("fashion-mnist", sizes=SplitSizes(query_per_class=QUERY_PER_CLASS, query_total=10 * QUERY_PER_CLASS))
    db = database_subset(split.database, DATABASE, 0)
    enc = Encoder(model)
    expected = mean_average_precision(enc.encode(data.images[split.query]), enc.encode(data.images[db]), data.labels[split.query], data.labels[db])
    assert abs(expected.map - m["map"]) < 1e-9


def test_grid_queries_cover_classes():
    labels = np.eye(4, dtype=np.uint8)[[2, 2, 0, 1, 1, 3, 0]]
    rows = grid_queries(labels, count=5)
    assert sorted(rows.tolist()[:4]) == [0, 2, 3, 5] and len(rows) == 5 and len(set(rows.tolist())) == 5


def test_eval_bad_input(tmp_path):
    assert_user_error(cli("eval", "-m", tmp_path / "none.onnx"), "model file not found")
    (tmp_path / "list.txt").write_text("a.jpg 1 0\n")
    assert_user_error(cli("eval", "-m", tmp_path / "none.onnx", "--out", tmp_path / "list.txt"), "it is a file, not a folder")
    assert_user_error(cli("eval", "-m", tmp_path / "none.onnx", "--out", tmp_path / "list.txt" / "rep"), "is a file, not a folder")
