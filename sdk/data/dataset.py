"""`LabeledImages`: images (in memory or as file paths) with multi-hot labels and class names."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import SadhError
from .images import read_image


def one_hot(classes: Sequence[int] | np.ndarray, num_classes: int) -> np.ndarray:
    """uint8 (n, num_classes) labels with a single 1 per row, at each item's class index."""
    classes = np.asarray(classes, dtype=np.int64)
    labels = np.zeros((len(classes), num_classes), np.uint8)
    labels[np.arange(len(classes)), classes] = 1
    return labels


@dataclass
class LabeledImages:
    """A labelled image set: either `images` (N,H,W[,C] uint8, BGR) or `paths`, plus multi-hot `labels`."""

    labels: np.ndarray
    class_names: list[str]
    images: np.ndarray | None = None
    paths: list[str] | None = None
    name: str = "images"

    def __post_init__(self) -> None:
        if (self.images is None) == (self.paths is None):
            raise SadhError("a LabeledImages needs exactly one of images or paths")
        if self.labels.ndim != 2 or self.labels.shape[1] != len(self.class_names):
            raise SadhError(
                f"labels have shape {self.labels.shape}, expected (n, {len(self.class_names)}) for "
                f"{len(self.class_names)} classes"
            )
        n = len(self.images) if self.images is not None else len(self.paths)
        if n != len(self.labels):
            raise SadhError(f"{n} images but {len(self.labels)} label rows")
        self.labels = np.ascontiguousarray(self.labels, dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        """Number of classes (label columns)."""
        return len(self.class_names)

    @property
    def multi_label(self) -> bool:
        """True when some item has more or fewer than one label."""
        return bool(np.any(self.labels.sum(1) != 1))

    def image(self, i: int) -> np.ndarray:
        """The i-th image as a BGR/gray uint8 array (decoded from disk for path-based sets)."""
        if self.images is not None:
            return self.images[i]
        return read_image(self.paths[i])

    def subset(self, index: Sequence[int] | np.ndarray) -> "LabeledImages":
        """The items at `index`, in that order."""
        index = np.asarray(index, dtype=np.int64)
        return LabeledImages(
            labels=self.labels[index],
            class_names=list(self.class_names),
            images=self.images[index] if self.images is not None else None,
            paths=[self.paths[i] for i in index] if self.paths is not None else None,
            name=self.name,
        )
