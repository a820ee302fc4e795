"""Running sums of the training loss and error: added on the device every step, read on the host at progress reads.

Summing on the device keeps a CUDA step from waiting for the host; float64 keeps sums of float32 losses exact,
so they do not depend on when they are read (a resumed run reads the same numbers as an uninterrupted one).
"""

from __future__ import annotations

import torch
from torch import Tensor


class Meter:
    """The sums since the last read (on the device) and since the last evaluation (the window, on the host)."""

    def __init__(self, device: torch.device) -> None:
        self.sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss sum, wrong predictions
        self.count = 0
        self.window = [0.0, 0.0, 0.0]  # loss sum, wrong predictions, images

    def add(self, loss: Tensor, wrong: Tensor, images: int) -> None:
        """One step's mean loss and number of wrong predictions over `images` images (device tensors)."""
        self.sums += torch.stack([loss.detach() * images, wrong.float()])
        self.count += images

    def read(self) -> tuple[float, float, int]:
        """(loss sum, wrong predictions, images) since the last read, moved into the window."""
        loss_sum, wrong = self.sums.tolist()
        images = self.count
        self.sums.zero_()
        self.count = 0
        self.window = [a + b for a, b in zip(self.window, (loss_sum, wrong, images), strict=True)]
        return loss_sum, wrong, images

    def take_window(self) -> tuple[float, float]:
        """(mean loss, error %) since the last evaluation; starts the next window."""
        loss_sum, wrong, images = self.window
        self.window = [0.0, 0.0, 0.0]
        return loss_sum / max(images, 1), 100.0 * wrong / max(images, 1)
