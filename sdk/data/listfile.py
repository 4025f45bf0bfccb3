"""The deep-hashing list-file format: `relative/path.jpg 0 1 0 ...` (multi-hot) per line."""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_text
from ..errors import SadhError
from .dataset import LabeledImages


def read_list_file(
    path: str | os.PathLike,
    image_root: str | os.PathLike | None = None,
    class_names: list[str] | None = None,
    check_paths: bool = True,
) -> LabeledImages:
    """Parse a list file; image paths are relative to `image_root` (default: the list file's folder)."""
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # -sig: a BOM (Windows Notepad) is not part of a path
    except OSError as e:
        raise SadhError(f"{path}: cannot read list file ({e.strerror})") from None
    except UnicodeDecodeError:
        raise SadhError(f"{path}: not a text list file (not UTF-8)") from None
    entries = [(lineno, parts) for lineno, parts in enumerate((line.split() for line in lines), 1) if parts and not parts[0].startswith("#")]
    widths = Counter(len(parts) - 1 for _, parts in entries)
    width = widths.most_common(1)[0][0] if entries else 0  # the odd line out is the wrong one, even when it is the first
    paths: list[str] = []
    rows: list[list[int]] = []
    for lineno, parts in entries:
        where = f"{path}:{lineno}"
        if len(parts) < 2:
            raise SadhError(f"{where}: expected 'image_path label0 label1 ...', found no labels")
        if len(parts) - 1 != width:
            raise SadhError(f"{where}: {len(parts) - 1} label columns, most lines have {width}")
        if any(p not in ("0", "1") for p in parts[1:]):
            bad = next(p for p in parts[1:] if p not in ("0", "1"))
            raise SadhError(f"{where}: label value {bad!r} is not 0 or 1 (labels are multi-hot)")
        image_path = root / parts[0]
        if check_paths and not image_path.is_file():
            raise SadhError(f"{where}: image {image_path} does not exist")
        paths.append(str(image_path))
        rows.append([int(p) for p in parts[1:]])
    if not rows:
        raise SadhError(f"{path}: the list file has no entries")
    if class_names is None:
        class_names = [f"class{i}" for i in range(width)]
    elif len(class_names) != width:
        raise SadhError(f"{path}: {width} label columns but {len(class_names)} class names given")
    return LabeledImages(labels=np.array(rows, dtype=np.uint8), class_names=class_names, paths=paths, name=path.stem)


def write_list_file(path: str | os.PathLike, data: LabeledImages, image_root: str | os.PathLike) -> None:
    """Write `data` (path-based) as a list file with paths relative to `image_root`."""
    if data.paths is None:
        raise SadhError("only path-based image sets can be written as a list file")
    root = Path(image_root)
    names = [os.path.relpath(p, root) for p in data.paths]
    spaced = next((name for name in names if len(name.split()) != 1), None)  # what read_list_file would split
    if spaced is not None:
        raise SadhError(f"cannot write {path}: image path {spaced!r} holds white space, which a list file cannot hold; rename it")
    lines = [" ".join([name, *map(str, row)]) for name, row in zip(names, data.labels.tolist())]
    atomic_write_text(path, "\n".join(lines) + "\n")
