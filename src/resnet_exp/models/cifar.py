"""The CIFAR-10 networks of He et al. 2016, section 4.2: one definition, plain or residual.

A net of depth 6n+2 is a 3x3 conv, three stages of n blocks (2n 3x3 convs) with 16/32/64 filters on
32/16/8 maps, global average pooling and a 10-way linear layer. Plain and residual nets share every
weighted layer; the residual one only adds shortcuts, so with option A both have the same parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resnet_exp.errors import ConfigError

SHORTCUTS = ("A", "B")
WIDTHS = (16, 32, 64)


def check_depth(depth: int) -> int:
    """Return n for a depth of 6n+2, or raise with the depths that would be accepted."""
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ConfigError(
            f"model.depth={depth!r} is not of the form 6n+2 with n >= 1; "
            "accepted: 8, 14, 20, 26, 32, 44, 56, 110, ... (the paper uses 20, 32, 44, 56, 110)"
        )
    return (depth - 2) // 6


class ShortcutA(nn.Module):
    """Option A: identity, subsampled by the stride, with zero channels appended; no parameters."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra = out_channels - in_channels

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra)) if self.extra else x


def projection(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """Option B: a strided 1x1 conv and batch norm, used only where the shape changes."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers; with a shortcut, ReLU comes after the addition as in the paper."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, shortcut: str | None) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module | None
        if shortcut is None:
            self.shortcut = None
        elif stride == 1 and in_channels == out_channels:
            self.shortcut = nn.Identity()
        elif shortcut == "A":
            self.shortcut = ShortcutA(in_channels, out_channels, stride)
        else:
            self.shortcut = projection(in_channels, out_channels, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return F.relu(out)


class CifarResNet(nn.Module):
    """The paper's CIFAR net of `depth` = 6n+2 layers; `residual=False` gives its plain twin."""

    def __init__(
        self,
        depth: int = 20,
        residual: bool = True,
        shortcut: str = "A",
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        n = check_depth(depth)
        if shortcut not in SHORTCUTS:
            raise ConfigError(f"model.shortcut={shortcut!r} is not known; accepted: {', '.join(SHORTCUTS)}")
        self.depth = depth
        self.residual = residual
        self.shortcut = shortcut
        self.conv = conv3x3(3, WIDTHS[0])
        self.bn = nn.BatchNorm2d(WIDTHS[0])
        blocks: list[nn.Module] = []
        in_channels = WIDTHS[0]
        for stage, width in enumerate(WIDTHS):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(in_channels, width, stride, shortcut if residual else None))
                in_channels = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(in_channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")

    @property
    def name(self) -> str:
        """Short name as the configs spell it (plain56, resnet110), with a suffix for option B."""
        base = f"{'resnet' if self.residual else 'plain'}{self.depth}"
        return base + ("-B" if self.residual and self.shortcut == "B" else "")

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn(self.conv(x)))
        x = self.blocks(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
