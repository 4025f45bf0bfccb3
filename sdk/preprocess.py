"""Image preprocessing shared by training and deployment (numpy + OpenCV only).

One pipeline, two halves, so training and the camera runtime cannot drift apart:

1. ``fit_square``: any BGR/gray/BGRA uint8 frame -> RGB uint8, shorter side resized to
   ``resize_size``, centre-cropped to a ``resize_size`` square. Training caches this output.
2. ``center_crop`` to ``input_size`` (training draws a random crop instead), then
   ``normalize``: scale to [0, 1], subtract mean, divide by std, NCHW float32.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import numpy as np

from .errors import SadhError
from .json_text import parse_json
from .extras import require

INTERPOLATION = "area"  # how fit_square resizes: pixel-area averaging when shrinking (bilinear when enlarging)
MIN_GRAY_BATCH_WIDTH = 8  # a 3-D array with a shorter last axis is never read as a batch of gray frames
MAX_ASPECT = 8  # a longer side beyond 8x the shorter is cropped (centred) before resizing: the crop never reaches it


@dataclass(frozen=True)
class Preprocess:
    """Preprocessing constants; stored in checkpoints and in ONNX metadata. mean/std have no default: they are the
    model's (a backbone's entry, or the model's metadata)."""

    input_size: int
    resize_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channel_order: str = "RGB"

    def __post_init__(self) -> None:
        if self.input_size < 8 or self.resize_size < self.input_size:
            raise SadhError(
                f"bad preprocessing sizes: input_size={self.input_size}, resize_size={self.resize_size} "
                "(need 8 <= input_size <= resize_size)"
            )
        if len(self.mean) != 3 or len(self.std) != 3 or not np.isfinite(self.mean + self.std).all() or min(self.std) <= 0:
            raise SadhError(f"bad mean/std: mean={self.mean}, std={self.std} (need 3 finite values each, std > 0)")
        if self.channel_order != "RGB":
            raise SadhError(f"unsupported channel order {self.channel_order!r} (only RGB)")

    def to_json(self) -> str:
        """Serialise to a JSON string."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Preprocess":
        """Parse what ``to_json`` wrote."""
        try:
            d = parse_json(text)
            return cls(
                input_size=int(d["input_size"]),
                resize_size=int(d["resize_size"]),
                mean=tuple(float(v) for v in d["mean"]),
                std=tuple(float(v) for v in d["std"]),
                channel_order=str(d.get("channel_order", "RGB")),
            )
        except (ValueError, KeyError, TypeError, OverflowError) as e:
            raise SadhError(f"bad preprocessing metadata {text!r:.80}: {e}") from None


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Convert a BGR, BGRA or grayscale uint8 frame (as OpenCV gives them) to RGB uint8 HxWx3."""
    if not isinstance(image, np.ndarray):
        raise SadhError(f"expected an image as a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise SadhError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim in (2, 3) and min(image.shape[:2]) < 1:
        raise SadhError(f"empty image of shape {image.shape}")
    cv2 = require("cv2")
    if image.ndim == 2:
        out = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    elif image.ndim == 3 and image.shape[2] == 3:
        out = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif image.ndim == 3 and image.shape[2] == 4:
        out = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    else:
        raise SadhError(f"expected an image of shape HxW, HxWx1, HxWx3 or HxWx4, got {image.shape}")
    return out


def fit_square(image: np.ndarray, size: int) -> np.ndarray:
    """Frame -> RGB uint8 size x size: shorter side resized to `size`, then centre-cropped.

    A frame more elongated than MAX_ASPECT : 1 is first cropped to that ratio around its centre, so a 1 x 1,000,000
    strip costs a size x 8*size resize rather than size x 1,000,000*size."""
    rgb = to_rgb(image)
    h, w = rgb.shape[:2]
    short, long = min(h, w), max(h, w)
    keep = MAX_ASPECT * short + (long - MAX_ASPECT * short) % 2  # as much cut off each end: the centre stays put
    if long > keep:
        top, left = (h - min(h, keep)) // 2, (w - min(w, keep)) // 2
        rgb = rgb[top : top + min(h, keep), left : left + min(w, keep)]
        h, w = rgb.shape[:2]
    scale = size / short
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    if (nh, nw) != (h, w):
        cv2 = require("cv2")
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        try:
            rgb = cv2.resize(rgb, (nw, nh), interpolation=interp)
        except cv2.error as e:
            raise SadhError(f"cannot resize a {h}x{w} frame to {nh}x{nw}: {str(e).strip().splitlines()[-1]}") from None
    return center_crop(rgb, size)


def center_crop(images: np.ndarray, size: int) -> np.ndarray:
    """Centre crop of the last-but-one two axes (HxWxC or NxHxWxC) to size x size."""
    h, w = images.shape[-3], images.shape[-2]
    if h < size or w < size:
        raise SadhError(f"cannot crop {size}x{size} from an image of {h}x{w}")
    top, left = (h - size) // 2, (w - size) // 2
    return images[..., top : top + size, left : left + size, :]


def normalize(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """RGB uint8 NHWC -> float32 NCHW, (x / 255 - mean) / std."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise SadhError(f"expected RGB uint8 NxHxWx3, got {images.dtype} {images.shape}")
    x = images.astype(np.float32) * np.float32(1 / 255)
    x -= np.asarray(mean, dtype=np.float32)
    x /= np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def as_frames(images: np.ndarray | Iterable[np.ndarray]) -> Sequence[np.ndarray]:
    """One frame or a batch/list of frames -> a sliceable sequence of frames (slices map to the same frames).

    Arrays: HxW and HxWxC with C in 1, 3, 4 are one frame; NxHxWxC is a batch; NxHxW is a batch of gray
    frames only when W >= MIN_GRAY_BATCH_WIDTH, since a last axis of 2 or 5..7 reads as an unsupported
    channel count just as well (pass such frames as a list or as NxHxWx1).
    """
    if isinstance(images, np.ndarray):
        if images.ndim == 2 or (images.ndim == 3 and images.shape[-1] in (1, 3, 4)):
            return [images]
        if images.ndim == 4 or (images.ndim == 3 and images.shape[-1] >= MIN_GRAY_BATCH_WIDTH):
            return images
        raise SadhError(
            f"expected a frame (HxW, HxWx1, HxWx3, HxWx4) or a batch (NxHxWxC, NxHxW with W >= {MIN_GRAY_BATCH_WIDTH}, "
            f"or a list), got an array of shape {images.shape}"
        )
    if isinstance(images, (list, tuple)):
        return images
    if isinstance(images, (str, bytes, dict)):
        raise SadhError(f"expected a frame, a batch or a list of frames, got {type(images).__name__}")
    try:
        return list(images)
    except TypeError:
        raise SadhError(f"expected a frame, a batch or a list of frames, got {type(images).__name__}") from None


def preprocess(images: np.ndarray | Iterable[np.ndarray], cfg: Preprocess) -> np.ndarray:
    """One frame or a batch/list of BGR/gray/BGRA uint8 frames (any sizes; see `as_frames`) -> float32 NCHW model input."""
    frames = as_frames(images)
    if not len(frames):
        raise SadhError("no images to preprocess")
    batch = np.stack([center_crop(fit_square(f, cfg.resize_size), cfg.input_size) for f in frames])
    return normalize(batch, cfg.mean, cfg.std)
