"""Stage 2: train the image hashing network (SADH, or the DPSH / CSQ baselines in the same harness).

Read top to bottom: config -> data and cache -> model -> stage 1 (SADH) -> optimiser -> resume -> loop.
Runs as one process (CPU or GPU) or under `torchrun` (DDP). Shuffling comes from a DistributedSampler
seeded by (seed, epoch) and augmentation from a generator seeded by (seed, epoch, rank), so a run resumed
from an epoch-end checkpoint draws exactly what the uninterrupted run drew.
"""
from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from ..sdk.atomic import interrupts_deferred, remove_stale_temps, unwritable_reason
from ..sdk.data import LabeledImages, Split, database_subset
from ..sdk.errors import SadhError
from ..sdk.evaluation import cutoff, score
from . import distributed
from .augment import normalize, random_crop_flip
from .baselines import CSQCentres, csq_loss, dpsh_loss
from .cache import cache_images
from .checkpoint import load_checkpoint, save_checkpoint, without_training_state
from .config import TrainConfig, resume_config
from .dictionary import Dictionaries, build_dictionaries
from .evaluate import encode_cached
from .label_stage import train_label_net
from .loader import BatchLoader
from .losses import SadhWeights, fp32_region, sadh_loss
from .memory import check_training_fits
from .model import ImageHashNet, ImageOutput, LabelNet, create_model, initial_weights, random_start_warning
from .progress import ProgressBar
from .run_folder import RunFolder

LossFn = Callable[[ImageOutput, torch.Tensor], tuple[torch.Tensor, dict[str, torch.Tensor]]]
CHECK_EVERY = 25  # training steps between loss read-backs (the NaN check and the progress bar)
RESUME_KEYS = (
    "model", "optimizer", "scheduler", "scaler", "config", "epoch", "step", "best_map", "history", "num_classes"
)


@dataclass
class TrainResult:
    """Where a finished run lives and how well it did."""

    run_dir: Path
    bits: int
    best: Path
    last: Path
    best_map: float | None
    history: list[dict[str, Any]]
    model: ImageHashNet  # the network after the last epoch (identical on every rank)


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for an --amp setting (auto: bf16 on GPUs with bf16, fp16 on other GPUs, off on CPU)."""
    if amp == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]


def make_optimizer(cfg: TrainConfig, params: Any) -> torch.optim.Optimizer:
    """The stage-2 optimiser the config names."""
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.RMSprop(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(cfg: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """Per-step lr multiplier: linear warm-up, then cosine to zero (or constant)."""
    total = cfg.epochs * steps_per_epoch
    warmup = max(1, round(cfg.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        ramp = min(1.0, (step + 1) / warmup)
        return ramp * (0.5 * (1 + math.cos(math.pi * step / total)) if cfg.schedule == "cosine" else 1.0)

    return factor


def epoch_seed(cfg: TrainConfig, epoch: int, rank: int) -> int:
    """The seed of one rank's augmentation and dropout in one epoch."""
    return cfg.seed * 1_000_003 + epoch * 1_009 + rank


def check_labels(data: LabeledImages, split: Split, num_classes: int | None = None) -> None:
    """Raise SadhError for an empty training split, unlabelled training items or a class-count mismatch."""
    if len(split.train) == 0:
        raise SadhError("the training split is empty; give the dataset training items")
    if num_classes is not None and data.num_classes != num_classes:
        raise SadhError(
            f"the data has {data.num_classes} classes but the network was trained for {num_classes}; "
            "resume with the same dataset or start a new run"
        )
    if not data.labels[split.train].any(axis=1).all():
        raise SadhError("some training items have no label; every training item needs at least one")


def _make_loss(
    cfg: TrainConfig,
    train_labels: np.ndarray,
    device: torch.device,
    state: dict[str, Any] | None,
    info: distributed.DistInfo,
) -> tuple[LossFn, dict[str, Any]]:
    """The method's loss function and what the checkpoint must keep to rebuild it."""
    if cfg.method == "dpsh":
        return (lambda out, y: dpsh_loss(out.u, y, eta=cfg.dpsh_eta)), {}
    if cfg.method == "csq":
        centres = CSQCentres(cfg.bits, train_labels.shape[1], seed=cfg.seed).to(device)
        return (lambda out, y: csq_loss(out.u, y, centres, lam=cfg.csq_lam)), {}
    label_net = LabelNet(train_labels.shape[1], cfg.bits).to(device)
    if state is not None:
        label_net.load_state_dict(state["label_net"])
        label_net.eval().requires_grad_(False)
        dicts = Dictionaries(*(state["dictionaries"][k].to(device) for k in Dictionaries._fields))
    else:
        label_net, _ = train_label_net(train_labels, cfg, device, progress=cfg.progress and info.is_main)
        distributed.broadcast_module(label_net, info)
        dicts = build_dictionaries(label_net, train_labels)
    weights = SadhWeights(cfg.lam, cfg.alpha, cfg.beta, cfg.eta)

    def loss(out: ImageOutput, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with torch.no_grad(), fp32_region(y):  # the frozen targets in float32 like the dictionaries, not in bf16/fp16
            target = label_net(y)
        return sadh_loss(out, y, target, dicts, weights)

    return loss, {"label_net": label_net, "dictionaries": dicts}


def _to_state(parts: dict[str, Any]) -> dict[str, Any]:
    """Checkpoint entries for a method's parts: module state dicts, dictionaries as a dict of tensors."""
    return {
        key: value.state_dict() if isinstance(value, torch.nn.Module) else {k: v.cpu() for k, v in value._asdict().items()}
        for key, value in parts.items()
    }


def train(
    cfg: TrainConfig, data: LabeledImages | None = None, split: Split | None = None, asked: Collection[str] | None = None
) -> TrainResult:
    """Train one model as `cfg` says (under torchrun: one DDP rank of it); checkpoints go to {out}/{name}/.

    With `cfg.resume` the saved run continues (see `resume_config`); `asked` names the settings the caller chose
    (None: all), and those the saved run overrides are reported in one line. A resumed run trains on its own data and
    saved split: `data` / `split` are used only when its data settings are the caller's, and data whose labels changed
    since the run started is refused."""
    info = distributed.setup(cfg.device)
    run = RunFolder.of(cfg)
    run_dir, last_path, best_path = run.path, run.last, run.best
    main = info.is_main and cfg.progress
    for path in run.files() if info.is_main else ():  # rank 0 writes
        reason = unwritable_reason(path)
        if reason:
            raise SadhError(f"cannot write {path}: {reason}")
    state, requested = None, cfg
    if cfg.resume and last_path.is_file():
        state = load_checkpoint(last_path, RESUME_KEYS)
        saved_run = run.saved_from(state)
        saved, done = saved_run.config, saved_run.epoch
        trained_by = int(state.get("world_size", info.world_size))  # runs saved before it was recorded: not checked
        if trained_by != info.world_size:
            raise SadhError(
                f"{run_dir} was trained by {trained_by} process{'es' * (trained_by != 1)} and this is {info.world_size}: resume "
                f"it with {trained_by} (torchrun --nproc_per_node), as its schedule and data shards count steps per process"
            )
        try:
            cfg, ignored = resume_config(saved, cfg, cfg.to_dict() if asked is None else asked, done)
        except SadhError as e:
            raise SadhError(f"{run_dir}: {e}") from None
        if main and ignored:
            ProgressBar.write(f"{run_dir} keeps its saved settings; ignored: {'; '.join(ignored)}")
        if main:
            ProgressBar.write(
                f"resuming {run_dir} after epoch {done} of {cfg.epochs}" if done < cfg.epochs
                else f"{run_dir} is finished (epoch {done} of {cfg.epochs}); nothing left to train"
            )
    elif last_path.is_file():
        raise SadhError(f"{run_dir} already holds a run; pass --resume to continue it, or choose another --out / run name")
    elif cfg.resume and main:
        ProgressBar.write(f"nothing to resume in {run_dir}; starting a new run")
    if state is None:  # a new run: say (or, under the reference recipe, refuse) when its backbone starts untrained
        warning = random_start_warning(cfg)
        if warning and info.is_main:
            ProgressBar.write(f"warning: {warning}", file=sys.stderr)
    if info.is_main:  # this process alone writes the run's checkpoints: temp files there are a killed run's
        for path in (last_path, best_path):
            remove_stale_temps(path)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if info.device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:  # fixed input size: let cuDNN pick the fastest kernels once; TF32 for fp32 convolutions, not matmuls
        torch.backends.cudnn.benchmark = True  # (the losses' similarity matmuls run in float32 on purpose, outside autocast)
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, False

    # data: what the caller loaded for `requested`, unless the resumed run names other data (it trains on its own);
    # a resumed run keeps the split it saved, and refuses data whose labels changed since
    if data is None or split is None or cfg.dataset_settings() != requested.dataset_settings():
        data, split = cfg.load()
    if state is not None:
        split = run.split(data) or split
    check_labels(data, split, None if state is None else int(state["num_classes"]))

    # model
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.backbone, cfg.bits, data.num_classes, pretrained=initial_weights(cfg)).to(info.device)
    channels_last = cfg.channels_last if cfg.channels_last is not None else info.device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    pre = cfg.preprocess()
    half = autocast_dtype(cfg.amp, info.device) is not None
    check_training_fits(model, cfg.backbone, pre.input_size, min(cfg.batch_size, len(split.train)), info.device, half)

    # images, decoded once at the training resolution
    cache_dir = cfg.cache_dir or Path(cfg.out) / "cache"
    eval_db = database_subset(split.database, cfg.eval_database, cfg.seed)
    topk, topk_source = cutoff(data.labels[eval_db], data.name, cfg.topk)
    if main:
        ranks = f" x {info.world_size} processes" if info.world_size > 1 else ""
        epochs = f"{cfg.epochs} epoch{'s' * (cfg.epochs != 1)}"
        ProgressBar.write(
            f"{run_dir}: {cfg.method}, {cfg.backbone} at {pre.input_size} px, {cfg.bits} bits, {epochs} on {info.device}{ranks}; "
            f"{data.name}: {data.num_classes} classes, {len(split.train)} training images, mAP@{topk or 'all'} ({topk_source}) "
            f"of {len(split.query)} queries against {len(eval_db)} of {len(split.database)} database items"
        )
    with distributed.main_first(info):
        train_images, query_images, db_images = (
            cache_images(data, idx, pre.resize_size, cache_dir, cfg.workers, progress=main)
            for idx in (split.train, split.query, eval_db)
        )
    train_labels = data.labels[split.train]
    y_train = torch.from_numpy(train_labels).float()

    # the method's loss (SADH: stage 1 trains the label network here)
    loss_fn, method_parts = _make_loss(cfg, train_labels, info.device, state, info)

    # optimiser, schedule, precision
    sampler = DistributedSampler(range(len(split.train)), info.world_size, info.rank, shuffle=True, seed=cfg.seed)
    local_n = len(sampler)
    steps_per_epoch = max(1, local_n // cfg.batch_size)
    optimizer = make_optimizer(cfg, model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, steps_per_epoch))
    amp_dtype = autocast_dtype(cfg.amp, info.device)
    scaler = torch.amp.GradScaler(info.device.type, enabled=amp_dtype == torch.float16)
    autocast = (
        torch.autocast(info.device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
    )

    # resume
    start_epoch, step, best_map, history = 0, 0, None, []
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, step, best_map = int(state["epoch"]), int(state["step"]), state["best_map"]
        history = list(state["history"])
        if info.is_main:
            run.write_log(history)

    net = torch.compile(model) if cfg.compile else model
    if info.world_size > 1:
        net = DistributedDataParallel(
            net,
            device_ids=[info.device.index] if info.device.type == "cuda" else None,
            find_unused_parameters=cfg.method != "sadh",
        )
    if info.is_main and state is None:
        run.save_split(split, data)

    def checkpoint(epoch: int) -> dict[str, Any]:
        return {
            "model": model.state_dict(),
            **_to_state(method_parts),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "config": cfg.to_dict(),
            "epoch": epoch,
            "step": step,
            "world_size": info.world_size,
            "best_map": best_map,
            "history": history,
            "preprocess": pre.to_json(),
            "class_names": list(data.class_names),
            "dataset": data.name,
            "method": cfg.method,
            "backbone": cfg.backbone,
            "bits": cfg.bits,
            "num_classes": data.num_classes,
        }

    def train_step(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """One optimiser step on a uint8 batch; returns the loss averaged over ranks, still on the device."""
        x = normalize(random_crop_flip(x, pre.input_size, gen), pre.mean, pre.std)
        if not channels_last:
            x = x.contiguous()
        with autocast:
            loss, _ = loss_fn(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        return distributed.mean_over_ranks(loss, info)

    def check_finite(losses: list[float], first_step: int, epoch: int) -> None:
        """Raise SadhError at the first NaN/inf loss; steps are numbered from 1 over the whole run."""
        bad = next((i for i, v in enumerate(losses) if not math.isfinite(v)), None)
        if bad is not None:
            good = f"{last_path} (epoch {epoch}) is intact" if last_path.is_file() else "no checkpoint was written yet"
            raise SadhError(
                f"loss became {losses[bad]} at step {first_step + bad + 1} (epoch {epoch + 1}); training stopped, "
                f"{good}; try a lower --lr or --amp off"
            )

    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        order = np.fromiter(iter(sampler), dtype=np.int64, count=local_n)
        gen = torch.Generator().manual_seed(epoch_seed(cfg, epoch, info.rank))
        torch.manual_seed(epoch_seed(cfg, epoch, info.rank))
        model.train()
        bar = ProgressBar(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step", disable=not main, leave=False)
        t0, losses, checked = time.perf_counter(), torch.zeros(steps_per_epoch, device=info.device), []
        with bar, BatchLoader(train_images, y_train, order, cfg.batch_size, steps_per_epoch, info.device) as loader:
            for b, (x, y) in enumerate(loader):
                losses[b] = train_step(x, y, gen)
                bar.update()
                if (b + 1) % CHECK_EVERY == 0 or b + 1 == steps_per_epoch:  # reading losses waits for the GPU
                    recent = losses[len(checked) : b + 1].tolist()
                    check_finite(recent, step + len(checked), epoch)
                    checked += recent
                    rate = (b + 1) * min(cfg.batch_size, local_n) * info.world_size / (time.perf_counter() - t0)
                    bar.set_postfix(loss=f"{recent[-1]:.4f}", img_s=f"{rate:.0f}")
        step += steps_per_epoch
        distributed.broadcast_module(model, info)  # DDP keeps BatchNorm statistics per rank: take rank 0's
        seconds = time.perf_counter() - t0
        entry: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": step,
            "loss": sum(checked) / steps_per_epoch,
            "lr": optimizer.param_groups[0]["lr"],
            "images_per_s": steps_per_epoch * min(cfg.batch_size, local_n) * info.world_size / seconds,
            "seconds": seconds,
            "finished_at": time.time(),
            "map": None,
        }
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            q = encode_cached(model, query_images, pre, cfg.eval_batch_size, autocast, info)
            db = encode_cached(model, db_images, pre, cfg.eval_batch_size, autocast, info)
            if info.is_main:
                labels = data.labels[split.query], data.labels[eval_db]
                entry["map"] = score(q, db, *labels, dataset=data.name, topk=cfg.topk, curves=False)["map"]
                entry["eval_seconds"] = time.perf_counter() - t0 - seconds
        history.append(entry)
        if info.is_main:
            improved = entry["map"] is not None and (best_map is None or entry["map"] > best_map)
            if improved:
                best_map = entry["map"]
            ckpt = checkpoint(epoch + 1)
            with interrupts_deferred():  # best.pt, last.pt and the log line are one step: a Ctrl-C waits for all three
                if improved:
                    save_checkpoint(best_path, without_training_state(ckpt))
                save_checkpoint(last_path, ckpt)
                run.write_log(history)
            if cfg.progress:
                shown = f", mAP {entry['map']:.4f}" if entry["map"] is not None else ""
                rate = entry["images_per_s"]
                ProgressBar.write(f"epoch {epoch + 1}/{cfg.epochs}: loss {entry['loss']:.4f}, {rate:.0f} img/s{shown}")
        distributed.barrier(info)
    return TrainResult(run_dir, cfg.bits, best_path, last_path, best_map, history, model)
