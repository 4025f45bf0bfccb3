"""Run a TensorRT engine file (only where `tensorrt` and CUDA's Python bindings are installed).

The engine's sidecar (`sadh.sdk.formats.engine`) holds the sadh metadata (bits, preprocessing, class names)
of the ONNX model it was built from; it must match this machine's GPU model and TensorRT version where it
records them (not for an engine built by the trtexec command export prints), and the engine's input profile
and code width must be those it describes. Calls are serialised: one execution context, one stream.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from .errors import ModelError, SadhError
from .extras import require
from .formats import model as md
from .formats.engine import check_engine_meta, check_engine_shapes, current_gpu_name, read_engine_meta


def _import_trt():
    """(tensorrt, cudart) modules, or SadhError naming what to install (see sdk/extras.py)."""
    return require("tensorrt"), require("cuda.bindings.runtime", "cuda.cudart")  # cuda-python >= 12.6, or its older layout


def _check(result):
    """Unwrap a cuda-python (error, value...) tuple; raise ModelError (no input would fare better) on a CUDA error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise ModelError(f"CUDA error {err}")
    return values[0] if len(values) == 1 else values


class TrtRunner:
    """A deserialised TensorRT engine with the same interface as the encoder's onnxruntime runner."""

    def __init__(self, path: Path) -> None:
        """Load `path` after checking its sidecar against this GPU and TensorRT version, and the engine against its sidecar."""
        trt, self._cudart = _import_trt()
        meta = read_engine_meta(path)
        check_engine_meta(meta, current_gpu_name(), trt.__version__, path)
        self.metadata = dict(meta.metadata)
        self._logger = trt.Logger(trt.Logger.WARNING)
        engine = trt.Runtime(self._logger).deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise SadhError(
                f"{path}: TensorRT {trt.__version__} could not deserialise this engine (built on another GPU model or "
                "TensorRT version?); rebuild it here with `sadh-cli export --engine` (or the trtexec command it prints)"
            )
        self._engine, self._context = engine, engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.output_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self._dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        if md.INPUT_NAME not in names:
            raise SadhError(f"{path}: the engine has no input named {md.INPUT_NAME!r}")
        outputs = {n: tuple(engine.get_tensor_shape(n)) for n in self.output_names}
        check_engine_shapes(meta, [tuple(s) for s in engine.get_tensor_profile_shape(md.INPUT_NAME, 0)], outputs, path)
        self.input_dtype = self._dtypes[md.INPUT_NAME]
        self.input_shape = (None, 3, meta.input_size, meta.input_size)
        self.fixed_batch = None
        self.max_batch = meta.batch_max
        self.providers = ["TensorRT"]
        self._stream = _check(self._cudart.cudaStreamCreate())
        self._lock = threading.Lock()

    def run(self, x: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
        """Run the engine on a preprocessed batch (at most the engine's max batch); return the named outputs."""
        if x.shape[0] > self.max_batch:
            raise SadhError(f"batch of {x.shape[0]} exceeds the engine's maximum batch {self.max_batch}")
        cudart = self._cudart
        x = np.ascontiguousarray(x.astype(self.input_dtype, copy=False))
        with self._lock:
            self._context.set_input_shape(md.INPUT_NAME, x.shape)
            host = {md.INPUT_NAME: x}
            for name in self.output_names:
                host[name] = np.empty(tuple(self._context.get_tensor_shape(name)), self._dtypes[name])
            device = {name: _check(cudart.cudaMalloc(max(1, arr.nbytes))) for name, arr in host.items()}
            try:
                h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
                _check(cudart.cudaMemcpyAsync(device[md.INPUT_NAME], x.ctypes.data, x.nbytes, h2d, self._stream))
                for name, ptr in device.items():
                    self._context.set_tensor_address(name, int(ptr))
                if not self._context.execute_async_v3(self._stream):
                    raise ModelError("TensorRT execution failed")
                for name in self.output_names:
                    _check(cudart.cudaMemcpyAsync(host[name].ctypes.data, device[name], host[name].nbytes, d2h, self._stream))
                _check(cudart.cudaStreamSynchronize(self._stream))
            finally:
                for ptr in device.values():
                    cudart.cudaFree(ptr)
        return [host[name] for name in outputs]
