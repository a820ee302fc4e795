"""The CIFAR-10 networks of He et al. 2016, section 4.2, and their later variants: one definition.

A net is a 3x3 conv, three stages of n blocks with 16/32/64 filters on 32/16/8 maps (downsampling by
stride-2 convs), global average pooling and a 10-way linear layer. Plain and residual nets share every
weighted layer; the residual one only adds shortcuts, so with option A both have the same parameters.

Block kinds (`block`), one class each, each with a plain twin (`residual=False`: the same class, no shortcut):

- ``basic`` (`BasicBlock`): two 3x3 conv-BN layers, ReLU after the addition (He et al. 2016a, "Deep Residual
  Learning for Image Recognition"); depth 6n+2.
- ``bottleneck`` (`Bottleneck`): 1x1 (reduce to the stage width) - 3x3 - 1x1 (expand 4x) conv-BN layers (He et
  al. 2016a, section 4.1), stride on the 3x3; depth 9n+2.
- ``preact`` and ``preact-bottleneck`` (`PreActBasicBlock`, `PreActBottleneck`): the same layers as
  BN-ReLU-conv, nothing after the addition, and a final BN-ReLU before pooling instead of the BN after the
  first conv (He et al. 2016b, "Identity Mappings in Deep Residual Networks"; preact-bottleneck of depth 164
  with option B is their ResNet-164, 1.7M parameters). Where the shape changes the shortcut takes the
  pre-activated input, as in the authors' code.

Shortcuts where the shape changes (`shortcut`; identity elsewhere):

- ``A``: identity, subsampled, zero channels added; no parameters (He et al. 2016a). The paper does not say
  where the zero channels go: ``zero_channels="both"`` (default) puts half before and half after the
  input's channels, as the canonical PyTorch CIFAR ResNet does (akamaster/pytorch_resnet_cifar10), so its
  published weights run here unchanged; ``"end"`` appends them, as fb.resnet.torch does. Checkpoints record
  their layout, and one of another layout is refused (`check_zero_channels`).
- ``B``: a strided 1x1 conv projection, followed by BN in post-activation nets (He et al. 2016a).
- ``D``: 2x2 average pooling, then a 1x1 conv projection of stride 1, so no activation is skipped by the
  stride (ResNet-D of Tong He et al. 2019, "Bag of Tricks for Image Classification with CNNs").

`name` spells the net as the configs do: ``resnet56``, ``plain20``, with ``-<block>`` for blocks other than
basic and ``-B``/``-D`` for residual nets with those shortcuts, e.g. ``resnet164-preact-bottleneck-B``.

The layers keep the names conv1/bn1, conv2/bn2[, conv3/bn3] and shortcut in every block kind, registered in
that order, so that checkpoints (weights, and the optimizer state, which is stored in parameter order) and the
published weights (`published.py`) load.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resnet_exp.errors import CheckpointError, ConfigError

SHORTCUTS = ("A", "B", "D")
ZERO_CHANNELS = ("both", "end")
WIDTHS = (16, 32, 64)
EXPANSION = 4  # bottleneck output channels per unit of stage width

# The addition of a block, F(x) + shortcut(x), given F(x) and the shortcut's output (None in a plain block).
Add = Callable[[Tensor, Tensor | None], Tensor]


def add_shortcut(branch: Tensor, shortcut: Tensor | None) -> Tensor:
    """F(x) + shortcut(x), the addition of He et al. 2016a, Fig. 2; F(x) alone in a plain block."""
    return branch if shortcut is None else branch + shortcut


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
    layers.append(conv1x1(in_channels, out_channels, stride=1 if pool else stride))
    if bn:
        layers.append(nn.BatchNorm2d(out_channels))
    return nn.Sequential(*layers)


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class Block(nn.Module):
    """What the four block kinds share: their shortcut, and the small interface the analyses use.

    - `forward(x, add)`: the block, with its addition F(x) + shortcut replaced by `add(F(x), shortcut output)`
      where an analysis passes its own (to measure the branch against the shortcut, or to delete the branch);
    - `shortcut`: None in a plain block; `reshapes`: whether the block changes the shape of its input (a plain
      block that does cannot be replaced by the identity); `out_channels`;
    - `responses()`: the modules whose outputs are the layer responses of He et al. 2016a, Fig. 7.

    A subclass defines its layers (`make_layers`), its `forward` and its `responses`.
    """

    preact: ClassVar[bool]  # BN-ReLU before each conv (He et al. 2016b), rather than BN after it
    expansion: ClassVar[int]  # output channels per unit of stage width
    weighted_layers: ClassVar[int]  # convs on the residual branch: what one block adds to the net's depth

    def __init__(
        self, in_channels: int, width: int, stride: int, shortcut: str | None = None, zeros: str = "both"
    ) -> None:
        super().__init__()
        self.out_channels = width * self.expansion
        self.reshapes = stride != 1 or in_channels != self.out_channels
        self.make_layers(in_channels, width, stride)
        # The shortcut of option `shortcut` (None: a plain block), registered after the layers: checkpoints
        # store the optimizer state in parameter order.
        self.shortcut: nn.Module | None
        if shortcut is None:
            self.shortcut = None
        elif not self.reshapes:
            self.shortcut = nn.Identity()
        elif shortcut == "A":
            self.shortcut = ShortcutA(in_channels, self.out_channels, stride, zeros)
        else:
            self.shortcut = projection(in_channels, self.out_channels, stride, pool=shortcut == "D", bn=not self.preact)

    def make_layers(self, in_channels: int, width: int, stride: int) -> None:
        """conv1, bn1, conv2, bn2[, conv3, bn3] of the kind, in that order (the names checkpoints hold)."""
        raise NotImplementedError

    def skip(self, x: Tensor) -> Tensor | None:
        """The shortcut's output, None in a plain block."""
        return None if self.shortcut is None else self.shortcut(x)

    def responses(self) -> list[nn.Module]:
        """Modules whose outputs are the layer responses of He et al. 2016a, Fig. 7: after BN, before ReLU or
        the addition; in pre-activation blocks the conv outputs, as no BN follows a conv inside the branch."""
        raise NotImplementedError

    def zero_branch(self) -> None:
        """Make the residual branch output zero (`model.zero_init_residual`), so that the block starts as its
        shortcut: the scale of the branch's last layer, the last BN's gamma (Goyal et al. 2017, torchvision's
        `zero_init_residual`), or in a pre-activation block, where no BN ends the branch, the last conv's
        weights. Either still receives a gradient at the first step, so the branch grows from zero."""
        nn.init.zeros_(self.responses()[-1].weight)


class BasicBlock(Block):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU (He et al. 2016a, Fig. 2)."""

    preact, expansion, weighted_layers = False, 1, 2

    def make_layers(self, in_channels: int, width: int, stride: int) -> None:
        self.conv1, self.bn1 = conv3x3(in_channels, width, stride), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = conv3x3(width, width), nn.BatchNorm2d(width)

    def forward(self, x: Tensor, add: Add = add_shortcut) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(add(out, self.skip(x)))

    def responses(self) -> list[nn.Module]:
        return [self.bn1, self.bn2]


class Bottleneck(Block):
    """conv1x1-BN-ReLU (to the stage width), conv3x3-BN-ReLU (strided), conv1x1-BN (to 4x the width), plus
    the shortcut, then ReLU (He et al. 2016a, Fig. 5 right)."""

    preact, expansion, weighted_layers = False, EXPANSION, 3

    def make_layers(self, in_channels: int, width: int, stride: int) -> None:
        self.conv1, self.bn1 = conv1x1(in_channels, width), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = conv3x3(width, width, stride), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = conv1x1(width, self.out_channels), nn.BatchNorm2d(self.out_channels)

    def forward(self, x: Tensor, add: Add = add_shortcut) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(add(out, self.skip(x)))

    def responses(self) -> list[nn.Module]:
        return [self.bn1, self.bn2, self.bn3]


class PreActBasicBlock(Block):
    """BN-ReLU-conv3x3, BN-ReLU-conv3x3, plus the shortcut, nothing after (He et al. 2016b, Fig. 1b). Each BN
    normalises its conv's input, so bn1 has the block's input channels."""

    preact, expansion, weighted_layers = True, 1, 2

    def make_layers(self, in_channels: int, width: int, stride: int) -> None:
        self.conv1, self.bn1 = conv3x3(in_channels, width, stride), nn.BatchNorm2d(in_channels)
        self.conv2, self.bn2 = conv3x3(width, width), nn.BatchNorm2d(width)

    def forward(self, x: Tensor, add: Add = add_shortcut) -> Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(F.relu(self.bn2(out)))
        return add(out, self.skip(pre if self.reshapes else x))  # a reshaping shortcut sees the pre-activation

    def responses(self) -> list[nn.Module]:
        return [self.conv1, self.conv2]


class PreActBottleneck(Block):
    """BN-ReLU-conv1x1, BN-ReLU-conv3x3 (strided), BN-ReLU-conv1x1 (to 4x the width), plus the shortcut,
    nothing after (He et al. 2016b). Each BN normalises its conv's input: bn1 has the block's input channels,
    bn2 and bn3 the stage width."""

    preact, expansion, weighted_layers = True, EXPANSION, 3

    def make_layers(self, in_channels: int, width: int, stride: int) -> None:
        self.conv1, self.bn1 = conv1x1(in_channels, width), nn.BatchNorm2d(in_channels)
        self.conv2, self.bn2 = conv3x3(width, width, stride), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = conv1x1(width, self.out_channels), nn.BatchNorm2d(width)

    def forward(self, x: Tensor, add: Add = add_shortcut) -> Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return add(out, self.skip(pre if self.reshapes else x))  # a reshaping shortcut sees the pre-activation

    def responses(self) -> list[nn.Module]:
        return [self.conv1, self.conv2, self.conv3]


BLOCK_KINDS: dict[str, type[Block]] = {
    "basic": BasicBlock,
    "bottleneck": Bottleneck,
    "preact": PreActBasicBlock,
    "preact-bottleneck": PreActBottleneck,
}
BLOCKS = tuple(BLOCK_KINDS)


def block_kind(block: str) -> type[Block]:
    """The class of block kind `block`, or raise naming the accepted kinds."""
    if block not in BLOCK_KINDS:
        raise ConfigError(f"model.block={block!r} is not known; accepted: {', '.join(BLOCKS)}")
    return BLOCK_KINDS[block]


def check_depth(depth: int, block: str = "basic") -> int:
    """Return the blocks per stage n for a depth of 6n+2 (9n+2 for bottlenecks), or raise with accepted depths."""
    layers = block_kind(block).weighted_layers
    step = 3 * layers  # three stages of n blocks, plus the first conv and the linear layer
    if not isinstance(depth, int) or depth < step + 2 or (depth - 2) % step:
        examples = "8, 14, 20, 26, 32, 44, 56, 110, ... (the paper uses 20, 32, 44, 56, 110)"
        if layers == 3:
            examples = "11, 20, 29, 38, ..., 164, ..., 1001 (He et al. 2016b use 164 and 1001)"
        raise ConfigError(
            f"model.depth={depth!r} is not of the form {step}n+2 with n >= 1 for model.block={block!r}; "
            f"accepted: {examples}"
        )
    return (depth - 2) // step


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
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        kind = block_kind(block)
        n = check_depth(depth, block)
        if shortcut not in SHORTCUTS:
            raise ConfigError(f"model.shortcut={shortcut!r} is not known; accepted: {', '.join(SHORTCUTS)}")
        if zero_channels not in ZERO_CHANNELS:
            raise ConfigError(
                f"model.zero_channels={zero_channels!r} is not known; accepted: {', '.join(ZERO_CHANNELS)}"
            )
        if zero_init_residual and not residual:
            raise ConfigError(
                "model.zero_init_residual=true on a plain net (model.residual=false): a plain block has no "
                "shortcut, so zeroing its last layer would cut the signal; accepted on a plain net: false")
        self.depth = depth
        self.residual = residual
        self.shortcut = shortcut
        self.block = block
        self.preact = kind.preact
        # Where option A's zero channels go; None for nets without option A shortcuts (plain, B, D).
        self.zero_channels = zero_channels if residual and shortcut == "A" else None
        self.conv = conv3x3(3, WIDTHS[0])
        # The one BN outside the blocks, under one name so that checkpoints of either kind load: in
        # post-activation nets the BN after this first conv (`stem`), in pre-activation nets the final BN
        # before pooling (`head`), on the last block's channels.
        self.bn = nn.BatchNorm2d(WIDTHS[-1] * kind.expansion if self.preact else WIDTHS[0])
        blocks: list[Block] = []
        in_channels = WIDTHS[0]
        for stage, width in enumerate(WIDTHS):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(kind(in_channels, width, stride, shortcut if residual else None, zero_channels))
                in_channels = blocks[-1].out_channels
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(in_channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        if zero_init_residual:
            for b in blocks:
                b.zero_branch()

    @property
    def name(self) -> str:
        """Short name as the configs spell it (plain56, resnet110-preact, resnet56-D); see the module docstring."""
        name = f"{'resnet' if self.residual else 'plain'}{self.depth}"
        if self.block != "basic":
            name += f"-{self.block}"
        return name + (f"-{self.shortcut}" if self.residual and self.shortcut != "A" else "")

    def stem(self, x: Tensor) -> Tensor:
        """Everything before the first block: the first conv, and BN-ReLU in post-activation nets."""
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
    """Refuse a checkpoint whose option-A layout is not `model`'s, or is not recorded: the weights would load
    without error, but the shortcuts would feed them other channels than they were trained with.

    The one compatibility check of checkpoints, for the trainer's resume and for the analyses alike."""
    layout = getattr(model, "zero_channels", None)
    if layout is None:
        return  # no option-A shortcuts: nothing depends on the layout
    saved = state.get("zero_channels")
    if saved is None:
        raise CheckpointError(
            f"checkpoint {path!r} records no option-A layout (zero_channels), so which channels its shortcuts "
            f"were trained with is unknown (this net is built with model.zero_channels={layout!r}): retrain it "
            "with resnet-exp in its run dir and trainer.resume=false"
        )
    if saved != layout:
        raise CheckpointError(
            f"checkpoint {path!r} holds a net whose option-A shortcuts put the zero channels at the {saved!r} "
            f"side(s), but this net is built with model.zero_channels={layout!r}: add model.zero_channels={saved} "
            "to the run's settings to use it, or retrain it with trainer.resume=false"
        )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
