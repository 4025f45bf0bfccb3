"""Resume: a run interrupted after an epoch and resumed ends exactly where the uninterrupted run ends (CPU)."""
from __future__ import annotations

import contextlib
from dataclasses import replace

import numpy as np
import pytest
import torch

from sadh.sdk.data import LabeledImages
from sadh.sdk.errors import SadhError
from sadh.train import trainer
from sadh.train.checkpoint import load_checkpoint
from sadh.train.config import TrainConfig, resume_config
from sadh.train.run_folder import RunFolder
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


@pytest.mark.parametrize("amp", ["off", "fp16"])  # fp16: the gradient scaler's state must come back too
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, fashion_mnist: LabeledImages, monkeypatch, amp: str) -> None:
    torch.set_num_threads(1)
    if amp == "fp16":  # the scaler runs as on a GPU; the float16 arithmetic itself is 40x slower on a CPU: leave it out
        monkeypatch.setattr(trainer.torch, "autocast", lambda *args, **kwargs: contextlib.nullcontext())
    data, split = tiny_split(fashion_mnist, query=5, train=16, database=20)
    full = train(tiny_config(tmp_path / "full", epochs=3, amp=amp), data, split)

    real_save = trainer.save_checkpoint

    def save_then_die(path, state):
        real_save(path, state)
        if path.name == "last.pt" and state["epoch"] == 1:
            raise KeyboardInterrupt

    with monkeypatch.context() as patched, pytest.raises(KeyboardInterrupt):
        patched.setattr(trainer, "save_checkpoint", save_then_die)
        train(tiny_config(tmp_path / "cut", epochs=3, amp=amp), data, split)
    assert load_checkpoint(tmp_path / "cut" / "run" / "last.pt", RESUME_KEYS)["epoch"] == 1
    resumed = train(tiny_config(tmp_path / "cut", epochs=3, amp=amp, resume=True), data, split)

    a, b = (load_checkpoint(r.last, RESUME_KEYS) for r in (full, resumed))
    assert bool(a["scaler"]) == (amp == "fp16")  # a scaler that is on saves its state (one that is off saves {})
    for key in ("model", "label_net", "dictionaries", "optimizer", "scheduler", "scaler", "step", "best_map"):
        assert _same_tensors(a[key], b[key]), key
    assert [{k: e[k] for k in COMPARED} for e in full.history] == [{k: e[k] for k in COMPARED} for e in resumed.history]
    logged = (resumed.run_dir / "log.jsonl").read_text().splitlines()
    assert len(logged) == 3


def test_resume_config_keeps_the_run_and_names_what_it_ignores() -> None:
    saved = TrainConfig(epochs=3, run_name="run")
    asked = TrainConfig(epochs=3, run_name="run", lr=0.01, batch_size=8, threads=2, resume=True)
    cfg, ignored = resume_config(saved, asked, {"lr", "batch_size", "threads", "method", "epochs"}, done=1)
    assert (cfg.lr, cfg.batch_size, cfg.epochs) == (saved.lr, saved.batch_size, 3)
    assert (cfg.threads, cfg.resume) == (2, True)  # how to run comes from the new call
    assert ignored == ["batch_size 64 there, 8 now", "lr 0.002 there, 0.01 now"]
    with pytest.raises(SadhError, match="cosine schedule is laid out over its saved --epochs 3, so --resume cannot"):
        resume_config(saved, replace(asked, epochs=5), {"epochs"}, done=3)
    constant = replace(saved, schedule="constant")
    assert resume_config(constant, replace(asked, epochs=5), {"epochs"}, done=3)[0].epochs == 5
    assert resume_config(constant, replace(asked, epochs=5), set(), done=3)[0].epochs == 3  # not asked: kept
    with pytest.raises(SadhError, match="already trained 3 epochs; --epochs 2 cannot undo them"):
        resume_config(constant, replace(asked, epochs=2), {"epochs"}, done=3)


def test_resume_says_what_it_does(tmp_path, fashion_mnist: LabeledImages, capsys) -> None:
    torch.set_num_threads(1)
    data, split = tiny_split(fashion_mnist, query=2, train=10, database=10)
    run = tmp_path / "run"
    first = train(tiny_config(tmp_path, method="dpsh", schedule="constant", epochs=1, resume=True, progress=True), data, split)
    assert f"nothing to resume in {run}; starting a new run" in capsys.readouterr().out
    longer = tiny_config(tmp_path, method="dpsh", schedule="constant", epochs=2, lr=0.5, resume=True, progress=True)
    second = train(longer, data, split, asked={"epochs", "lr"})
    out = capsys.readouterr().out
    assert f"{run} keeps its saved settings; ignored: lr {tiny_config(tmp_path).lr} there, 0.5 now" in out
    assert f"resuming {run} after epoch 1 of 2" in out
    assert [e["epoch"] for e in second.history] == [1, 2] and second.history[1]["lr"] == first.history[0]["lr"]
    train(replace(longer, lr=None), data, split, asked=set())
    assert f"{run} is finished (epoch 2 of 2); nothing left to train" in capsys.readouterr().out
    with pytest.raises(SadhError, match=f"{run}: the run has already trained 2 epochs"):
        train(replace(longer, epochs=1), data, split, asked={"epochs"})


def test_a_resumed_run_trains_on_its_own_data(tmp_path, fashion_mnist: LabeledImages, monkeypatch) -> None:
    torch.set_num_threads(1)
    data, split = tiny_split(fashion_mnist, query=2, train=10, database=10)
    cfg = tiny_config(tmp_path, method="dpsh", schedule="constant", epochs=1, query_per_class=3)
    train(cfg, data, split)
    loaded = []

    def load_saved(c: TrainConfig, strict: bool = False):
        loaded.append(c)
        return data, split

    monkeypatch.setattr(TrainConfig, "load", load_saved)
    other, other_split = tiny_split(fashion_mnist, query=1, train=4, database=4)
    resumed = train(replace(cfg, epochs=2, resume=True, query_per_class=7), other, other_split, asked={"epochs", "query_per_class"})
    assert [c.query_per_class for c in loaded] == [3]  # the caller's data was for other settings: the run's own is loaded
    assert resumed.history[1]["step"] == 2 * resumed.history[0]["step"]
    train(replace(cfg, epochs=3, resume=True), data, split, asked={"epochs"})
    assert len(loaded) == 1  # the same data settings: the caller's data is used


def test_a_resumed_run_removes_the_temp_files_of_a_killed_one(tmp_path, fashion_mnist: LabeledImages) -> None:
    torch.set_num_threads(1)
    data, split = tiny_split(fashion_mnist, query=2, train=10, database=10)
    cfg = tiny_config(tmp_path, method="dpsh", schedule="constant", epochs=1)
    train(cfg, data, split)
    killed = [tmp_path / "run" / ".last.pt.k9x1y2.tmp", tmp_path / "run" / ".best.pt.q8w7e6.tmp"]  # kill -9 mid-write
    for p in killed:
        p.write_bytes(b"half a checkpoint")
    (tmp_path / "run" / "notes.tmp").write_text("the user's")
    train(replace(cfg, epochs=2, resume=True), data, split, asked={"epochs"})
    assert not any(p.exists() for p in killed) and (tmp_path / "run" / "notes.tmp").exists()


def test_a_resumed_run_refuses_data_whose_labels_changed(tmp_path, fashion_mnist: LabeledImages) -> None:
    torch.set_num_threads(1)
    data, split = tiny_split(fashion_mnist, query=2, train=10, database=10)
    cfg = tiny_config(tmp_path, method="dpsh", schedule="constant", epochs=1)
    train(cfg, data, split)
    saved = RunFolder(tmp_path / "run").split_file.read_bytes()
    labels = data.labels.copy()
    labels[split.train[0]] = np.roll(labels[split.train[0]], 1)  # one training item relabelled since
    edited = replace(data, labels=labels)
    with pytest.raises(SadhError, match=f"^{tmp_path / 'run'} was trained on .* before its labels changed; start a new run"):
        train(replace(cfg, epochs=2, resume=True), edited, split, asked={"epochs"})
    assert RunFolder(tmp_path / "run").split_file.read_bytes() == saved  # the record of the labels it trained on is kept
    resumed = train(replace(cfg, epochs=2, resume=True), data, split, asked={"epochs"})
    assert [e["epoch"] for e in resumed.history] == [1, 2]
