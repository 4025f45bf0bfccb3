"""The per-backbone preprocessing config (timm's default_cfg): one builder, so the keys are written once."""

from sadh.sdk.preprocess import IMAGENET_MEAN, IMAGENET_STD


def make_cfg(
    input_size: int,
    resize_size: int,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> dict:
    """default_cfg dict: input_size (crop), resize_size (shorter side before the crop), mean, std (0–1 units)."""
    return {"input_size": input_size, "resize_size": resize_size, "mean": tuple(mean), "std": tuple(std)}
