"""Real images for parity checks (validation/query split) and INT8 calibration (training split)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ..sdk.data import LabeledImages, Split
from ..sdk.errors import SadhError
from ..sdk.preprocess import Preprocess, preprocess
from ..train.checkpoint import load_checkpoint
from ..train.config import TrainConfig
from ..train.run_folder import RunFolder



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
