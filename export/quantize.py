"""Static INT8 quantisation with onnxruntime.quantization: a TensorRT-bound Q/DQ model and a CPU model.

Both flavours come from one `quant_pre_process`-ed FP32 model and share one calibration pass
(the ranges are cached in `<name>.calib.json`, onnxruntime's calibration cache format).

* int8-qdq (TensorRT, explicit quantisation): QuantizeLinear/DequantizeLinear pairs, int8
  activations and weights, symmetric (zero points 0), per-channel weights, per-tensor activations.
* int8-cpu (onnxruntime on x86/ARM CPUs): U8S8 in the QOperator format (QLinearConv, ...), chosen by
  measurement (see CPU_FLAVOUR).
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from ..sdk.atomic import atomic_write_bytes
from ..sdk.formats.model import with_precision
from .calibration import ImageBatches, calibration_method
from .model_meta import read_stamp, stamp
from .onnx_export import PACK_SCOPE


@dataclass(frozen=True)
class Int8Flavour:
    """One way to quantise: ONNX format, integer types and symmetry."""

    precision: str
    quant_format: QuantFormat
    activation_type: QuantType
    activation_symmetric: bool
    extra: dict = field(default_factory=dict)


# Biases stay float: TensorRT takes no int32 DequantizeLinear (it fuses the bias into the INT8 convolution itself).
TENSORRT_FLAVOUR = Int8Flavour(
    "int8-qdq", QuantFormat.QDQ, QuantType.QInt8, activation_symmetric=True, extra={"QuantizeBias": False}
)
# The CPU format, chosen by measurement (EfficientNet-Lite0 at 224, onnxruntime 1.32 CPU, 2 threads, images/s at
# batch 1 / 32, same calibration, equal accuracy; bench/results/export_bench.json, a heavily shared x86 machine):
# FP32 28 / 29; U8S8 Q/DQ 40 / 41; U8S8 QOperator (QLinearConv & co.) 73 / 91. The lead's earlier machine: FP32
# 173 / 167, U8S8 Q/DQ 162 / 470, U8S8 QOperator 301 / 309, S8S8 Q/DQ 100 / 89. QOperator is the format that is
# fast at both batch sizes on both machines; the bench re-measures both ("cpu_format_candidates").
CPU_FLAVOUR = Int8Flavour("int8-cpu", QuantFormat.QOperator, QuantType.QUInt8, activation_symmetric=False)


def preprocess_for_quantization(src: Path, dst: Path) -> None:
    """Run onnxruntime's quant_pre_process (symbolic shapes, graph optimisation) on `src`."""
    quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)


def pack_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the bit-packing tail's nodes (kept in float: they compute exact integers)."""
    return [n.name for n in model.graph.node if n.name.startswith(f"/{PACK_SCOPE}/")]


def quantize_int8(
    prepared: Path, dst: Path, images: np.ndarray, flavour: Int8Flavour, method: str, calib_cache: Path
) -> onnx.ModelProto:
    """Quantise the pre-processed FP32 model `prepared` into `dst` with ranges from `images` (cached)."""
    model = onnx.load(str(prepared))
    with tempfile.TemporaryDirectory(prefix="sadh-int8-") as tmp:
        out = Path(tmp) / "model.onnx"
        quantize_static(
            str(prepared),
            str(out),
            ImageBatches(images),
            quant_format=flavour.quant_format,
            activation_type=flavour.activation_type,
            weight_type=QuantType.QInt8,
            per_channel=True,
            nodes_to_exclude=pack_nodes(model),
            calibrate_method=calibration_method(method),
            calibration_cache_path=str(calib_cache),
            extra_options={
                "ActivationSymmetric": flavour.activation_symmetric,
                "WeightSymmetric": True,
                "CalibStridedMinMax": 1,
                **flavour.extra,
            },
        )
        quantized = onnx.load(str(out))
    stamp(quantized, with_precision(read_stamp(model), flavour.precision))
    atomic_write_bytes(dst, quantized.SerializeToString())
    return quantized
