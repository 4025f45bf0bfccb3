"""Reference codes from the torch model, the baseline every exported model is compared with."""
from __future__ import annotations

import numpy as np
import torch

TORCH_BATCH = 64


def torch_codes(model: torch.nn.Module, images: np.ndarray, batch: int = TORCH_BATCH) -> np.ndarray:
    """Continuous codes (n, bits) of preprocessed float32 NCHW images from `model.encode`."""
    with torch.no_grad():
        parts = [model.encode(torch.from_numpy(images[i : i + batch])).numpy() for i in range(0, len(images), batch)]
    return np.concatenate(parts)
