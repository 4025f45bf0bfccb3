"""Test helper: a tiny torch hashing net exported to ONNX with the sadh metadata (no trainer needed)."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from sadh.sdk import metadata as md
from sadh.sdk.preprocess import Preprocess
from sadh.train.backbones import IMAGENET_MEAN, IMAGENET_STD

PREPROCESS = Preprocess(input_size=28, resize_size=32, mean=IMAGENET_MEAN, std=IMAGENET_STD)
CLASS_NAMES = [f"class{i}" for i in range(10)]


class TinyHashNet(nn.Module):
    """conv -> relu -> conv -> 2x2 pool -> linear -> tanh; optionally also the packed sign bits."""

    def __init__(self, bits: int, packed: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2), nn.ReLU(), nn.AvgPool2d(3), nn.Flatten()
        )
        self.head = nn.Linear(32 * 4, bits)
        self.packed = packed
        self.register_buffer("weights", torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.int32))

    def forward(self, x: torch.Tensor):
        u = torch.tanh(self.head(self.features(x)))
        if not self.packed:
            return u
        bits = (u > 0).to(torch.int32).reshape(u.shape[0], -1, 8)
        return u, (bits * self.weights).sum(-1).to(torch.uint8)


def export_tiny(
    path: Path, bits: int = 32, packed: bool = False, metadata: bool = True, fixed_batch: int | None = None, weights: str | None = None
) -> TinyHashNet:
    """Export a TinyHashNet to `path` (dynamic batch, or `fixed_batch`; `weights`: the weights digest to record) and
    return the torch model (eval mode)."""
    model = TinyHashNet(bits, packed).eval()
    outputs = [md.CODES_OUTPUT, md.PACKED_OUTPUT] if packed else [md.CODES_OUTPUT]
    x = torch.zeros(fixed_batch or 2, 3, PREPROCESS.input_size, PREPROCESS.input_size)
    dynamic = None if fixed_batch else {name: {0: "n"} for name in [md.INPUT_NAME, *outputs]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter is enough for this net
        torch.onnx.export(
            model, (x,), str(path), input_names=[md.INPUT_NAME], output_names=outputs,
            dynamic_axes=dynamic, dynamo=False,
        )
    proto = onnx.load(str(path))
    if metadata:
        props = {md.BITS: str(bits), md.PREPROCESS: PREPROCESS.to_json(), md.CLASS_NAMES: json.dumps(CLASS_NAMES), md.PRECISION: "fp32"}
        if weights is not None:
            props[md.WEIGHTS] = weights
        for key, value in props.items():
            proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))
    return model
