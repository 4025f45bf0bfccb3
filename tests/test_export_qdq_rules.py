"""The TensorRT Q/DQ validator: a compliant hand-built model passes; each deliberately broken one is caught."""
from __future__ import annotations

import re
from typing import Callable

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sadh.export.int8 import check_qdq, qdq_violations
from sadh.sdk.errors import SadhError

C_IN, C_OUT = 3, 4


def _init(name: str, value: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def qdq_conv_model(
    *,
    act_zero: np.ndarray = np.int8(0),
    act_scale: np.ndarray = np.float32(0.02),
    weight_scale: np.ndarray | None = None,
    weight_axis: int = 0,
    weight_quantized: bool = True,
    input_quantized: bool = True,
    extra_nodes: tuple[onnx.NodeProto, ...] = (),
    opset: int = 17,
) -> onnx.ModelProto:
    """images -> Q -> DQ -> Conv(DQ(int8 weight)) -> out: a compliant Q/DQ model unless told otherwise."""
    weight_scale = np.full(C_OUT, 0.01, np.float32) if weight_scale is None else weight_scale
    inits = [
        _init("act_scale", act_scale), _init("act_zero", act_zero),
        _init("w_q", np.ones((C_OUT, C_IN, 3, 3), np.int8)), _init("w_scale", weight_scale),
        _init("w_zero", np.zeros(weight_scale.shape, np.int8)), _init("w_float", np.ones((C_OUT, C_IN, 3, 3), np.float32)),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["images", "act_scale", "act_zero"], ["xq"], name="q_in"),
        helper.make_node("DequantizeLinear", ["xq", "act_scale", "act_zero"], ["xdq"], name="dq_in"),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], name="dq_w", axis=weight_axis),
        helper.make_node(
            "Conv", ["xdq" if input_quantized else "images", "w" if weight_quantized else "w_float"], ["out"], name="conv"
        ),
        *extra_nodes,
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["n", C_IN, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", C_OUT, 6, 6])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def qdq_gemm_model(weight_axis: int) -> onnx.ModelProto:
    """images (n, K) -> Q -> DQ -> Gemm(transB=0) with an int8 (K, N) weight quantised per channel along `weight_axis`."""
    k, n = 6, 5
    scale = np.full(n if weight_axis == 1 else k, 0.01, np.float32)
    inits = [
        _init("act_scale", np.float32(0.02)), _init("act_zero", np.int8(0)),
        _init("w_q", np.ones((k, n), np.int8)), _init("w_scale", scale), _init("w_zero", np.zeros(scale.shape, np.int8)),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["images", "act_scale", "act_zero"], ["xq"], name="q_in"),
        helper.make_node("DequantizeLinear", ["xq", "act_scale", "act_zero"], ["xdq"], name="dq_in"),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], name="dq_w", axis=weight_axis),
        helper.make_node("Gemm", ["xdq", "w"], ["out"], name="gemm", transB=0),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["n", k])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", n])], inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_gemm_weight_channels_follow_trans_b() -> None:
    assert qdq_violations(qdq_gemm_model(weight_axis=1)) == []  # (K, N) weight, transB=0: output channels are axis 1
    assert any(re.search(r"'gemm'.*need per-channel \(5 output channels\)", line) for line in qdq_violations(qdq_gemm_model(weight_axis=0)))


def test_a_weight_quantised_in_the_graph_is_a_weight_not_an_activation() -> None:
    model = qdq_conv_model()
    w_q = next(n for n in model.graph.node if n.name == "dq_w")
    w_q.input[0] = "w_q_runtime"  # the int8 weight now comes from a QuantizeLinear of the float weight, not a constant
    model.graph.node.insert(0, helper.make_node("QuantizeLinear", ["w_float", "w_scale", "w_zero"], ["w_q_runtime"], name="q_w", axis=0))
    assert qdq_violations(model) == []  # per-channel scales are right for a weight (an activation would need per-tensor)


def test_compliant_model_passes_and_runs() -> None:
    model = qdq_conv_model()
    onnx.checker.check_model(model)
    assert qdq_violations(model) == []
    check_qdq(model)


BROKEN: dict[str, tuple[Callable[[], onnx.ModelProto], str]] = {
    "asymmetric activation zero point": (lambda: qdq_conv_model(act_zero=np.int8(3)), r"'q_in'.*not 0 \(asymmetric\)"),
    "uint8 activation": (lambda: qdq_conv_model(act_zero=np.uint8(128)), r"'q_in'.*uint8"),
    "per-tensor weight": (lambda: qdq_conv_model(weight_scale=np.array([0.01], np.float32)), r"'conv'.*per-channel"),
    "per-channel along the wrong axis": (lambda: qdq_conv_model(weight_axis=1), r"'conv'.*axis 1.*axis 0"),
    "per-channel activation": (
        lambda: qdq_conv_model(act_scale=np.full(C_IN, 0.02, np.float32), act_zero=np.zeros(C_IN, np.int8)),
        r"'q_in'.*per-tensor",
    ),
    "zero scale": (lambda: qdq_conv_model(act_scale=np.float32(0.0)), r"'q_in'.*scale must be finite and > 0"),
    "unquantised Conv weight": (lambda: qdq_conv_model(weight_quantized=False), r"'conv'.*weight 'w_float' is not quantised"),
    "unquantised Conv input": (lambda: qdq_conv_model(input_quantized=False), r"'conv'.*input 'images' is not quantised"),
    "opset too low": (lambda: qdq_conv_model(opset=12), r"opset 12 is below 13"),
    "QLinearConv present": (
        lambda: qdq_conv_model(extra_nodes=(helper.make_node("QLinearConv", ["a", "b", "c", "d", "e", "f", "g", "h"], ["y"], name="qlc"),)),
        r"'qlc' \(QLinearConv\)",
    ),
    "ConvInteger present": (
        lambda: qdq_conv_model(extra_nodes=(helper.make_node("ConvInteger", ["a", "b"], ["y"], name="ci"),)),
        r"'ci' \(ConvInteger\)",
    ),
    "DynamicQuantizeLinear present": (
        lambda: qdq_conv_model(extra_nodes=(helper.make_node("DynamicQuantizeLinear", ["images"], ["y", "s", "z"], name="dql"),)),
        r"'dql' \(DynamicQuantizeLinear\)",
    ),
    "contrib-domain QuantizeLinear": (
        lambda: qdq_conv_model(extra_nodes=(
            helper.make_node("QuantizeLinear", ["images", "act_scale", "act_zero"], ["y"], name="msq", domain="com.microsoft"),
        )),
        r"'msq'.*not standard ONNX",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_each_violation_is_caught_and_names_the_node(case: str) -> None:
    build, pattern = BROKEN[case]
    found = qdq_violations(build())
    assert any(re.search(pattern, line) for line in found), found
    with pytest.raises(SadhError, match="not a valid TensorRT Q/DQ model"):
        check_qdq(build(), "broken.onnx")


def test_float_model_is_not_a_qdq_model() -> None:
    model = qdq_conv_model(weight_quantized=False, input_quantized=False)
    del model.graph.node[:3]
    assert any("no QuantizeLinear/DequantizeLinear" in line for line in qdq_violations(model))
