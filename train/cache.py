"""Decode a dataset once at the training resolution: uint8 RGB `fit_square` images, cached on disk as .npy.

In-memory datasets (Fashion-MNIST) are converted in memory; path-based ones go to a memory-mapped
``{cache_dir}/{name}-r{size}-{fingerprint}.npy`` written atomically (temp file + rename), reused while the
image files (paths, sizes, modification times) are unchanged.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..sdk.atomic import atomic_path, make_folder
from ..sdk.data import LabeledImages
from ..sdk.errors import SadhError
from ..sdk.preprocess import fit_square
from .progress import ProgressBar

CHUNK = 256


def fingerprint(data: LabeledImages, index: np.ndarray, resize_size: int) -> str:
    """A hex digest of what a cache holds: the files (path, size, mtime) at `index` and the resolution."""
    h = hashlib.sha256(f"{data.name}|{resize_size}|{len(index)}".encode())
    for i in index:
        path = data.paths[i]
        try:
            st = os.stat(path)
        except OSError as e:
            raise SadhError(f"{path}: cannot read image ({e.strerror})") from None
        h.update(f"{path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _fill(out: np.ndarray, data: LabeledImages, index: np.ndarray, resize_size: int, workers: int, progress: bool) -> None:
    def one(k: int) -> None:
        out[k] = fit_square(data.image(int(index[k])), resize_size)

    bar = ProgressBar(total=len(index), desc=f"decoding {data.name} at {resize_size}px", unit="img", disable=not progress)
    with bar, ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for start in range(0, len(index), CHUNK):
            stop = min(start + CHUNK, len(index))
            list(pool.map(one, range(start, stop)))
            bar.update(stop - start)


def cache_images(
    data: LabeledImages,
    index: np.ndarray,
    resize_size: int,
    cache_dir: str | os.PathLike | None = None,
    workers: int = 0,
    progress: bool = False,
) -> np.ndarray:
    """Items `index` of `data` as uint8 RGB (n, resize_size, resize_size, 3), decoded once and cached."""
    index = np.asarray(index, dtype=np.int64)
    shape = (len(index), resize_size, resize_size, 3)
    if data.images is not None or cache_dir is None:
        out = np.empty(shape, np.uint8)
        _fill(out, data, index, resize_size, workers, progress and data.images is None)
        return out
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in data.name)
    path = Path(cache_dir) / f"{safe}-r{resize_size}-{fingerprint(data, index, resize_size)}.npy"
    if not path.is_file():
        make_folder(path.parent)
        with atomic_path(path) as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
            _fill(out, data, index, resize_size, workers, progress)
            out.flush()
            del out
    try:
        cached = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):  # (numpy's words for a damaged file would suggest unpickling it)
        raise SadhError(f"{path}: unreadable image cache (damaged or not a .npy array); delete it to rebuild") from None
    if cached.shape != shape or cached.dtype != np.uint8:
        raise SadhError(f"{path}: image cache has shape {cached.shape}, expected {shape}; delete it to rebuild")
    return cached
