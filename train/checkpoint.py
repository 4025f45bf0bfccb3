"""One checkpoint dict per file (tensors, numbers, strings; no pickled objects), written atomically on rank 0.

Keys: format, model, label_net, optimizer, scheduler, scaler, dictionaries, config, epoch, step,
best_map, history, preprocess (JSON), class_names, dataset, method, backbone, bits, num_classes.
last.pt holds them all (resume); best.pt leaves out TRAINING_ONLY_KEYS (export and inference need none of them:
an EfficientNet-Lite0 best.pt shrinks from 107 to 24 MB). `load_model` rebuilds the image network.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from ..sdk.atomic import atomic_open, interrupts_deferred
from ..sdk.errors import SadhError, first_line
from ..sdk.formats.records import type_in_words, value_fits
from ..sdk.printable import value_text
from ..sdk.preprocess import Preprocess
from .config import TrainConfig
from .backbones.weights import load_torch_file, torch_file_problem
from .model import ImageHashNet, create_model

FORMAT = "sadh-checkpoint-1"
TRAINING_ONLY_KEYS = ("optimizer", "scheduler", "scaler", "label_net")  # what only resuming needs
MODEL_KEYS = ("model", "preprocess", "class_names", "method", "dataset", "backbone", "bits", "num_classes", "best_map")


# the types of the plain fields (checked on load: a hand-edited checkpoint gets a clear error)
FIELD_TYPES: dict[str, Any] = {
    "bits": int, "num_classes": int, "epoch": int, "step": int, "backbone": str, "method": str, "dataset": str,
    "preprocess": str, "class_names": list[str], "best_map": Optional[float], "history": list,
}


@dataclass(frozen=True)
class ModelInfo:
    """What a checkpoint says about its image network (export metadata and the CLI read this)."""

    bits: int
    backbone: str
    num_classes: int
    class_names: list[str]
    preprocess: Preprocess
    method: str
    dataset: str
    best_map: float | None


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """torch.save `state` (plus the format tag) atomically: a temp file beside `path`, then rename over it;
    a Ctrl-C during the write takes effect after it (torch cannot stop a write cleanly)."""
    with interrupts_deferred(), atomic_open(path) as f:
        torch.save({"format": FORMAT, **state}, f)


def without_training_state(state: dict[str, Any]) -> dict[str, Any]:
    """`state` without TRAINING_ONLY_KEYS: what best.pt keeps (the model, its dictionaries and metadata)."""
    return {k: v for k, v in state.items() if k not in TRAINING_ONLY_KEYS}


def load_checkpoint(path: str | os.PathLike, keys: tuple[str, ...] = MODEL_KEYS) -> dict[str, Any]:
    """Read a checkpoint (weights_only) and check it is ours and has `keys`; anything else is a SadhError."""
    path = Path(path)
    if path.is_dir():
        from .run_folder import RunFolder  # here: a run folder's files are read with this module

        raise SadhError(f"{path} is a folder; pass a checkpoint file in it, e.g. {RunFolder(path).best}")
    if not path.is_file():
        raise SadhError(f"checkpoint not found: {path}")
    try:
        state = load_torch_file(path)
    except Exception as e:  # truncated, foreign or pickled-object files all land here
        raise SadhError(f"{path}: not a readable sadh checkpoint ({torch_file_problem(path, e)})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise SadhError(f"{path}: not a sadh checkpoint (expected format {FORMAT!r})")
    missing = [k for k in keys if k not in state]
    if missing:
        raise SadhError(f"{path}: checkpoint lacks {', '.join(missing)}")
    for key in (k for k in keys if k in FIELD_TYPES):
        hint = FIELD_TYPES[key]
        if not value_fits(state[key], hint):
            raise SadhError(f"{path}: checkpoint field {key} must be {type_in_words(hint)}, got {value_text(state[key])}")
    if "class_names" in keys and "num_classes" in keys and len(state["class_names"]) != state["num_classes"]:
        raise SadhError(f"{path}: {len(state['class_names'])} class names for {state['num_classes']} classes")
    return state


def checkpoint_config(state: dict[str, Any], path: str | os.PathLike) -> TrainConfig:
    """The TrainConfig a loaded checkpoint (from `path`) was trained with; SadhError naming the file if it is bad."""
    try:
        return TrainConfig.from_dict(state["config"])
    except SadhError as e:
        raise SadhError(f"{path}: {e}") from None


def model_info(state: dict[str, Any]) -> ModelInfo:
    """The ModelInfo of a loaded checkpoint dict."""
    return ModelInfo(
        bits=int(state["bits"]),
        backbone=str(state["backbone"]),
        num_classes=int(state["num_classes"]),
        class_names=list(state["class_names"]),
        preprocess=Preprocess.from_json(state["preprocess"]),
        method=str(state["method"]),
        dataset=str(state["dataset"]),
        best_map=None if state["best_map"] is None else float(state["best_map"]),
    )


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[ImageHashNet, ModelInfo]:
    """The trained image network (eval mode, on `device`) and its ModelInfo from a checkpoint file."""
    state = load_checkpoint(path)
    try:
        info = model_info(state)
        model = create_model(info.backbone, info.bits, info.num_classes, pretrained=False)
    except SadhError as e:  # e.g. an unknown backbone, bad bits or preprocessing JSON
        raise SadhError(f"{path}: {e}") from None
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError) as e:
        raise SadhError(f"{path}: weights do not fit a {info.backbone} {info.bits}-bit network ({first_line(e)})") from None
    return model.to(device).eval(), info
