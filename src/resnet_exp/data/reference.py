"""`data.loader=torchvision`: the usual CIFAR-10 input pipeline, kept as a reference to compare against.

Most CIFAR-10 code feeds a net through a `DataLoader` whose worker processes turn each image into a PIL
image and augment it one by one with torchvision transforms. This module builds that pipeline over the
same `ImageData`, so the device-resident default (`data/batches.py`) can be checked against it for speed
and, up to one difference, for what it computes: here `RandomCrop` pads the raw image with black before
`Normalize`, while the device pipeline pads with zeros after normalisation, i.e. with the mean colour as
the paper describes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from resnet_exp.data.batches import PAD
from resnet_exp.data.images import ImageData

WORKERS = 2


class SubtractMean:
    """Per-pixel mean subtraction (the paper's normalisation) on `ToTensor`'s [0, 1] images.

    torchvision has no transform for a mean image, and dividing by a std of 1 would be wasted work.
    """

    def __init__(self, mean: Tensor) -> None:
        self.mean = mean

    def __call__(self, x: Tensor) -> Tensor:
        return x - self.mean


def augmentations(size: tuple[int, int]) -> list[Callable]:
    """The paper's augmentation defined per image: pad 4 with black, random crop of `size`, random flip."""
    return [transforms.RandomCrop(size, padding=PAD), transforms.RandomHorizontalFlip()]


def reference_transform(data: ImageData, normalize: str, augment: bool) -> transforms.Compose:
    """PIL image to normalised float tensor, with the statistics `DataModule.normalizer` uses.

    `normalize` is "pixel" (subtract the per-pixel mean image) or "channel" (per-channel mean/std).
    """
    if normalize == "pixel":
        normalization: Callable[[Tensor], Tensor] = SubtractMean(data.pixel_mean())
    else:
        mean, std = data.channel_stats()
        normalization = transforms.Normalize(mean.flatten().tolist(), std.flatten().tolist())
    steps = augmentations(tuple(data.train_images.shape[-2:])) if augment else []
    return transforms.Compose([*steps, transforms.ToTensor(), normalization])


class PILImages(Dataset):
    """uint8 images stored as HWC numpy and handed to the transform as PIL images, as torchvision's CIFAR10."""

    def __init__(self, images: Tensor, labels: Tensor, transform: Callable[[Image.Image], Tensor]) -> None:
        self.images = np.ascontiguousarray(images.cpu().permute(0, 2, 3, 1).numpy())
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.transform(Image.fromarray(self.images[index])), self.labels[index]


class ReferenceStream:
    """Endless training batches from a shuffling `DataLoader` with worker processes, moved to `device`.

    Same interface as `TrainStream`. Its state is only the epoch and the generator that orders the
    samples: the workers' augmentation RNGs are seeded once when they start and the position inside an
    epoch is not kept, so a resumed run starts a fresh epoch and is not bitwise-exact on this path.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        transform: Callable[[Image.Image], Tensor],
        seed: int,
        device: torch.device,
    ) -> None:
        self.device = device
        self.generator = torch.Generator().manual_seed(seed)
        self.loader = DataLoader(
            PILImages(images, labels, transform),
            batch_size=min(batch_size, len(labels)),
            shuffle=True,
            num_workers=WORKERS,
            drop_last=True,
            persistent_workers=True,
            pin_memory=device.type == "cuda",
            generator=self.generator,
        )
        self.batches: Iterator[tuple[Tensor, Tensor]] | None = None
        self.epoch = 0

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self

    def __next__(self) -> tuple[Tensor, Tensor]:
        if self.batches is None:
            self.batches = iter(self.loader)
            self.epoch += 1
        try:
            x, y = next(self.batches)
        except StopIteration:
            self.batches = None
            return next(self)
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.epoch = int(state["epoch"])
        self.batches = None
