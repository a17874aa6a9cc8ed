"""ResNet-9 as used by every REM / corrective-unlearning paper run on CIFAR-10.

ConvBN = Conv2d(bias=True) -> BatchNorm2d -> CELU(alpha=0.075) (`layers`: torch's layers, faster on CPUs). The six block outputs
(conv1, conv2, res1, conv3, res2, conv4) are where REM adds its dedicated units by default.
`width` scales every channel count so CPU runs stay feasible (width 1.0 = the paper's net,
about 2.28 M parameters).
"""

from __future__ import annotations

import torch
from torch import nn

from remcli.models.layers import CELU, MaxPool2d


class ConvBN(nn.Sequential):
    """A named Sequential type, so `list_blocks` treats it as one block."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, padding: int = 1):
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=True),
            nn.BatchNorm2d(c_out, momentum=0.1),
            CELU(alpha=0.075),
        )


class ConvBNPool(nn.Sequential):
    def __init__(self, c_in: int, c_out: int):
        super().__init__(ConvBN(c_in, c_out), MaxPool2d(2))


class Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.branch = nn.Sequential(ConvBN(channels, channels), ConvBN(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


class ResNet9(nn.Module):
    BLOCK_OUTPUTS = ("conv1", "conv2", "res1", "conv3", "res2", "conv4")  # `models.blocks.block_outputs`

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: float = 1.0):
        super().__init__()
        c1, c2, c3, c4 = (max(1, round(c * width)) for c in (64, 128, 256, 128))
        self.conv1 = ConvBN(in_channels, c1)
        self.conv2 = ConvBN(c1, c2, kernel=5, stride=2, padding=2)
        self.res1 = Residual(c2)
        self.conv3 = ConvBNPool(c2, c3)
        self.res2 = Residual(c3)
        self.conv4 = ConvBN(c3, c4, padding=0)
        self.pool = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.fc = nn.Linear(c4, num_classes, bias=False)
        for module in self.modules():  # the paper's init: default reset, zero biases
            if isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv4(self.res2(self.conv3(self.res1(self.conv2(self.conv1(x))))))
        return self.fc(self.pool(x))
