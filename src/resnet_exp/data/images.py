"""The in-memory form every data set is read into: uint8 images and labels, train and evaluation."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from resnet_exp.errors import ConfigError


@dataclass(frozen=True)
class ImageData:
    """A labelled image set as uint8 (N, 3, H, W) tensors; `eval_split` says what `test_*` holds."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]
    source: str
    eval_split: str = "test"

    def pixel_mean(self) -> torch.Tensor:
        """Per-pixel mean of the training images in [0, 1], shape (3, H, W)."""
        return self.train_images.float().mean(0).div_(255)

    def channel_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std of the training images in [0, 1], each shaped (3, 1, 1)."""
        x = self.train_images.float().div_(255).transpose(0, 1).reshape(3, -1)
        return x.mean(1).view(3, 1, 1), x.std(1).view(3, 1, 1)


def check_val_split(val_split: int, n: int) -> None:
    """Refuse a held-out split that leaves no training image of `n`, or takes a negative number of them."""
    if val_split != 0 and not 0 < val_split < n:
        raise ConfigError(f"data.val_split={val_split} must be 0 (use the test set) or between 1 and {n - 1}")


def split_off_validation(data: ImageData, val_split: int, seed: int) -> ImageData:
    """Hold out `val_split` random training images as the evaluation set (the paper's 45k/5k)."""
    if val_split == 0:
        return data
    n = len(data.train_labels)
    check_val_split(val_split, n)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val, train = order[:val_split].sort().values, order[val_split:].sort().values
    return replace(
        data,
        train_images=data.train_images[train],
        train_labels=data.train_labels[train],
        test_images=data.train_images[val],
        test_labels=data.train_labels[val],
        eval_split="val",
    )
