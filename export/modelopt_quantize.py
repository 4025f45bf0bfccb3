"""Optional: the TensorRT-bound Q/DQ model from NVIDIA ModelOpt instead of onnxruntime.quantization
(`pip install nvidia-modelopt[onnx]`); its output is checked by the same Q/DQ rules."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx

from ..sdk.atomic import atomic_write_bytes
from ..sdk.errors import SadhError
from ..sdk.formats import model as keys
from ..sdk.formats.model import with_precision
from .model_meta import read_stamp, stamp

MODELOPT_METHODS = {"minmax": "max", "entropy": "entropy"}


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
    stamp(quantized, with_precision(read_stamp(onnx.load(str(src))), "int8-qdq"))
    atomic_write_bytes(dst, quantized.SerializeToString())
    return quantized
