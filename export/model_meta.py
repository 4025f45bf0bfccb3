"""The metadata stamped into every exported ONNX model (keys from sadh.sdk.metadata)."""
from __future__ import annotations

import hashlib
import json
from importlib import metadata as importlib_metadata
from typing import Any

import onnx

from ..sdk import metadata as keys

PRECISIONS = ("fp32", "fp16", "int8-qdq", "int8-cpu")


def sadh_version() -> str:
    """The installed sadh package version."""
    return importlib_metadata.version("sadh")


def weights_digest(model: Any) -> str:
    """blake2b-128 hex of a torch model's parameters and buffers (names, dtypes, shapes, values): which trained weights
    it is."""
    import torch  # here: the other export modules that read metadata need no torch

    h = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def model_metadata(info: Any, precision: str, weights: str) -> dict[str, str]:
    """Everything the runtime needs, as strings, from a checkpoint's ModelInfo and its `weights_digest`."""
    base = {
        keys.BITS: str(int(info.bits)),
        keys.PREPROCESS: info.preprocess.to_json(),
        keys.CLASS_NAMES: json.dumps(list(info.class_names)),
        keys.METHOD: str(info.method),
        keys.BACKBONE: str(info.backbone),
        keys.DATASET: str(info.dataset),
        keys.VERSION: sadh_version(),
        keys.WEIGHTS: weights,
    }
    return with_precision(base, precision)


def stamp(model: onnx.ModelProto, meta: dict[str, str]) -> onnx.ModelProto:
    """Replace the model's sadh.* metadata_props by `meta` (other entries are kept); returns the model."""
    kept = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(keys.PREFIX)]
    del model.metadata_props[:]
    for key, value in kept + list(meta.items()):
        model.metadata_props.add(key=key, value=value)
    return model


def read_stamp(model: onnx.ModelProto) -> dict[str, str]:
    """The sadh.* metadata_props of a model."""
    return {p.key: p.value for p in model.metadata_props if p.key.startswith(keys.PREFIX)}


def with_precision(meta: dict[str, str], precision: str) -> dict[str, str]:
    """A copy of `meta` for another precision."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}")
    return {**meta, keys.PRECISION: precision}
