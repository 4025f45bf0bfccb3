"""Batch-wise augmentation on uint8 NHWC tensors, then the sdk's normalisation formula in float32.

Train: a random input_size crop of each cached resize_size image and a random horizontal flip, done as
one gather. Eval: the centre crop ``sadh.sdk.preprocess.center_crop`` takes, so eval inputs equal
``sadh.sdk.preprocess.preprocess(image, cfg)`` bit for bit.
"""
from __future__ import annotations

import functools
from typing import Sequence

import torch
from torch import Tensor

from ..sdk.errors import SadhError



def to_device(t: Tensor, device: torch.device) -> Tensor:
    """A small host tensor on `device`; on CUDA through pinned memory, so the copy does not wait for the GPU."""
    return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" and t.device.type == "cpu" else t.to(device)


@functools.lru_cache(maxsize=32)
def _constants(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """1/255, mean and std as float32 tensors on `device`, made once per device."""
    return tuple(to_device(torch.tensor(v, dtype=torch.float32), device) for v in (1 / 255, mean, std))


def _check(images: Tensor, size: int) -> None:
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != torch.uint8:
        raise SadhError(f"expected uint8 NxHxWx3 images, got {images.dtype} {tuple(images.shape)}")
    if images.shape[1] < size or images.shape[2] < size:
        raise SadhError(f"cannot crop {size}x{size} from images of {images.shape[1]}x{images.shape[2]}")


def crop(images: Tensor, size: int, top: Tensor, left: Tensor, flip: Tensor) -> Tensor:
    """Per-image size x size crops at (top, left), mirrored where `flip`, of uint8 NHWC images (one gather)."""
    dev = images.device
    steps = torch.arange(size, device=dev)
    rows = to_device(top, dev)[:, None] + steps
    cols = to_device(left, dev)[:, None] + torch.where(to_device(flip, dev)[:, None], size - 1 - steps, steps)
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
    inv_255, mean_t, std_t = _constants(tuple(map(float, mean)), tuple(map(float, std)), images.device)
    x = images.to(torch.float32) * inv_255
    x = (x - mean_t) / std_t
    return x.permute(0, 3, 1, 2)
