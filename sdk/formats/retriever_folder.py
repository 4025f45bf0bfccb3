"""A saved `Retriever` folder: the index file `index.sidx` and the manifest `retriever.json` that pairs it with its
model (path and trained-weights digest), code length and index kind."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

from ..atomic import atomic_write_text
from ..errors import SadhError
from .records import RecordFormat, Rule, code_length

MANIFEST_NAME = "retriever.json"
INDEX_NAME = "index.sidx"
FORMAT = "sadh-retriever/1"
INDEX_KIND_NAMES = ("flat", "mih")  # the index classes: HammingIndex, MultiIndexHashingIndex (sadh.sdk.retriever)
MANIFEST = RecordFormat(
    "a sadh retriever manifest",
    {
        "format": Annotated[str, Rule(repr(FORMAT), lambda v: v == FORMAT)],
        "model": str,
        "index": str,
        "bits": Annotated[int, code_length()],
        "index_kind": Annotated[str, Rule(" or ".join(map(repr, INDEX_KIND_NAMES)), lambda v: v in INDEX_KIND_NAMES)],
        "weights": str | None,
    },
    required=("format", "model", "index", "bits"),
)


def write_manifest(directory: str | os.PathLike, model: Path, bits: int, index_kind: str, weights: str | None) -> Path:
    """Write `retriever.json` into `directory` atomically (the model's absolute path); return its path."""
    manifest = {
        "format": FORMAT, "model": str(model.resolve()), "index": INDEX_NAME, "bits": bits, "index_kind": index_kind,
        "weights": weights,
    }
    path = Path(directory) / MANIFEST_NAME
    atomic_write_text(path, json.dumps(manifest, indent=2))
    return path


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """The checked fields of the `retriever.json` in `directory`; SadhError when there is none or it is bad."""
    path = Path(directory) / MANIFEST_NAME
    try:
        return MANIFEST.read(path)
    except FileNotFoundError:
        raise SadhError(f"{directory}: no {MANIFEST_NAME} (not a saved retriever folder)") from None
