"""INT8 calibration: the methods on offer and a data reader over preprocessed training images."""
from __future__ import annotations

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod

from ..sdk.formats import model as keys
from ..sdk.errors import choice
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
