"""Accuracy and speed of every exported model: mAP@all on the dataset's query/database protocol
(database optionally subsampled) and onnxruntime CPU latency (batch 1) / throughput (batch 32)."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..sdk.formats import model as keys
from ..sdk.data import LabeledImages, Split
from ..sdk.evaluation import score
from ..sdk.preprocess import Preprocess
from ..train.checkpoint import load_model
from .parity import CPU_THREADS, checkpoint_dataset, cpu_session, model_inputs, run_codes, spread, torch_codes

SPEED_PRECISIONS = ("fp32", "int8-qdq", "int8-cpu")  # fp16 is for GPUs; onnxruntime CPU only emulates it
LATENCY_BATCH, THROUGHPUT_BATCH = 1, 32
SPEED_SECONDS = 3.0


@dataclass(frozen=True)
class ReportRow:
    """One model's retrieval accuracy and CPU speed (None where not measured)."""

    model: str
    precision: str
    map: float
    batch1_ms: float | None = None
    batch1_ips: float | None = None
    batch32_ips: float | None = None

    def to_dict(self) -> dict:
        """JSON-able dict."""
        return asdict(self)


def images_per_second(path: Path, batch: int, size: int, threads: int = CPU_THREADS, seconds: float = SPEED_SECONDS) -> float:
    """onnxruntime CPU images/s at a fixed batch size (after one warm-up run), over about `seconds`."""
    session = cpu_session(path, threads)
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size), dtype=np.float32)
    session.run(None, {keys.INPUT_NAME: x})
    runs, start = 0, time.perf_counter()
    while runs < 2 or time.perf_counter() - start < seconds:
        session.run(None, {keys.INPUT_NAME: x})
        runs += 1
    return runs * batch / (time.perf_counter() - start)


def _map(codes_q: np.ndarray, codes_db: np.ndarray, labels_q: np.ndarray, labels_db: np.ndarray) -> float:
    """mAP@all of continuous codes (their signs) via `sadh.sdk.evaluation.score`."""
    return score(np.sign(codes_q), np.sign(codes_db), labels_q, labels_db, topk=len(codes_db), curves=False)["map"]


def accuracy_and_speed(
    model: torch.nn.Module,
    cfg: Preprocess,
    models: dict[str, Path],
    data: LabeledImages,
    split: Split,
    *,
    queries: int = 1000,
    database: int = 5000,
    threads: int = CPU_THREADS,
    speed_seconds: float = SPEED_SECONDS,
) -> list[ReportRow]:
    """mAP@all for torch FP32 and each exported model (precision -> path), and CPU speed for SPEED_PRECISIONS."""
    q_idx, db_idx = spread(split.query, queries), spread(split.database, database)
    xq, xdb = model_inputs(data, q_idx, cfg), model_inputs(data, db_idx, cfg)
    lq, ldb = data.labels[q_idx], data.labels[db_idx]
    rows = [ReportRow("torch", "fp32", _map(torch_codes(model, xq), torch_codes(model, xdb), lq, ldb))]
    for precision, path in models.items():
        session = cpu_session(path, threads)
        row = ReportRow(path.name, precision, _map(run_codes(session, xq), run_codes(session, xdb), lq, ldb))
        if precision in SPEED_PRECISIONS:
            b1 = images_per_second(path, LATENCY_BATCH, cfg.input_size, threads, speed_seconds)
            b32 = images_per_second(path, THROUGHPUT_BATCH, cfg.input_size, threads, speed_seconds)
            row = ReportRow(row.model, precision, row.map, 1000 / b1, b1, b32)
        rows.append(row)
    return rows


def report_export(
    checkpoint: Path, models: dict[str, Path], data: tuple[LabeledImages, Split] | None = None, **kwargs: Any
) -> list[ReportRow]:
    """accuracy_and_speed for a checkpoint's exported models, on the checkpoint's own dataset and split (or `data`)."""
    model, info = load_model(checkpoint)
    data, split = data if data is not None else checkpoint_dataset(checkpoint)
    return accuracy_and_speed(model, info.preprocess, models, data, split, **kwargs)
