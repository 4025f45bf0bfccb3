"""`TrainConfig`: every training setting and its default, in one place (saved as JSON in each checkpoint).

Optimisation settings left at None are filled from a named recipe:

* ``fast`` (default): AdamW with a short warm-up and a cosine schedule, 30 epochs, label network 3 epochs, and
  SADH loss weights beta=0.1, eta=1.0 (measured on Fashion-MNIST, small CNN, 32 bits, mAP@all: 0.790 vs 0.767
  with the paper's beta=0.01, eta=0.1 at 16 epochs; 30 epochs: 0.813, CSQ 0.799);
* ``reference``: the SADH authors' settings (RMSprop lr 1e-5, wd 1e-6, batch 48, 30 epochs, constant lr,
  beta=0.01, eta=0.1; label network Adam lr 5e-3, wd 5e-4, batch 64, 15 epochs, x0.1 at epochs 2..6).

Anything set explicitly (e.g. ``--lr``) wins over the recipe.
"""
from __future__ import annotations

import json
import os
import typing
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Iterable, Optional, Union

from ..sdk.codes import MAX_TRAINED_BITS, check_bits
from ..sdk.data import BUILTIN
from ..sdk.errors import SadhError

METHODS = ("sadh", "dpsh", "csq")
OPTIMIZERS = ("adamw", "adam", "rmsprop")
SCHEDULES = ("cosine", "constant")
AMP_MODES = ("auto", "bf16", "fp16", "off")
# the settings that choose the images and their split (what `trainer.load_data` reads); those of them that name files
DATA_SETTINGS = ("data", "data_dir", "image_root", "class_names", "split", "split_seed", "query_per_class", "train_per_class")
PATH_SETTINGS = ("data", "data_dir", "image_root", "class_names", "split")
# settings that change how a run executes, not what it computes (a resumed run takes them from the new call)
EXECUTION_SETTINGS = frozenset(
    {"out", "run_name", "cache_dir", "workers", "resume", "progress", "device", "threads", "compile", "channels_last", "eval_batch_size"}
)

RECIPES: dict[str, dict[str, Any]] = {
    "fast": dict(
        epochs=30, batch_size=64, optimizer="adamw", lr=2e-3, weight_decay=5e-4, schedule="cosine", warmup_epochs=1.0,
        label_epochs=3, label_batch_size=64, label_lr=5e-3, label_weight_decay=5e-4, label_milestones=[2],
        label_margin="auto", beta=0.1, eta=1.0,
    ),
    "reference": dict(
        epochs=30, batch_size=48, optimizer="rmsprop", lr=1e-5, weight_decay=1e-6, schedule="constant", warmup_epochs=0.0,
        label_epochs=15, label_batch_size=64, label_lr=5e-3, label_weight_decay=5e-4, label_milestones=[2, 3, 4, 5, 6],
        label_margin=0.2, beta=0.01, eta=0.1,
    ),
}


@dataclass
class TrainConfig:
    """All settings of one training run (stage 1 label network + stage 2 image network)."""

    # what to train
    method: str = "sadh"
    backbone: str = "small_cnn"
    pretrained: Optional[bool] = None  # None: use the backbone's shipped ImageNet weights when it has some
    backbone_weights: Optional[str] = None
    bits: int = 32
    input_size: Optional[int] = None  # None: the backbone's default_cfg
    resize_size: Optional[int] = None
    # dataset (as `sadh-cli --data ...` names it)
    data: str = "fashion-mnist"
    data_dir: Optional[str] = None
    image_root: Optional[str] = None
    class_names: Optional[str] = None
    split: Optional[str] = None
    split_seed: int = 0
    query_per_class: int = 100
    train_per_class: int = 500
    # optimisation (None: from the recipe)
    recipe: str = "fast"
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    optimizer: Optional[str] = None
    lr: Optional[float] = None
    weight_decay: Optional[float] = None
    schedule: Optional[str] = None
    warmup_epochs: Optional[float] = None
    label_epochs: Optional[int] = None
    label_batch_size: Optional[int] = None
    label_lr: Optional[float] = None
    label_weight_decay: Optional[float] = None
    label_milestones: Optional[list[int]] = None
    label_margin: Optional[Union[float, str]] = None  # stage-1 margin θ0, or "auto" (see losses.label_margin)
    # loss weights: SADH lambda, alpha, beta (quantisation), eta (classification; beta/eta None: from the recipe);
    # DPSH quantisation weight; CSQ quantisation weight
    lam: float = 1.0
    alpha: float = 1.0
    beta: Optional[float] = None
    eta: Optional[float] = None
    dpsh_eta: float = 0.1
    csq_lam: float = 1e-4
    # evaluation during training: mAP@topk (None: all for single-label data, 5000 for multi-label) of the queries
    # against a seeded random subset of eval_database database items (0: the whole database), every eval_every
    # epochs and after the last; the best of these picks best.pt. Full-database numbers: `sadh-cli eval`.
    eval_every: int = 4
    topk: Optional[int] = None
    eval_database: int = 10000
    eval_batch_size: int = 256
    # system
    amp: str = "auto"  # auto: bf16 on GPUs that have it, fp16 + GradScaler on other GPUs, off on CPU
    channels_last: Optional[bool] = None  # None: on for CUDA (faster there), off on CPU (slower there)
    compile: bool = False
    device: str = "auto"
    seed: int = 0
    threads: Optional[int] = None  # torch CPU threads (None: torch's default)
    out: str = "runs"
    run_name: Optional[str] = None  # None: {data}-{method}-{backbone}-{bits}b
    cache_dir: Optional[str] = None  # None: {out}/cache (decoded-image caches of path-based datasets)
    workers: int = 0  # threads decoding images into the cache (0: one per CPU)
    resume: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise SadhError(f"unknown recipe {self.recipe!r}: use one of {', '.join(RECIPES)}")
        for key, value in RECIPES[self.recipe].items():
            if getattr(self, key) is None:
                setattr(self, key, list(value) if isinstance(value, list) else value)
        self.validate()

    def validate(self) -> None:
        """Raise SadhError naming the first bad setting."""
        from .backbones import backbone_entry  # here, not at the top: the CLI reads the defaults without torch

        for name, hint in typing.get_type_hints(TrainConfig).items():
            value = getattr(self, name)
            if not value_fits(value, hint):
                raise SadhError(f"{name} must be {type_in_words(hint)}, got {value!r}")
        _choice("method", self.method, METHODS)
        backbone_entry(self.backbone)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("amp", self.amp, AMP_MODES)
        check_bits(self.bits, MAX_TRAINED_BITS)
        for name in ("epochs", "batch_size", "label_epochs", "label_batch_size", "eval_every", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise SadhError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("lr", "label_lr"):
            if not float(getattr(self, name)) > 0:
                raise SadhError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("topk", "input_size", "resize_size"):  # None: the default
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise SadhError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.label_margin != "auto" and not (
            isinstance(self.label_margin, (int, float)) and not isinstance(self.label_margin, bool) and 0 < self.label_margin < 1
        ):
            raise SadhError(f"label_margin must be 'auto' or a number between 0 and 1, got {self.label_margin!r}")
        if self.eval_database < 0:
            raise SadhError(f"eval_database must be 0 (whole database) or positive, got {self.eval_database}")

    @property
    def name(self) -> str:
        """The run folder's name."""
        data = self.data.rstrip("/").replace("\\", "/").split("/")[-1] or "data"
        return self.run_name or f"{data}-{self.method}-{self.backbone}-{self.bits}b"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every setting."""
        return asdict(self)

    def to_json(self) -> str:
        """Serialise to JSON."""
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Build from `to_dict` output; unknown keys are an error."""
        if not isinstance(d, dict):
            raise SadhError(f"training settings must be a mapping of names to values, got {d!r:.80}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SadhError(f"unknown training settings: {', '.join(unknown)}")
        try:
            return cls(**d)
        except (TypeError, ValueError) as e:  # a value of the wrong type (hand-edited or older config)
            raise SadhError(f"bad training settings: {e}") from None

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        """Parse what `to_json` wrote."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise SadhError(f"bad training config JSON: {e}") from None
        return cls.from_dict(d)


def setting_differences(saved: dict[str, Any], asked: dict[str, Any]) -> list[str]:
    """'NAME SAVED there, ASKED now' for each run-defining setting of `asked` whose value differs in `saved`."""
    return [
        f"{k} {saved[k]} there, {asked[k]} now"
        for k in asked
        if k not in EXECUTION_SETTINGS and k in saved and saved[k] != asked[k]
    ]


def with_absolute_paths(cfg: TrainConfig) -> TrainConfig:
    """`cfg` with its file settings made absolute from the working folder (runs saved before paths were stored absolute
    are read as a resume from the folder they were started in reads them; built-in dataset names stay as they are)."""
    paths = {k: getattr(cfg, k) for k in PATH_SETTINGS if getattr(cfg, k) is not None}
    if paths.get("data") in BUILTIN:
        del paths["data"]
    return replace(cfg, **{k: os.path.abspath(v) for k, v in paths.items()})


def resume_config(saved: TrainConfig, cfg: TrainConfig, asked: Iterable[str], done: int) -> tuple[TrainConfig, list[str]]:
    """The config a run saved after `done` epochs continues with, and the differences of `cfg`'s `asked` settings
    that it ignores (`setting_differences`). The saved settings win, but execution settings come from `cfg`, and so
    do more `epochs` on a constant schedule; other epochs (a cosine schedule spans the run's) are a SadhError."""
    names = set(asked)
    if "epochs" in names and cfg.epochs != saved.epochs:
        if saved.schedule != "constant":
            raise SadhError(
                f"the run's {saved.schedule} schedule is laid out over its saved --epochs {saved.epochs}, so --resume "
                f"cannot change it to {cfg.epochs}; resume without --epochs, or start a new run (another --out or --run-name)"
            )
        if cfg.epochs < done:
            raise SadhError(f"the run has already trained {done} epochs; --epochs {cfg.epochs} cannot undo them")
    now = cfg.to_dict()
    epochs = cfg.epochs if "epochs" in names else saved.epochs
    ignored = setting_differences(saved.to_dict(), {k: v for k, v in now.items() if k in names and k != "epochs"})
    return replace(saved, epochs=epochs, **{k: now[k] for k in EXECUTION_SETTINGS}), ignored


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SadhError(f"unknown {name} {value!r}: use one of {', '.join(choices)}")


def value_fits(value: Any, hint: Any) -> bool:
    """Whether `value` has the type `hint` declares (bools are not numbers; ints are floats); for JSON-like data."""
    if typing.get_origin(hint) is Union:
        return any(value_fits(value, arg) for arg in typing.get_args(hint))
    if typing.get_origin(hint) is list:
        return isinstance(value, list) and all(value_fits(v, typing.get_args(hint)[0]) for v in value)
    if hint in (int, float):
        return isinstance(value, (int, float) if hint is float else int) and not isinstance(value, bool)
    return isinstance(value, hint)


def type_in_words(hint: Any) -> str:
    """A type hint in words: Optional[list[int]] -> "a list of int or None"."""
    if typing.get_origin(hint) is Union:
        return " or ".join(type_in_words(arg) for arg in typing.get_args(hint))
    if typing.get_origin(hint) is list:
        return f"a list of {type_in_words(typing.get_args(hint)[0])}"
    return "None" if hint is type(None) else hint.__name__
