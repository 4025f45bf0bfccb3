"""Resume: a run interrupted after an epoch and resumed ends exactly where the uninterrupted run ends (CPU)."""
from __future__ import annotations

import pytest
import torch

from sadh.sdk.data import LabeledImages
from sadh.train import trainer
from sadh.train.checkpoint import load_checkpoint
from sadh.train.trainer import RESUME_KEYS, train

from train_helpers import tiny_config, tiny_split

COMPARED = ("epoch", "step", "loss", "lr", "map")


def _same_tensors(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_tensors(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_tensors(x, y) for x, y in zip(a, b))
    return a == b


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, fashion_mnist: LabeledImages, monkeypatch) -> None:
    torch.set_num_threads(1)
    data, split = tiny_split(fashion_mnist, query=5, train=16, database=20)
    full = train(tiny_config(tmp_path / "full", epochs=3), data, split)

    real_save = trainer.save_checkpoint

    def save_then_die(path, state):
        real_save(path, state)
        if path.name == "last.pt" and state["epoch"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tmp_path / "cut", epochs=3), data, split)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "cut" / "run" / "last.pt", RESUME_KEYS)["epoch"] == 1
    resumed = train(tiny_config(tmp_path / "cut", epochs=3, resume=True), data, split)

    a, b = (load_checkpoint(r.last, RESUME_KEYS) for r in (full, resumed))
    for key in ("model", "label_net", "dictionaries", "optimizer", "scheduler", "step", "best_map"):
        assert _same_tensors(a[key], b[key]), key
    assert [{k: e[k] for k in COMPARED} for e in full.history] == [{k: e[k] for k in COMPARED} for e in resumed.history]
    logged = (resumed.run_dir / "log.jsonl").read_text().splitlines()
    assert len(logged) == 3
