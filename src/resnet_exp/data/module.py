"""What a data config builds: where images come from (`read`) and how they are fed (`batches`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from resnet_exp.data.batches import EvalBatches, Normalizer, TrainStream
from resnet_exp.data.images import ImageData, check_val_split, split_off_validation
from resnet_exp.errors import ConfigError

if TYPE_CHECKING:
    from resnet_exp.data.reference import ReferenceStream

NORMALIZATIONS = ("pixel", "channel")
LOADERS = ("device", "torchvision")


@dataclass
class Batches:
    """Everything the trainer gets from the data: batches already on its device."""

    train: TrainStream | ReferenceStream
    eval: EvalBatches
    eval_split: str
    train_size: int


class DataModule:
    """Base of the data configs' `_target_`s; subclasses only say how to read their images."""

    name: str  # how summary.json and the report name the data: the config's name (cifar10, synthetic)
    test_size = 10_000  # the test set's images, known before reading it (CIFAR-10's; a subclass may set another)
    # The training set's image count before a held-out split, known the same way (not `train_images`: ImageData
    # calls its image tensor that); `train_size` is what is left for training once the split is taken off.
    full_train_size = 50_000
    num_classes = 10  # the classes its labels take (CIFAR-10's; the synthetic set has as many)

    def __init__(
        self,
        normalize: str = "pixel",
        augment: bool = True,
        val_split: int = 0,
        split_seed: int = 0,
        loader: str = "device",
    ) -> None:
        if normalize not in NORMALIZATIONS:
            raise ConfigError(f"data.normalize={normalize!r} is not known; accepted: {', '.join(NORMALIZATIONS)}")
        if loader not in LOADERS:
            raise ConfigError(f"data.loader={loader!r} is not known; accepted: {', '.join(LOADERS)}")
        self.normalize = normalize
        self.loader = loader
        self.augment = augment
        self.val_split = val_split
        self.split_seed = split_seed

    def read(self) -> ImageData:
        raise NotImplementedError

    def check(self) -> None:
        """Raise the error that reading would raise where that can be known cheaply (a sweep checks each job
        before the first starts); the base reads nothing and knows nothing."""

    @property
    def train_size(self) -> int:
        """The images training draws from, known without reading them: the training set less the held-out split
        (what `Batches.train_size` counts once the images are read)."""
        return self.full_train_size - self.val_split

    def check_classes(self, num_classes: int) -> None:
        """Refuse a net whose classifier has another number of outputs than the data has classes: too few fail on
        the first label beyond them, more train outputs no image ever asks for."""
        if num_classes != self.num_classes:
            raise ConfigError(f"model.num_classes={num_classes!r}, but data {self.name} has {self.num_classes} "
                              f"classes; accepted: {self.num_classes}")

    def check_batch_size(self, batch_size: int) -> None:
        """Refuse, before anything is allocated, a held-out split that leaves no training image, then a batch that
        the training set cannot fill: each naming the value that is wrong."""
        check_val_split(self.val_split, self.full_train_size)
        if batch_size > self.train_size:  # no batch could be drawn without repeating images
            raise ConfigError(f"trainer.batch_size={batch_size} is larger than the {self.train_size} training "
                              "images; choose a batch size of at most the training set's size")

    def eval_size(self) -> int:
        """The images an evaluation covers, known without reading them: the held-out split, else the test set."""
        return self.val_split or self.test_size

    def normalizer(self, data: ImageData) -> Normalizer:
        """Per-pixel mean subtraction (the paper) or per-channel mean/std, from the training images."""
        if self.normalize == "pixel":
            return Normalizer(data.pixel_mean(), torch.ones(1))
        return Normalizer(*data.channel_stats())

    def batches(self, device: torch.device, batch_size: int, eval_batch_size: int, seed: int) -> Batches:
        """Training stream of the configured `loader`; evaluation is the same device-resident path for both."""
        data = split_off_validation(self.read(), self.val_split, self.split_seed)
        norm = self.normalizer(data).to(device)
        train: TrainStream | ReferenceStream
        if self.loader == "torchvision":
            # Imported here so that the default path does not pay for importing torchvision and PIL.
            from resnet_exp.data.reference import ReferenceStream, reference_transform

            transform = reference_transform(data, self.normalize, self.augment)
            train = ReferenceStream(data.train_images, data.train_labels, batch_size, transform, seed, device)
        else:
            train = TrainStream(
                data.train_images.to(device), data.train_labels.to(device), batch_size, norm, self.augment, seed
            )
        evaluation = EvalBatches(data.test_images.to(device), data.test_labels.to(device), eval_batch_size, norm)
        return Batches(train, evaluation, data.eval_split, len(data.train_labels))
