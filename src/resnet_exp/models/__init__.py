"""Networks; configs build them with `_target_: resnet_exp.models.CifarResNet`."""

from resnet_exp.models.cifar import CifarResNet, count_parameters

__all__ = ["CifarResNet", "count_parameters"]
