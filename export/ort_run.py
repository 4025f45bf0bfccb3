"""Run exported models with onnxruntime on the CPU (parity checks, calibration checks, reports)."""
from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort

from ..sdk.formats import model as keys

CPU_THREADS = 2
BATCH = 32


def cpu_session(path: str | os.PathLike, threads: int = CPU_THREADS) -> ort.InferenceSession:
    """An onnxruntime CPU session with `threads` intra-op threads and all graph optimisations."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(os.fspath(path), opts, providers=["CPUExecutionProvider"])


def run_codes(session: ort.InferenceSession, images: np.ndarray, batch: int = BATCH) -> np.ndarray:
    """Continuous codes (n, bits) for preprocessed float32 NCHW images, `batch` at a time."""
    parts = [
        session.run([keys.CODES_OUTPUT], {keys.INPUT_NAME: images[i : i + batch]})[0]
        for i in range(0, len(images), batch)
    ]
    return np.concatenate(parts).astype(np.float32)
