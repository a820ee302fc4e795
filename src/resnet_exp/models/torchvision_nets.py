"""torchvision's ImageNet ResNets (He et al. 2016a, Table 1), built by torchvision's own builders, so the CIFAR
nets can be compared with the architectures users know.

`stem` chooses what comes before the first stage:
  * ``imagenet``: torchvision's 7x7 stride-2 conv, BN, ReLU and 3x3 stride-2 max-pool (the paper's nets);
  * ``cifar``: one 3x3 stride-1 conv, BN, ReLU and no max-pool, as CIFAR ports of these nets do (the ImageNet
    stem would shrink a 32x32 image to 8x8 before the first block);
  * ``deep``: ResNet-C of Tong He et al. 2019 (Bag of Tricks, Figure 2b): three 3x3 convs of 32, 32 and 64
    channels, the first of stride 2, each followed by BN and ReLU, in place of the 7x7 conv; the max-pool stays.
`bn_head` puts BatchNorm1d between the global average pooling and the linear layer, a common fine-tuning head
that keeps the features the classifier sees normalised.
"""

from __future__ import annotations

import torchvision.models as tvm
from torch import nn

from resnet_exp.errors import ConfigError

BUILDERS = {18: tvm.resnet18, 34: tvm.resnet34, 50: tvm.resnet50, 101: tvm.resnet101, 152: tvm.resnet152}
STEMS = ("cifar", "imagenet", "deep")
STEM_SUFFIX = {"cifar": "-cifar", "imagenet": "", "deep": "-C"}
DEEP_STEM_CHANNELS = (32, 32, 64)


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")  # as torchvision does
    return conv


def deep_stem() -> nn.Sequential:
    """ResNet-C's first two 3x3 convs (each with BN and ReLU) and its third conv, which ends in the 64 channels
    of torchvision's stems; the net's own `bn1` and `relu` follow the third, so every conv of the stem is
    followed by BN and ReLU, and the max-pool comes after."""
    c1, c2, c3 = DEEP_STEM_CHANNELS
    return nn.Sequential(
        conv3x3(3, c1, stride=2), nn.BatchNorm2d(c1), nn.ReLU(inplace=True),
        conv3x3(c1, c2), nn.BatchNorm2d(c2), nn.ReLU(inplace=True),
        conv3x3(c2, c3),
    )


def torchvision_resnet(
    depth: int = 18,
    residual: bool = True,
    shortcut: str = "B",
    num_classes: int = 10,
    stem: str = "cifar",
    bn_head: bool = False,
    zero_init_residual: bool = False,
) -> tvm.ResNet:
    """torchvision's ResNet-`depth`, randomly initialised, with a `name` such as ``tv_resnet34-cifar``
    (``tv_resnet34`` with the ImageNet stem, ``tv_resnet34-C`` with the deep stem).

    `residual` and `shortcut` exist because the runner logs them for every model; torchvision's nets are
    residual with projection shortcuts where shapes change (option B), so only those values are accepted.
    """
    if depth not in BUILDERS:
        raise ConfigError(
            f"model.depth={depth!r} is not a torchvision ResNet; accepted: {', '.join(map(str, BUILDERS))}"
        )
    if residual is not True:
        raise ConfigError(f"model.residual={residual!r}: torchvision's ResNets have no plain twin; accepted: true")
    if shortcut != "B":
        raise ConfigError(
            f"model.shortcut={shortcut!r}: torchvision's ResNets use projection shortcuts; accepted: B"
        )
    if stem not in STEMS:
        raise ConfigError(f"model.stem={stem!r} is not a stem; accepted: {', '.join(STEMS)}")
    net = BUILDERS[depth](weights=None, num_classes=num_classes, zero_init_residual=zero_init_residual)
    if stem == "cifar":
        net.conv1 = conv3x3(3, net.conv1.out_channels)
        net.maxpool = nn.Identity()
    elif stem == "deep":
        net.conv1 = deep_stem()
    if bn_head:
        net.fc = nn.Sequential(nn.BatchNorm1d(net.fc.in_features), nn.Linear(net.fc.in_features, num_classes))
    net.name = f"tv_resnet{depth}" + STEM_SUFFIX[stem] + ("-bnhead" if bn_head else "")
    net.block = "bottleneck" if depth >= 50 else "basic"  # torchvision's ResNet-50 and deeper use bottlenecks
    return net
