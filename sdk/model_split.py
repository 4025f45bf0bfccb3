"""Which data and split an exported model is scored or indexed on: a given split file, else the model's own training
split (the STEM.split.npz export writes beside it) when the data is the data it was trained on, else the default
split. Warnings go to the `logging` logger of this module, under "sadh"."""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .data import DatasetSpec, LabeledImages, Split
from .errors import SadhError
from .formats import model as md

log = logging.getLogger(__name__)


def model_split_path(model: Path) -> Optional[Path]:
    """The training split `export` wrote beside `model` (STEM.split.npz for STEM[.precision...].onnx or .engine), if any."""
    parts = model.name.split(".")
    for n in range(len(parts) - 1, 0, -1):
        candidate = model.with_name(".".join(parts[:n]) + md.SPLIT_SUFFIX)
        if candidate.is_file():
            return candidate
    return None


def load_data(spec: DatasetSpec, strict: bool = True, warn_other_data: bool = True) -> tuple[LabeledImages, Split]:
    """The dataset and split `spec` names (a saved split file wins over the seeded default), with a warning, unless
    `warn_other_data` is False, when the split file records that it was made for data with other labels."""
    data, split = DatasetSpec.load(spec, strict)
    if warn_other_data and split.fits(data.labels) is False:
        log.warning(f"{spec.split} was made for other data (its items had other labels); its query / train / database roles "
                    f"may not be the ones it was made for")
    return data, split


@dataclass(frozen=True)
class ModelData:
    """The data and split to score or index a model with, the dataset settings that name them (`split`: the file
    used, if any), and a line saying which split it is."""

    data: LabeledImages
    split: Split
    spec: DatasetSpec
    split_line: str


def load_for_model(spec: DatasetSpec, encoder: Any) -> ModelData:
    """The data and split to score or index with `encoder` (`sadh.sdk.Encoder`).

    `spec.split` wins; else the model's training split (from its export) when the data is the dataset it was trained on
    (same name, and the labels the split file records it was made for). `split_line` says which split is used; a
    warning is logged when its items may include the model's training images, and one when the data's class names are
    not the model's.
    """
    trained_on = encoder.metadata.get(md.DATASET)
    saved = model_split_path(encoder.path)
    line = ""
    if spec.split is not None:
        data, split = load_data(spec)
        line = f"split: {spec.split} (--split)"
    else:
        loaded, reason = None, f"no training split beside {encoder.path} (sadh-cli export writes one)"
        if saved is not None:
            try:
                loaded = load_data(dataclasses.replace(spec, split=saved), warn_other_data=False)  # checked below
            except SadhError as e:
                reason = f"the model's training split does not fit this data ({e})"
        # a split file older than fingerprints (fits() is None) is matched by the dataset name alone
        if loaded is not None and loaded[0].name == trained_on and loaded[1].fits(loaded[0].labels) is not False:
            (data, split), spec = loaded, dataclasses.replace(spec, split=saved)
            line = f"split: the model's training split {saved} (--split FILE to use another)"
        else:
            data, split = load_data(spec)
            if trained_on and data.name != trained_on:
                reason = f"the model was trained on {trained_on}, not {data.name}"
            elif loaded is not None and not trained_on:
                reason = "the model does not record the dataset it was trained on"
            elif loaded is not None:
                reason = f"the model's training split {saved} was made for another {trained_on} (other items or labels)"
            log.warning(f"{reason}: using the default split of {data.name}, whose items may include the model's training images")
    if encoder.class_names and list(data.class_names) != encoder.class_names:
        log.warning(f"{data.name} has classes {_names(data.class_names)} but the model was trained on {_names(encoder.class_names)}")
    return ModelData(data, split, spec, line)


def _names(names: list[str], shown: int = 4) -> str:
    """A short list of class names: the first `shown` and how many more."""
    more = f", ... ({len(names)} in all)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
