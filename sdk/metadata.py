"""Keys of the metadata stored inside exported ONNX models (written by sadh.export, read by the sdk), and where the
JSON sidecar of a file (a TensorRT engine's metadata, an index's labels and paths) lives."""
from __future__ import annotations

import os
from pathlib import Path

PREFIX = "sadh."
BITS = "sadh.bits"  # int, code length
PREPROCESS = "sadh.preprocess"  # Preprocess.to_json(): input_size, resize_size, mean, std, channel_order
CLASS_NAMES = "sadh.class_names"  # JSON list of str
METHOD = "sadh.method"  # sadh | dpsh | csq
BACKBONE = "sadh.backbone"  # e.g. efficientnet_lite0, resnet18, small_cnn
DATASET = "sadh.dataset"  # training dataset name
PRECISION = "sadh.precision"  # fp32 | fp16 | int8-qdq (TensorRT) | int8-cpu (onnxruntime)
VERSION = "sadh.version"  # sadh package version that wrote the file
WEIGHTS = "sadh.weights"  # blake2b-128 hex of the trained weights: the same in every precision of one export
REQUIRED = (BITS, PREPROCESS)
SPLIT_SUFFIX = ".split.npz"  # export writes STEM.split.npz (the training split) beside STEM.onnx, STEM.int8-cpu.onnx, ...

INPUT_NAME = "images"  # float32 [N, 3, S, S], normalised RGB (see sadh.sdk.preprocess)
CODES_OUTPUT = "codes"  # float32 [N, bits], continuous tanh code; sign gives the hash
PACKED_OUTPUT = "packed"  # optional uint8 [N, bits/8], np.packbits order of (codes > 0)
SIDECAR_SUFFIX = ".json"


def sidecar_path(path: str | os.PathLike) -> Path:
    """Where the JSON sidecar of a file lives: `model.engine` -> `model.engine.json`, `db.sidx` -> `db.sidx.json`."""
    p = Path(path)
    return p.with_name(p.name + SIDECAR_SUFFIX)
