"""The parity gate every exported model passes: real images from the checkpoint's own data, reference codes from the
torch model, codes from the exported model run with onnxruntime on the CPU, and their code differences and sign-bit
agreement (the images and runners also serve INT8 calibration and the report)."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from ..sdk.formats import model as keys
from ..sdk.data import LabeledImages, Split
from ..sdk.errors import SadhError
from ..sdk.preprocess import Preprocess, preprocess
from ..train.checkpoint import load_checkpoint
from ..train.config import TrainConfig
from ..train.run_folder import RunFolder

TORCH_BATCH = 64
CPU_THREADS = 2
ORT_BATCH = 32


def checkpoint_data_config(checkpoint: Path) -> TrainConfig:
    """The data settings a checkpoint was trained with (its saved config; the run's split.npz when present), on defaults."""
    state = load_checkpoint(checkpoint, keys=("config",))
    saved = state["config"] if isinstance(state["config"], dict) else {}
    # only the data settings: the rest of an older run's config need not validate under today's TrainConfig
    saved_split = RunFolder(checkpoint.parent).split_file
    try:
        cfg = replace(TrainConfig(), **{k: saved[k] for k in TrainConfig().dataset_settings() if k in saved})
    except SadhError as e:
        raise SadhError(f"{checkpoint}: bad data settings in its config ({e})") from None
    return replace(cfg, split=str(saved_split)) if cfg.split is None and saved_split.is_file() else cfg


def checkpoint_dataset(checkpoint: Path, image_root: Path | None = None) -> tuple[LabeledImages, Split]:
    """The dataset and split a checkpoint was trained on (see `checkpoint_data_config`); `image_root`: where its list
    files' images are now, when they moved since training."""
    cfg = checkpoint_data_config(checkpoint)
    if image_root is not None:
        cfg = replace(cfg, image_root=str(image_root))
    try:
        return cfg.load()
    except SadhError as e:
        hint = "; if its images moved, pass --image-root" if image_root is None else ""
        raise SadhError(f"{checkpoint}: cannot load its dataset {cfg.data!r} for parity/calibration images ({e}){hint}") from None


def spread(index: np.ndarray, n: int) -> np.ndarray:
    """Up to `n` items of `index`, evenly spaced (deterministic, covers every class of a sorted split)."""
    if n <= 0 or len(index) == 0:
        raise SadhError(f"need at least one image, asked for {n} out of {len(index)}")
    if n >= len(index):
        return index
    return index[np.linspace(0, len(index) - 1, n).round().astype(np.int64)]


def model_inputs(data: LabeledImages, index: np.ndarray, cfg: Preprocess) -> np.ndarray:
    """Preprocessed float32 NCHW model inputs for the items at `index`."""
    return preprocess([data.image(int(i)) for i in index], cfg)


def torch_codes(model: torch.nn.Module, images: np.ndarray, batch: int = TORCH_BATCH) -> np.ndarray:
    """Continuous codes (n, bits) of preprocessed float32 NCHW images from `model.encode` (the reference)."""
    with torch.no_grad():
        parts = [model.encode(torch.from_numpy(images[i : i + batch])).numpy() for i in range(0, len(images), batch)]
    return np.concatenate(parts)


def cpu_session(path: str | os.PathLike, threads: int = CPU_THREADS) -> ort.InferenceSession:
    """An onnxruntime CPU session with `threads` intra-op threads and all graph optimisations."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(os.fspath(path), opts, providers=["CPUExecutionProvider"])


def run_codes(session: ort.InferenceSession, images: np.ndarray, batch: int = ORT_BATCH) -> np.ndarray:
    """Continuous codes (n, bits) for preprocessed float32 NCHW images, `batch` at a time."""
    parts = [
        session.run([keys.CODES_OUTPUT], {keys.INPUT_NAME: images[i : i + batch]})[0]
        for i in range(0, len(images), batch)
    ]
    return np.concatenate(parts).astype(np.float32)


@dataclass(frozen=True)
class Parity:
    """How close exported codes are to the torch codes on the same images."""

    max_abs_diff: float
    bit_agreement: float
    images: int

    def summary(self) -> str:
        """One line, e.g. 'bits 99.98% identical, max |diff| 3.1e-06 (256 images)'."""
        return f"bits {self.bit_agreement:.2%} identical, max |diff| {self.max_abs_diff:.2g} ({self.images} images)"


def compare_codes(reference: np.ndarray, codes: np.ndarray) -> Parity:
    """Compare continuous codes (n, bits) from the exported model with the reference codes."""
    if reference.shape != codes.shape:
        raise SadhError(f"exported model gives codes of shape {codes.shape}, torch gives {reference.shape}")
    return Parity(
        max_abs_diff=float(np.abs(reference - codes).max()),
        bit_agreement=float(np.mean((reference > 0) == (codes > 0))),
        images=len(reference),
    )


def require_parity(parity: Parity, threshold: float, what: str) -> None:
    """Raise SadhError when the codes are not finite (NaN/inf) or fewer than `threshold` of the sign bits agree."""
    if not np.isfinite(parity.max_abs_diff):
        raise SadhError(
            f"{what} fails the parity check: its codes or torch's contain NaN or inf (max |diff| {parity.max_abs_diff}); "
            "the checkpoint's weights are probably broken (retrain, or export an earlier checkpoint)"
        )
    if not parity.bit_agreement >= threshold:
        raise SadhError(
            f"{what} fails the parity check: {parity.summary()}, need >= {threshold:.2%} "
            "(lower the threshold only if you accept the accuracy loss)"
        )
