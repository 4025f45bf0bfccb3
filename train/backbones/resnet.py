"""ResNet-18/50 with torchvision's exact parameter names (so torchvision checkpoints load), minus the classifier."""

from torch import Tensor, nn

STAGE_WIDTHS = (64, 128, 256, 512)


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    """A bias-free conv with 'same'-style padding and its batch norm."""
    return nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout)


class BasicBlock(nn.Module):
    """Two 3×3 convs with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv_bn(cin, width, 3, stride)
        self.conv2, self.bn2 = conv_bn(width, width, 3)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample(cin, width * self.expansion, stride)

    def forward(self, x: Tensor) -> Tensor:
        """Residual block forward."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    """1×1 → 3×3 (strided) → 1×1 ×4 with a residual connection (ResNet-50, torchvision v1.5 layout)."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv_bn(cin, width, 1)
        self.conv2, self.bn2 = conv_bn(width, width, 3, stride)
        self.conv3, self.bn3 = conv_bn(width, width * self.expansion, 1)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample(cin, width * self.expansion, stride)

    def forward(self, x: Tensor) -> Tensor:
        """Residual block forward."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


def downsample(cin: int, cout: int, stride: int) -> nn.Sequential | None:
    """The 1×1 projection shortcut (downsample.0 conv, downsample.1 bn) when shapes change, else None."""
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(*conv_bn(cin, cout, 1, stride))


class ResNet(nn.Module):
    """ResNet trunk: conv1/bn1/maxpool, layer1..layer4, global average pool."""

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], depths: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        cin, layers = 64, []
        for i, (width, depth) in enumerate(zip(STAGE_WIDTHS, depths)):
            blocks = []
            for j in range(depth):
                blocks.append(block(cin, width, 2 if i > 0 and j == 0 else 1))
                cin = width * block.expansion
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.num_features = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: Tensor) -> Tensor:
        """Images (n, 3, h, w) → pooled features (n, num_features)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        """Same as forward_features (the classifier is not part of the backbone)."""
        return self.forward_features(x)


def resnet18() -> ResNet:
    """ResNet-18 (512 features)."""
    return ResNet(BasicBlock, (2, 2, 2, 2))


def resnet50() -> ResNet:
    """ResNet-50 (2048 features)."""
    return ResNet(Bottleneck, (3, 4, 6, 3))
