"""`Retriever`: an `Encoder` and a Hamming index used together, saved as one folder; and the index sidecar.

The index is a `HammingIndex` (flat scan) or a `MultiIndexHashingIndex` (same results, sub-linear on large
databases of trained codes); both read and write the same file, so the kind is chosen when an index is
opened (`load_index`), not when it is built.

The sidecar (`<index file>.json`) says what the ids of an index stand for: their labels, and their
file paths (folder / list-file datasets) or the dataset spec (in-memory datasets such as Fashion-MNIST).
It records the digest of the index file it was written for, so a stale sidecar (the index was rebuilt or
changed since) is refused on load instead of putting wrong labels and paths on search results.

An index and its sidecar change together in one step (`save_with_sidecar`, under the index's writer lock): the new
sidecar is first written in full as `<sidecar>.<digest of the new index>.pending`, then the new index replaces the
old one (the one step: before it the old pair is in force, after it the new one), then the pending sidecar is renamed
into place. Whoever opens the pair reads the pending sidecar named for the index's digest when there is one, so a
writer killed (or a disk filled) between the two renames leaves the new pair, never an index beside a stale sidecar;
the next writer finishes the rename and removes what killed writers left.
"""
from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, fields
from glob import escape as glob_escape
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .atomic import atomic_write_text, remove_stale_temps, sync_folder
from .encoder import Encoder
from .errors import SadhError
from .index import HammingIndex, load_arrays, read_header
from .json_text import parse_json
from .locking import writer_lock
from .metadata import SIDECAR_SUFFIX, sidecar_path  # sidecar_path: also the index sidecar's, re-exported here
from .mih import MultiIndexHashingIndex
from .preprocess import as_frames

MANIFEST_NAME = "retriever.json"
INDEX_NAME = "index.sidx"
FORMAT = "sadh-retriever/1"
Index = HammingIndex | MultiIndexHashingIndex
INDEX_KINDS: dict[str, type[HammingIndex] | type[MultiIndexHashingIndex]] = {"flat": HammingIndex, "mih": MultiIndexHashingIndex}
KIND_CHOICES = " or ".join(map(repr, INDEX_KINDS))
PENDING_SUFFIX = ".pending"


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


def index_of_sidecar(path: str | os.PathLike) -> Path | None:
    """The index file a sidecar path belongs to (`index.sidx.json` -> `index.sidx`), None for other names."""
    p = Path(path)
    return p.with_name(p.name[: -len(SIDECAR_SUFFIX)]) if p.name.endswith(SIDECAR_SUFFIX) and p.name != SIDECAR_SUFFIX else None


def pending_sidecar_path(index: str | os.PathLike, digest: str) -> Path:
    """Where the new sidecar of index file `index` waits while the index of this digest (hex) replaces the old one."""
    side = sidecar_path(index)
    return side.with_name(f"{side.name}.{digest}{PENDING_SUFFIX}")


def _is_list_of(value: Any, kind: type) -> bool:
    """Whether `value` is a list of `kind` values (bools do not count as ints)."""
    return isinstance(value, list) and all(isinstance(v, kind) and not isinstance(v, bool) for v in value)


@dataclass
class Sidecar:
    """What each id of an index stands for: labels (class indices), and a path or a dataset item.

    `weights` is the digest of the trained weights that made the codes (`Encoder.weights`), `index_digest` (hex)
    identifies the index file the sidecar was saved beside; `save` fills it in.
    """

    ids: list[int]
    labels: list[list[int]]
    class_names: list[str]
    paths: list[str] | None = None
    dataset: dict[str, Any] | None = None
    model: str | None = None
    weights: str | None = None
    index_digest: str | None = None

    def __post_init__(self) -> None:
        expected = {
            "ids": ("a list of int", _is_list_of(self.ids, int)),
            "labels": ("a list of lists of int", isinstance(self.labels, list) and all(_is_list_of(r, int) for r in self.labels)),
            "class_names": ("a list of str", _is_list_of(self.class_names, str)),
            "paths": ("null or a list of str", self.paths is None or _is_list_of(self.paths, str)),
            "dataset": ("null or an object", self.dataset is None or isinstance(self.dataset, dict)),
            "model": ("null or a str", self.model is None or isinstance(self.model, str)),
            "weights": ("null or a str", self.weights is None or isinstance(self.weights, str)),
            "index_digest": ("null or a str", self.index_digest is None or isinstance(self.index_digest, str)),
        }
        wrong = [f"{name} must be {kind}" for name, (kind, ok) in expected.items() if not ok]
        if wrong:
            raise SadhError(f"bad sidecar fields: {'; '.join(wrong)}")
        if len(self.labels) != len(self.ids) or (self.paths is not None and len(self.paths) != len(self.ids)):
            raise SadhError(f"sidecar has {len(self.ids)} ids but {len(self.labels)} labels / paths rows")
        if any(not 0 <= c < len(self.class_names) for row in self.labels for c in row):
            raise SadhError(f"sidecar labels refer to classes outside 0..{len(self.class_names) - 1}")
        self._row = {int(i): r for r, i in enumerate(self.ids)}
        if len(self._row) != len(self.ids):
            twice = next(i for i in self.ids if self.ids.count(i) > 1)
            raise SadhError(f"sidecar lists id {twice} more than once")

    def save(self, path: str | os.PathLike) -> None:
        """Write the sidecar as JSON, atomically; beside an existing index file (see `sidecar_path`), for that index as it
        is now (its digest recorded), holding the index's writer lock."""
        index = index_of_sidecar(path)
        if index is None or not index.is_file():
            self._write(path, None)
            return
        with writer_lock(index):
            self._write(path, read_header(index).digest.hex())
            _remove_leftovers(index)  # a pending sidecar of this index would take precedence over this one

    def _write(self, path: str | os.PathLike, index_digest: str | None) -> None:
        """Write the JSON with `index_digest` recorded."""
        atomic_write_text(path, json.dumps({**asdict(self), "index_digest": index_digest}, separators=(",", ":")))

    @classmethod
    def _read(cls, path: str | os.PathLike) -> "Sidecar":
        """Parse a sidecar file (FileNotFoundError when there is none; SadhError when it is not a sidecar)."""
        try:
            d = parse_json(Path(path).read_text(encoding="utf-8"))
            if not isinstance(d, dict):
                raise TypeError(f"a JSON {type(d).__name__}, not an object")
            return cls(**{k: v for k, v in d.items() if k in _SIDECAR_FIELDS})  # fields of later versions are skipped
        except FileNotFoundError:
            raise
        except (OSError, ValueError, TypeError) as e:
            raise SadhError(f"{path}: not a sadh index sidecar ({e})") from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Sidecar":
        """Read a sidecar written by `save`; beside an index file, the one in force for that index (see `of_index`),
        SadhError unless it was written for it."""
        index = index_of_sidecar(path)
        if index is not None and index.is_file():
            side = cls.of_index(index)
            if side is not None:
                return side
        try:
            return cls._read(path)
        except FileNotFoundError:
            raise SadhError(f"{path}: index sidecar not found") from None

    @classmethod
    def of_index(cls, index: str | os.PathLike, digest: str | None = None) -> "Sidecar | None":
        """The sidecar in force for an index file (a pending one named for its digest first, see the module docstring),
        None when it has none; SadhError when it was written for another version of the index.

        `digest`: that of the index as the caller loaded it (`file_digest`); SadhError when the file was replaced since.
        Without it, a pair a writer replaced while it was being read is read again."""
        index = Path(index)
        for _ in range(3):
            header = read_header(index)
            if digest is not None and header.digest.hex() != digest:
                break
            path = pending_sidecar_path(index, header.digest.hex())
            try:
                side = cls._read(path)
            except FileNotFoundError:  # (or renamed into place since it was looked for: then the final one is it)
                path = sidecar_path(index)
                try:
                    side = cls._read(path)
                except FileNotFoundError:
                    return None
            stale = len(side.ids) != header.count or side.index_digest not in (None, header.digest.hex())
            if not stale and side.index_digest is None:  # written before digests were recorded: its ids must be the index's
                stale = not np.array_equal(np.sort(side.ids), np.sort(load_arrays(index, mmap=True, verify=False)[1]))
            if not stale:
                return side
            if digest is not None or _digest_on_disk(index) == header.digest.hex():  # not a writer's swap meanwhile
                raise SadhError(
                    f"{path}: stale index sidecar, written for another version of {index} ({len(side.ids)} ids; "
                    f"the index holds {header.count} codes); rebuild both with `sadh-cli index build`"
                )
        raise SadhError(f"{index} was replaced by another writer while it was being opened; run again")

    def label_names(self, id_: int) -> list[str]:
        """Class names of the item with this id (empty when the id is unknown)."""
        row = self._row.get(int(id_))
        return [] if row is None else [self.class_names[c] for c in self.labels[row]]

    def path(self, id_: int) -> str | None:
        """File path of the item with this id, when the index was built from files."""
        row = self._row.get(int(id_))
        return None if row is None or self.paths is None else self.paths[row]

    def describe(self, id_: int) -> str:
        """`label[,label] path` (or just the labels) for display."""
        labels = ",".join(self.label_names(id_)) or "?"
        path = self.path(id_)
        return f"{labels} {path}" if path else labels


_SIDECAR_FIELDS = {f.name for f in fields(Sidecar)}


def save_with_sidecar(index: Index, sidecar: Sidecar | None, path: str | os.PathLike) -> None:
    """Write an index file and its sidecar as one step, holding the index's writer lock (see the module docstring);
    without a sidecar, just the index."""
    path = Path(path)
    with writer_lock(path):
        if sidecar is None:
            index.save(path)
            return
        staged: list[str] = []  # the new index's digest, once its sidecar is pending

        def stage(digest: str) -> None:
            sidecar._write(pending_sidecar_path(path, digest), digest)
            staged.append(digest)

        try:
            index.save(path, before_replace=stage)
        except BaseException:
            if staged and _digest_on_disk(path) != staged[0]:  # the index was not replaced: its sidecar goes too
                with contextlib.suppress(FileNotFoundError):
                    pending_sidecar_path(path, staged[0]).unlink()
            raise
        os.replace(pending_sidecar_path(path, staged[0]), sidecar_path(path))
        sync_folder(path.parent)
        _remove_leftovers(path)


def _digest_on_disk(index: Path) -> str | None:
    """The digest (hex) of the index file at `index` now, None when there is no valid one."""
    try:
        return read_header(index).digest.hex()
    except SadhError:
        return None


def _remove_leftovers(index: Path) -> None:
    """Delete the pending sidecars and temporary files that killed writers of `index` left (hold its writer lock)."""
    side = sidecar_path(index)
    for pending in index.parent.glob(f"{glob_escape(side.name)}.*{PENDING_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            pending.unlink()
    remove_stale_temps(index)
    remove_stale_temps(side)


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
        manifest = {
            "format": FORMAT, "model": str(self.encoder.path.resolve()), "index": INDEX_NAME, "bits": self.index.bits,
            "index_kind": kind_of(self.index), "weights": self.encoder.weights,
        }
        with writer_lock(directory / INDEX_NAME):
            self.index.save(directory / INDEX_NAME)
            atomic_write_text(directory / MANIFEST_NAME, json.dumps(manifest, indent=2))
        return directory / MANIFEST_NAME

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
        try:
            manifest = parse_json(manifest_path.read_text(encoding="utf-8"))
            recorded, index_name, bits = manifest["model"], manifest["index"], manifest["bits"]
        except FileNotFoundError:
            raise SadhError(f"{directory}: no {MANIFEST_NAME} (not a saved retriever folder)") from None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SadhError(f"{manifest_path}: not a sadh retriever manifest ({e})") from None
        if manifest.get("format") != FORMAT:
            raise SadhError(f"{manifest_path}: unsupported retriever format {manifest.get('format')!r} (expected {FORMAT})")
        weights = manifest.get("weights")
        wrong = [f"{k} must be {kind.__name__}" for k, v, kind in (("model", recorded, str), ("index", index_name, str), ("bits", bits, int))
                 if not isinstance(v, kind) or isinstance(v, bool)]
        if weights is not None and not isinstance(weights, str):
            wrong.append("weights must be str or null")
        if wrong:
            raise SadhError(f"{manifest_path}: bad manifest fields: {'; '.join(wrong)}")
        if index_kind is None:
            index_kind = manifest.get("index_kind", "flat")
            if not isinstance(index_kind, str) or index_kind not in INDEX_KINDS:
                raise SadhError(f"{manifest_path}: unknown index_kind {index_kind!r} (expected {KIND_CHOICES})")
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
