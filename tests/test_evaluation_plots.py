"""`sadh.sdk.evaluation`'s plots: a report folder holds them where matplotlib is installed (tests/conftest.py leaves
this module out where it is not; tests/test_evaluation.py checks the report without them)."""
from __future__ import annotations

import cv2
import matplotlib  # noqa: F401  (the full install's: this module needs it)
import numpy as np

from sadh.sdk import evaluate
from sadh.sdk.data import LabeledImages
from sadh.sdk.evaluation import GridItems, plot_names


def test_a_report_holds_the_plots_of_its_metrics(tmp_path):
    rng = np.random.default_rng(0)
    curves = ["pr_curve.png", "precision_at_n.png"]
    single, multi = np.eye(3, dtype=np.uint8)[rng.integers(0, 3, 60)], (rng.random((60, 4)) < 0.4).astype(np.uint8)
    for labels, plots in ((single, curves), (multi, [*curves, "ndcg_at_k.png"])):  # NDCG@K: multi-label data only
        out = tmp_path / str(labels.shape[1])
        images = rng.integers(0, 256, (60, 16, 16), dtype=np.uint8)
        grid = GridItems(LabeledImages(labels=labels, class_names=list("abcd")[: labels.shape[1]], images=images), np.arange(12), np.arange(12, 60))
        q, db = rng.integers(0, 256, (12, 2), dtype=np.uint8), rng.integers(0, 256, (48, 2), dtype=np.uint8)
        result = evaluate(q, db, labels[:12], labels[12:], out=out, title="toy", grid=grid)
        assert list(plot_names(result)) == plots
        assert sorted(p.name for p in out.iterdir()) == sorted(["metrics.json", "retrieval_grid.png", *plots])
        for name in plots:
            image = cv2.imread(str(out / name))
            assert image is not None and min(image.shape[:2]) > 200, name
