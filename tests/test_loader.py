"""`data.loader=torchvision` against the device pipeline: same batches' form, same augmentation distribution."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import PER_BATCH
from PIL import Image
from torchvision import transforms

from resnet_exp.data import Cifar10, read_cifar10
from resnet_exp.data.batches import PAD, random_crop_flip
from resnet_exp.data.reference import ReferenceStream, augmentations
from resnet_exp.errors import ConfigError

SIZE = 32
SHIFTS = 2 * PAD + 1
CELLS = SHIFTS * SHIFTS * 2  # (dy, dx, flip)


@pytest.mark.parametrize("normalize", ["pixel", "channel"])
def test_torchvision_loader_matches_device_normalisation(tiny_cifar: Path, normalize: str) -> None:
    module = Cifar10(str(tiny_cifar), augment=False, normalize=normalize, loader="torchvision")
    batches = module.batches(torch.device("cpu"), batch_size=8, eval_batch_size=100, seed=0)
    assert isinstance(batches.train, ReferenceStream)
    data = read_cifar10(tiny_cifar)
    expected = module.normalizer(data)(data.train_images)
    for _ in range(3):  # 20 images, batches of 8 with the last partial one dropped: the third starts epoch 2
        x, y = next(batches.train)
        assert x.shape == (8, 3, SIZE, SIZE) and x.dtype == torch.float32 and x.device.type == "cpu"
        assert y.dtype == torch.int64
        # Every sample is a training image, normalised as the device pipeline does, with its own label.
        match = ((x[:, None] - expected[None]).abs().amax((2, 3, 4)) < 1e-5).int().argmax(1)
        torch.testing.assert_close(x, expected[match], atol=1e-5, rtol=0)
        assert torch.equal(y, data.train_labels[match])
    assert batches.train.epoch == 2
    state = batches.train.state_dict()
    assert set(state) == {"generator", "epoch"}
    batches.train.load_state_dict(state)
    next(batches.train)
    assert batches.train.epoch == 3  # a resumed torchvision stream starts a fresh epoch


def test_torchvision_loader_augments(tiny_cifar: Path) -> None:
    batches = Cifar10(str(tiny_cifar), loader="torchvision").batches(torch.device("cpu"), 5 * PER_BATCH, 100, seed=0)
    x, y = next(batches.train)
    assert x.shape == (5 * PER_BATCH, 3, SIZE, SIZE) and x.dtype == torch.float32
    assert sorted(y.tolist()) == sorted(read_cifar10(tiny_cifar).train_labels.tolist())


def test_unknown_loader_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"data.loader='dali'.*device, torchvision"):
        Cifar10("unused", loader="dali")


def position_image() -> torch.Tensor:
    """A (3, 32, 32) uint8 image whose red value is row + 1 and green value column + 1 (0 only in padding)."""
    rows = torch.arange(1, SIZE + 1, dtype=torch.uint8).view(SIZE, 1).expand(SIZE, SIZE)
    return torch.stack([rows, rows.t(), torch.zeros_like(rows)])


def crop_cells(out: torch.Tensor) -> torch.Tensor:
    """Cell index of (dy, dx, flip) of each augmented position image in `out` (N, 3, 32, 32).

    The centre pixel lies inside the image for every offset, so it names the source row and column;
    its right neighbour's column tells whether the crop was flipped.
    """
    centre = SIZE // 2
    row = out[:, 0, centre, centre].long() - 1
    col = out[:, 1, centre, centre].long() - 1
    flip = (out[:, 1, centre, centre + 1].long() - 1 < col).long()
    dy = row - centre + PAD
    # Output column j reads padded column dx + j, or dx + (SIZE - 1 - j) when flipped.
    dx = col + PAD - torch.where(flip.bool(), SIZE - 1 - centre, centre)
    assert dy.min() >= 0 and dy.max() < SHIFTS and dx.min() >= 0 and dx.max() < SHIFTS
    return (dy * SHIFTS + dx) * 2 + flip


def chi2_critical(df: int, z: float) -> float:
    """Upper quantile of chi-square with `df` degrees of freedom at normal quantile `z` (Wilson-Hilferty).

    Accurate to well under 1% for df > 100, and it needs no scipy.
    """
    k = 2 / (9 * df)
    return df * (1 - k + z * math.sqrt(k)) ** 3


def test_batched_crop_flip_has_the_per_image_distribution() -> None:
    """Offsets and flips of `random_crop_flip` are distributed as RandomCrop + RandomHorizontalFlip's."""
    n = 8100  # 50 expected per cell
    image = position_image()
    generator = torch.Generator().manual_seed(0)
    batch = image.float().expand(900, -1, -1, -1)
    device_cells = torch.cat([crop_cells(random_crop_flip(batch, generator)) for _ in range(n // 900)])

    torch.manual_seed(0)
    per_image = transforms.Compose(augmentations((SIZE, SIZE)))
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    outputs = np.stack([np.asarray(per_image(pil)) for _ in range(n)])
    reference_cells = crop_cells(torch.from_numpy(outputs).permute(0, 3, 1, 2))

    a = torch.bincount(device_cells, minlength=CELLS).double()
    b = torch.bincount(reference_cells, minlength=CELLS).double()
    assert (a > 0).all() and (b > 0).all()  # every offset and flip occurs on both paths
    # Two-sample chi-square test of homogeneity with equal sample sizes, at p = 0.001.
    statistic = ((a - b) ** 2 / (a + b)).sum().item()
    assert statistic < chi2_critical(CELLS - 1, z=3.09)
