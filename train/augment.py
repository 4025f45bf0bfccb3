"""Batch-wise augmentation on uint8 NHWC tensors, then the sdk's normalisation formula in float32.

Train: a random input_size crop of each cached resize_size image and a random horizontal flip, done as
one gather. Eval: the centre crop ``sadh.sdk.preprocess.center_crop`` takes, so eval inputs equal
``sadh.sdk.preprocess.preprocess(image, cfg)`` bit for bit.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..sdk.errors import SadhError

INV_255 = torch.tensor(1 / 255, dtype=torch.float32)


def _check(images: Tensor, size: int) -> None:
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != torch.uint8:
        raise SadhError(f"expected uint8 NxHxWx3 images, got {images.dtype} {tuple(images.shape)}")
    if images.shape[1] < size or images.shape[2] < size:
        raise SadhError(f"cannot crop {size}x{size} from images of {images.shape[1]}x{images.shape[2]}")


def crop(images: Tensor, size: int, top: Tensor, left: Tensor, flip: Tensor) -> Tensor:
    """Per-image size x size crops at (top, left), mirrored where `flip`, of uint8 NHWC images (one gather)."""
    steps = torch.arange(size, device=images.device)
    rows = top.to(images.device)[:, None] + steps
    cols = left.to(images.device)[:, None] + torch.where(flip.to(images.device)[:, None], size - 1 - steps, steps)
    n = torch.arange(images.shape[0], device=images.device)
    return images[n[:, None, None], rows[:, :, None], cols[:, None, :]]


def random_crop_flip(images: Tensor, size: int, generator: torch.Generator) -> Tensor:
    """Training augmentation: random size x size crop and random horizontal flip (draws from `generator`)."""
    _check(images, size)
    n, h, w = images.shape[:3]
    top = torch.randint(0, h - size + 1, (n,), generator=generator)
    left = torch.randint(0, w - size + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    return crop(images, size, top, left, flip)


def center_crop(images: Tensor, size: int) -> Tensor:
    """Evaluation crop: the same centre window as `sadh.sdk.preprocess.center_crop`."""
    _check(images, size)
    h, w = images.shape[1:3]
    top, left = (h - size) // 2, (w - size) // 2
    return images[:, top : top + size, left : left + size, :]


def normalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """uint8 NHWC -> float32 NCHW (channels-last memory), (x * (1/255) - mean) / std as the sdk computes it."""
    dev = images.device
    x = images.to(torch.float32) * INV_255.to(dev)
    x = (x - torch.tensor(mean, dtype=torch.float32, device=dev)) / torch.tensor(std, dtype=torch.float32, device=dev)
    return x.permute(0, 3, 1, 2)
