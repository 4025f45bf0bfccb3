"""Rules a Q/DQ model must follow to build as an explicitly quantised TensorRT engine, and their checker.

TensorRT wants: opset >= 13; only standard QuantizeLinear/DequantizeLinear (no QLinearConv,
ConvInteger, DynamicQuantizeLinear, ...); int8 with zero points 0 (symmetric); per-channel weight
scales along the output-channel axis; per-tensor activation scales; every Conv/Gemm/MatMul fed
quantised weights and quantised activations.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from ..sdk.errors import SadhError

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
