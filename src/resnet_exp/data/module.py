"""What a data config builds: where images come from (`read`) and how they are fed (`batches`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from resnet_exp.data.batches import EvalBatches, Normalizer, TrainStream
from resnet_exp.data.images import ImageData, split_off_validation
from resnet_exp.errors import ConfigError

NORMALIZATIONS = ("pixel", "channel")


@dataclass
class Batches:
    """Everything the trainer gets from the data: batches already on its device."""

    train: TrainStream
    eval: EvalBatches
    eval_split: str
    train_size: int


class DataModule:
    """Base of the data configs' `_target_`s; subclasses only say how to read their images."""

    def __init__(
        self,
        normalize: str = "pixel",
        augment: bool = True,
        val_split: int = 0,
        split_seed: int = 0,
    ) -> None:
        if normalize not in NORMALIZATIONS:
            raise ConfigError(f"data.normalize={normalize!r} is not known; accepted: {', '.join(NORMALIZATIONS)}")
        self.normalize = normalize
        self.augment = augment
        self.val_split = val_split
        self.split_seed = split_seed

    def read(self) -> ImageData:
        raise NotImplementedError

    def normalizer(self, data: ImageData) -> Normalizer:
        """Per-pixel mean subtraction (the paper) or per-channel mean/std, from the training images."""
        if self.normalize == "pixel":
            return Normalizer(data.pixel_mean(), torch.ones(1))
        return Normalizer(*data.channel_stats())

    def batches(self, device: torch.device, batch_size: int, eval_batch_size: int, seed: int) -> Batches:
        data = split_off_validation(self.read(), self.val_split, self.split_seed)
        norm = self.normalizer(data).to(device)
        train = TrainStream(
            data.train_images.to(device), data.train_labels.to(device), batch_size, norm, self.augment, seed
        )
        evaluation = EvalBatches(data.test_images.to(device), data.test_labels.to(device), eval_batch_size, norm)
        return Batches(train, evaluation, data.eval_split, len(data.train_labels))
