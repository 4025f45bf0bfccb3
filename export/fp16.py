"""FP16 ONNX for GPUs: weights and activations in float16, inputs and outputs kept float32."""
from __future__ import annotations

from pathlib import Path

import onnx
from onnxruntime.transformers.float16 import convert_float_to_float16

from ..sdk.atomic import atomic_write_bytes
from ..sdk.errors import SadhError
from ..sdk.formats.model import with_precision
from .model_meta import read_stamp, stamp


def topological_sort(graph: onnx.GraphProto) -> None:
    """Reorder `graph.node` so every node comes after the producers of its inputs (the converter appends casts)."""
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        runnable = [n for n in pending if all(i in ready for i in n.input)]
        if not runnable:
            raise SadhError(f"the FP16 graph has a cycle or a missing input at node {pending[0].name!r}; export without --fp16")
        for node in runnable:
            ready.update(node.output)
        ordered += runnable
        taken = {id(n) for n in runnable}
        pending = [n for n in pending if id(n) not in taken]
    del graph.node[:]
    graph.node.extend(ordered)


def convert_fp16(src: onnx.ModelProto, dst: Path) -> onnx.ModelProto:
    """Write a float16 copy of `src` (keep_io_types: callers still feed and read float32)."""
    half = convert_float_to_float16(src, keep_io_types=True)
    topological_sort(half.graph)
    stamp(half, with_precision(read_stamp(src), "fp16"))
    onnx.checker.check_model(half)
    atomic_write_bytes(dst, half.SerializeToString())
    return half
