"""Resolve what a user names on the command line (`--data`) into images, labels and a split."""
from __future__ import annotations

import os
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Optional, TypeVar

import numpy as np

from ..errors import SadhError
from .dataset import LabeledImages
from .fashion_mnist import load_fashion_mnist
from .imagefolder import read_image_folder
from .listfile import read_list_file
from .mosaic import make_mosaic_dataset
from .splits import Split, split_by_size, split_per_class

MOSAICS = {  # built-in mosaic sets of Fashion-MNIST: make_mosaic_dataset settings
    "fashion-mnist-mosaic": dict(grid=2, max_classes=4),  # 56 px, 1-4 classes per image
    "fashion-mnist-mosaic3": dict(grid=3, min_classes=2, max_classes=6),  # 84 px, 2-6 classes: items share 0-6 labels
}
BUILTIN = ("fashion-mnist", *MOSAICS)
OPTIONS_OF = {  # kind of --data: the dataset options it reads, and what to say when given others
    "builtin": (("--data-dir",), "its only dataset option is --data-dir"),
    "list": (("--image-root", "--class-names"), "list files take --image-root and --class-names"),
    "folder": ((), "a class-folder dataset takes no other dataset option"),
}
LIST_SPLIT_FILES = {"query": "test.txt", "train": "train.txt", "database": "database.txt"}


MULTI_LABEL_SCALE = 10  # a multi-label set without a split of its own is split in totals of 10 x the per-class sizes
S = TypeVar("S", bound="DatasetSpec")


def _setting(default: Any, help: str, **cli: Any) -> Any:
    """A DatasetSpec field: its default, with its --help text and command-line form as metadata (`flag`: the option's
    name when not --FIELD-NAME; `path`: it names a file or folder; `min`: the least value)."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass
class DatasetSpec:
    """What names a dataset and its split: the `--data ...` options of the CLI, the data settings of a TrainConfig
    (which is a DatasetSpec) and the defaults of `load_dataset_split`, declared once."""

    data: str = _setting("fashion-mnist", f"{' | '.join(BUILTIN)} | LIST.txt | DIR with train/test/database.txt | DIR/class/*.jpg")
    data_dir: Optional[str] = _setting(None, "Folder with the Fashion-MNIST IDX files (default: Debian package).", path=True)
    image_root: Optional[str] = _setting(None, "Root that list-file image paths are relative to.", path=True)
    class_names: Optional[str] = _setting(None, "Text file with one class name per label column.", path=True)
    split: Optional[str] = _setting(None, "A saved split (.npz) to use instead of the seeded default.", path=True)
    split_seed: int = _setting(
        0, "Seed of the query/train/database split (and of a mosaic dataset's images); train and pipeline also seed "
        "training with it (initialisation, shuffling, augmentation), and train, pipeline and eval the database subset "
        "that mAP is scored on.",
        flag="--seed",
    )
    query_per_class: int = _setting(100, f"Queries per class (x{MULTI_LABEL_SCALE} in total for multi-label).", min=1)
    train_per_class: int = _setting(500, f"Training images per class (x{MULTI_LABEL_SCALE} in total for multi-label).", min=1)

    def dataset_settings(self) -> dict[str, Any]:
        """The DatasetSpec fields of this object (a TrainConfig has more), by name."""
        return {f.name: getattr(self, f.name) for f in fields(DatasetSpec)}

    def with_absolute_paths(self: S) -> S:
        """A copy with the files and folders it names made absolute from the working folder (a built-in name stays),
        so a run exports and resumes from any folder."""
        named = {f.name: getattr(self, f.name) for f in fields(DatasetSpec) if f.metadata.get("path")}
        if self.data not in BUILTIN:
            named["data"] = self.data
        return replace(self, **{k: os.path.abspath(v) for k, v in named.items() if v is not None})

    def load(self, strict: bool = True) -> tuple[LabeledImages, Split]:
        """The dataset and its split (see `load_dataset_split`)."""
        return load_dataset_split(
            self.data, self.data_dir, self.image_root, self.class_names, self.split, self.split_seed, self.query_per_class,
            self.train_per_class, strict=strict,
        )


def option_name(setting: Field) -> str:
    """The command-line option of a DatasetSpec field: its `flag`, else --FIELD-NAME."""
    return setting.metadata.get("flag", "--" + setting.name.replace("_", "-"))


@dataclass(frozen=True)
class SplitSizes:
    """How to split a set that comes without a split: per class (single-label) or in total (multi-label)."""

    query_per_class: int = DatasetSpec.query_per_class
    train_per_class: int = DatasetSpec.train_per_class
    query_total: int = DatasetSpec.query_per_class * MULTI_LABEL_SCALE
    train_total: int = DatasetSpec.train_per_class * MULTI_LABEL_SCALE
    database_total: int | None = None


def load_dataset_split(
    spec: str = DatasetSpec.data,
    data_dir: str | os.PathLike | None = None,
    image_root: str | os.PathLike | None = None,
    class_names_file: str | os.PathLike | None = None,
    split_file: str | os.PathLike | None = None,
    seed: int = DatasetSpec.split_seed,
    query_per_class: int = DatasetSpec.query_per_class,
    train_per_class: int = DatasetSpec.train_per_class,
    *,
    strict: bool = True,
) -> tuple[LabeledImages, Split]:
    """`load_dataset` with per-class sizes (x MULTI_LABEL_SCALE in total for multi-label sets); a saved split file wins."""
    sizes = SplitSizes(query_per_class, train_per_class, query_per_class * MULTI_LABEL_SCALE, train_per_class * MULTI_LABEL_SCALE)
    if split_file is not None:  # no default split is built: its sizes need not fit the data
        data, _ = _read_dataset(spec, data_dir, image_root, class_names_file, sizes, seed, strict)
        return data, Split.load(split_file, len(data))
    data, split = load_dataset(spec, data_dir, image_root, class_names_file, sizes, seed, strict=strict)
    split.check_disjoint(len(data))
    return data, split


def _concat_lists(root: Path, image_root: str | os.PathLike | None) -> tuple[LabeledImages, Split]:
    parts = {role: read_list_file(root / name, image_root or root) for role, name in LIST_SPLIT_FILES.items()}
    widths = {p.num_classes for p in parts.values()}
    if len(widths) != 1:
        raise SadhError(f"{root}: test/train/database list files have different label widths {sorted(widths)}")
    names = parts["train"].class_names
    paths = sum((parts[r].paths for r in ("query", "train", "database")), [])
    labels = np.concatenate([parts[r].labels for r in ("query", "train", "database")])
    starts = np.cumsum([0] + [len(parts[r]) for r in ("query", "train", "database")])
    split = Split(*(np.arange(starts[i], starts[i + 1]) for i in range(3)))
    return LabeledImages(labels=labels, class_names=names, paths=paths, name=root.name), split


def _default_split(data: LabeledImages, sizes: SplitSizes, seed: int) -> Split:
    if data.multi_label:
        try:
            return split_by_size(len(data), sizes.query_total, sizes.train_total, sizes.database_total, seed)
        except SadhError as e:
            raise SadhError(
                f"{e} (items with no label or several make this a multi-label set, split in totals of {MULTI_LABEL_SCALE} x "
                f"--query-per-class queries and {MULTI_LABEL_SCALE} x --train-per-class training items): lower them, or pass "
                "a saved split with --split FILE"
            ) from None
    return split_per_class(data.labels, sizes.query_per_class, sizes.train_per_class, seed, data.class_names)


def load_dataset(
    spec: str = DatasetSpec.data,
    data_dir: str | os.PathLike | None = None,
    image_root: str | os.PathLike | None = None,
    class_names_file: str | os.PathLike | None = None,
    sizes: SplitSizes = SplitSizes(),
    seed: int = DatasetSpec.split_seed,
    *,
    strict: bool = True,
) -> tuple[LabeledImages, Split]:
    """Load `spec` (a built-in name, a list file, a folder of test/train/database lists, or a class-folder tree).

    `strict`: SadhError for dataset options `spec` does not read (see `check_dataset_options`); False ignores them
    (settings saved by runs made before they were refused)."""
    data, split = _read_dataset(spec, data_dir, image_root, class_names_file, sizes, seed, strict)
    return data, split if split is not None else _default_split(data, sizes, seed)


def _kind(spec: str) -> str | None:
    """"builtin", "list" (a list file, or a folder of split lists), "folder" (class sub-folders), or None (unknown)."""
    path = Path(spec)
    if spec in BUILTIN:
        return "builtin"
    if path.is_file() or (path.is_dir() and all((path / f).is_file() for f in LIST_SPLIT_FILES.values())):
        return "list"
    return "folder" if path.is_dir() else None


def check_dataset_options(
    spec: str, data_dir: object = None, image_root: object = None, class_names_file: object = None
) -> None:
    """SadhError naming the dataset options (given: not None) that the dataset `spec` does not read."""
    kind = _kind(spec)
    given = {"--data-dir": data_dir, "--image-root": image_root, "--class-names": class_names_file}
    unused = [name for name, value in given.items() if value is not None and kind and name not in OPTIONS_OF[kind][0]]
    if unused:
        raise SadhError(f"{' and '.join(unused)} {'does' if len(unused) == 1 else 'do'} not apply to {spec}: {OPTIONS_OF[kind][1]}")


def _read_dataset(
    spec: str,
    data_dir: str | os.PathLike | None,
    image_root: str | os.PathLike | None,
    class_names_file: str | os.PathLike | None,
    sizes: SplitSizes,
    seed: int,
    strict: bool = True,
) -> tuple[LabeledImages, Split | None]:
    """The dataset `spec` names and the split it comes with (None: it has none, a default one is needed)."""
    path, kind = Path(spec), _kind(spec)
    if strict:
        check_dataset_options(spec, data_dir, image_root, class_names_file)
    if spec == "fashion-mnist":
        return load_fashion_mnist(data_dir), None
    if spec in MOSAICS:
        return make_mosaic_dataset(
            load_fashion_mnist(data_dir), sizes.query_total, sizes.train_total, sizes.database_total or 20000, seed=seed,
            name=spec, **MOSAICS[spec],
        )
    if path.is_file():
        names = _read_class_names(class_names_file)
        return read_list_file(path, image_root, names), None
    if kind == "list":
        data, split = _concat_lists(path, image_root)
        names = _read_class_names(class_names_file)
        if names is not None:
            if len(names) != data.num_classes:
                raise SadhError(f"{class_names_file}: {len(names)} names for {data.num_classes} label columns")
            data.class_names = names
        return data, split
    if kind == "folder":
        return read_image_folder(path), None
    raise SadhError(
        f"unknown dataset {spec!r} (no such file or folder): use one of {', '.join(BUILTIN)}, a list file, a folder with "
        "train.txt/test.txt/database.txt, or a folder of class sub-folders"
    )


def _read_class_names(path: str | os.PathLike | None) -> list[str] | None:
    if path is None:
        return None
    try:
        names = [line.strip() for line in Path(path).read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    except OSError as e:
        raise SadhError(f"{path}: cannot read class names ({e.strerror})") from None
    except UnicodeDecodeError:
        raise SadhError(f"{path}: class names are not UTF-8 text") from None
    if not names:
        raise SadhError(f"{path}: no class names")
    return names
