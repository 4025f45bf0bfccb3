"""`Retriever`: an `Encoder` and a Hamming index used together, saved as one folder (`sadh.sdk.formats.retriever_folder`).

The index is a `HammingIndex` (flat scan) or a `MultiIndexHashingIndex` (same results, sub-linear on large
databases of trained codes); both read and write the same file, so the kind is chosen when an index is
opened (`load_index`), not when it is built. What the ids of an index stand for is its sidecar
(`sadh.sdk.formats.index_sidecar`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .encoder import Encoder
from .errors import SadhError
from .formats.retriever_folder import INDEX_KIND_NAMES, INDEX_NAME, MANIFEST_NAME, read_manifest, write_manifest
from .index import HammingIndex
from .locking import writer_lock
from .mih import MultiIndexHashingIndex
from .preprocess import as_frames

Index = HammingIndex | MultiIndexHashingIndex
INDEX_KINDS: dict[str, type[HammingIndex] | type[MultiIndexHashingIndex]] = dict(
    zip(INDEX_KIND_NAMES, (HammingIndex, MultiIndexHashingIndex))
)
KIND_CHOICES = " or ".join(map(repr, INDEX_KINDS))


def index_class(kind: str) -> type[HammingIndex] | type[MultiIndexHashingIndex]:
    """The index class of a kind name ("flat": `HammingIndex`, "mih": `MultiIndexHashingIndex`); SadhError for others."""
    if not isinstance(kind, str) or kind not in INDEX_KINDS:
        raise SadhError(f"unknown index kind {kind!r}: use {KIND_CHOICES}")
    return INDEX_KINDS[kind]


def kind_of(index: Index) -> str:
    """The kind name of an index object ("flat" or "mih")."""
    return "mih" if isinstance(index, MultiIndexHashingIndex) else "flat"


def load_index(path: str | os.PathLike, kind: str = "flat", mmap: bool = False, verify: bool | None = None) -> Index:
    """Open an index file to search it with the flat scan ("flat") or multi-index hashing ("mih"); see `HammingIndex.load`."""
    return index_class(kind).load(path, mmap=mmap, verify=verify)


class Retriever:
    """Encode images and search them in a Hamming index; `save`/`load` keep model path and index together."""

    def __init__(self, encoder: Encoder, index: Index | None = None) -> None:
        """Pair `encoder` with a `HammingIndex` or `MultiIndexHashingIndex` (default: a new empty flat index of its code length)."""
        index = index if index is not None else HammingIndex(encoder.bits)
        if index.bits != encoder.bits:
            raise SadhError(f"the index holds {index.bits}-bit codes but the model makes {encoder.bits}-bit codes")
        self.encoder, self.index = encoder, index

    def __len__(self) -> int:
        """Number of indexed items."""
        return len(self.index)

    def add_images(self, images: np.ndarray | Iterable[np.ndarray], ids: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Encode frames and add them to the index; return their ids."""
        return self.index.add(self.encoder.encode(images), ids)

    def query(self, image: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest items of one frame: (Hamming distances int32, ids int64), the order of `HammingIndex.search`
        (a `MultiIndexHashingIndex` gives the same results).

        Nearest first and at most k: where the index holds fewer items, the row is shorter (no id -1 padding).
        """
        frames = as_frames(image)
        if len(frames) != 1:
            raise SadhError(f"query takes one frame, got {len(frames)}; encode batches with Encoder.encode and search the index")
        distances, ids = self.index.search(self.encoder.encode(frames), k)
        found = distances[0] <= self.index.bits  # padding has distance bits + 1
        return distances[0][found], ids[0][found]

    def save(self, directory: str | os.PathLike) -> Path:
        """Write `index.sidx` and a `retriever.json` manifest (model path and weights digest, bits, index kind) into
        `directory`; return the manifest."""
        directory = Path(directory)
        with writer_lock(directory / INDEX_NAME):
            self.index.save(directory / INDEX_NAME)
            return write_manifest(directory, self.encoder.path, self.index.bits, kind_of(self.index), self.encoder.weights)

    @classmethod
    def load(
        cls, directory: str | os.PathLike, providers: Sequence[str] | None = None, mmap: bool = False, index_kind: str | None = None,
        model: str | os.PathLike | None = None,
    ) -> "Retriever":
        """Open a folder written by `save`: its index, and `model`, else the model at the path recorded there, else one
        of that file name in the folder (so the folder can be copied to a device together with its model). A model
        whose trained weights differ from those recorded (retrained since) is passed over, or refused when given.

        `index_kind` "flat" or "mih" picks the index class; None: the kind the manifest recorded ("flat" when
        it recorded none, as folders saved before kinds were recorded).
        """
        manifest_path = Path(directory) / MANIFEST_NAME
        manifest = read_manifest(directory)
        recorded, index_name, bits, weights = manifest["model"], manifest["index"], manifest["bits"], manifest.get("weights")
        if index_kind is None:
            index_kind = manifest.get("index_kind", "flat")
        index = load_index(Path(directory) / index_name, index_kind, mmap=mmap)  # before the model: a bad kind fails fast
        if index.bits != bits:
            raise SadhError(f"{manifest_path}: records {bits}-bit codes but its index holds {index.bits}-bit codes")
        candidates = [Path(model)] if model is not None else [
            p for p in dict.fromkeys((Path(recorded), Path(directory) / Path(recorded).name)) if p.is_file()
        ] or [Path(recorded)]
        for path in candidates:
            encoder = Encoder(path, providers)
            if weights is None or encoder.weights in (None, weights):
                return cls(encoder, index)
        raise SadhError(
            f"{manifest_path}: its index was built by a model of other trained weights than {' and '.join(map(str, candidates))} "
            "hold (retrained since?); pass the model that built it as model=, or rebuild the index"
        )
