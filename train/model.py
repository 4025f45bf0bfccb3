"""SADH's two networks: the label network (stage 1) and the image hashing network (stage 2)."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor, nn

from sadh.sdk.codes import MAX_TRAINED_BITS, check_bits
from sadh.sdk.errors import SadhError
from sadh.train.backbones import backbone_entry, create_backbone

if TYPE_CHECKING:
    from sadh.train.config import TrainConfig

FEAT_DIM = 2048
LABEL_HIDDEN = 4096
HEAD_INIT_STD = 0.01


class LabelOutput(NamedTuple):
    """Label network outputs: semantic feature f_t, tanh code u_t, label reconstruction ŷ_t."""

    f: Tensor
    u: Tensor
    y_hat: Tensor


class ImageOutput(NamedTuple):
    """Image network outputs: feature f, tanh code u, class logits."""

    f: Tensor
    u: Tensor
    logits: Tensor


def init_linear(layer: nn.Linear) -> nn.Linear:
    """Initialise a linear layer as the spec says: weights N(0, 0.01), zero bias."""
    nn.init.normal_(layer.weight, mean=0.0, std=HEAD_INIT_STD)
    nn.init.zeros_(layer.bias)
    return layer


def validate_num_classes(num_classes: int) -> int:
    """Return num_classes if it is an integer ≥ 1, else raise SadhError."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise SadhError(f"num_classes must be an integer ≥ 1, got {num_classes!r}")
    return num_classes


class LabelNet(nn.Module):
    """Self-supervised semantic network: multi-hot label → (f_t, u_t, ŷ_t); never sees an image."""

    def __init__(self, num_classes: int, bits: int, hidden: int = LABEL_HIDDEN, feat_dim: int = FEAT_DIM) -> None:
        super().__init__()
        self.num_classes = validate_num_classes(num_classes)
        self.bits = check_bits(bits, MAX_TRAINED_BITS)
        self.body = nn.Sequential(
            init_linear(nn.Linear(num_classes, hidden)), nn.ReLU(inplace=True), init_linear(nn.Linear(hidden, feat_dim))
        )
        self.code = init_linear(nn.Linear(feat_dim, bits))
        self.reconstruct = init_linear(nn.Linear(feat_dim, num_classes))

    def forward(self, y: Tensor) -> LabelOutput:
        """Map label vectors (n, c) to the semantic feature, code and reconstruction."""
        f = self.body(y.to(self.code.weight.dtype))
        return LabelOutput(f, torch.tanh(self.code(f)), self.reconstruct(f))


class ImageHashNet(nn.Module):
    """Feature learning network: backbone → pooled x → f = Linear(x), u = tanh(Linear(x)), logits = Linear(f)."""

    def __init__(self, backbone: nn.Module, bits: int, num_classes: int, feat_dim: int = FEAT_DIM) -> None:
        super().__init__()
        self.bits = check_bits(bits, MAX_TRAINED_BITS)
        self.num_classes = validate_num_classes(num_classes)
        self.backbone = backbone
        self.feature = init_linear(nn.Linear(backbone.num_features, feat_dim))
        self.code = init_linear(nn.Linear(backbone.num_features, bits))
        self.classifier = init_linear(nn.Linear(feat_dim, num_classes))

    def forward(self, x: Tensor) -> ImageOutput:
        """Images (n, 3, h, w) → feature, continuous code and class logits."""
        pooled = self.backbone.forward_features(x)
        f = self.feature(pooled)
        return ImageOutput(f, torch.tanh(self.code(pooled)), self.classifier(f))

    def encode(self, x: Tensor) -> Tensor:
        """Images (n, 3, h, w) → continuous tanh codes (n, bits); the export/inference path (b = sign(u))."""
        return torch.tanh(self.code(self.backbone.forward_features(x)))


def create_model(backbone: str, bits: int, num_classes: int, pretrained: bool | str = False) -> ImageHashNet:
    """Build the image hashing network on a named backbone (pretrained: True = shipped weights, str = a file)."""
    check_bits(bits, MAX_TRAINED_BITS)
    validate_num_classes(num_classes)
    return ImageHashNet(create_backbone(backbone, pretrained=pretrained), bits, num_classes)


def initial_weights(cfg: TrainConfig) -> bool | str:
    """`create_model`'s pretrained argument for a run: --backbone-weights, else the shipped ImageNet weights (where the
    backbone has some) unless --pretrained/--no-pretrained says otherwise."""
    if cfg.backbone_weights:
        return cfg.backbone_weights
    return cfg.pretrained if cfg.pretrained is not None else backbone_entry(cfg.backbone).shipped_weights is not None


def random_start_warning(cfg: TrainConfig) -> str | None:
    """A one-line warning when a new run's ImageNet backbone would start from random weights unasked (no weights ship
    for it and no --backbone-weights), else None. Under the reference recipe a random start of an ImageNet backbone
    is refused (SadhError), asked for or not: the paper fine-tunes an ImageNet-pretrained ResNet-50."""
    if initial_weights(cfg) is not False or not backbone_entry(cfg.backbone).imagenet:
        return None
    why = "--no-pretrained" if cfg.pretrained is False else f"no ImageNet weights ship for {cfg.backbone}"
    if cfg.recipe == "reference":
        raise SadhError(
            f"--recipe reference fine-tunes ImageNet-pretrained weights, as the paper does, but {cfg.backbone} would start "
            f"from random weights ({why}): pass --backbone-weights PATH (.pt / .safetensors), or use --recipe fast"
        )
    if cfg.pretrained is False:
        return None
    return (
        f"{cfg.backbone} starts from random weights ({why}): pass --backbone-weights PATH (.pt / .safetensors) to "
        "fine-tune pretrained ones, or --no-pretrained to train from scratch without this warning"
    )
