"""Option groups shared by several commands, declared once (e.g. how to name a dataset)."""
from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import typer

from ..sdk.atomic import unwritable_reason
from ..sdk.data import BUILTIN, LabeledImages, Split, load_dataset_split
from ..sdk.errors import SadhError


@dataclass
class DataOptions:
    """What `--data ...` and friends name; `load()` gives the images and their split."""

    data: str = "fashion-mnist"
    data_dir: Optional[Path] = None
    image_root: Optional[Path] = None
    class_names: Optional[Path] = None
    split: Optional[Path] = None
    seed: int = 0
    query_per_class: int = 100
    train_per_class: int = 500

    def load(self) -> tuple[LabeledImages, Split]:
        """Load the dataset and its split (a saved `--split` file wins over the seeded default)."""
        return load_dataset_split(
            self.data, self.data_dir, self.image_root, self.class_names, self.split, self.seed,
            self.query_per_class, self.train_per_class,
        )

    def inputs(self) -> list[tuple[str, Optional[Path]]]:
        """The files and folders these options read, as (option name, path) pairs for `check_outputs`."""
        data = None if self.data in BUILTIN else Path(self.data)
        return [("--data", data), ("--data-dir", self.data_dir), ("--image-root", self.image_root),
                ("--class-names", self.class_names), ("--split", self.split)]


def check_outputs(
    files: Mapping[str, Path], inputs: Iterable[tuple[str, Optional[Path]]] = (), folders: Mapping[str, Path] | None = None
) -> None:
    """Before any slow work: SadhError for an output that cannot be written (a folder, under a file, no permission),
    that names the same file as another output, or that would overwrite one of the command's (name, path) inputs."""
    for name, folder in (folders or {}).items():
        reason = unwritable_reason(folder, folder=True)
        if reason:
            raise SadhError(f"cannot write {folder} ({name}): {reason}")
    read = {p.resolve(): name for name, p in inputs if p is not None}
    written: dict[Path, str] = {}
    for name, path in files.items():
        reason = unwritable_reason(path)
        if reason:
            raise SadhError(f"cannot write {path} ({name}): {reason}")
        key = path.resolve()
        if key in written:
            raise SadhError(f"{written[key]} and {name} are the same file {path}; give them different paths")
        if key in read:
            raise SadhError(f"{name} {path} is also {read[key]}: writing it would replace that input; choose another path")
        written[key] = name


MODEL_OPTION = typer.Option(..., "--model", "-m", help="Exported model (.onnx or TensorRT .engine).")
BATCH_OPTION = typer.Option(64, min=1, help="Images per model call.")

_OPTIONS: dict[str, Any] = {
    "data": typer.Option(
        "fashion-mnist", "--data", help=f"{' | '.join(BUILTIN)} | LIST.txt | DIR with train/test/database.txt | DIR/class/*.jpg"
    ),
    "data_dir": typer.Option(None, "--data-dir", help="Folder with the Fashion-MNIST IDX files (default: Debian package)."),
    "image_root": typer.Option(None, "--image-root", help="Root that list-file image paths are relative to."),
    "class_names": typer.Option(None, "--class-names", help="Text file with one class name per label column."),
    "split": typer.Option(None, "--split", help="A saved split (.npz) to use instead of the seeded default."),
    "seed": typer.Option(0, "--seed", help="Seed of the query/train/database split."),
    "query_per_class": typer.Option(100, "--query-per-class", min=1, help="Queries per class (x10 in total for multi-label)."),
    "train_per_class": typer.Option(500, "--train-per-class", min=1, help="Training images per class (x10 in total for multi-label)."),
}
_ANNOTATIONS = typing.get_type_hints(DataOptions)


def data_options(func: Callable) -> Callable:
    """Decorator: replace a command's `opts: DataOptions` parameter by the dataset options."""
    sig = inspect.signature(func)
    if "opts" not in sig.parameters:
        raise TypeError(f"{func.__name__} needs an `opts: DataOptions` parameter")

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        opts = DataOptions(**{name: kwargs.pop(name) for name in _OPTIONS})
        return func(opts=opts, **kwargs)

    params = [p for p in sig.parameters.values() if p.name != "opts"]
    params += [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=_ANNOTATIONS[name])
        for name, default in _OPTIONS.items()
    ]
    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**typing.get_type_hints(func), **_ANNOTATIONS}
    del wrapper.__annotations__["opts"]
    return wrapper

