"""Index files with their sidecars as a workflow: build one from a dataset split (resumable), tell whether an earlier
build can be reused, add image files, remove ids, and search with query image files. Each write of an index and its
sidecar is one step (`save_index`). Warnings go to the `logging` logger of this module, under "sadh"."""
from __future__ import annotations

import dataclasses
import filecmp
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence

import numpy as np

from .atomic import interrupts_deferred
from .data import DatasetSpec, LabeledImages, Split
from .data.sources import option_name
from .encoding import Encoded, Progress, encode_items, expand_images, no_progress, partial_path, report_failures
from .errors import SadhError

if TYPE_CHECKING:
    from .encoder import Encoder
    from .formats.index_sidecar import Sidecar
    from .index import HammingIndex

ROLES = ("database", "query", "train", "all")

log = logging.getLogger(__name__)


def check_role(role: str) -> None:
    """SadhError unless `role` is one of ROLES."""
    if role not in ROLES:
        raise SadhError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")


def role_indices(split: Split, n_items: int, role: str) -> np.ndarray:
    """Dataset indices of a split role ("all": every item)."""
    check_role(role)
    return np.arange(n_items, dtype=np.int64) if role == "all" else getattr(split, role)


def dataset_record(spec: DatasetSpec, role: str) -> dict[str, Any]:
    """What a sidecar records of the dataset its items come from: the dataset settings under their option names
    (--seed: "seed"), paths as strings, and the role, so it names its items without paths."""
    settings = {
        option_name(f)[2:].replace("-", "_"): str(value) if isinstance(value, Path) else value
        for f in fields(DatasetSpec)
        for value in [getattr(spec, f.name)]
    }
    return {**settings, "role": role}


def index_encoder(index: Path, bits: int, side: Sidecar | None, model: Optional[Path], batch: int = 64) -> Encoder:
    """The encoder that searches or adds to `index`: `model`, else the one its sidecar names; SadhError if its bits, or
    the trained weights both record, differ."""
    from .encoder import Encoder

    if model is None:
        if side is None or not side.model:
            raise SadhError(f"{index}: no sidecar names the model; pass --model")
        model = Path(side.model)
        if not model.is_file():
            raise SadhError(f"{index}: the model its sidecar names, {model}, is not there (moved?); pass --model")
    encoder = Encoder(model, max_batch=batch)
    if encoder.bits != bits:
        raise SadhError(f"{index} holds {bits}-bit codes but {model} makes {encoder.bits}-bit codes")
    if side is not None and side.weights and encoder.weights and side.weights != encoder.weights:
        raise SadhError(
            f"{model} holds other trained weights than the model that built {index}, so their codes do not compare; "
            "use that model (any precision of its export) or rebuild the index"
        )
    return encoder


def save_index(hindex: HammingIndex, side: Sidecar | None, index: Path) -> None:
    """Write the index and its sidecar as one step (`sadh.sdk.formats.index_sidecar.save_with_sidecar`); a Ctrl-C
    meanwhile takes effect after it."""
    from .formats.index_sidecar import save_with_sidecar

    with interrupts_deferred():
        save_with_sidecar(hindex, side, index)


def build_index(
    encoder: Encoder, data: LabeledImages, index: np.ndarray, out: str | os.PathLike, dataset: dict | None,
    progress: Progress = no_progress,
) -> tuple[HammingIndex, Encoded]:
    """Encode items `index` of `data` (resumable: OUT.partial), write the index (ids = dataset indices) and its sidecar
    (labels, class names, absolute paths, the `dataset` record, the model); return (index, what was encoded)."""
    from .formats.index_sidecar import Sidecar
    from .index import HammingIndex

    out = Path(out)
    encoded = encode_items(encoder, data, index, partial=partial_path(out), progress=progress)
    codes, ids = encoded.codes, encoded.ids
    hindex = HammingIndex(encoder.bits)
    hindex.add(codes, ids)
    side = Sidecar(
        ids=ids.tolist(),
        labels=class_lists(data, ids),
        class_names=list(data.class_names),
        paths=[os.path.abspath(data.paths[i]) for i in ids] if data.paths is not None else None,  # search works from any folder
        dataset=dataset,
        model=str(encoder.path.resolve()),
        weights=encoder.weights,
    )
    with interrupts_deferred():  # a Ctrl-C while writing leaves no partial folder behind a finished index
        save_index(hindex, side, out)
        encoded.discard_partial()
    return hindex, encoded


def class_lists(data: LabeledImages, ids: Sequence[int]) -> list[list[int]]:
    """The class indices of each item `ids` of `data`: the labels as a sidecar holds them."""
    return [np.flatnonzero(data.labels[i]).tolist() for i in ids]


def readable(data: LabeledImages, i: int) -> bool:
    """Whether item i of `data` can be read now."""
    try:
        data.image(i)
    except SadhError:
        return False
    return True


def finished_index(path: Path, model: Path, dataset: dict, data: LabeledImages, items: np.ndarray) -> HammingIndex | None:
    """The index at `path` if an earlier build finished it for these items of `data`, labelled as they are now, with
    this model file (not older than it) and `dataset` record; else None. Items the index skipped must still be
    unreadable."""
    from .formats.index_sidecar import Sidecar
    from .index import HammingIndex

    if not path.is_file() or path.stat().st_mtime < model.stat().st_mtime:
        return None
    try:
        side = Sidecar.of_index(path)
        if side is None:
            return None
        held = set(side.ids)
        ids = [int(i) for i in items]
        same = (side.model == str(model.resolve()) and side.dataset == dataset and side.ids == [i for i in ids if i in held]
                and side.labels == class_lists(data, side.ids)
                and not any(readable(data, i) for i in ids if i not in held))
        return HammingIndex.load(path) if same else None
    except SadhError:  # damaged or stale: build it again
        return None


@contextmanager
def opened_for_writing(index: Path) -> Iterator[tuple[HammingIndex, Sidecar | None]]:
    """The index and its sidecar, read under the index's writer lock, which is held until the block ends (from reading
    the index to renaming its new version: no other writer between); a missing or foreign file is refused before its
    lock file is made."""
    from .formats.index_file import read_header
    from .formats.index_sidecar import Sidecar
    from .index import HammingIndex
    from .locking import writer_lock

    read_header(index)
    with writer_lock(index):
        hindex = HammingIndex.load(index)
        yield hindex, Sidecar.of_index(index, hindex.file_digest)


@dataclass(frozen=True)
class Added:
    """What `add_files` did: the new ids, the index's size after, and the class names it added to the sidecar."""

    ids: np.ndarray
    size: int
    new_classes: list[str]
    known_classes: list[str]


def add_files(
    index: Path, images: Sequence[Path], model: Optional[Path] = None, labels: Sequence[str] = (), batch: int = 64
) -> Added:
    """Encode image files (folders: their images) and add them to `index` and its sidecar, labelled with the class
    names `labels` (a new name adds a class); ids follow the largest id. Files already in the index are skipped (a
    warning); `model` defaults to the one the sidecar names. Holds the index's writer lock throughout."""
    from .atomic import written_before_interrupt

    with opened_for_writing(index) as (hindex, side):
        if side is not None and side.paths is None:
            dataset = side.dataset or {}
            raise SadhError(
                f"{index} indexes items of {dataset.get('data', 'a dataset')} ({dataset.get('role', 'some role')}), not files; "
                "add files to an index built from image files"
            )
        if labels and side is None:
            raise SadhError(f"{index} has no sidecar to record labels in; add without --label")
        new_classes = list(dict.fromkeys(name for name in labels if name not in side.class_names)) if side is not None else []
        if any(not name.strip() for name in labels):
            raise SadhError("--label takes a class name, got an empty one")
        class_names = side.class_names + new_classes if side is not None else []
        classes = sorted({class_names.index(name) for name in labels})
        encoder = index_encoder(index, hindex.bits, side, model, batch)
        built_with = Path(side.model) if side is not None and side.model else None
        unknown_weights = side is None or not side.weights or not encoder.weights  # else index_encoder compared them
        if (unknown_weights and model is not None and built_with is not None and built_with.is_file()
                and not filecmp.cmp(model, built_with, shallow=False)):
            log.warning(f"{model} is not the model file that built {index} ({built_with}): its codes must come from the same network")
        files = expand_images(images)
        known = set(side.paths) if side is not None else set()
        fresh = [f for f in dict.fromkeys(os.path.abspath(f) for f in files) if f not in known]  # each file once
        if not fresh:
            raise SadhError(f"nothing to add: every file given is already in {index}")
        if len(fresh) < len(files):
            log.warning(f"skipped {len(files) - len(fresh)} files already in {index} or given twice")
        files = [Path(f) for f in fresh]
        codes, failures = encoder.encode_files(files)
        bad = report_failures(failures, len(files))
        added = [f for f in map(str, files) if f not in bad]
        ids = hindex.add(codes)
        known_classes = side.class_names if side is not None else []
        if side is not None:
            side = dataclasses.replace(
                side, ids=side.ids + ids.tolist(), labels=side.labels + [classes] * len(ids), paths=side.paths + added,
                class_names=class_names, index_digest=None,
            )
        with written_before_interrupt(f"{index} and its sidecar were written with the {len(ids)} images added"):
            save_index(hindex, side, index)
    return Added(ids, len(hindex), new_classes, known_classes)


def remove_ids(index: Path, ids: Sequence[int]) -> tuple[int, int]:
    """Remove ids from `index` and its sidecar (an id that is not in the index refuses the whole removal); returns
    (ids removed, codes left). Holds the index's writer lock throughout."""
    from .atomic import written_before_interrupt

    wide = next((i for i in ids if not -(2**63) <= i < 2**63), None)
    if wide is not None:
        raise SadhError(f"id {wide} is not in the index (ids are 64-bit integers); nothing was removed")
    with opened_for_writing(index) as (hindex, side):
        removed = hindex.remove(np.array(ids, np.int64))
        if side is not None:
            gone = set(ids)
            keep = [r for r, i in enumerate(side.ids) if i not in gone]
            side = dataclasses.replace(
                side, ids=[side.ids[r] for r in keep], labels=[side.labels[r] for r in keep],
                paths=None if side.paths is None else [side.paths[r] for r in keep], index_digest=None,
            )
        with written_before_interrupt(f"{index} and its sidecar were written with {removed} ids removed"):
            save_index(hindex, side, index)
    return removed, len(hindex)


@dataclass(frozen=True)
class Found:
    """The results of one query image: its path, and the Hamming distances and ids of its nearest items (-1: none)."""

    query: str
    distances: np.ndarray
    ids: np.ndarray


def search_files(
    index: Path, images: Sequence[Path], model: Optional[Path] = None, k: int = 10, mih: bool = False
) -> tuple[list[Found], Sidecar | None, int]:
    """The k nearest indexed items of each readable query image (folders: their images; unreadable ones: a warning),
    with `model` or the one the sidecar names, by a flat scan or multi-index hashing (`mih`); returns (results per query,
    the sidecar or None, the index size)."""
    from .formats.index_sidecar import Sidecar
    from .retriever import load_index

    hindex = load_index(index, "mih" if mih else "flat")
    if not len(hindex):
        log.warning(f"{index} holds no codes: every search comes back empty (sadh-cli index add / index build fill it)")
    side = Sidecar.of_index(index, hindex.file_digest)
    encoder = index_encoder(index, hindex.bits, side, model)
    files = expand_images(images)
    codes, failures = encoder.encode_files(files)
    bad = report_failures(failures, len(files))
    distances, ids = hindex.search(codes, min(k, max(len(hindex), 1)))  # no more rows than the index can fill
    queries = [f for f in map(str, files) if f not in bad]
    return [Found(q, d, i) for q, d, i in zip(queries, distances, ids)], side, len(hindex)
