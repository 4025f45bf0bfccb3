"""The torch and ONNX side of the model metadata (`sadh.sdk.formats.model` has its keys, layout and builder): the
digest of a torch model's weights, and stamping the metadata into an ONNX model."""
from __future__ import annotations

import hashlib
from typing import Any

import onnx

from ..sdk.formats.model import PREFIX


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


def stamp(model: onnx.ModelProto, meta: dict[str, str]) -> onnx.ModelProto:
    """Replace the model's sadh.* metadata_props by `meta` (other entries are kept); returns the model."""
    kept = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    for key, value in kept + list(meta.items()):
        model.metadata_props.add(key=key, value=value)
    return model


def read_stamp(model: onnx.ModelProto) -> dict[str, str]:
    """The sadh.* metadata_props of a model."""
    return {p.key: p.value for p in model.metadata_props if p.key.startswith(PREFIX)}
