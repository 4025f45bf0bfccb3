"""A multi-label benchmark from real images: grid mosaics of Fashion-MNIST items.

Recipe (fixed seed): each mosaic is a `grid` x `grid` canvas of source-sized cells. It draws
k ~ Uniform{min_classes..min(grid*grid, max_classes)} distinct classes, puts one item of each chosen class in
a random cell, fills every other cell with an item of a chosen class (probability 1 - p_empty) or
leaves it black. The label is the multi-hot set of classes present. Query, train and database
mosaics are built from disjoint pools of source items, so no source item crosses roles.
"""
from __future__ import annotations

import numpy as np

from ..errors import SadhError
from .dataset import LabeledImages
from .splits import Split


def _mosaics_from_pool(
    source: LabeledImages, pool: np.ndarray, n: int, grid: int, classes: tuple[int, int], p_empty: float, rng
) -> tuple[np.ndarray, np.ndarray]:
    cells = grid * grid
    cls = source.labels[pool].argmax(1)
    by_class = [pool[cls == c] for c in range(source.num_classes)]
    present = [c for c in range(source.num_classes) if len(by_class[c])]
    h, w = source.images.shape[1:3]
    canvas = np.zeros((n, grid * h, grid * w) + source.images.shape[3:], dtype=np.uint8)
    labels = np.zeros((n, source.num_classes), dtype=np.uint8)
    for i in range(n):
        most = min(cells, classes[1], len(present))
        k = int(rng.integers(min(classes[0], most), most + 1))
        chosen = rng.choice(present, size=k, replace=False)
        cell_class = np.full(cells, -1)
        cell_class[rng.permutation(cells)[:k]] = chosen
        for j in np.flatnonzero(cell_class < 0):
            if rng.random() >= p_empty:
                cell_class[j] = rng.choice(chosen)
        for j, c in enumerate(cell_class):
            if c < 0:
                continue
            item = by_class[c][rng.integers(len(by_class[c]))]
            r, q = divmod(j, grid)
            canvas[i, r * h : (r + 1) * h, q * w : (q + 1) * w] = source.images[item]
            labels[i, c] = 1
    return canvas, labels


def make_mosaic_dataset(
    source: LabeledImages,
    n_query: int = 1000,
    n_train: int = 5000,
    n_database: int = 20000,
    grid: int = 2,
    max_classes: int = 4,
    p_empty: float = 0.25,
    seed: int = 0,
    min_classes: int = 1,
    name: str | None = None,
) -> tuple[LabeledImages, Split]:
    """Build mosaics for the three roles from disjoint source pools; returns the data (named `name`, default
    '<source>-mosaic') and its split."""
    if source.images is None or source.multi_label:
        raise SadhError("mosaics need an in-memory single-label source (e.g. Fashion-MNIST)")
    if grid < 1 or not 0 <= p_empty < 1 or not 1 <= min_classes <= max_classes or min_classes > grid * grid:
        raise SadhError(
            f"bad mosaic settings grid={grid}, p_empty={p_empty}, min_classes={min_classes}, max_classes={max_classes}"
        )
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(source))
    sizes = np.array([n_query, n_train, n_database], dtype=float)
    bounds = np.concatenate([[0], np.cumsum(np.floor(sizes / sizes.sum() * len(source)))]).astype(int)
    images, labels = [], []
    for r, n in enumerate((n_query, n_train, n_database)):
        img, lab = _mosaics_from_pool(
            source, perm[bounds[r] : bounds[r + 1]], n, grid, (min_classes, max_classes), p_empty, rng
        )
        images.append(img)
        labels.append(lab)
    starts = np.cumsum([0, n_query, n_train, n_database])
    split = Split(*(np.arange(starts[r], starts[r + 1]) for r in range(3)))
    data = LabeledImages(
        labels=np.concatenate(labels),
        class_names=list(source.class_names),
        images=np.concatenate(images),
        name=name or f"{source.name}-mosaic",
    )
    return data, split
