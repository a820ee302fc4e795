"""Data sets and the device-resident batches the trainer consumes."""

from resnet_exp.data.cifar10 import Cifar10, read_cifar10
from resnet_exp.data.images import ImageData
from resnet_exp.data.module import Batches, DataModule
from resnet_exp.data.synthetic import Synthetic, make_synthetic

__all__ = ["Batches", "Cifar10", "DataModule", "ImageData", "Synthetic", "make_synthetic", "read_cifar10"]
