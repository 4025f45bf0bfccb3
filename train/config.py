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
import typing
from dataclasses import asdict, dataclass, fields, replace
from enum import Enum
from typing import Any, Iterable, Optional, Union

from ..sdk.codes import MAX_TRAINED_BITS, check_bits
from ..sdk.data import DatasetSpec, LabeledImages, Split
from ..sdk.errors import SadhError, choice
from ..sdk.formats.records import type_in_words, value_fits
from ..sdk.json_text import parse_json
from ..sdk.preprocess import Preprocess
from ..sdk.printable import value_text
from .backbones import Backbone, backbone_entry


class Method(str, Enum):
    """The hashing method: SADH, or the DPSH / CSQ baselines (they share the harness)."""

    SADH = "sadh"
    DPSH = "dpsh"
    CSQ = "csq"


class Optimizer(str, Enum):
    """The stage-2 optimiser."""

    ADAMW = "adamw"
    ADAM = "adam"
    RMSPROP = "rmsprop"


class Schedule(str, Enum):
    """The stage-2 learning-rate schedule (after the warm-up)."""

    COSINE = "cosine"
    CONSTANT = "constant"


class Amp(str, Enum):
    """Mixed precision: auto = bf16 on GPUs that have it, fp16 + GradScaler on other GPUs, off on CPU."""

    AUTO = "auto"
    BF16 = "bf16"
    FP16 = "fp16"
    OFF = "off"

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
Recipe = Enum("Recipe", {name: name for name in RECIPES}, type=str)  # the choices of --recipe
Recipe.__doc__ = "The named recipes of RECIPES."
CHOICES: dict[str, type[Enum]] = {  # the settings that name one of a few choices (saved as the choice's string)
    "method": Method, "backbone": Backbone, "recipe": Recipe, "optimizer": Optimizer, "schedule": Schedule, "amp": Amp,
}


@dataclass
class TrainConfig(DatasetSpec):
    """All settings of one training run (stage 1 label network + stage 2 image network): the dataset and its split
    (a DatasetSpec's fields, as `sadh-cli --data ...` names them) and the settings below, saved flat."""

    # what to train
    method: str = "sadh"
    backbone: str = "small_cnn"
    pretrained: Optional[bool] = None  # None: use the backbone's shipped ImageNet weights when it has some
    backbone_weights: Optional[str] = None
    bits: int = 32
    input_size: Optional[int] = None  # None: the backbone's (its BACKBONES entry)
    resize_size: Optional[int] = None
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
    # evaluation during training: mAP@topk (None: by convention, see sdk.metrics.topk_protocol) of the queries
    # against a seeded random subset of eval_database database items (0: the whole database), every eval_every
    # epochs and after the last; the best of these picks best.pt. Full-database numbers: `sadh-cli eval`.
    eval_every: int = 4
    topk: Optional[int] = None
    eval_database: int = 10000
    eval_batch_size: int = 256
    # system
    amp: str = "auto"  # see Amp
    channels_last: Optional[bool] = None  # None: on for CUDA (faster there), off on CPU (slower there)
    compile: bool = False
    device: str = "auto"
    seed: int = 0  # training: initialisation, shuffling, augmentation, CSQ centres and the eval subset
    threads: Optional[int] = None  # torch CPU threads (None: torch's default)
    out: str = "runs"
    run_name: Optional[str] = None  # None: {data}-{method}-{backbone}-{bits}b
    cache_dir: Optional[str] = None  # None: {out}/cache (decoded-image caches of path-based datasets)
    workers: int = 0  # threads decoding images into the cache (0: one per CPU)
    resume: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        self.recipe = choice(Recipe, self.recipe, "recipe")
        for key, value in RECIPES[self.recipe].items():
            if getattr(self, key) is None:
                setattr(self, key, list(value) if isinstance(value, list) else value)
        for name in CHOICES:  # a choice given as its Enum member is saved as its string
            if isinstance(getattr(self, name), Enum):
                setattr(self, name, getattr(self, name).value)
        self.validate()

    def validate(self) -> None:
        """Raise SadhError naming the first bad setting."""
        for name, hint in typing.get_type_hints(TrainConfig).items():
            value = getattr(self, name)
            if not value_fits(value, hint):
                raise SadhError(f"{name} must be {type_in_words(hint)}, got {value_text(value)}")
        for name, kind in CHOICES.items():
            choice(kind, getattr(self, name), name)
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

    @classmethod
    def from_spec(cls, spec: DatasetSpec, **settings: Any) -> "TrainConfig":
        """A config that trains on `spec`'s dataset, its paths made absolute (the run exports and resumes from any
        folder) and its training seed the split seed (`--seed` seeds both), unless `settings` name them."""
        return cls(**{**spec.with_absolute_paths().dataset_settings(), "seed": spec.split_seed, **settings})

    def load(self, strict: bool = False) -> tuple[LabeledImages, Split]:
        """The dataset and split these settings name (a saved split file wins over the seeded default). Not strict: a
        saved config may hold dataset options its dataset does not read, accepted (and ignored) before they were
        refused on the command line; commands check what users type (`DataOptions.load`, `check()`)."""
        return super().load(strict)

    def preprocess(self) -> Preprocess:
        """The images' preprocessing: the backbone's, at input_size / resize_size where set (the resize scales)."""
        return backbone_entry(self.backbone).preprocess(self.input_size, self.resize_size)

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
            d = parse_json(text)
        except ValueError as e:
            raise SadhError(f"bad training config JSON: {e}") from None
        return cls.from_dict(d)


def setting_differences(saved: dict[str, Any], asked: dict[str, Any]) -> list[str]:
    """'NAME SAVED there, ASKED now' for each run-defining setting of `asked` whose value differs in `saved`."""
    return [
        f"{k} {saved[k]} there, {asked[k]} now"
        for k in asked
        if k not in EXECUTION_SETTINGS and k in saved and saved[k] != asked[k]
    ]


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
