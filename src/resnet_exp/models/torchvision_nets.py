"""torchvision's ImageNet ResNets (He et al. 2016a, Table 1), built by torchvision's own builders, so the CIFAR
nets can be compared with the architectures users know.

Options for 32x32 inputs and fine-tuning: `cifar_stem` replaces the 7x7 stride-2 conv and the max-pool (which
would shrink a 32x32 image to 8x8 before the first block) by one 3x3 stride-1 conv, as CIFAR ports of these nets
do; `bn_head` puts BatchNorm1d between the global average pooling and the linear layer, a common fine-tuning
head that keeps the features the classifier sees normalised.
"""

from __future__ import annotations

import torchvision.models as tvm
from torch import nn

from resnet_exp.errors import ConfigError

BUILDERS = {18: tvm.resnet18, 34: tvm.resnet34, 50: tvm.resnet50, 101: tvm.resnet101, 152: tvm.resnet152}


def torchvision_resnet(
    depth: int = 18,
    residual: bool = True,
    shortcut: str = "B",
    num_classes: int = 10,
    cifar_stem: bool = True,
    bn_head: bool = False,
) -> tvm.ResNet:
    """torchvision's ResNet-`depth`, randomly initialised, with a `name` such as ``tv_resnet34-cifar``.

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
    net = BUILDERS[depth](weights=None, num_classes=num_classes)
    if cifar_stem:
        net.conv1 = nn.Conv2d(3, net.conv1.out_channels, 3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")  # as torchvision does
        net.maxpool = nn.Identity()
    if bn_head:
        net.fc = nn.Sequential(nn.BatchNorm1d(net.fc.in_features), nn.Linear(net.fc.in_features, num_classes))
    net.name = f"tv_resnet{depth}" + ("-cifar" if cifar_stem else "") + ("-bnhead" if bn_head else "")
    return net
