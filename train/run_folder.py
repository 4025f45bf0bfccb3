"""A training run's folder: the files `sadh-cli train` writes there (their names are fixed here), the split the run
trains on, and how far it got."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

from ..sdk.atomic import atomic_write_text
from ..sdk.data import LabeledImages, Split
from ..sdk.errors import SadhError
from .checkpoint import checkpoint_config, load_checkpoint
from .config import TrainConfig

SAVED_KEYS = ("epoch", "config", "best_map")  # what `RunFolder.saved` reads of last.pt


@dataclass(frozen=True)
class SavedRun:
    """What a run's last.pt records: the epochs trained, the run's settings (paths absolute) and its best mAP so far."""

    epoch: int
    config: TrainConfig
    best_map: Optional[float]

    @property
    def finished(self) -> bool:
        """Whether the run trained all the epochs its settings ask for."""
        return self.epoch >= self.config.epochs


@dataclass(frozen=True)
class RunFolder:
    """The folder of one training run: best.pt (the weights of the best mAP, no training state), last.pt (everything a
    resume needs), split.npz (the split it trains on, recording the labels it was made for), log.jsonl (one JSON line
    per epoch trained)."""

    path: Path
    BEST: ClassVar[str] = "best.pt"
    LAST: ClassVar[str] = "last.pt"
    SPLIT: ClassVar[str] = "split.npz"
    LOG: ClassVar[str] = "log.jsonl"

    @classmethod
    def of(cls, cfg: TrainConfig) -> RunFolder:
        """The folder a config's run writes: OUT/NAME."""
        return cls(Path(cfg.out) / cfg.name)

    @property
    def best(self) -> Path:
        """best.pt: the checkpoint of the best mAP (what export takes)."""
        return self.path / self.BEST

    @property
    def last(self) -> Path:
        """last.pt: the checkpoint after the last epoch, with the training state (what --resume takes)."""
        return self.path / self.LAST

    @property
    def split_file(self) -> Path:
        """split.npz: the split the run trains on."""
        return self.path / self.SPLIT

    @property
    def log(self) -> Path:
        """log.jsonl: one JSON line per epoch trained."""
        return self.path / self.LOG

    def files(self) -> tuple[Path, ...]:
        """Every file a run writes here."""
        return self.last, self.best, self.log, self.split_file

    def saved(self) -> Optional[SavedRun]:
        """What last.pt records, None before the run's first epoch ended; SadhError for a bad last.pt."""
        return self.saved_from(load_checkpoint(self.last, SAVED_KEYS)) if self.last.is_file() else None

    def saved_from(self, state: dict[str, Any]) -> SavedRun:
        """What last.pt records, from its loaded `state` (runs saved before paths were stored absolute are read as a
        resume from the folder they were started in reads them)."""
        return SavedRun(int(state["epoch"]), checkpoint_config(state, self.last).with_absolute_paths(), state["best_map"])

    def finished(self, saved: Optional[SavedRun] = None) -> bool:
        """Whether the run trained all its epochs and has its best.pt (`saved`: what last.pt records, if read already)."""
        saved = saved if saved is not None else self.saved()
        return saved is not None and saved.finished and self.best.is_file()

    def split(self, data: LabeledImages) -> Optional[Split]:
        """The split the run trains on (None: it saved none); SadhError when `data`'s labels changed since."""
        if not self.split_file.is_file():
            return None
        try:
            split = Split.load(self.split_file, len(data))  # its indices must fit the data's size
        except SadhError as e:
            raise SadhError(f"{e}; the run's data changed since it started: start a new run in another folder") from None
        if split.fits(data.labels) is False:
            raise SadhError(f"{self.path} was trained on {data.name} before its labels changed; start a new run in another folder")
        return split

    def save_split(self, split: Split, data: LabeledImages) -> None:
        """Save the split the run trains on, recording `data`'s labels (a resume or reuse can tell edited data)."""
        self.path.mkdir(parents=True, exist_ok=True)
        split.made_for(data.labels).save(self.split_file)

    def write_log(self, history: list[dict[str, Any]]) -> None:
        """Rewrite log.jsonl, one JSON line per epoch trained, atomically (a kill never leaves half a line)."""
        atomic_write_text(self.log, "".join(json.dumps(h) + "\n" for h in history))
