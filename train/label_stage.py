"""Stage 1: train the label network from the training label matrix alone (no images), then freeze it."""
from __future__ import annotations

import math

import numpy as np
import torch

from ..sdk.errors import SadhError
from .config import TrainConfig
from .losses import label_margin, label_net_loss
from .model import LabelNet
from .progress import ProgressBar

LR_DECAY = 0.1


def train_label_net(
    labels: np.ndarray, cfg: TrainConfig, device: torch.device, progress: bool = False
) -> tuple[LabelNet, list[float]]:
    """Train LabelNet(c, cfg.bits) on `labels` (n, c) with Adam and step decay; returns it frozen, with per-epoch losses."""
    if len(labels) == 0:
        raise SadhError("the training split is empty: the label network needs at least one label row")
    torch.manual_seed(cfg.seed)
    net = LabelNet(labels.shape[1], cfg.bits).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.label_lr, weight_decay=cfg.label_weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.label_milestones), gamma=LR_DECAY)
    gen = torch.Generator().manual_seed(cfg.seed)
    y_all = torch.from_numpy(np.ascontiguousarray(labels)).float()
    margin = label_margin(cfg.label_margin, labels.shape[1])
    steps = math.ceil(len(y_all) / cfg.label_batch_size)
    losses = []
    bar = ProgressBar(total=cfg.label_epochs * steps, desc=f"label net {cfg.bits}b", unit="step", disable=not progress)
    with bar:
        for epoch in range(cfg.label_epochs):
            perm = torch.randperm(len(y_all), generator=gen)
            total = 0.0
            for start in range(0, len(y_all), cfg.label_batch_size):
                y = y_all[perm[start : start + cfg.label_batch_size]].to(device)
                loss, _ = label_net_loss(net(y), y, margin=margin)
                value = loss.item()
                if not math.isfinite(value):
                    raise SadhError(f"label network loss became {value} in epoch {epoch + 1}; lower --label-lr")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += value
                bar.update()
                bar.set_postfix(loss=f"{value:.4f}")
            sched.step()
            losses.append(total / steps)
    net.eval().requires_grad_(False)
    return net, losses
