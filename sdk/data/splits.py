"""Query / train / database splits: seeded builders, saved next to a run for reproducible evaluation."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import zipfile
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..atomic import atomic_save_npz
from ..errors import SadhError

SPLIT_NAMES = ("query", "train", "database")
NPZ_MAGIC, NPY_MAGIC = b"PK\x03\x04", b"\x93NUMPY"  # a zip archive (.npz); a single .npy array
FINGERPRINT = "fingerprint"  # the optional array of a split file that names the data it was made for


def data_fingerprint(labels: np.ndarray) -> str:
    """A cheap identity of a dataset, to tell whether a saved split was made for it: its label matrix's shape and hash."""
    labels = np.ascontiguousarray(labels, dtype=np.uint8)
    return f"{labels.shape[0]}x{labels.shape[1]} labels, sha256 {hashlib.sha256(labels.tobytes()).hexdigest()[:16]}"


@dataclass
class Split:
    """Index arrays (int64, disjoint) into one LabeledImages for the three roles.

    `fingerprint` (`data_fingerprint` of the labels it was made for) is None when unknown, e.g. in older split files.
    """

    query: np.ndarray
    train: np.ndarray
    database: np.ndarray
    fingerprint: str | None = None

    def __post_init__(self) -> None:
        for name in SPLIT_NAMES:
            arr = np.asarray(getattr(self, name))
            if arr.ndim != 1:
                raise SadhError(f"the {name} split is a {arr.ndim}-D array, not a list of item indices")
            if arr.size == 0:
                raise SadhError(f"the {name} split is empty")
            if not np.issubdtype(arr.dtype, np.integer):
                raise SadhError(f"the {name} split holds {arr.dtype} values, not integer item indices")
            setattr(self, name, arr.astype(np.int64))

    def check_disjoint(self, n: int) -> None:
        """Raise unless the three splits are disjoint and index into 0..n-1."""
        allidx = np.concatenate([self.query, self.train, self.database])
        if allidx.min() < 0 or allidx.max() >= n:
            raise SadhError(f"split indices out of range for a dataset of {n} items")
        if np.unique(allidx).size != allidx.size:
            raise SadhError("split roles overlap (an item is in two of query/train/database)")

    def made_for(self, labels: np.ndarray) -> "Split":
        """This split, recording that it was made for the data with these labels (see `fits`)."""
        return dataclasses.replace(self, fingerprint=data_fingerprint(labels))

    def fits(self, labels: np.ndarray) -> bool | None:
        """Whether the split was made for data with these labels (None: its fingerprint is unknown)."""
        return None if self.fingerprint is None else self.fingerprint == data_fingerprint(labels)

    def save(self, path: str | os.PathLike) -> None:
        """Write the split (and its fingerprint, if known) as an .npz (no pickle), atomically."""
        known = {} if self.fingerprint is None else {FINGERPRINT: np.array(self.fingerprint)}
        atomic_save_npz(path, query=self.query, train=self.train, database=self.database, **known)

    @classmethod
    def load(cls, path: str | os.PathLike, n_items: int | None = None) -> "Split":
        """Read a split written by `save` (no pickle); with `n_items`, also `check_disjoint(n_items)`."""
        try:
            with open(path, "rb") as f:
                magic = f.read(len(NPY_MAGIC))
            if not magic.startswith(NPZ_MAGIC) and magic != NPY_MAGIC:  # else numpy's refusal suggests unpickling it
                raise ValueError("not an .npz archive")
            loaded = np.load(path, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise ValueError("a single array, not an .npz archive")
            with loaded:
                missing = [k for k in SPLIT_NAMES if k not in loaded.files]
                if missing:
                    raise ValueError(f"no {'/'.join(missing)} array")
                objects = [k for k in (*SPLIT_NAMES, FINGERPRINT) if _holds_objects(loaded, k)]
                if objects:
                    raise ValueError(f"its {objects[0]} array holds Python objects, which sadh does not load")
                arrays = {k: loaded[k] for k in SPLIT_NAMES}
                fingerprint = str(loaded[FINGERPRINT]) if FINGERPRINT in loaded.files else None
        except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
            raise SadhError(f"{path}: not a sadh split file ({e})") from None
        try:
            split = cls(**arrays, fingerprint=fingerprint)
            if n_items is not None:
                split.check_disjoint(n_items)
        except SadhError as e:
            raise SadhError(f"{path}: {e}") from None
        return split


def _holds_objects(archive: np.lib.npyio.NpzFile, name: str) -> bool:
    """Whether array `name` of an open .npz was saved holding Python objects, read from its .npy header alone
    (numpy's own refusal to load such an array advises unpickling it)."""
    if f"{name}.npy" not in archive.zip.namelist():
        return False
    with archive.zip.open(f"{name}.npy") as f:
        version = np.lib.format.read_magic(f)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        return read is not None and read(f)[2].hasobject


def database_subset(database: np.ndarray, size: int | None, seed: int) -> np.ndarray:
    """A seeded random subset of `size` items of `database`, sorted (all of them when size is None, 0 or too big)."""
    if size is None or size == 0 or size >= len(database):
        return database
    if size < 0:
        raise SadhError(f"the database subset size must be positive (0 or None: all), got {size}")
    return np.sort(np.random.default_rng(seed).choice(database, size, replace=False))


def split_per_class(
    labels: np.ndarray, n_query: int = 100, n_train: int = 500, seed: int = 0, class_names: Sequence[str] | None = None
) -> Split:
    """CIFAR-10 protocol for single-label sets: per class n_query queries, n_train training, rest database."""
    if labels.ndim != 2 or np.any(labels.sum(1) != 1):
        raise SadhError("per-class splits need single-label data; use split_by_size for multi-label sets")
    rng = np.random.default_rng(seed)
    cls = labels.argmax(1)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in SPLIT_NAMES}
    for c in range(labels.shape[1]):
        idx = rng.permutation(np.flatnonzero(cls == c))
        if len(idx) < n_query + n_train + 1:
            name = f"class {c}" + (f" ({class_names[c]})" if class_names is not None else "")
            raise SadhError(
                f"{name} has {len(idx)} items, need more than {n_query} queries + {n_train} training: lower "
                "--query-per-class / --train-per-class, or pass a saved split with --split FILE"
            )
        parts["query"].append(idx[:n_query])
        parts["train"].append(idx[n_query : n_query + n_train])
        parts["database"].append(idx[n_query + n_train :])
    return Split(**{k: np.sort(np.concatenate(v)) for k, v in parts.items()})


def split_by_size(
    n_items: int, n_query: int, n_train: int, n_database: int | None = None, seed: int = 0
) -> Split:
    """Random split for multi-label sets: n_query queries, n_train training, n_database (default: the rest)."""
    rest = n_items - n_query - n_train
    if n_database is None and rest < 1:
        raise SadhError(f"cannot split {n_items} items into {n_query} queries and {n_train} training items with a database left")
    if n_database is None:
        n_database = rest
    if min(n_query, n_train, n_database) < 1 or n_database > rest:
        raise SadhError(
            f"cannot split {n_items} items into {n_query} queries, {n_train} training and {n_database} database"
        )
    perm = np.random.default_rng(seed).permutation(n_items)
    return Split(
        query=np.sort(perm[:n_query]),
        train=np.sort(perm[n_query : n_query + n_train]),
        database=np.sort(perm[n_query + n_train : n_query + n_train + n_database]),
    )
