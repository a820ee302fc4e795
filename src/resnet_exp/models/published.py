"""The canonical PyTorch CIFAR ResNets' published weights (akamaster/pytorch_resnet_cifar10,
`pretrained_models/resnet{20,32,44,56,110,1202}*.th`) as a `CifarResNet` state dict, tensor by tensor.

Why: they are the most used CIFAR ResNet weights. Their net is this project's residual net with option A
shortcuts that put the zero channels on both sides (`zero_channels="both"`, the default here), so the same
tensors compute the same function. Only the names differ: `conv1`/`bn1` (first layer), `layerS.I.` (block I of
stage S), `linear` (classifier), behind `module.` when saved from `DataParallel` (and `compressible_` in some
versions of that file). Their training normalised inputs per channel with ImageNet statistics (`IMAGENET_MEAN`,
`IMAGENET_STD`), so their published errors hold for inputs normalised that way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor

from resnet_exp.errors import CheckpointError
from resnet_exp.models.cifar import WIDTHS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_KEY = re.compile(r"(?:module\.)?(?:layer(?P<stage>\d+)\.(?P<block>\d+)\.)?(?:compressible_)?(?P<rest>.+)")
_OUTSIDE_BLOCKS = {"conv1.": "conv.", "bn1.": "bn.", "linear.": "fc."}


def convert(state: Mapping[str, Tensor]) -> tuple[int, dict[str, Tensor]]:
    """The net's depth (6n+2) and its weights under `CifarResNet`'s names; a dict of another shape is refused."""
    parsed = []
    for key, tensor in state.items():
        match = _KEY.fullmatch(key)
        if match is None:  # the pattern's last group takes any name, so only an empty key lands here
            raise CheckpointError(f"weight name {key!r} is empty")
        parsed.append((match["stage"], match["block"], match["rest"], tensor))
    blocks = {int(block) for stage, block, _, _ in parsed if stage == "1"}
    n = len(blocks)
    if n == 0 or blocks != set(range(n)):
        raise CheckpointError(
            f"not a pytorch_resnet_cifar10 state dict: no blocks layer1.0 .. layer1.N-1 among {len(state)} weights "
            f"(e.g. {next(iter(state), 'none')!r}); expected names like module.layer1.0.conv1.weight"
        )
    converted: dict[str, Tensor] = {}
    for stage, block, rest, tensor in parsed:
        if stage is None:
            prefix = next((p for p in _OUTSIDE_BLOCKS if rest.startswith(p)), None)
            if prefix is None:
                raise CheckpointError(
                    f"weight {rest!r} is not in conv1, bn1 or linear of a pytorch_resnet_cifar10 net (nor in a block)"
                )
            converted[_OUTSIDE_BLOCKS[prefix] + rest[len(prefix):]] = tensor
        else:
            if not 1 <= int(stage) <= len(WIDTHS) or int(block) >= n:
                raise CheckpointError(f"weight layer{stage}.{block}.{rest} lies outside {len(WIDTHS)} stages of {n}")
            converted[f"blocks.{(int(stage) - 1) * n + int(block)}.{rest}"] = tensor
    return 6 * n + 2, converted
