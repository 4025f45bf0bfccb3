"""Small real Fashion-MNIST runs shared by the training tests (tiny splits, one thread, no progress bars)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sadh.sdk.data import LabeledImages, Split
from sadh.train.config import TrainConfig


def tiny_split(data: LabeledImages, query: int, train: int, database: int) -> tuple[LabeledImages, Split]:
    """The first query/train/database images of each class, as one subset and its split."""
    cls = data.labels.argmax(1)
    per = query + train + database
    idx = np.concatenate([np.flatnonzero(cls == c)[:per] for c in range(data.num_classes)])
    sub = data.subset(idx)
    offsets = np.arange(data.num_classes)[:, None] * per
    roles = [(offsets + np.arange(a, b)).ravel() for a, b in ((0, query), (query, query + train), (query + train, per))]
    return sub, Split(*(np.sort(r) for r in roles))


def tiny_config(out: Path, **overrides) -> TrainConfig:
    """A fast small-CNN config writing under `out`."""
    settings = dict(
        out=str(out), threads=1, progress=False, epochs=2, batch_size=32, label_epochs=1, label_milestones=[1],
        eval_every=1, run_name="run",
    )
    return TrainConfig(**{**settings, **overrides})
