"""Training engine: learning on real Fashion-MNIST, preprocessing identity, NaN stop, checkpoints, bad input."""
from __future__ import annotations

import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from sadh.sdk.atomic import interrupts_deferred
from sadh.sdk.data import LabeledImages
from sadh.sdk.errors import SadhError
from sadh.sdk.preprocess import Preprocess, preprocess
from sadh.train import distributed, trainer
from sadh.train.augment import center_crop, normalize, random_crop_flip
from sadh.train.backbones import Backbone, backbone_entry
from sadh.train.cache import cache_images
from sadh.train.checkpoint import load_checkpoint, load_model, save_checkpoint
from sadh.train.config import RECIPES, Amp, Method, Recipe, TrainConfig
from sadh.train.evaluate import encode, evaluate_map
from sadh.train.model import ImageOutput, create_model, random_start_warning
from sadh.train import label_stage, memory
from sadh.train.losses import label_margin
from sadh.train.trainer import check_labels, train

from cli_run import assert_user_error, cli
from train_helpers import tiny_config, tiny_split


def test_eval_preprocessing_matches_sdk(fashion_small: LabeledImages) -> None:
    rng = np.random.default_rng(0)
    colour = LabeledImages(
        labels=np.eye(2, dtype=np.uint8)[[0, 1, 0]],
        class_names=["a", "b"],
        images=rng.integers(0, 256, (3, 37, 53, 3), dtype=np.uint8),
    )
    small_cnn = backbone_entry("small_cnn").preprocess()
    for data, pre in ((fashion_small, small_cnn), (colour, Preprocess(24, 30, (0.5, 0.4, 0.3), (0.2, 0.3, 0.25))),
                      (colour, Preprocess(24, 31, small_cnn.mean, small_cnn.std))):  # an odd gap: both sides must round the crop offset down
        cached = cache_images(data, np.arange(len(data)), pre.resize_size)
        train_side = normalize(center_crop(torch.from_numpy(cached), pre.input_size), pre.mean, pre.std).numpy()
        sdk_side = preprocess([data.image(i) for i in range(len(data))], pre)
        assert train_side.dtype == sdk_side.dtype == np.float32
        assert np.array_equal(train_side, sdk_side)


def test_random_crop_flip_is_a_crop_or_its_mirror() -> None:
    images = torch.arange(2 * 6 * 6 * 3, dtype=torch.int64).remainder(251).to(torch.uint8).reshape(2, 6, 6, 3)
    out = random_crop_flip(images, 4, torch.Generator().manual_seed(1))
    for n in range(2):
        windows = [images[n, t : t + 4, l : l + 4] for t in range(3) for l in range(3)]
        assert any(torch.equal(out[n], w) or torch.equal(out[n], w.flip(1)) for w in windows)
    again = random_crop_flip(images, 4, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)


def test_cache_on_disk_is_reused_and_invalidated(tmp_path, fashion_small: LabeledImages) -> None:
    import cv2

    paths = []
    for i in range(4):
        paths.append(str(tmp_path / f"{i}.png"))
        cv2.imwrite(paths[-1], fashion_small.images[i])
    data = LabeledImages(labels=fashion_small.labels[:4], class_names=fashion_small.class_names, paths=paths, name="pngs")
    first = cache_images(data, np.arange(4), 32, tmp_path / "cache")
    files = list((tmp_path / "cache").glob("*.npy"))
    assert len(files) == 1 and np.array_equal(first, cache_images(fashion_small, np.arange(4), 32))
    assert np.array_equal(cache_images(data, np.arange(4), 32, tmp_path / "cache"), first)
    (tmp_path / "a file").write_text("x")
    with pytest.raises(SadhError, match="cannot write .*a file: it is a file, not a folder"):
        cache_images(data, np.arange(4), 32, tmp_path / "a file")
    cv2.imwrite(paths[0], fashion_small.images[5])
    changed = cache_images(data, np.arange(4), 32, tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2 and not np.array_equal(changed[0], first[0])


def test_training_beats_untrained_network(tmp_path, fashion_mnist: LabeledImages) -> None:
    data, split = tiny_split(fashion_mnist, query=10, train=60, database=50)
    cfg = tiny_config(tmp_path, epochs=3, eval_every=3)
    torch.manual_seed(cfg.seed)
    untrained = create_model("small_cnn", cfg.bits, data.num_classes)
    pre = cfg.preprocess()
    query, database = data.subset(split.query), data.subset(split.database)
    before = evaluate_map(untrained, query, database, pre)
    result = train(cfg, data, split)
    model, info = load_model(result.best)
    after = evaluate_map(model, query, database, info.preprocess)
    assert after == pytest.approx(result.best_map)
    assert after > before + 0.25, (before, after)
    assert (info.bits, info.backbone, info.method, info.num_classes) == (32, "small_cnn", "sadh", 10)
    assert info.class_names == data.class_names and info.preprocess == pre
    log = [json.loads(line) for line in (result.run_dir / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [1, 2, 3] and log == result.history
    assert log[-1]["loss"] < log[0]["loss"]
    best, last = (load_checkpoint(p, ()) for p in (result.best, result.last))
    assert set(last) - set(best) == {"optimizer", "scheduler", "scaler", "label_net"}  # best.pt: no resume-only state
    assert best["dictionaries"].keys() == last["dictionaries"].keys() and result.best.stat().st_size < result.last.stat().st_size


def test_best_checkpoint_is_the_epoch_of_the_highest_map(tmp_path, fashion_mnist: LabeledImages, monkeypatch) -> None:
    scores = iter([0.5, 0.9, 0.7])  # epoch 2 is best, not the last
    monkeypatch.setattr(trainer, "score", lambda *a, **kw: {"map": next(scores)})
    data, split = tiny_split(fashion_mnist, query=2, train=6, database=4)
    result = train(tiny_config(tmp_path, epochs=3, eval_every=1, method="dpsh"), data, split)
    assert result.best_map == 0.9 and [e["map"] for e in result.history] == [0.5, 0.9, 0.7]
    best = load_checkpoint(result.best, ("epoch", "best_map"))
    assert (best["epoch"], best["best_map"]) == (2, 0.9)


def test_lr_factor_warms_up_linearly_then_follows_the_schedule() -> None:
    cosine = trainer.lr_factor(TrainConfig(epochs=2, warmup_epochs=1.0, schedule="cosine"), 10)  # 20 steps, 10 of warm-up
    half_cos = lambda step: 0.5 * (1 + math.cos(math.pi * step / 20))  # noqa: E731
    assert [cosine(s) for s in (0, 4, 9, 19)] == pytest.approx([0.1 * half_cos(0), 0.5 * half_cos(4), half_cos(9), half_cos(19)])
    constant = trainer.lr_factor(TrainConfig(epochs=2, warmup_epochs=0.5, schedule="constant"), 10)  # 5 steps of warm-up
    assert [constant(s) for s in (0, 4, 5, 19)] == pytest.approx([0.2, 1.0, 1.0, 1.0])


@pytest.mark.parametrize("margin", [0.3, "auto"])
def test_label_network_learns_with_the_margin_asked_for(monkeypatch, margin) -> None:
    seen = []
    real = label_stage.label_net_loss
    monkeypatch.setattr(label_stage, "label_net_loss", lambda *a, **kw: seen.append(kw.get("margin")) or real(*a, **kw))
    labels = np.eye(10, dtype=np.uint8)[np.arange(200) % 10]
    net, losses = label_stage.train_label_net(labels, TrainConfig(bits=16, label_epochs=3, label_margin=margin), torch.device("cpu"))
    assert set(seen) == {label_margin(margin, 10)} and len(seen) == 3 * 4  # every step, 4 batches of 64 per epoch
    assert losses[-1] < 0.5 * losses[0], losses  # the label network is trained, not only evaluated
    assert not any(p.requires_grad for p in net.parameters())  # then frozen for stage 2


class RecordedAutocast:
    """torch.autocast that notes (device type, dtype, enabled) in `entered` each time a region is entered."""

    entered: list[tuple[str, torch.dtype | None, bool]] = []
    real = torch.autocast

    def __init__(self, device_type: str, dtype: torch.dtype | None = None, enabled: bool = True, **kwargs: object) -> None:
        self.region, self.key = self.real(device_type, dtype=dtype, enabled=enabled, **kwargs), (device_type, dtype, enabled)

    def __enter__(self) -> None:
        self.entered.append(self.key)
        self.region.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.region.__exit__(*exc)


@pytest.mark.parametrize("precision", [dict(amp="bf16", channels_last=True), dict(amp="fp16")])
def test_the_gpu_precision_paths_train_on_cpu(tmp_path, fashion_mnist: LabeledImages, monkeypatch, precision: dict) -> None:
    """bf16 autocast with channels_last, and fp16 with gradient scaling (GPUs without bf16), run the same steps as fp32."""
    data, split = tiny_split(fashion_mnist, query=2, train=4, database=4)  # 40 training images: one step per epoch
    runs = {"fp32": train(tiny_config(tmp_path / "fp32"), data, split)}
    monkeypatch.setattr(RecordedAutocast, "entered", [])
    monkeypatch.setattr(torch, "autocast", RecordedAutocast)
    runs["amp"] = train(tiny_config(tmp_path / "amp", **precision), data, split)
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision["amp"]]
    assert ("cpu", half, True) in RecordedAutocast.entered, RecordedAutocast.entered  # the steps ran in lower precision
    losses = {name: [h["loss"] for h in r.history] for name, r in runs.items()}
    assert np.allclose(losses["amp"], losses["fp32"], rtol=0.02), losses  # same data, seed and steps
    scaler = load_checkpoint(runs["amp"].last, ("scaler",))["scaler"]
    assert bool(scaler) == (precision["amp"] == "fp16"), scaler  # the scaler is on exactly for fp16 (one that is off saves {})
    if scaler:  # ... and saved for resume: a new scaler takes it
        resumed = torch.amp.GradScaler("cpu")
        resumed.load_state_dict(scaler)
        assert resumed.get_scale() > 0
    model, info = load_model(runs["amp"].best)
    assert info.bits == 32 and all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("check_every", [1, 3, 25])  # loss read-back every step, mid-epoch, once per epoch
def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path, fashion_mnist: LabeledImages, monkeypatch, check_every) -> None:
    monkeypatch.setattr(trainer, "CHECK_EVERY", check_every)
    data, split = tiny_split(fashion_mnist, query=2, train=10, database=10)
    cfg = tiny_config(tmp_path, method="dpsh", batch_size=25)
    calls = {"n": 0}
    real = trainer.dpsh_loss

    def poisoned(u, y, eta):
        calls["n"] += 1
        loss, stats = real(u, y, eta)
        return (loss * float("nan") if calls["n"] == 6 else loss), stats

    monkeypatch.setattr(trainer, "dpsh_loss", poisoned)
    with pytest.raises(SadhError, match=r"loss became nan at step 6 \(epoch 2\).*last\.pt \(epoch 1\) is intact"):
        train(cfg, data, split)
    state = load_checkpoint(tmp_path / "run" / "last.pt", trainer.RESUME_KEYS)
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values())


def test_checkpoint_errors(tmp_path) -> None:
    with pytest.raises(SadhError, match="not found"):
        load_model(tmp_path / "missing.pt")
    with pytest.raises(SadhError, match=f"^{tmp_path} is a folder; pass a checkpoint file in it, e.g. {tmp_path / 'best.pt'}$"):
        load_model(tmp_path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SadhError, match=r"junk.pt: not a readable sadh checkpoint \(truncated, damaged or not a torch file\)$"):
        load_model(tmp_path / "junk.pt")
    torch.save({"obj": SimpleNamespace(x=1)}, tmp_path / "objects.pt")  # would need unpickling: never advise enabling it
    with pytest.raises(SadhError, match=r"objects.pt: .*\(it holds pickled Python objects, which sadh never loads"):
        load_model(tmp_path / "objects.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(SadhError, match="not a sadh checkpoint"):
        load_model(tmp_path / "foreign.pt")


def test_a_checkpoint_path_that_is_a_folder_is_refused_before_training(tmp_path, fashion_mnist: LabeledImages, monkeypatch) -> None:
    (tmp_path / "run" / "best.pt").mkdir(parents=True)
    monkeypatch.setattr(trainer, "cache_images", lambda *a, **kw: pytest.fail("started the slow work"))
    data, split = tiny_split(fashion_mnist, query=2, train=6, database=4)
    with pytest.raises(SadhError, match=r"cannot write .*run/best.pt: it is a folder, not a file"):
        train(tiny_config(tmp_path), data, split)


def test_resume_with_another_number_of_processes_is_refused(tmp_path, fashion_mnist: LabeledImages) -> None:
    data, split = tiny_split(fashion_mnist, query=2, train=2, database=4)
    first = train(tiny_config(tmp_path, epochs=1, method="dpsh", schedule="constant"), data, split)
    (entry,) = first.history  # 20 training images, fewer than a batch of 32: one step of 20
    assert entry["images_per_s"] * entry["seconds"] == pytest.approx(20)
    last = tmp_path / "run" / "last.pt"
    state = load_checkpoint(last, trainer.RESUME_KEYS)
    assert state["world_size"] == 1
    save_checkpoint(last, {**state, "world_size": 2})  # as if torchrun had run it with 2 processes
    with pytest.raises(SadhError, match=r"was trained by 2 processes and this is 1: resume it with 2 \(torchrun --nproc_per_node\)"):
        train(tiny_config(tmp_path, epochs=2, method="dpsh", schedule="constant", resume=True), data, split)


def test_each_torchrun_process_takes_its_own_gpu(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # device objects only: nothing runs on a GPU here
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert distributed.pick_device("cuda", local_rank=1, world_size=2) == torch.device("cuda:1")
    assert distributed.pick_device("auto", local_rank=1, world_size=2) == torch.device("cuda:1")
    assert distributed.pick_device("cuda:0") == torch.device("cuda:0")  # one process: as named
    with pytest.raises(SadhError, match="--device cuda:0 would put all 2 processes on one GPU; use --device cuda"):
        distributed.pick_device("cuda:0", local_rank=1, world_size=2)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # CUDA_VISIBLE_DEVICES gives each process its own GPU
    assert distributed.pick_device("cuda:0", local_rank=1, world_size=2) == torch.device("cuda:0")
    assert distributed.pick_device("auto", local_rank=1, world_size=2) == torch.device("cuda:0")


def test_truncated_checkpoint(tmp_path, fashion_mnist: LabeledImages) -> None:
    data, split = tiny_split(fashion_mnist, query=2, train=10, database=10)
    result = train(tiny_config(tmp_path, method="csq", epochs=1, batch_size=50), data, split)
    model, info = load_model(result.best)
    assert info.method == "csq" and info.best_map == pytest.approx(result.best_map)
    assert encode(model, data.subset(split.query), info.preprocess).shape == (20, 4)
    blob = result.best.read_bytes()
    (tmp_path / "cut.pt").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(SadhError, match="cut.pt"):
        load_model(tmp_path / "cut.pt")
    with pytest.raises(SadhError, match="already holds a run"):
        train(tiny_config(tmp_path, method="csq", epochs=1, batch_size=50), data, split)


def _model_checkpoint(path, **edits) -> None:
    """A small-CNN 8-bit checkpoint with the model keys (and resume's config), some fields replaced by `edits`."""
    model = create_model("small_cnn", 8, 2)
    save_checkpoint(path, {
        "model": model.state_dict(), "preprocess": backbone_entry("small_cnn").preprocess().to_json(), "class_names": ["a", "b"],
        "method": "sadh", "dataset": "toy", "backbone": "small_cnn", "bits": 8, "num_classes": 2, "best_map": 0.5,
        "optimizer": {}, "scheduler": {}, "scaler": {}, "config": TrainConfig(bits=8).to_dict(), "epoch": 1, "step": 1,
        "history": [], **edits,
    })


@pytest.mark.parametrize(
    "edits, message",
    [
        ({"class_names": 5}, "checkpoint field class_names must be a list of str, got 5"),
        ({"bits": "x"}, "checkpoint field bits must be int, got 'x'"),
        ({"num_classes": True}, "checkpoint field num_classes must be int, got True"),
        ({"best_map": "x"}, "checkpoint field best_map must be float or None, got 'x'"),
        ({"preprocess": 5}, "checkpoint field preprocess must be str, got 5"),
        ({"class_names": ["a"]}, "1 class names for 2 classes"),
        ({"backbone": "bogus"}, "unknown backbone 'bogus'; choose one of small_cnn"),
    ],
)
def test_checkpoint_fields_are_checked(tmp_path, edits: dict, message: str) -> None:
    _model_checkpoint(tmp_path / "edited.pt", **edits)
    with pytest.raises(SadhError, match=f"edited.pt: {message}"):
        load_model(tmp_path / "edited.pt")


@pytest.mark.parametrize(
    "config, message",
    [
        (5, "training settings must be a mapping"),
        ({**TrainConfig().to_dict(), "bits": "x"}, "bad training settings: bits must be int, got 'x'"),
        ({**TrainConfig().to_dict(), "class_names": 5}, "bad training settings: class_names must be str or None, got 5"),
    ],
)
def test_resume_rejects_a_bad_saved_config(tmp_path, config: object, message: str) -> None:
    _model_checkpoint(tmp_path / "run" / "last.pt", config=config)
    with pytest.raises(SadhError, match=f"last.pt: {message}"):
        train(tiny_config(tmp_path, resume=True))


@pytest.mark.parametrize("bits", [0, 12, 264, 512])
def test_bad_bits(bits: int) -> None:
    with pytest.raises(SadhError, match="bits must be a multiple of 8"):
        TrainConfig(bits=bits)


def test_bad_settings_and_labels(fashion_small: LabeledImages) -> None:
    with pytest.raises(SadhError, match="unknown method"):
        TrainConfig(method="hashnet")
    with pytest.raises(SadhError, match="unknown recipe"):
        TrainConfig(recipe="magic")
    with pytest.raises(SadhError, match="unknown backbone 'bogus'; choose one of small_cnn, efficientnet_lite0"):
        TrainConfig(backbone="bogus")
    split = SimpleNamespace(train=np.arange(5))
    with pytest.raises(SadhError, match="training split is empty"):
        check_labels(fashion_small, SimpleNamespace(train=np.arange(0)))
    with pytest.raises(SadhError, match="has 10 classes but the network was trained for 7"):
        check_labels(fashion_small, split, num_classes=7)
    unlabelled = LabeledImages(
        labels=np.zeros((5, 10), np.uint8), class_names=fashion_small.class_names, images=fashion_small.images[:5]
    )
    with pytest.raises(SadhError, match="no label"):
        check_labels(unlabelled, split)


def test_config_json_round_trip_and_recipes() -> None:
    cfg = TrainConfig(recipe="reference", bits=64, lr=3e-5)
    assert TrainConfig.from_json(cfg.to_json()) == cfg
    ref = RECIPES["reference"]
    assert (cfg.optimizer, cfg.batch_size, cfg.epochs, cfg.weight_decay) == (ref["optimizer"], 48, 30, 1e-6)
    assert cfg.lr == 3e-5 and cfg.label_milestones == [2, 3, 4, 5, 6] and (cfg.beta, cfg.eta) == (0.01, 0.1)
    with pytest.raises(SadhError, match="unknown training settings: nope"):
        TrainConfig.from_dict({**cfg.to_dict(), "nope": 1})
    assert (TrainConfig().label_margin, cfg.label_margin) == ("auto", 0.2)
    for bad in (0, 1.5, "wide", True):
        with pytest.raises(SadhError, match="label_margin must be"):
            TrainConfig(label_margin=bad)
    for key, value in (("eval_database", None), ("epochs", "many"), ("lr", [1]), ("data", 5), ("label_milestones", [1.5])):
        with pytest.raises(SadhError, match=f"bad training settings: {key} must be"):
            TrainConfig.from_dict({**cfg.to_dict(), key: value})


# TrainConfig().to_json() as 055a1d9 wrote it (before the dataset settings came from DatasetSpec): checkpoints keep it
SAVED_BEFORE_DATASET_SPEC = (
    '{"alpha": 1.0, "amp": "auto", "backbone": "small_cnn", "backbone_weights": null, "batch_size": 64, "beta": 0.1, "bits": 32, '
    '"cache_dir": null, "channels_last": null, "class_names": null, "compile": false, "csq_lam": 0.0001, "data": "fashion-mnist", '
    '"data_dir": null, "device": "auto", "dpsh_eta": 0.1, "epochs": 30, "eta": 1.0, "eval_batch_size": 256, "eval_database": 10000, '
    '"eval_every": 4, "image_root": null, "input_size": null, "label_batch_size": 64, "label_epochs": 3, "label_lr": 0.005, '
    '"label_margin": "auto", "label_milestones": [2], "label_weight_decay": 0.0005, "lam": 1.0, "lr": 0.002, "method": "sadh", '
    '"optimizer": "adamw", "out": "runs", "pretrained": null, "progress": true, "query_per_class": 100, "recipe": "fast", '
    '"resize_size": null, "resume": false, "run_name": null, "schedule": "cosine", "seed": 0, "split": null, "split_seed": 0, '
    '"threads": null, "topk": null, "train_per_class": 500, "warmup_epochs": 1.0, "weight_decay": 0.0005, "workers": 0}'
)


def test_saved_configs_load_and_save_as_before(tmp_path) -> None:
    old = TrainConfig.from_json(SAVED_BEFORE_DATASET_SPEC)
    assert old == TrainConfig() and json.loads(old.to_json()) == json.loads(SAVED_BEFORE_DATASET_SPEC)  # flat, same keys
    chosen = TrainConfig(method=Method.CSQ, backbone=Backbone.resnet18, recipe=Recipe.reference, amp=Amp.OFF)
    assert [type(chosen.to_dict()[k]) for k in ("method", "backbone", "recipe", "amp")] == [str] * 4
    save_checkpoint(tmp_path / "c.pt", {"config": chosen.to_dict()})  # weights_only loading takes plain strings only
    assert TrainConfig.from_dict(load_checkpoint(tmp_path / "c.pt", ("config",))["config"]) == chosen


def test_cli_rejects_bad_bits() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sadh.cli.app", "train", "--bits", "16,12", "--epochs", "1"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "bits must be a multiple of 8" in proc.stderr and "Traceback" not in proc.stderr
    for value, message in (("wide", "--label-margin takes a number or auto"), ("1.5", "label_margin must be")):
        proc = subprocess.run(
            [sys.executable, "-m", "sadh.cli.app", "train", "--label-margin", value, "--epochs", "1"], capture_output=True, text=True
        )
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, value


def test_cli_rejects_unknown_backbone() -> None:
    out = cli("train", "--backbone", "bogus", "--epochs", "1")
    assert_user_error(out, "--backbone")
    assert "'bogus'" in out.stderr and all(name in out.stderr for name in ("small_cnn", "efficientnet_lite0", "resnet18", "resnet50"))


class SlowWorkStarted(Exception):
    """Raised by a stand-in for the image cache: the run got past its checks."""


def test_an_imagenet_backbone_without_weights_is_warned_about_then_refused_under_reference(
    tmp_path, fashion_mnist: LabeledImages, monkeypatch, capsys
) -> None:
    def started(*args, **kwargs):
        raise SlowWorkStarted

    monkeypatch.setattr(trainer, "cache_images", started)
    data, split = tiny_split(fashion_mnist, query=2, train=4, database=4)
    with pytest.raises(SlowWorkStarted):  # the fast recipe trains it, after one line on stderr
        train(tiny_config(tmp_path, backbone="resnet50", input_size=32), data, split)
    warning = capsys.readouterr().err.strip()
    assert warning.startswith("warning: resnet50 starts from random weights") and "--backbone-weights PATH" in warning
    assert len(warning.splitlines()) == 1
    with pytest.raises(SadhError, match=r"--recipe reference fine-tunes ImageNet-pretrained weights.*resnet50 would start from"):
        train(tiny_config(tmp_path / "ref", backbone="resnet50", input_size=32, recipe="reference"), data, split)
    for quiet in (dict(backbone="small_cnn"), dict(backbone="efficientnet_lite0"), dict(backbone="resnet50", pretrained=False),
                  dict(backbone="resnet50", backbone_weights="r50.safetensors")):
        assert random_start_warning(TrainConfig(**quiet)) is None, quiet
    with pytest.raises(SadhError, match=r"would start from random weights \(--no-pretrained\)"):
        random_start_warning(TrainConfig(backbone="efficientnet_lite0", pretrained=False, recipe="reference"))


def test_cli_refuses_a_reference_run_of_an_untrained_resnet50(tmp_path) -> None:
    out = cli("train", "--backbone", "resnet50", "--recipe", "reference", "--epochs", "1", "--train-per-class", "2",
              "--query-per-class", "1", "--input-size", "32", "--eval-database", "10", "--threads", "1", "--out", tmp_path)
    assert_user_error(out, "resnet50 would start from random weights (no ImageNet weights ship for resnet50)")
    assert not any(tmp_path.iterdir())  # refused before the run folder or the image cache is made


def test_cli_trains_two_bit_lengths(tmp_path) -> None:
    out = tmp_path / "runs dir"
    args = ["train", "--bits", "8,16", "--epochs", "1", "--train-per-class", "6", "--query-per-class", "2",
            "--eval-database", "40", "--threads", "1", "--method", "dpsh", "--out", str(out)]
    proc = subprocess.run([sys.executable, "-m", "sadh.cli.app", *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for bits in (8, 16):
        best = out / f"fashion-mnist-dpsh-small_cnn-{bits}b" / "best.pt"
        assert f"next: sadh-cli export {shlex.quote(str(best))} --int8" in proc.stdout  # pastes into a shell
        assert load_model(best)[1].bits == bits
        header = (f"{best.parent}: dpsh, small_cnn at 28 px, {bits} bits, 1 epoch on cpu; fashion-mnist: 10 classes, "
                  "60 training images, mAP@all (single-label data: the whole database) of 20 queries against 40 of 69920 database items")
        assert header in proc.stdout + proc.stderr  # what is about to be trained, before the progress bars


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_waits_for_the_block_then_interrupts(python_sigint, signum: int) -> None:
    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            os.kill(os.getpid(), signum)
            time.sleep(0.05)  # the handler runs here, and must only note the signal
            done.append("block finished")
    assert done == ["block finished"] and signal.getsignal(signum) is signal.default_int_handler


def test_ctrl_c_during_a_checkpoint_write_keeps_the_file(tmp_path, monkeypatch, python_sigint) -> None:
    real_save = torch.save

    def interrupted_save(obj, f):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C lands while torch writes
        real_save(obj, f)

    monkeypatch.setattr(torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "last.pt", {"epoch": 3, "model": {"w": torch.ones(1000)}})
    monkeypatch.undo()
    state = load_checkpoint(tmp_path / "last.pt", ("epoch", "model"))
    assert state["epoch"] == 3 and torch.equal(state["model"]["w"], torch.ones(1000))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


def test_ctrl_c_during_the_best_checkpoint_write_still_ends_the_epoch(tmp_path, fashion_mnist, monkeypatch, python_sigint) -> None:
    data, split = tiny_split(fashion_mnist, query=2, train=10, database=10)
    real_save = trainer.save_checkpoint

    def interrupted_save(path, state):
        if path.name == "best.pt":
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C lands while best.pt is written; last.pt and the log follow
        real_save(path, state)

    monkeypatch.setattr(trainer, "save_checkpoint", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tmp_path, method="dpsh", epochs=2), data, split)
    assert load_checkpoint(tmp_path / "run" / "last.pt", trainer.RESUME_KEYS)["epoch"] == 1  # not redone on --resume
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 1


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])  # SIGTERM: what torchrun and job schedulers send
def test_cli_ctrl_c_names_the_resume_command(tmp_path, signum: int) -> None:
    out = tmp_path / "runs dir"
    args = ["train", "--epochs", "100", "--train-per-class", "6", "--query-per-class", "2", "--eval-database", "40",
            "--threads", "1", "--method", "dpsh", "--out", str(out)]
    proc = subprocess.Popen(  # SIGINT at its default even where this test runs as a background job (which ignores it)
        [sys.executable, "-m", "sadh.cli.app", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    run_dir = out / "fashion-mnist-dpsh-small_cnn-32b"
    deadline = time.monotonic() + 600  # a loaded machine: the signal must not reach the process before its first epoch
    while not (run_dir / "log.jsonl").is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # the first epoch is done: the run is mid-way
    if not (run_dir / "log.jsonl").is_file():
        proc.kill()
        pytest.fail(f"no epoch finished (exit code {proc.poll()}): {proc.communicate()[1][-2000:]}")
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = [line.strip() for line in err.replace("\r", "\n").splitlines() if line.strip()]
    assert lines[-1] == f"interrupted; continue with: {shlex.join(['sadh-cli', *args, '--resume'])}", err
    assert "Traceback" not in err
    assert load_checkpoint(run_dir / "last.pt", trainer.RESUME_KEYS)["epoch"] >= 1


def test_cli_resume_trains_on_the_runs_own_data_and_paths_are_kept_absolute(tmp_path, fashion_mnist: LabeledImages) -> None:
    cls = fashion_mnist.labels.argmax(1)
    (tmp_path / "img").mkdir()
    for name, classes in (("two.txt", 2), ("three.txt", 3)):
        rows = [(c, i) for c in range(classes) for i in np.flatnonzero(cls == c)[:16]]
        for c, i in rows:
            cv2.imwrite(str(tmp_path / "img" / f"{i}.png"), fashion_mnist.image(i))
        (tmp_path / name).write_text("".join(f"img/{i}.png {' '.join(str(int(c == d)) for d in range(classes))}\n" for c, i in rows))
    common = ["--train-per-class", "8", "--query-per-class", "2", "--recipe", "reference", "--batch-size", "4", "--threads", "1",
              "--input-size", "28", "--run-name", "r", "--out", "runs"]
    first = cli("train", "--data", "two.txt", "--bits", "16", "--epochs", "1", *common, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    cfg = TrainConfig.from_dict(load_checkpoint(tmp_path / "runs" / "r" / "last.pt", ("config",))["config"])
    assert cfg.data == str(tmp_path / "two.txt")  # absolute: export and resume work from any folder
    # other data (3 classes) typed with --resume: the run continues on its own data, and says so
    again = cli("train", "--data", tmp_path / "three.txt", "--epochs", "2", "--resume", *common, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"ignored: data {tmp_path / 'two.txt'} there, {tmp_path / 'three.txt'} now" in again.stdout
    assert "16 bits: best mAP" in again.stdout  # the run's bits, not the default --bits
    log = [json.loads(line) for line in (tmp_path / "runs" / "r" / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [1, 2] and log[1]["step"] == 2 * log[0]["step"] == 2 * 16 // 4


def test_cli_refuses_a_bit_length_given_twice() -> None:
    refused = cli("train", "--bits", "16,32", "--bits", "16", "--data", "no-such-list.txt")  # refused before any data loads
    assert_user_error(refused, "--bits names 16 more than once; each bit length is one run")


def test_sadh_targets_stay_float32_under_autocast(tmp_path) -> None:
    labels = (np.random.default_rng(0).random((32, 6)) < 0.5).astype(np.uint8)  # multi-label: margins between 0 and 1
    labels[labels.sum(1) == 0, 0] = 1
    loss_fn, _ = trainer._make_loss(tiny_config(tmp_path, bits=16), labels, torch.device("cpu"), None, distributed.setup("cpu"))
    gen = torch.Generator().manual_seed(0)
    out = ImageOutput(torch.randn(8, 2048, generator=gen), torch.tanh(torch.randn(8, 16, generator=gen)), torch.randn(8, 6, generator=gen))
    y = torch.from_numpy(labels[:8]).float()
    plain, _ = loss_fn(out, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed, _ = loss_fn(out, y)
    assert float(mixed) == pytest.approx(float(plain), rel=1e-6)



def test_a_batch_that_cannot_fit_is_refused_before_training(monkeypatch) -> None:
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    inplace = torch.nn.Sequential(conv, torch.nn.ReLU(inplace=True))
    assert memory.activation_bytes(inplace, 10, 2) == 2 * 4 * 10 * 10 * 4  # the in-place ReLU adds nothing
    assert memory.activation_bytes(torch.nn.Sequential(conv, torch.nn.ReLU()), 10, 2) == 2 * 2 * 4 * 10 * 10 * 4
    small = create_model("small_cnn", 16, 10)
    assert memory.activation_bytes(small, 56, 8) == 2 * memory.activation_bytes(small, 56, 4)
    memory.check_training_fits(small, "small_cnn", 28, 64, torch.device("cpu"), half=False)  # fits this machine
    with pytest.raises(SadhError, match="input_size must be at least 1, got 0"):  # not "the default" in disguise
        TrainConfig(input_size=0)
    monkeypatch.setattr(memory, "free_bytes", lambda device: 10**9)
    need = memory.STEP_FACTOR * memory.activation_bytes(small, 1000, 18) / 1e9
    with pytest.raises(SadhError, match=rf"^a training batch of 18 images at 1000 px needs at least {need:.1f} GB for small_cnn's "
                                        r"activations, but cpu has 1.0 GB free: lower --input-size or --batch-size$"):
        memory.check_training_fits(small, "small_cnn", 1000, 18, torch.device("cpu"), half=False)
    with pytest.raises(SadhError, match=r"^--input-size 28 does not fit efficientnet_lite0 \(.+\); use a larger one$"):  # the reason is torch's
        memory.check_training_fits(create_model("efficientnet_lite0", 16, 10), "efficientnet_lite0", 28, 4, torch.device("cpu"), False)
