"""The index sidecar (`<index file>.json`): what the ids of an index stand for, their labels, and their file paths
(folder / list-file datasets) or the dataset spec (in-memory datasets such as Fashion-MNIST).

It records the digest of the index file it was written for, so a stale sidecar (the index was rebuilt or changed
since) is refused on load instead of putting wrong labels and paths on search results.

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
from dataclasses import InitVar, asdict, dataclass
from glob import escape as glob_escape
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from ..atomic import atomic_write_text, remove_stale_temps, sync_folder
from ..errors import SadhError
from ..locking import writer_lock
from .index_file import file_digest, load_arrays, read_header
from .records import SIDECAR_SUFFIX, RecordFormat, sidecar_path

PENDING_SUFFIX = ".pending"


class SavableIndex(Protocol):
    """An index that writes its file (`HammingIndex.save`, `MultiIndexHashingIndex.save`)."""

    def save(self, path: str | os.PathLike, before_replace: Callable[[str], None] | None = None) -> None:
        """Write the index file atomically; `before_replace(digest hex)` runs before it replaces `path`."""


def index_of_sidecar(path: str | os.PathLike) -> Path | None:
    """The index file a sidecar path belongs to (`index.sidx.json` -> `index.sidx`), None for other names."""
    p = Path(path)
    return p.with_name(p.name[: -len(SIDECAR_SUFFIX)]) if p.name.endswith(SIDECAR_SUFFIX) and p.name != SIDECAR_SUFFIX else None


def pending_sidecar_path(index: str | os.PathLike, digest: str) -> Path:
    """Where the new sidecar of index file `index` waits while the index of this digest (hex) replaces the old one."""
    side = sidecar_path(index)
    return side.with_name(f"{side.name}.{digest}{PENDING_SUFFIX}")



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
    _checked: InitVar[bool] = False  # (by `_read`: the fields are those INDEX_SIDECAR.read checked)

    def __post_init__(self, _checked: bool) -> None:
        if not _checked:
            INDEX_SIDECAR.check(vars(self), type(self).__name__)
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
        fields = INDEX_SIDECAR.read(path)
        try:
            return cls(**fields, _checked=True)
        except SadhError as e:  # its fields do not fit together
            raise INDEX_SIDECAR.error(path, e) from None

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
            if digest is not None or file_digest(index) == header.digest:  # not a writer's swap meanwhile
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


INDEX_SIDECAR = RecordFormat.of(Sidecar, "a sadh index sidecar")


def save_with_sidecar(index: SavableIndex, sidecar: Sidecar | None, path: str | os.PathLike) -> None:
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
            if staged and file_digest(path) != bytes.fromhex(staged[0]):  # the index was not replaced: its sidecar goes too
                with contextlib.suppress(FileNotFoundError):
                    pending_sidecar_path(path, staged[0]).unlink()
            raise
        os.replace(pending_sidecar_path(path, staged[0]), sidecar_path(path))
        sync_folder(path.parent)
        _remove_leftovers(path)


def _remove_leftovers(index: Path) -> None:
    """Delete the pending sidecars and temporary files that killed writers of `index` left (hold its writer lock)."""
    side = sidecar_path(index)
    for pending in index.parent.glob(f"{glob_escape(side.name)}.*{PENDING_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            pending.unlink()
    remove_stale_temps(index)
    remove_stale_temps(side)
