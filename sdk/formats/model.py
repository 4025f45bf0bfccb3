"""The sadh metadata of an exported model: its keys, the graph's input/output names, how the exporter builds the
metadata (`model_metadata`) and how the runtime reads it (`read_model_metadata`), torch-free.

Every exported ONNX model holds these as `metadata_props` (string values); a TensorRT engine's sidecar holds the
same mapping (`sadh.sdk.formats.engine`).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Annotated, Any, Mapping, Protocol, Sequence

from ..json_text import parse_json
from ..preprocess import Preprocess
from .records import RecordFormat, Rule, code_length

PREFIX = "sadh."
BITS = "sadh.bits"  # int, code length
PREPROCESS = "sadh.preprocess"  # Preprocess.to_json(): input_size, resize_size, mean, std, channel_order
CLASS_NAMES = "sadh.class_names"  # JSON list of str
METHOD = "sadh.method"  # sadh | dpsh | csq
BACKBONE = "sadh.backbone"  # e.g. efficientnet_lite0, resnet18, small_cnn
DATASET = "sadh.dataset"  # training dataset name
PRECISION = "sadh.precision"  # fp32 | fp16 | int8-qdq (TensorRT) | int8-cpu (onnxruntime)
VERSION = "sadh.version"  # sadh package version that wrote the file
WEIGHTS = "sadh.weights"  # blake2b-128 hex of the trained weights: the same in every precision of one export
PRECISIONS = ("fp32", "fp16", "int8-qdq", "int8-cpu")
SPLIT_SUFFIX = ".split.npz"  # export writes STEM.split.npz (the training split) beside STEM.onnx, STEM.int8-cpu.onnx, ...

INPUT_NAME = "images"  # float32 [N, 3, S, S], normalised RGB (see sadh.sdk.preprocess)
CODES_OUTPUT = "codes"  # float32 [N, bits], continuous tanh code; sign gives the hash
PACKED_OUTPUT = "packed"  # optional uint8 [N, bits/8], np.packbits order of (codes > 0)


def _is_preprocess(text: str) -> bool:
    """True if `text` is `Preprocess.to_json()` output, else SadhError saying why not."""
    return isinstance(Preprocess.from_json(text), Preprocess)


def _is_names(text: str) -> bool:
    """Whether `text` is a JSON list of str."""
    try:
        names = parse_json(text)
    except ValueError:
        return False
    return isinstance(names, list) and all(isinstance(n, str) for n in names)


MODEL_FORMAT = RecordFormat(
    "an exported sadh model",
    {
        BITS: Annotated[str, code_length()],
        PREPROCESS: Annotated[str, Rule("JSON preprocessing constants (input_size, resize_size, mean, std)", _is_preprocess)],
        CLASS_NAMES: Annotated[str, Rule("a JSON list of str", _is_names)],
        METHOD: str, BACKBONE: str, DATASET: str, PRECISION: str, VERSION: str, WEIGHTS: str,
    },
    required=(BITS, PREPROCESS),
    advice="export it with `sadh-cli export` (it records bits and preprocessing)",
)


class TrainedModel(Protocol):
    """What the metadata records of a trained model (`sadh.train.checkpoint.ModelInfo` has it)."""

    bits: int
    preprocess: Preprocess
    class_names: Sequence[str]
    method: str
    backbone: str
    dataset: str


@dataclass(frozen=True)
class ModelMeta:
    """What the runtime takes from a model's metadata: code length, preprocessing, class names (empty: unrecorded)."""

    bits: int
    preprocess: Preprocess
    class_names: list[str]


def sadh_version() -> str:
    """The installed sadh package version."""
    from importlib import metadata  # (here: importing it costs `import sadh.sdk` tens of milliseconds)

    return metadata.version("sadh")


def with_precision(meta: Mapping[str, str], precision: str) -> dict[str, str]:
    """A copy of `meta` for another precision."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}")
    return {**meta, PRECISION: precision}


def model_metadata(info: TrainedModel, precision: str, weights: str) -> dict[str, str]:
    """The metadata of an exported model, as strings: what `info` says about the trained model, its precision and the
    digest of its trained weights."""
    base = {
        BITS: str(int(info.bits)),
        PREPROCESS: info.preprocess.to_json(),
        CLASS_NAMES: json.dumps(list(info.class_names)),
        METHOD: str(info.method),
        BACKBONE: str(info.backbone),
        DATASET: str(info.dataset),
        VERSION: sadh_version(),
        WEIGHTS: weights,
    }
    meta = with_precision(base, precision)
    MODEL_FORMAT.check(meta, "the exported model")
    return meta


def read_model_metadata(meta: Mapping[str, str], where: str | os.PathLike) -> ModelMeta:
    """Check a model's metadata (of the model at `where`) and read what the runtime needs; SadhError naming the field."""
    checked = MODEL_FORMAT.check(meta, where)
    names = parse_json(checked[CLASS_NAMES]) if CLASS_NAMES in checked else []
    return ModelMeta(int(checked[BITS]), Preprocess.from_json(checked[PREPROCESS]), names)


class HasMetadataProps(Protocol):
    """An ONNX ModelProto, as far as its metadata goes (the runtime needs no onnx package)."""

    metadata_props: Any


def stamp(model: HasMetadataProps, meta: Mapping[str, str]) -> HasMetadataProps:
    """Replace an ONNX model's sadh.* metadata_props by `meta` (other entries are kept); returns the model."""
    kept = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    for key, value in kept + list(meta.items()):
        model.metadata_props.add(key=key, value=value)
    return model


def read_stamp(model: HasMetadataProps) -> dict[str, str]:
    """The sadh.* metadata_props of an ONNX model."""
    return {p.key: p.value for p in model.metadata_props if p.key.startswith(PREFIX)}
