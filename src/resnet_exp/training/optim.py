"""Optimizer factory for `configs/optim`: torch's SGD, with the values checked where users set them."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from resnet_exp.errors import ConfigError


def sgd(
    params: Iterable[torch.nn.Parameter],
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    nesterov: bool = False,
) -> torch.optim.SGD:
    if not lr > 0:
        raise ConfigError(f"optim.lr={lr} must be a positive number (the paper uses 0.1)")
    if not 0 <= momentum < 1:
        raise ConfigError(f"optim.momentum={momentum} must be in [0, 1) (the paper uses 0.9)")
    if weight_decay < 0:
        raise ConfigError(f"optim.weight_decay={weight_decay} must be >= 0 (the paper uses 1e-4)")
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
