"""What an export makes and how strictly it checks it: `ExportSettings` and its choices (torch- and onnx-free, so the
CLI reads the defaults without loading the exporter)."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from ..sdk.errors import SadhError, choice


class Calibration(str, Enum):
    """How INT8 calibration picks each tensor's range (onnxruntime's calibration methods)."""

    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


class QdqTool(str, Enum):
    """Who writes the TensorRT-bound Q/DQ model: onnxruntime, or NVIDIA ModelOpt (if installed)."""

    ONNXRUNTIME = "onnxruntime"
    MODELOPT = "modelopt"


@dataclass(frozen=True)
class BatchProfile:
    """The optimisation profile of the dynamic batch axis."""

    min: int = 1
    opt: int = 8
    max: int = 32

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise SadhError(f"batch sizes must satisfy 1 <= min <= opt <= max, got {self.min}/{self.opt}/{self.max}")

    def shapes(self, size: int) -> tuple[tuple[int, int, int, int], ...]:
        """(min, opt, max) input shapes for an input_size x input_size model."""
        return tuple((b, 3, size, size) for b in (self.min, self.opt, self.max))


@dataclass(frozen=True)
class ExportSettings:
    """Which files an export writes beyond the FP32 ONNX model, how INT8 is calibrated, the least fraction of sign
    bits each precision must share with torch, and the TensorRT engines' batch profile."""

    fp16: bool = False
    int8: bool = False
    engine: bool = False
    calib_images: int = 300
    calib_method: str = Calibration.MINMAX.value
    qdq_tool: str = QdqTool.ONNXRUNTIME.value
    parity_threshold: float = 0.999
    fp16_threshold: float = 0.99
    int8_threshold: float = 0.90
    batch: BatchProfile = field(default_factory=BatchProfile)

    def __post_init__(self) -> None:
        object.__setattr__(self, "calib_method", choice(Calibration, self.calib_method, "calibration method"))
        object.__setattr__(self, "qdq_tool", choice(QdqTool, self.qdq_tool, "Q/DQ tool"))
