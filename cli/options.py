"""Option groups shared by several commands, declared once (e.g. how to name a dataset)."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import logging
import os
import shlex
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Optional

import typer

from ..sdk.atomic import resolved, unwritable_reason
from ..sdk.data import BUILTIN, DatasetSpec, LabeledImages, Split
from ..sdk.data.sources import option_name
from ..sdk.errors import SadhError
from ..sdk.model_split import ModelData, load_data, load_for_model
from ..sdk.printable import printable
from ..train.config import TrainConfig

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from ..sdk.encoder import Encoder

PIPED_WIDTH = 1000  # rich's line width when stdout is not a terminal: tables and long lines stay whole in pipes and CI logs


@dataclass
class DataOptions(DatasetSpec):
    """The dataset options of a command (a DatasetSpec, with paths as the command line gives them); `load()` gives the
    images and their split."""

    def load(self, strict: bool = True, warn_other_data: bool = True) -> tuple[LabeledImages, Split]:
        """Load the dataset and its split (`sadh.sdk.model_split.load_data`: a saved `--split` file wins over the seeded
        default; a warning, unless `warn_other_data` is False, when the file records that it was made for other data)."""
        return load_data(self, strict, warn_other_data)

    def check(self) -> None:
        """SadhError for a dataset option that this dataset does not read (before slow work that loads it later)."""
        from ..sdk.data.sources import check_dataset_options

        check_dataset_options(self.data, self.data_dir, self.image_root, self.class_names)

    def inputs(self) -> list[tuple[str, Optional[Path]]]:
        """The files and folders these options read, as (option name, path) pairs for `check_outputs`: the list files
        of a --data folder and the IDX files of Fashion-MNIST included (its images are checked once loaded)."""
        from ..sdk.data.fashion_mnist import find_fashion_mnist
        from ..sdk.data.sources import LIST_SPLIT_FILES

        data = None if self.data in BUILTIN else Path(self.data)
        found: list[tuple[str, Optional[Path]]] = []
        if data is None:
            try:
                found = [("a Fashion-MNIST file", p) for p in find_fashion_mnist(self.data_dir).values()]
            except SadhError:  # not there: loading it will say so
                pass
        elif data.is_dir():
            found = [(f"--data's {name}", data / name) for name in LIST_SPLIT_FILES.values()]
        named = [(option_name(f), getattr(self, f.name)) for f in dataclasses.fields(DatasetSpec) if f.metadata.get("path")]
        return [("--data", data), *((name, None if p is None else Path(p)) for name, p in named), *found]

    def args(self) -> list[str]:
        """The command-line options that give these settings (those that differ from the defaults)."""
        return [
            word
            for f in dataclasses.fields(DatasetSpec)
            if getattr(self, f.name) not in (None, f.default)
            for word in (option_name(f), str(getattr(self, f.name)))
        ]


def make_console() -> Console:
    """The rich console commands print to: the terminal's width, or PIPED_WIDTH when stdout is piped (COLUMNS still wins)."""
    from rich.console import Console

    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(width=PIPED_WIDTH if piped else None)


def shown(value: object) -> Text:
    """Data (a file name, path, label, class name) for a rich table or console line: control characters escaped
    (`printable`), never read as markup."""
    from rich.text import Text

    return Text(printable(value))


def say(message: str) -> None:
    """Print a line on stdout with control characters escaped (`printable`)."""
    typer.echo(printable(message))


def data_for_model(opts: DataOptions, encoder: Encoder) -> ModelData:
    """The data and split to score or index `encoder`'s model with (`sadh.sdk.model_split.load_for_model`), with the
    line saying which split it is printed, when there is one (the default split has none)."""
    chosen = load_for_model(opts, encoder)
    if chosen.split_line:
        say(chosen.split_line)
    return chosen


def typed(ctx: typer.Context, param: str) -> bool:
    """Whether parameter `param` of the running command was given on the command line (not a default)."""
    return getattr(ctx.get_parameter_source(param), "name", "") == "COMMANDLINE"


def warn(message: str) -> None:
    """Print a one-line warning on stderr."""
    typer.secho(f"warning: {printable(message)}", fg=typer.colors.YELLOW, err=True)


class WarningLines(logging.Handler):
    """Shows the library's logged warnings (the "sadh" logger) as `warn` lines; its INFO lines are not shown."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        """One `warning: ...` line on stderr."""
        warn(record.getMessage())


@contextlib.contextmanager
def library_warnings_shown() -> Iterator[None]:
    """Within the block, warnings the library logs under "sadh" are printed as `warning: ...` lines, and only so: they
    do not also reach the handlers a host process gave the root logger (its propagation is restored after)."""
    logger, handler = logging.getLogger("sadh"), WarningLines()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.propagate = propagate
        logger.removeHandler(handler)


@contextlib.contextmanager
def progress_bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A `sadh.sdk.encoding.Progress` for commands: a live rich bar on a terminal's stderr, nothing in a log or pipe
    (it left blank lines there)."""
    from rich.console import Console
    from rich.progress import Progress

    console = Console(stderr=True)
    with Progress(transient=True, console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task(description, total=total)
        yield lambda done: progress.advance(task, done)


def next_hint(*words: object) -> None:
    """Print `next: COMMAND` shell-quoted on one line (never wrapped), so it can be pasted as it is."""
    say("next: " + shlex.join(str(w) for w in words))


def check_outputs(
    files: Mapping[str, Path], inputs: Iterable[tuple[str, Optional[Path]]] = (), folders: Mapping[str, Path] | None = None
) -> None:
    """Before any slow work: SadhError for an output that cannot be written (a folder, under a file, no permission),
    that names the same file as another output, or that would overwrite one of the command's (name, path) inputs."""
    for name, folder in (folders or {}).items():
        reason = unwritable_reason(folder, folder=True)
        if reason:
            raise SadhError(f"cannot write {folder} ({name}): {reason}")
    read = {resolved(p): name for name, p in inputs if p is not None}
    written: dict[Path, str] = {}
    for name, path in files.items():
        reason = unwritable_reason(path)
        if reason:
            raise SadhError(f"cannot write {path} ({name}): {reason}")
        key = resolved(path)
        if key in written:
            raise SadhError(f"{written[key]} and {name} are the same file {path}; give them different paths")
        if key in read:
            raise SadhError(f"{name} {path} is also {read[key]}: writing it would replace that input; choose another path")
        written[key] = name


def check_outputs_spare_images(files: Mapping[str, Path], data: LabeledImages) -> None:
    """Once a dataset (LabeledImages) is loaded: SadhError for an output file that is one of its image files (compared
    by inode, so links and case-insensitive names count; ~2 s per million images, only when an output exists)."""
    existing = {_inode(path): (name, path) for name, path in files.items() if path.is_file()}
    for image in data.paths if existing and data.paths is not None else ():
        hit = existing.get(_inode(image))
        if hit:
            raise SadhError(f"{hit[0]} {hit[1]} is an image of the dataset: writing it would replace that image; choose another path")


def _inode(path: str | os.PathLike) -> tuple[int, int] | None:
    """(device, inode) of the file `path` leads to, None if there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


MODEL_OPTION = typer.Option(..., "--model", "-m", help="Exported model (.onnx or TensorRT .engine).")
BATCH_OPTION = typer.Option(64, "--batch", "--batch-size", min=1, help="Images per model call.")  # --batch-size as in train
METHOD_OPTION = typer.Option(TrainConfig.method, help="Hashing method (the DPSH and CSQ baselines share the harness).")
BACKBONE_OPTION = typer.Option(
    TrainConfig.backbone, help="Network trunk (efficientnet_lite0 ships ImageNet weights: the choice for real images)."
)
INPUT_SIZE_OPTION = typer.Option(TrainConfig.input_size, help="Network input size in pixels (default: the backbone's).")
EVAL_DATABASE_NAMES = ("--eval-database", "--database")  # how many database items mAP is scored on, in every command


def _dataset_parameters() -> list[inspect.Parameter]:
    """A command parameter per DatasetSpec field: its option (`option_name`), default, help and least value."""
    hints = typing.get_type_hints(DatasetSpec)
    return [
        inspect.Parameter(
            f.name, inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(f.default, option_name(f), help=f.metadata["help"], min=f.metadata.get("min")),
            annotation=Optional[Path] if f.metadata.get("path") else hints[f.name],
        )
        for f in dataclasses.fields(DatasetSpec)
    ]


_DATASET_PARAMETERS = _dataset_parameters()


def data_options(func: Callable) -> Callable:
    """Decorator: replace a command's `opts: DataOptions` parameter by the dataset options."""
    sig = inspect.signature(func)
    if "opts" not in sig.parameters:
        raise TypeError(f"{func.__name__} needs an `opts: DataOptions` parameter")

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        opts = DataOptions(**{p.name: kwargs.pop(p.name) for p in _DATASET_PARAMETERS})
        return func(opts=opts, **kwargs)

    params = [p for p in sig.parameters.values() if p.name != "opts"] + _DATASET_PARAMETERS
    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**typing.get_type_hints(func), **{p.name: p.annotation for p in _DATASET_PARAMETERS}}
    del wrapper.__annotations__["opts"]
    return wrapper
