"""Fashion-MNIST, the built-in default dataset (Debian package `dataset-fashion-mnist`)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import SadhError
from .dataset import LabeledImages, one_hot
from .idx import read_idx

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
IMAGE_SHAPE = (28, 28)
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
HOW_TO_GET = (
    "install it with `sudo apt-get install dataset-fashion-mnist` (files in /usr/share/datasets/fashion-mnist/), "
    "or pass --data-dir DIR holding the four official IDX files (train-images-idx3-ubyte[.gz], ...)"
)


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _read_part(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One part's images and labels, checked: n uint8 28x28 images and n uint8 labels in 0..9."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.shape[1:] != IMAGE_SHAPE:
        raise SadhError(f"{images_path}: expected uint8 28x28 images, got {images.dtype} data of shape {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise SadhError(f"{labels_path}: expected one uint8 label per image, got {labels.dtype} data of shape {labels.shape}")
    if len(images) != len(labels):
        raise SadhError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels")
    if labels.size and labels.max() >= len(CLASSES):
        raise SadhError(f"{labels_path}: label {int(labels.max())} out of range 0..{len(CLASSES) - 1}")
    return images, labels


def find_fashion_mnist(data_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Locate the four IDX files in `data_dir`, $SADH_FASHION_MNIST or the Debian package's folder."""
    candidates = [Path(data_dir)] if data_dir else [Path(p) for p in [os.environ.get("SADH_FASHION_MNIST")] if p]
    if not data_dir:
        candidates.append(DEBIAN_DIR)
    for d in candidates:
        found = {key: _find(d, stem) for key, stem in _FILES.items()}
        if all(found.values()):
            return found  # type: ignore[return-value]
    where = ", ".join(str(c) for c in candidates)
    raise SadhError(f"Fashion-MNIST not found in {where}: {HOW_TO_GET}")


def load_fashion_mnist(data_dir: str | os.PathLike | None = None) -> LabeledImages:
    """All 70,000 Fashion-MNIST images (train then test), 28x28 gray, one-hot labels."""
    files = find_fashion_mnist(data_dir)
    parts = [_read_part(files[f"{part}_images"], files[f"{part}_labels"]) for part in ("train", "test")]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return LabeledImages(labels=one_hot(labels, len(CLASSES)), class_names=list(CLASSES), images=images, name="fashion-mnist")
