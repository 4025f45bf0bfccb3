"""INT8 models: a TensorRT-bound Q/DQ model and a CPU model by static quantisation with onnxruntime.quantization (or
the Q/DQ model from NVIDIA ModelOpt), their calibration on preprocessed training images, and the rules the Q/DQ model
must follow to build as an explicitly quantised TensorRT engine.

Both onnxruntime flavours come from one `quant_pre_process`-ed FP32 model and share one calibration pass
(the ranges are cached in `<name>.calib.json`, onnxruntime's calibration cache format).

* int8-qdq (TensorRT, explicit quantisation): QuantizeLinear/DequantizeLinear pairs, int8
  activations and weights, symmetric (zero points 0), per-channel weights, per-tensor activations.
* int8-cpu (onnxruntime on x86/ARM CPUs): U8S8 in the QOperator format (QLinearConv, ...), chosen by
  measurement (see CPU_FLAVOUR).

ModelOpt (optional, `pip install nvidia-modelopt[onnx]`) can write the int8-qdq model instead; every Q/DQ model is
checked by the same rules. TensorRT wants: opset >= 13; only standard QuantizeLinear/DequantizeLinear (no QLinearConv,
ConvInteger, DynamicQuantizeLinear, ...); int8 with zero points 0 (symmetric); per-channel weight
scales along the output-channel axis; per-tensor activation scales; every Conv/Gemm/MatMul fed
quantised weights and quantised activations.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from ..sdk.atomic import atomic_write_bytes
from ..sdk.errors import SadhError, choice
from ..sdk.formats import model as keys
from ..sdk.formats.model import read_stamp, stamp, with_precision
from .onnx_model import PACK_SCOPE
from .settings import Calibration

CALIB_METHODS = {
    Calibration.MINMAX.value: CalibrationMethod.MinMax,
    Calibration.ENTROPY.value: CalibrationMethod.Entropy,
    Calibration.PERCENTILE.value: CalibrationMethod.Percentile,
}
CALIB_BATCH = 10


def calibration_method(name: str) -> CalibrationMethod:
    """The onnxruntime calibration method called `name` (a Calibration)."""
    return CALIB_METHODS[choice(Calibration, name, "calibration method")]


class ImageBatches(CalibrationDataReader):
    """Feeds preprocessed images in batches; supports set_range so calibration memory stays bounded."""

    def __init__(self, images: np.ndarray, batch: int = CALIB_BATCH) -> None:
        self.batches = [images[i : i + batch] for i in range(0, len(images), batch)]
        self.set_range(0, len(self.batches))

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Restrict the next pass to batches [start_index, end_index)."""
        self._iter = iter(self.batches[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch as an input feed, or None at the end."""
        batch = next(self._iter, None)
        return None if batch is None else {keys.INPUT_NAME: batch}

    def rewind(self) -> None:
        """Start again from the first batch."""
        self.set_range(0, len(self.batches))


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


MODELOPT_METHODS = {Calibration.MINMAX.value: "max", Calibration.ENTROPY.value: "entropy"}


def modelopt_available() -> bool:
    """True when NVIDIA ModelOpt's ONNX quantiser can be imported."""
    try:
        import modelopt.onnx.quantization  # noqa: F401
    except ImportError:
        return False
    return True


def quantize_qdq_modelopt(src: Path, dst: Path, images: np.ndarray, method: str, exclude: list[str]) -> onnx.ModelProto:
    """INT8 Q/DQ model of `src` calibrated on `images` with ModelOpt (float32 kept outside the Q/DQ pairs)."""
    if not modelopt_available():
        raise SadhError("NVIDIA ModelOpt is not installed: pip install 'nvidia-modelopt[onnx]', or use the default quantiser")
    if method not in MODELOPT_METHODS:
        raise SadhError(f"ModelOpt calibrates with {' | '.join(MODELOPT_METHODS)}, not {method!r}")
    from modelopt.onnx.quantization import quantize

    with tempfile.TemporaryDirectory(prefix="sadh-modelopt-") as tmp:
        out = Path(tmp) / "model.onnx"
        quantize(
            str(src),
            quantize_mode="int8",
            calibration_data={keys.INPUT_NAME: images},
            calibration_method=MODELOPT_METHODS[method],
            calibration_eps=["cpu"],
            nodes_to_exclude=exclude,
            high_precision_dtype="fp32",
            output_path=str(out),
        )
        quantized = onnx.load(str(out))
    stamp(quantized, with_precision(read_stamp(onnx.load(str(src))), TENSORRT_FLAVOUR.precision))
    atomic_write_bytes(dst, quantized.SerializeToString())
    return quantized


MIN_QDQ_OPSET = 13
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
FORBIDDEN_OPS = frozenset(
    {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul", "QGemm", "QAttention"}
)
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
DEFAULT_DOMAINS = ("", "ai.onnx")


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Initializers and Constant-node outputs by tensor name."""
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    consts[node.output[0]] = numpy_helper.to_array(attr.t)
    return consts


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _output_axis(node: onnx.NodeProto, weight: np.ndarray) -> int:
    """The output-channel axis of a weight for its consuming node."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type == "Gemm":
        return 0 if _attr(node, "transB", 0) else 1
    return weight.ndim - 1  # MatMul: (..., K, N)


def _opset(model: onnx.ModelProto) -> int:
    return max((o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), default=0)


def _check_qdq_node(node: onnx.NodeProto, consts: dict[str, np.ndarray], is_weight: bool) -> list[str]:
    """Violations of one QuantizeLinear/DequantizeLinear node."""
    where = f"node {node.name!r} ({node.op_type})"
    found = []
    if node.domain not in DEFAULT_DOMAINS:
        found.append(f"{where}: domain {node.domain!r} is not standard ONNX")
    scale = consts.get(node.input[1]) if len(node.input) > 1 else None
    if scale is None:
        found.append(f"{where}: scale is not a constant")
    elif not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
        found.append(f"{where}: scale must be finite and > 0")
    elif not is_weight and scale.size != 1:
        found.append(f"{where}: activation scale has {scale.size} values, TensorRT needs per-tensor")
    zero = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if zero is None:
        found.append(f"{where}: no constant zero point (the default is uint8; need int8 zeros)")
    elif zero.dtype != np.int8:
        found.append(f"{where}: zero point is {zero.dtype}, TensorRT needs int8")
    elif np.any(zero != 0):
        found.append(f"{where}: zero point {zero.ravel()[:4].tolist()} is not 0 (asymmetric)")
    return found


def _check_weighted_node(
    node: onnx.NodeProto, producers: dict[str, onnx.NodeProto], consts: dict[str, np.ndarray]
) -> list[str]:
    """Violations of one Conv/ConvTranspose/Gemm/MatMul: quantised input, per-channel quantised weight."""
    where = f"node {node.name!r} ({node.op_type})"
    if len(node.input) < 2:
        return []
    act, weight = (producers.get(node.input[0]), producers.get(node.input[1]))
    if node.input[1] in consts:
        return [f"{where}: weight {node.input[1]!r} is not quantised (float weight, no DequantizeLinear)"]
    if weight is None or weight.op_type != "DequantizeLinear" or weight.input[0] not in consts:
        return []  # both inputs are activations (not a weighted layer here)
    found = []
    if act is None or act.op_type != "DequantizeLinear":
        found.append(f"{where}: input {node.input[0]!r} is not quantised (no DequantizeLinear before it)")
    w = consts[weight.input[0]]
    scale = consts.get(weight.input[1])
    axis = _output_axis(node, w) % w.ndim
    channels = w.shape[axis]
    if scale is not None and (scale.size != channels or scale.ndim != 1):
        found.append(f"{where}: weight scale has {scale.size} value(s), need per-channel ({channels} output channels)")
    elif scale is not None and _attr(weight, "axis", 1) % w.ndim != axis:
        found.append(f"{where}: weight quantised along axis {_attr(weight, 'axis', 1)}, output channels are axis {axis}")
    return found


def qdq_violations(model: onnx.ModelProto) -> list[str]:
    """Every way `model` breaks the TensorRT Q/DQ rules, one line each naming the node (empty: it complies)."""
    graph = model.graph
    consts = _constants(graph)
    producers = {out: node for node in graph.node for out in node.output}
    found = []
    opset = _opset(model)
    if opset < MIN_QDQ_OPSET:
        found.append(f"model: opset {opset} is below {MIN_QDQ_OPSET} (per-channel Q/DQ needs >= {MIN_QDQ_OPSET})")
    weight_dq = set()
    for node in graph.node:
        if node.op_type in WEIGHTED_OPS and len(node.input) > 1 and node.input[1] in producers:
            weight_dq.add(producers[node.input[1]].name)
    for node in graph.node:
        if node.op_type in FORBIDDEN_OPS or node.op_type.startswith("QLinear"):
            found.append(f"node {node.name!r} ({node.op_type}): operator not allowed in a TensorRT Q/DQ model")
        elif node.op_type in QDQ_OPS:
            is_weight = node.name in weight_dq or node.input[0] in consts
            found += _check_qdq_node(node, consts, is_weight)
        elif node.op_type in WEIGHTED_OPS:
            found += _check_weighted_node(node, producers, consts)
    if not any(n.op_type in QDQ_OPS for n in graph.node):
        found.append("model: no QuantizeLinear/DequantizeLinear nodes (not a Q/DQ model)")
    return found


def check_qdq(model: onnx.ModelProto, what: str = "model") -> None:
    """Raise SadhError listing the violations when `model` breaks the TensorRT Q/DQ rules."""
    found = qdq_violations(model)
    if found:
        shown = "; ".join(found[:3]) + (f"; and {len(found) - 3} more" if len(found) > 3 else "")
        raise SadhError(f"{what} is not a valid TensorRT Q/DQ model ({len(found)} violation(s)): {shown}")
