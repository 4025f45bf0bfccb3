"""The ONNX models: the image network's inference path (images -> codes [, packed bits]) exported as FP32, and its
FP16 copy for GPUs (weights and activations in float16, inputs and outputs kept float32).

The FP32 export uses the TorchScript-based exporter (``dynamo=False``): on torch 2.13 it exports these CNNs in
~0.2 s at any opset >= 17, while the torch.export-based one takes seconds and round-trips through
a version converter. A failure is reported naming the layer that caused it.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import warnings
from pathlib import Path
from typing import Any, Iterator

import onnx
import torch
from onnxruntime.transformers.float16 import convert_float_to_float16
from torch import nn

from ..sdk.atomic import atomic_write_bytes
from ..sdk.errors import SadhError, first_line
from ..sdk.formats import model as keys
from ..sdk.formats.model import model_metadata, read_stamp, stamp, with_precision

DEFAULT_OPSET = 17
MIN_OPSET = 17
PACK_SCOPE = "pack"  # module name of the bit-packing tail; its nodes are named /pack/... in the graph


def weights_digest(model: nn.Module) -> str:
    """blake2b-128 hex of a torch model's parameters and buffers (names, dtypes, shapes, values): which trained weights
    it is."""
    h = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class PackBits(nn.Module):
    """codes (n, bits) -> uint8 (n, bits/8): bit = code > 0, first bit in the most significant place."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.nbytes = bits // 8
        self.register_buffer("place", 2.0 ** torch.arange(7, -1, -1, dtype=torch.float32), persistent=False)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """Pack the signs of `codes` (np.packbits order)."""
        bits = (codes > 0).to(codes.dtype).reshape(-1, self.nbytes, 8)
        return (bits * self.place.to(codes.dtype)).sum(-1).to(torch.uint8)


class InferenceGraph(nn.Module):
    """What gets exported: images -> continuous codes, and optionally their packed sign bits."""

    def __init__(self, model: nn.Module, bits: int, packed: bool) -> None:
        super().__init__()
        self.model = model
        self.pack = PackBits(bits) if packed else None

    def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Encode a batch of images."""
        codes = self.model.encode(images)
        return codes if self.pack is None else (codes, self.pack(codes))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's deprecation chatter (the TorchScript exporter is still supported in 2.13)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


Trace = list[tuple[str, nn.Module, tuple]]  # (qualified name, module, its inputs) in completion order


def _trace_modules(model: nn.Module, example: torch.Tensor) -> tuple[Trace, BaseException | None, str]:
    """Run `model` once: the modules it ran, the error it raised (if any) and the innermost layer running then."""
    done: list[tuple[str, nn.Module, tuple]] = []
    stack: list[str] = []
    names = {id(m): n or type(m).__name__ for n, m in model.named_modules()}

    def enter(module: nn.Module, args: tuple) -> None:
        stack.append(names[id(module)])

    def leave(module: nn.Module, args: tuple, output: Any) -> None:
        stack.pop()
        done.append((names[id(module)], module, args))

    handles = [h for m in model.modules() for h in (m.register_forward_pre_hook(enter), m.register_forward_hook(leave))]
    try:
        with torch.no_grad():
            model(example)
        error = None
    except Exception as e:  # noqa: BLE001 - any failure is reported with the layer it happened in
        error = e
    finally:
        for h in handles:
            h.remove()
    return done, error, stack[-1] if stack else "?"


def _export_bytes(module: nn.Module, args: tuple, opset: int, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    with _quiet(), torch.no_grad():
        torch.onnx.export(module, args, buf, dynamo=False, opset_version=opset, do_constant_folding=True, **kwargs)
    return buf.getvalue()


def _failing_layer(graph: nn.Module, example: torch.Tensor, opset: int) -> str:
    """The deepest module that cannot be exported on its own, as 'name (Type): reason'."""
    for name, module, args in _trace_modules(graph, example)[0]:
        if not args or not all(isinstance(a, torch.Tensor) for a in args):
            continue
        try:
            _export_bytes(module, args, opset)
        except Exception as e:  # noqa: BLE001
            return f"layer {name!r} ({type(module).__name__}): {first_line(e)}"
    return "no single layer fails on its own"


def export_onnx(model: nn.Module, info: Any, path: Path, *, packed: bool = True, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Export `model.encode` at the checkpoint's input size with a dynamic batch axis, stamped with `info`."""
    if opset < MIN_OPSET:
        raise SadhError(f"opset {opset} is too old: use {MIN_OPSET} or newer")
    size = info.preprocess.input_size
    graph = InferenceGraph(model, info.bits, packed).eval()
    example = torch.zeros(2, 3, size, size)
    _, error, name = _trace_modules(graph, example)
    if error is not None:
        raise SadhError(f"the model fails on a {size}x{size} input in layer {name!r}: {first_line(error)}")
    outputs = [keys.CODES_OUTPUT] + ([keys.PACKED_OUTPUT] if packed else [])
    try:
        data = _export_bytes(
            graph,
            (example,),
            opset,
            input_names=[keys.INPUT_NAME],
            output_names=outputs,
            dynamic_axes={n: {0: "batch"} for n in [keys.INPUT_NAME, *outputs]},
        )
    except Exception as e:  # noqa: BLE001 - exporter errors are many types; report the layer
        raise SadhError(f"ONNX export at opset {opset} failed in {_failing_layer(graph, example, opset)}") from e
    proto = onnx.load_from_string(data)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise SadhError(f"the exported ONNX model is invalid: {first_line(e)}") from None
    stamp(proto, model_metadata(info, "fp32", weights_digest(model)))
    atomic_write_bytes(path, proto.SerializeToString())
    return proto


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
