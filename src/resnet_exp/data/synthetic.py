"""A small procedurally generated 10-class set of 32x32 images, for offline smoke runs and tests.

Each class is a smooth random colour pattern; images are that pattern, shifted and noisy, so a conv
net learns it in a few hundred iterations while the task is not trivially solved at initialisation.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from resnet_exp.data.images import ImageData
from resnet_exp.data.module import DataModule
from resnet_exp.errors import ConfigError
from resnet_exp.models.footprint import memory_limit


def _images(prototypes: torch.Tensor, labels: torch.Tensor, noise: float, g: torch.Generator) -> torch.Tensor:
    x = prototypes[labels]
    shifts = torch.randint(-4, 5, (2,), generator=g).tolist()
    x = torch.roll(x, shifts=shifts, dims=(2, 3))
    x = x + noise * torch.randn(x.shape, generator=g)
    return x.clamp_(0, 255).round_().to(torch.uint8)


NUM_CLASSES = 10
IMAGE_BYTES = 3 * 32 * 32  # a uint8 image


def check_sizes(train_size: int, test_size: int) -> None:
    """Refuse, before anything is generated, a set without one training image per class or a test image, or one
    that the machine's memory cannot hold (twice its images: generated, then moved to the training device)."""
    if train_size < NUM_CLASSES or test_size < 1:
        raise ConfigError(f"data.train_size={train_size} and data.test_size={test_size}: need at least "
                          f"{NUM_CLASSES} training images (one per class) and one test image")
    need, have = 2 * (train_size + test_size) * IMAGE_BYTES, memory_limit(torch.device("cpu"))
    if need > have:
        raise ConfigError(f"data.train_size={train_size} and data.test_size={test_size} need about "
                          f"{need / 2**30:.1f} GiB, more than the {have / 2**30:.1f} GiB this machine has available; "
                          "accepted: fewer images (CIFAR-10 has 50000 and 10000)")


def make_synthetic(
    train_size: int = 5000,
    test_size: int = 1000,
    noise: float = 40.0,
    seed: int = 0,
) -> ImageData:
    """Generate the set deterministically from `seed` (the same set for every run with that seed)."""
    check_sizes(train_size, test_size)
    num_classes = NUM_CLASSES
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(num_classes, 3, 4, 4, generator=g)
    prototypes = F.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False) * 175 + 40
    train_y = torch.arange(train_size) % num_classes
    test_y = torch.arange(test_size) % num_classes
    train_y = train_y[torch.randperm(train_size, generator=g)]
    return ImageData(
        train_images=torch.cat([_images(prototypes, y, noise, g) for y in train_y.split(16)]),
        train_labels=train_y,
        test_images=torch.cat([_images(prototypes, y, noise, g) for y in test_y.split(16)]),
        test_labels=test_y,
        classes=[f"class{i}" for i in range(num_classes)],
        source=f"synthetic(seed={seed})",
    )


class Synthetic(DataModule):
    """`data=synthetic`: the generated set, fed exactly like CIFAR-10."""

    name = "synthetic"

    def __init__(
        self,
        train_size: int = 5000,
        test_size: int = 1000,
        noise: float = 40.0,
        data_seed: int = 0,
        **feeding: Any,
    ) -> None:
        super().__init__(**feeding)
        check_sizes(train_size, test_size)
        self.full_train_size = train_size  # the config's data.train_size: the set before a held-out split
        self.test_size = test_size
        self.noise = noise
        self.data_seed = data_seed

    def read(self) -> ImageData:
        return make_synthetic(self.full_train_size, self.test_size, noise=self.noise, seed=self.data_seed)
