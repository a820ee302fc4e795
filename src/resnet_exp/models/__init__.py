"""Networks; configs build them with `_target_: resnet_exp.models.CifarResNet`, or
`resnet_exp.models.torchvision_nets.torchvision_resnet` (not imported here, so the CIFAR nets do not pay
for importing torchvision)."""

from resnet_exp.models.cifar import CifarResNet, count_parameters

__all__ = ["CifarResNet", "count_parameters"]
