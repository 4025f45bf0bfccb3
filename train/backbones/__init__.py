"""Backbones with one interface: `num_features`, `forward_features(x) -> (n, num_features)`, `default_cfg`."""

from collections.abc import Callable
from typing import NamedTuple

from torch import nn

from sadh.sdk.errors import SadhError
from sadh.train.backbones.efficientnet_lite import efficientnet_lite0, shipped_efficientnet_lite0_weights
from sadh.train.backbones.resnet import resnet18, resnet50
from sadh.train.backbones.small_cnn import small_cnn
from sadh.train.backbones.weights import load_weights


class BackboneEntry(NamedTuple):
    """How to build a backbone, where its shipped weights are (if any), which checkpoint keys to ignore, and whether
    it is an ImageNet architecture (meant to be fine-tuned from pretrained weights, not trained from scratch)."""

    build: Callable[..., nn.Module]
    shipped_weights: Callable[[], str] | None
    ignore_prefixes: tuple[str, ...]
    imagenet: bool


BACKBONES: dict[str, BackboneEntry] = {
    "small_cnn": BackboneEntry(small_cnn, None, (), imagenet=False),
    "efficientnet_lite0": BackboneEntry(efficientnet_lite0, shipped_efficientnet_lite0_weights, ("_fc.",), imagenet=True),
    "resnet18": BackboneEntry(resnet18, None, ("fc.",), imagenet=True),
    "resnet50": BackboneEntry(resnet50, None, ("fc.",), imagenet=True),
}


def backbone_entry(name: str) -> BackboneEntry:
    """The registry entry of a backbone; SadhError listing the known backbones for any other name."""
    if not isinstance(name, str) or name not in BACKBONES:
        raise SadhError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[name]


def create_backbone(name: str, pretrained: bool | str = False) -> nn.Module:
    """Build a backbone by name; pretrained=True loads the shipped ImageNet weights, a str path loads a file."""
    entry = backbone_entry(name)
    model = entry.build()
    if pretrained is True:
        if entry.shipped_weights is None:
            raise SadhError(f"no pretrained weights ship offline for {name}; pass --backbone-weights PATH")
        load_weights(model, entry.shipped_weights(), entry.ignore_prefixes)
    elif isinstance(pretrained, str) and pretrained:
        load_weights(model, pretrained, entry.ignore_prefixes)
    elif pretrained is not False:
        raise SadhError(f"pretrained must be True, False or a weights file path, got {pretrained!r}")
    return model


__all__ = ["BACKBONES", "backbone_entry", "create_backbone", "load_weights"]
