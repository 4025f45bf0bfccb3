"""Option groups shared by several commands, declared once (e.g. how to name a dataset)."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import os
import shlex
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Optional

import typer

from ..sdk.formats import model as md
from ..sdk.atomic import interrupts_deferred, resolved, unwritable_reason
from ..sdk.data import BUILTIN, DatasetSpec, LabeledImages, Split
from ..sdk.errors import SadhError
from ..sdk.printable import printable
from ..train.config import TrainConfig

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

PIPED_WIDTH = 1000  # rich's line width when stdout is not a terminal: tables and long lines stay whole in pipes and CI logs


@dataclass
class DataOptions(DatasetSpec):
    """The dataset options of a command (a DatasetSpec, with paths as the command line gives them); `load()` gives the
    images and their split."""

    def load(self, strict: bool = True, warn_other_data: bool = True) -> tuple[LabeledImages, Split]:
        """Load the dataset and its split (a saved `--split` file wins over the seeded default; a warning, unless
        `warn_other_data` is False, when the file records that it was made for data with other labels)."""
        data, split = super().load(strict)
        if warn_other_data and split.fits(data.labels) is False:
            warn(f"{self.split} was made for other data (its items had other labels); its query / train / database roles "
                 f"may not be the ones it was made for")
        return data, split

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

    def record(self) -> dict[str, Any]:
        """These settings under their option names (--seed: "seed"), paths as strings: what an index sidecar records."""
        return {
            option_name(f)[2:].replace("-", "_"): str(value) if isinstance(value, Path) else value
            for f in dataclasses.fields(DatasetSpec)
            for value in [getattr(self, f.name)]
        }


def option_name(setting: dataclasses.Field) -> str:
    """The command-line option of a DatasetSpec field: its `flag`, else --FIELD-NAME."""
    return setting.metadata.get("flag", "--" + setting.name.replace("_", "-"))


def model_split_path(model: Path) -> Optional[Path]:
    """The training split `export` wrote beside `model` (STEM.split.npz for STEM[.precision...].onnx or .engine), if any."""
    parts = model.name.split(".")
    for n in range(len(parts) - 1, 0, -1):
        candidate = model.with_name(".".join(parts[:n]) + md.SPLIT_SUFFIX)
        if candidate.is_file():
            return candidate
    return None


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


def typed(ctx: typer.Context, param: str) -> bool:
    """Whether parameter `param` of the running command was given on the command line (not a default)."""
    return getattr(ctx.get_parameter_source(param), "name", "") == "COMMANDLINE"


@contextlib.contextmanager
def written_before_interrupt(done: str) -> Iterator[None]:
    """Run a block of writes with Ctrl-C / SIGTERM held; one that arrived meanwhile then stops the command, saying
    `done` instead of asking for a re-run (the outputs are complete and consistent)."""
    try:
        with interrupts_deferred():
            yield
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"{done}; nothing to re-run") from None


def warn(message: str) -> None:
    """Print a one-line warning on stderr."""
    typer.secho(f"warning: {printable(message)}", fg=typer.colors.YELLOW, err=True)


def load_for_model(opts: DataOptions, encoder: Any) -> tuple[LabeledImages, Split, DataOptions]:
    """The data and split to score or index with `encoder`, and the options that name them.

    `--split` wins; else the model's training split (from its export) when the data is the dataset it was trained on
    (same name, and the labels the split file records it was made for).
    One line says which split is used; a warning when its items may include the model's training images, and one
    when the data's class names are not the model's.
    """
    trained_on = encoder.metadata.get(md.DATASET)
    saved = model_split_path(encoder.path)
    if opts.split is not None:
        data, split = opts.load()
        say(f"split: {opts.split} (--split)")
    else:
        loaded, reason = None, f"no training split beside {encoder.path} (sadh-cli export writes one)"
        if saved is not None:
            try:
                loaded = dataclasses.replace(opts, split=saved).load(warn_other_data=False)  # checked below
            except SadhError as e:
                reason = f"the model's training split does not fit this data ({e})"
        # a split file older than fingerprints (fits() is None) is matched by the dataset name alone
        if loaded is not None and loaded[0].name == trained_on and loaded[1].fits(loaded[0].labels) is not False:
            (data, split), opts = loaded, dataclasses.replace(opts, split=saved)
            say(f"split: the model's training split {saved} (--split FILE to use another)")
        else:
            data, split = opts.load()
            if trained_on and data.name != trained_on:
                reason = f"the model was trained on {trained_on}, not {data.name}"
            elif loaded is not None and not trained_on:
                reason = "the model does not record the dataset it was trained on"
            elif loaded is not None:
                reason = f"the model's training split {saved} was made for another {trained_on} (other items or labels)"
            warn(f"{reason}: using the default split of {data.name}, whose items may include the model's training images")
    if encoder.class_names and list(data.class_names) != encoder.class_names:
        warn(f"{data.name} has classes {_names(data.class_names)} but the model was trained on {_names(encoder.class_names)}")
    return data, split, opts


def _names(names: list[str], shown: int = 4) -> str:
    """A short list of class names: the first `shown` and how many more."""
    more = f", ... ({len(names)} in all)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


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
