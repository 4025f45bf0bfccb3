"""Encode images with a trained network (batched, no grad, eval preprocessing) and score mAP via sdk.evaluation."""
from __future__ import annotations

import contextlib
from typing import ContextManager

import numpy as np
import torch

from ..sdk.codes import pack_codes
from ..sdk.data import LabeledImages
from ..sdk.evaluation import score
from ..sdk.preprocess import Preprocess
from .augment import center_crop, normalize
from .cache import cache_images
from .distributed import DistInfo, gather_rows
from .model import ImageHashNet

@torch.no_grad()
def encode_cached(
    model: ImageHashNet,
    images: np.ndarray,
    pre: Preprocess,
    batch_size: int = 256,
    autocast: ContextManager | None = None,
    dist_info: DistInfo | None = None,
) -> np.ndarray:
    """Packed uint8 codes of cached fit_square images (n, S, S, 3); sharded over ranks when `dist_info` has several."""
    rank, world = (dist_info.rank, dist_info.world_size) if dist_info else (0, 1)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    mine = np.arange(rank, len(images), world)
    codes = []
    for start in range(0, len(mine), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(images[mine[start : start + batch_size]])).to(device)
        with autocast or contextlib.nullcontext():
            u = model.encode(normalize(center_crop(batch, pre.input_size), pre.mean, pre.std))
        codes.append(u.float() > 0)
    model.train(was_training)
    local = torch.cat(codes) if codes else torch.zeros((0, model.bits), dtype=torch.bool, device=device)
    if world > 1:
        local = gather_rows(local.to(torch.uint8), len(images), dist_info).bool()
    return pack_codes(local.cpu().numpy())


def encode(model: ImageHashNet, data: LabeledImages, pre: Preprocess, batch_size: int = 256) -> np.ndarray:
    """Packed uint8 codes of every image in `data` (decoded, fit_square, centre crop, normalise)."""
    cached = cache_images(data, np.arange(len(data)), pre.resize_size)
    return encode_cached(model, cached, pre, batch_size)


def evaluate_map(
    model: ImageHashNet,
    query: LabeledImages,
    database: LabeledImages,
    pre: Preprocess,
    topk: int | None = None,
    batch_size: int = 256,
) -> float:
    """mAP@topk of `query` against `database` (topk None: the convention for its labels and name, see
    `sadh.sdk.evaluation.cutoff`)."""
    q, db = encode(model, query, pre, batch_size), encode(model, database, pre, batch_size)
    return score(q, db, query.labels, database.labels, dataset=database.name, topk=topk, curves=False)["map"]
