"""The CIFAR-10 networks of He et al. 2016, section 4.2, and their later variants: one definition.

A net is a 3x3 conv, three stages of n blocks with 16/32/64 filters on 32/16/8 maps (downsampling by
stride-2 convs), global average pooling and a 10-way linear layer. Plain and residual nets share every
weighted layer; the residual one only adds shortcuts, so with option A both have the same parameters.

Block kinds (`block`), each with a plain twin (`residual=False`):

- ``basic``: two 3x3 conv-BN layers, ReLU after the addition (He et al. 2016a, "Deep Residual Learning
  for Image Recognition"); depth 6n+2.
- ``bottleneck``: 1x1 (reduce to the stage width) - 3x3 - 1x1 (expand 4x) conv-BN layers (He et al. 2016a,
  section 4.1), stride on the 3x3; depth 9n+2.
- ``preact`` and ``preact-bottleneck``: the same layers as BN-ReLU-conv, nothing after the addition, and a
  final BN-ReLU before pooling instead of the BN after the first conv (He et al. 2016b, "Identity Mappings
  in Deep Residual Networks"; preact-bottleneck of depth 164 with option B is their ResNet-164, 1.7M
  parameters). Where the shape changes the shortcut takes the pre-activated input, as in the authors' code.

Shortcuts where the shape changes (`shortcut`; identity elsewhere):

- ``A``: identity, subsampled, zero channels added; no parameters (He et al. 2016a). The paper does not say
  where the zero channels go: ``zero_channels="both"`` (default) puts half before and half after the
  input's channels, as the canonical PyTorch CIFAR ResNet does (akamaster/pytorch_resnet_cifar10), so its
  published weights run here unchanged; ``"end"`` appends them, as fb.resnet.torch does (this project's
  layout before 2026-11-27; checkpoints that record no layout have it).
- ``B``: a strided 1x1 conv projection, followed by BN in post-activation nets (He et al. 2016a).
- ``D``: 2x2 average pooling, then a 1x1 conv projection of stride 1, so no activation is skipped by the
  stride (ResNet-D of Tong He et al. 2019, "Bag of Tricks for Image Classification with CNNs").

`name` spells the net as the configs do: ``resnet56``, ``plain20``, with ``-<block>`` for blocks other than
basic and ``-B``/``-D`` for residual nets with those shortcuts, e.g. ``resnet164-preact-bottleneck-B``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resnet_exp.errors import CheckpointError, ConfigError

BLOCKS = ("basic", "bottleneck", "preact", "preact-bottleneck")
SHORTCUTS = ("A", "B", "D")
ZERO_CHANNELS = ("both", "end")
UNRECORDED_ZERO_CHANNELS = "end"  # the layout of checkpoints written before the layout was recorded
WIDTHS = (16, 32, 64)
EXPANSION = 4  # bottleneck output channels per unit of stage width


def check_depth(depth: int, block: str = "basic") -> int:
    """Return the blocks per stage n for a depth of 6n+2 (9n+2 for bottlenecks), or raise with accepted depths."""
    per_block = 3 if block.endswith("bottleneck") else 2
    step = 3 * per_block
    if not isinstance(depth, int) or depth < step + 2 or (depth - 2) % step:
        examples = "8, 14, 20, 26, 32, 44, 56, 110, ... (the paper uses 20, 32, 44, 56, 110)"
        if per_block == 3:
            examples = "11, 20, 29, 38, ..., 164, ..., 1001 (He et al. 2016b use 164 and 1001)"
        raise ConfigError(
            f"model.depth={depth!r} is not of the form {step}n+2 with n >= 1 for model.block={block!r}; "
            f"accepted: {examples}"
        )
    return (depth - 2) // step


class ShortcutA(nn.Module):
    """Option A: identity, subsampled by the stride, with zero channels added (`zeros`: on both sides, or
    appended at the end); no parameters."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, zeros: str = "both") -> None:
        super().__init__()
        self.stride = stride
        extra = out_channels - in_channels
        before = extra // 2 if zeros == "both" else 0
        self.pad = (0, 0, 0, 0, before, extra - before)

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, self.pad) if any(self.pad) else x


def projection(in_channels: int, out_channels: int, stride: int, pool: bool = False, bn: bool = True) -> nn.Sequential:
    """Options B and D: a 1x1 conv projection (strided for B, after 2x2 average pooling for D), BN unless pre-act."""
    layers: list[nn.Module] = []
    if pool and stride > 1:
        layers.append(nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False))
    layers.append(nn.Conv2d(in_channels, out_channels, 1, stride=1 if pool else stride, bias=False))
    if bn:
        layers.append(nn.BatchNorm2d(out_channels))
    return nn.Sequential(*layers)


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class Block(nn.Module):
    """One block of any kind: layers conv1/bn1, conv2/bn2[, conv3/bn3], and a shortcut (None in a plain net).

    `parts` returns the residual branch F(x) and the shortcut's output separately, and `finish` what follows
    their sum (ReLU, or nothing in pre-activation blocks), so the analysis tools can measure and delete the
    branch without a second definition of the block.
    """

    def __init__(
        self, in_channels: int, width: int, stride: int, kind: str, shortcut: str | None, zeros: str = "both"
    ) -> None:
        super().__init__()
        self.preact = kind.startswith("preact")
        if kind.endswith("bottleneck"):
            self.out_channels = width * EXPANSION
            specs = [(1, in_channels, width, 1), (3, width, width, stride), (1, width, self.out_channels, 1)]
        else:
            self.out_channels = width
            specs = [(3, in_channels, width, stride), (3, width, width, 1)]
        for i, (kernel, cin, cout, s) in enumerate(specs, 1):
            self.add_module(f"conv{i}", nn.Conv2d(cin, cout, kernel, stride=s, padding=kernel // 2, bias=False))
            self.add_module(f"bn{i}", nn.BatchNorm2d(cin if self.preact else cout))
        self.size = len(specs)
        # A plain block is removable (replaceable by the identity) only where it keeps the shape.
        self.reshapes = stride != 1 or in_channels != self.out_channels
        self.shortcut: nn.Module | None
        if shortcut is None:
            self.shortcut = None
        elif not self.reshapes:
            self.shortcut = nn.Identity()
        elif shortcut == "A":
            self.shortcut = ShortcutA(in_channels, self.out_channels, stride, zeros)
        else:
            self.shortcut = projection(in_channels, self.out_channels, stride, pool=shortcut == "D", bn=not self.preact)

    def layers(self) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
        """(conv, BN) pairs in order; in pre-activation blocks each BN comes before its conv."""
        return [(getattr(self, f"conv{i}"), getattr(self, f"bn{i}")) for i in range(1, self.size + 1)]

    def responses(self) -> list[nn.Module]:
        """Modules whose outputs are the layer responses of He et al. 2016a, Fig. 7: after BN, before ReLU or
        the addition; in pre-activation blocks the conv outputs, as no BN follows a conv inside the branch."""
        return [conv if self.preact else bn for conv, bn in self.layers()]

    def parts(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """The residual branch F(x) and the shortcut's output (None in a plain block), before the addition."""
        (conv1, bn1), *rest = self.layers()
        if self.preact:
            pre = F.relu(bn1(x))
            out = conv1(pre)
            for conv, bn in rest:
                out = conv(F.relu(bn(out)))
            source = pre if self.reshapes else x
        else:
            out = bn1(conv1(x))
            for conv, bn in rest:
                out = bn(conv(F.relu(out)))
            source = x
        return out, None if self.shortcut is None else self.shortcut(source)

    def finish(self, out: Tensor) -> Tensor:
        """What follows the addition: ReLU, or nothing in pre-activation blocks (a clean identity path)."""
        return out if self.preact else F.relu(out)

    def forward(self, x: Tensor) -> Tensor:
        branch, skip = self.parts(x)
        return self.finish(branch if skip is None else branch + skip)


class CifarResNet(nn.Module):
    """The CIFAR net of `depth` layers with blocks of kind `block`; `residual=False` gives its plain twin."""

    def __init__(
        self,
        depth: int = 20,
        residual: bool = True,
        shortcut: str = "A",
        num_classes: int = 10,
        block: str = "basic",
        zero_channels: str = "both",
    ) -> None:
        super().__init__()
        if block not in BLOCKS:
            raise ConfigError(f"model.block={block!r} is not known; accepted: {', '.join(BLOCKS)}")
        n = check_depth(depth, block)
        if shortcut not in SHORTCUTS:
            raise ConfigError(f"model.shortcut={shortcut!r} is not known; accepted: {', '.join(SHORTCUTS)}")
        if zero_channels not in ZERO_CHANNELS:
            raise ConfigError(
                f"model.zero_channels={zero_channels!r} is not known; accepted: {', '.join(ZERO_CHANNELS)}"
            )
        self.depth = depth
        self.residual = residual
        self.shortcut = shortcut
        self.block = block
        self.preact = block.startswith("preact")
        # Where option A's zero channels go; None for nets without option A shortcuts (plain, B, D).
        self.zero_channels = zero_channels if residual and shortcut == "A" else None
        out_channels = WIDTHS[-1] * (EXPANSION if block.endswith("bottleneck") else 1)
        self.conv = conv3x3(3, WIDTHS[0])
        # The one BN outside the blocks: after the first conv, or before pooling in pre-activation nets.
        self.bn = nn.BatchNorm2d(out_channels if self.preact else WIDTHS[0])
        blocks: list[Block] = []
        in_channels = WIDTHS[0]
        for stage, width in enumerate(WIDTHS):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(Block(in_channels, width, stride, block, shortcut if residual else None, zero_channels))
                in_channels = blocks[-1].out_channels
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(in_channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")

    @property
    def name(self) -> str:
        """Short name as the configs spell it (plain56, resnet110-preact, resnet56-D); see the module docstring."""
        name = f"{'resnet' if self.residual else 'plain'}{self.depth}"
        if self.block != "basic":
            name += f"-{self.block}"
        return name + (f"-{self.shortcut}" if self.residual and self.shortcut != "A" else "")

    def stem(self, x: Tensor) -> Tensor:
        """Everything before the first block."""
        x = self.conv(x)
        return x if self.preact else F.relu(self.bn(x))

    def head(self, x: Tensor) -> Tensor:
        """Everything after the last block: (BN-ReLU in pre-activation nets), global average pooling, linear."""
        if self.preact:
            x = F.relu(self.bn(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(self.stem(x)))


def check_zero_channels(model: nn.Module, state: dict, path: str) -> None:
    """Refuse a checkpoint whose option-A layout differs from `model`'s: the weights would load without error
    but the shortcuts would feed them other channels."""
    layout = getattr(model, "zero_channels", None)
    saved = state.get("zero_channels") or UNRECORDED_ZERO_CHANNELS
    if layout is not None and saved != layout:
        raise CheckpointError(
            f"checkpoint {path!r} holds a net whose option-A shortcuts put the zero channels at the {saved!r} "
            f"side(s), but this run builds model.zero_channels={layout!r}: add model.zero_channels={saved} to "
            "resume it, or start afresh with trainer.resume=false"
        )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
