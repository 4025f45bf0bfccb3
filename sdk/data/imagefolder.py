"""Image folder trees: `root/class_name/*.jpg`, one label per image."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import SadhError
from .dataset import LabeledImages, one_hot

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


def read_image_folder(root: str | os.PathLike) -> LabeledImages:
    """Index `root/<class>/<image>` files (classes sorted by name); images are decoded lazily."""
    root = Path(root)
    if not root.is_dir():
        raise SadhError(f"{root}: image folder not found")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise SadhError(f"{root}: no class sub-folders (expected root/class_name/image.jpg)")
    paths: list[str] = []
    labels: list[int] = []
    for c, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        paths += [str(p) for p in files]
        labels += [c] * len(files)
    if not paths:
        raise SadhError(f"{root}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under the class folders")
    return LabeledImages(labels=one_hot(labels, len(classes)), class_names=classes, paths=paths, name=root.name)
