"""Test helper: a tiny hashing net written as ONNX with the sadh metadata, without torch (onnx's helper and numpy
weights), so the sdk's tests also run where torch is not installed (scripts/test-lowest.sh, scripts/test-aarch64.sh).
Its metadata is built by the exporter's own code (`sadh.sdk.formats.model.model_metadata`), for a model described
like a checkpoint's ModelInfo (`TinyInfo`). `torch_reference` is the same net in torch, for the tests that compare the
runtime with torch."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sadh.sdk.formats import model as md
from sadh.sdk.preprocess import Preprocess
from sadh.train.backbones import IMAGENET_MEAN, IMAGENET_STD

PREPROCESS = Preprocess(input_size=28, resize_size=32, mean=IMAGENET_MEAN, std=IMAGENET_STD)
CLASS_NAMES = [f"class{i}" for i in range(10)]
OPSET, IR_VERSION = 17, 8  # what sadh.export writes, and what onnxruntime 1.20 (JetPack 6) loads
PLACES = np.array([128, 64, 32, 16, 8, 4, 2, 1], np.int32)  # np.packbits order


@dataclass(frozen=True)
class TinyInfo:
    """What the metadata records of the tiny net (the fields of `sadh.sdk.formats.model.TrainedModel`)."""

    bits: int
    preprocess: Preprocess = PREPROCESS
    class_names: tuple[str, ...] = tuple(CLASS_NAMES)
    method: str = "sadh"
    backbone: str = "tiny_cnn"
    dataset: str = "fashion-mnist"


def tiny_params(bits: int) -> dict[str, np.ndarray]:
    """Seeded float32 weights of conv(3->16, 3x3, /2) -> relu -> conv(16->32, 3x3, /2) -> relu -> 3x3 avg pool ->
    linear(128 -> bits) -> tanh, uniform in +-1/sqrt(fan-in) like torch's default initialisation."""
    rng = np.random.default_rng(bits)
    shapes = {
        "conv1.weight": (16, 3, 3, 3), "conv1.bias": (16,), "conv2.weight": (32, 16, 3, 3), "conv2.bias": (32,),
        "head.weight": (bits, 128), "head.bias": (bits,),
    }
    fan_in = {"conv1": 27, "conv2": 144, "head": 128}
    return {k: rng.uniform(-1, 1, s).astype(np.float32) / np.float32(np.sqrt(fan_in[k.split(".")[0]])) for k, s in shapes.items()}


def params_digest(params: dict[str, np.ndarray]) -> str:
    """blake2b-128 hex of the parameters (names, shapes, values): the tiny net's trained-weights digest."""
    h = hashlib.blake2b(digest_size=16)
    for name, value in sorted(params.items()):
        h.update(f"{name}:{value.shape};".encode() + value.tobytes())
    return h.hexdigest()


def tiny_metadata(bits: int, weights: str | bool = True, dataset: str = TinyInfo.dataset) -> dict[str, str]:
    """The metadata the exporter writes for the tiny net of `bits` bits (fp32); `weights`: True records the digest of
    its parameters, a str that digest instead, False none (models exported before digests were recorded)."""
    digest = params_digest(tiny_params(bits)) if weights is True else weights or ""
    meta = md.model_metadata(replace(TinyInfo(bits), dataset=dataset), "fp32", digest)
    return meta if weights else {k: v for k, v in meta.items() if k != md.WEIGHTS}


def export_tiny(
    path: Path, bits: int = 32, packed: bool = False, metadata: bool = True, fixed_batch: int | None = None,
    weights: str | bool = True, dataset: str = TinyInfo.dataset,
) -> dict[str, np.ndarray]:
    """Write the tiny net to `path` (dynamic batch, or `fixed_batch`; `packed`: also the packed sign bits; `metadata`,
    `weights`, `dataset`: see `tiny_metadata`) and return its parameters (for `torch_reference`)."""
    params = tiny_params(bits)
    batch = fixed_batch or "n"
    size = PREPROCESS.input_size
    nodes = [
        helper.make_node("Conv", [md.INPUT_NAME, "conv1.weight", "conv1.bias"], ["c1"], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "conv2.weight", "conv2.bias"], ["c2"], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("AveragePool", ["r2"], ["p"], kernel_shape=[3, 3], strides=[3, 3]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "head.weight", "head.bias"], ["h"], transB=1),
        helper.make_node("Tanh", ["h"], [md.CODES_OUTPUT]),
    ]
    inits = [numpy_helper.from_array(v, k) for k, v in params.items()]
    outputs = [helper.make_tensor_value_info(md.CODES_OUTPUT, TensorProto.FLOAT, [batch, bits])]
    if packed:
        nodes += [
            helper.make_node("Greater", [md.CODES_OUTPUT, "zero"], ["positive"]),
            helper.make_node("Cast", ["positive"], ["bit"], to=TensorProto.INT32),
            helper.make_node("Reshape", ["bit", "byte_shape"], ["bytes"]),
            helper.make_node("Mul", ["bytes", "places"], ["weighted"]),
            helper.make_node("ReduceSum", ["weighted", "last_axis"], ["sum"], keepdims=0),
            helper.make_node("Cast", ["sum"], [md.PACKED_OUTPUT], to=TensorProto.UINT8),
        ]
        inits += [
            numpy_helper.from_array(np.zeros((), np.float32), "zero"),
            numpy_helper.from_array(np.array([-1, bits // 8, 8], np.int64), "byte_shape"),
            numpy_helper.from_array(PLACES, "places"),
            numpy_helper.from_array(np.array([-1], np.int64), "last_axis"),
        ]
        outputs.append(helper.make_tensor_value_info(md.PACKED_OUTPUT, TensorProto.UINT8, [batch, bits // 8]))
    graph = helper.make_graph(
        nodes, "tiny_hash_net", [helper.make_tensor_value_info(md.INPUT_NAME, TensorProto.FLOAT, [batch, 3, size, size])], outputs, inits
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    if metadata:
        helper.set_model_props(proto, tiny_metadata(bits, weights, dataset))
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    return params


def torch_reference(params: dict[str, np.ndarray]):
    """The same net in torch (eval mode, continuous codes out), with the parameters `export_tiny` returned."""
    import torch
    from torch import nn

    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2), nn.ReLU(), nn.AvgPool2d(3), nn.Flatten(),
        nn.Linear(128, params["head.bias"].size), nn.Tanh(),
    )
    layers = {"conv1": net[0], "conv2": net[2], "head": net[6]}
    with torch.no_grad():
        for key, value in params.items():
            layer, name = key.split(".")
            getattr(layers[layer], name).copy_(torch.from_numpy(value))
    return net.eval()
