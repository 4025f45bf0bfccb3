"""A small, fast CNN for CPU training on 28–32 px images (Fashion-MNIST): 4 conv stages with BN + ReLU."""

from torch import Tensor, nn

SMALL_CNN_WIDTHS = (32, 64, 128, 256)


def conv_block(cin: int, cout: int) -> list[nn.Module]:
    """3×3 conv (no bias) → BN → ReLU."""
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """Stages of conv blocks (two per stage after the first), 2×2 max-pool between stages, global average pool."""

    def __init__(self, widths: tuple[int, ...] = SMALL_CNN_WIDTHS) -> None:
        super().__init__()
        layers: list[nn.Module] = conv_block(3, widths[0])
        for cin, cout in zip(widths, widths[1:]):
            layers += [nn.MaxPool2d(2), *conv_block(cin, cout), *conv_block(cout, cout)]
        self.features = nn.Sequential(*layers)
        self.num_features = widths[-1]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: Tensor) -> Tensor:
        """Images (n, 3, h, w) → pooled features (n, num_features)."""
        return self.features(x).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        """Same as forward_features."""
        return self.forward_features(x)


def small_cnn(widths: tuple[int, ...] = SMALL_CNN_WIDTHS) -> SmallCNN:
    """The CPU-friendly small CNN (256 features by default)."""
    return SmallCNN(widths)
