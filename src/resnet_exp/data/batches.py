"""Device-resident batches: the uint8 set lives on the training device, augmentation runs there.

No worker processes, no PIL: each batch is an index gather, a normalisation and one batched
crop-and-flip gather, so on a GPU the data pipeline costs a few kernels per step.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

PAD = 4


def random_crop_flip(x: Tensor, generator: torch.Generator, pad: int = PAD) -> Tensor:
    """Per image: zero-pad by `pad`, take a random crop of the original size, flip half of them.

    Equivalent to RandomCrop(size, padding=pad) then RandomHorizontalFlip applied to each image
    of a normalised batch (so the padding is the mean colour), done as one gather.
    """
    b, c, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b, 1), device=dev, generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (b, 1), device=dev, generator=generator)
    flip = torch.randint(0, 2, (b, 1), device=dev, generator=generator).bool()
    cols = torch.arange(w, device=dev)
    rows = dy + torch.arange(h, device=dev)
    cols = dx + torch.where(flip, w - 1 - cols, cols)
    batch = torch.arange(b, device=dev).view(b, 1, 1, 1)
    chan = torch.arange(c, device=dev).view(1, c, 1, 1)
    return padded[batch, chan, rows.view(b, 1, h, 1), cols.view(b, 1, 1, w)]


class Normalizer:
    """Maps uint8 images to float: x/255 minus the mean, divided by the std (1 for pixel means)."""

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        self.mean = mean
        self.inv_std = std.reciprocal()

    def __call__(self, images: Tensor) -> Tensor:
        return images.float().div_(255).sub_(self.mean).mul_(self.inv_std)

    def to(self, device: torch.device) -> Normalizer:
        self.mean, self.inv_std = self.mean.to(device), self.inv_std.to(device)
        return self


class TrainStream:
    """Endless shuffled training batches; a fresh permutation each epoch, the last partial batch dropped.

    Its state (generator, permutation, position) is checkpointed so a resumed run sees the same batches.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        normalize: Normalizer,
        augment: bool,
        seed: int,
    ) -> None:
        self.images, self.labels = images, labels
        self.batch_size = min(batch_size, len(labels))
        self.normalize = normalize
        self.augment = augment
        self.generator = torch.Generator(device=images.device).manual_seed(seed)
        self.order = torch.empty(0, dtype=torch.long, device=images.device)
        self.position = 0
        self.epoch = 0

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self

    def __next__(self) -> tuple[Tensor, Tensor]:
        if self.position + self.batch_size > len(self.order):
            self.order = torch.randperm(len(self.labels), device=self.images.device, generator=self.generator)
            self.position = 0
            self.epoch += 1
        idx = self.order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        x = self.normalize(self.images[idx])
        if self.augment:
            x = random_crop_flip(x, self.generator)
        return x, self.labels[idx]

    def state_dict(self) -> dict:
        return {
            "generator": self.generator.get_state(),
            "order": self.order.cpu(),
            "position": self.position,
            "epoch": self.epoch,
        }

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order = state["order"].to(self.images.device)
        self.position = int(state["position"])
        self.epoch = int(state["epoch"])


class EvalBatches:
    """The evaluation set in order, normalised, without augmentation; iterable any number of times."""

    def __init__(self, images: Tensor, labels: Tensor, batch_size: int, normalize: Normalizer) -> None:
        self.images, self.labels = images, labels
        self.batch_size = batch_size
        self.normalize = normalize

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, size: int, seed: int = 0) -> EvalBatches:
        """`size` images drawn once at random (by `seed`, not the run's seed, so that every run of a sweep
        measures the same images); all of them when `size` is not smaller than the set."""
        if size >= len(self.labels):
            return self
        generator = torch.Generator().manual_seed(seed)
        keep = torch.randperm(len(self.labels), generator=generator)[:size].sort().values.to(self.labels.device)
        return EvalBatches(self.images[keep], self.labels[keep], self.batch_size, self.normalize)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for start in range(0, len(self.labels), self.batch_size):
            end = start + self.batch_size
            yield self.normalize(self.images[start:end]), self.labels[start:end]
