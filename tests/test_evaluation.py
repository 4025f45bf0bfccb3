"""`sadh.sdk.evaluation`: one evaluation of codes + labels, with or without its report folder."""
from __future__ import annotations

import json
import sys

import cv2
import numpy as np
import pytest

from sadh.sdk import evaluate, score
from sadh.sdk.data import LabeledImages
from sadh.sdk.errors import SadhError
from sadh.sdk.evaluation import GridItems
from sadh.sdk.metrics import graded_metrics, mean_average_precision


def _codes(rng, n: int, bytes_: int = 2) -> np.ndarray:
    return rng.integers(0, 256, (n, bytes_), dtype=np.uint8)


def test_evaluate_codes_and_labels_writes_the_report(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.eye(3, dtype=np.uint8)[rng.integers(0, 3, 60)]
    q, db = _codes(rng, 12), _codes(rng, 48)
    data = LabeledImages(labels=labels, class_names=["a", "b", "c"], images=rng.integers(0, 256, (60, 16, 16), dtype=np.uint8))
    grid = GridItems(data, np.arange(12), np.arange(12, 60))
    result = evaluate(q, db, labels[:12], labels[12:], dataset="toy", out=tmp_path, title="toy", grid=grid, about={"model": "m"})
    expected = mean_average_precision(q, db, labels[:12], labels[12:])
    assert result["map"] == pytest.approx(expected.map) and result["map_tie_aware"] == pytest.approx(expected.tie_aware_map)
    assert (result["model"], result["topk"], result["queries"], result["database"]) == ("m", None, 12, 48)
    assert result["search_k"] == 48 and result["search_us_per_query"] > 0 and "graded" not in result
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(result))
    assert cv2.imread(str(tmp_path / "retrieval_grid.png")) is not None  # the plots: tests/test_evaluation_plots.py


def test_without_matplotlib_the_report_is_written_without_plots_and_one_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` fails, as in a runtime-only install
    rng = np.random.default_rng(3)
    labels = (rng.random((40, 4)) < 0.5).astype(np.uint8)  # multi-label: NDCG@K would be plotted too
    data = LabeledImages(labels=labels, class_names=list("abcd"), images=rng.integers(0, 256, (40, 16, 16), dtype=np.uint8))
    q, db = _codes(rng, 8), _codes(rng, 32)
    result = evaluate(q, db, labels[:8], labels[8:], out=tmp_path, grid=GridItems(data, np.arange(8), np.arange(8, 40)))
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(result)) and "graded" in result
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "retrieval_grid.png"]
    (warning,) = [r.getMessage() for r in caplog.records]
    assert caplog.records[0].levelname == "WARNING" and "\n" not in warning
    assert "pr_curve.png, precision_at_n.png, ndcg_at_k.png" in warning and "pip install matplotlib" in warning


def test_multi_label_codes_get_the_protocol_cut_off_and_the_graded_block(tmp_path):
    rng = np.random.default_rng(1)
    labels = (rng.random((300, 5)) < 0.4).astype(np.uint8)
    q, db = _codes(rng, 20), _codes(rng, 280)
    result = evaluate(q, db, labels[:20], labels[20:], dataset="my-nus-wide", topk=None, out=tmp_path)
    assert (result["topk"], result["topk_source"]) == (5000, "the NUS-WIDE protocol")
    assert result["graded"]["ndcg@100"] == pytest.approx(graded_metrics(q, db, labels[:20], labels[20:], topk=100).ndcg)
    assert (tmp_path / "metrics.json").is_file() and not (tmp_path / "retrieval_grid.png").exists()  # no images given
    quick = score(q, db, labels[:20], labels[20:], dataset="my-nus-wide", topk=7, curves=False)
    assert quick["map"] == pytest.approx(mean_average_precision(q, db, labels[:20], labels[20:], topk=7).map)
    assert quick["topk_source"] == "--topk" and "precision_at_n" not in quick and "graded" not in quick


def test_codes_are_checked_as_the_metrics_check_them(tmp_path):
    rng = np.random.default_rng(2)
    labels = np.eye(2, dtype=np.uint8)[rng.integers(0, 2, 9)]
    db = _codes(rng, 8)
    for one in (db[0], np.where(np.unpackbits(db[0]), 1.0, -1.0)):  # one code, packed or as ±1, not as a row
        with pytest.raises(SadhError) as refused:
            evaluate(one, db, labels[:1], labels[1:], out=tmp_path)
        with pytest.raises(SadhError) as by_metrics:
            mean_average_precision(one, db, labels[:1], labels[1:])
        assert str(refused.value) == str(by_metrics.value) and "must be 2-D" in str(refused.value)
        assert "\n" not in str(refused.value) and not any(tmp_path.iterdir())
        assert evaluate(one[None], db, labels[:1], labels[1:])["queries"] == 1  # as one row
