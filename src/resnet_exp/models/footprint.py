"""What a CIFAR net of a given depth costs in memory, found before anything is allocated.

`model.depth=999998` is a valid 6n+2, and building it would allocate until the machine runs out of memory. The
weights and the activations a training step keeps for its backward pass both grow linearly with the blocks per
stage n, so two small twins of the net (n=1 and n=2), built and run on the meta device (shapes only, no
memory), give both costs for any n exactly enough to refuse what cannot fit."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from resnet_exp.models.cifar import CifarResNet, check_depth

BYTES = 4  # float32 weights, gradients, momentum and stored activations (bf16 autocast keeps fewer; an upper bound)
STATE_COPIES = 3  # weights, their gradients, SGD's momentum


@dataclass(frozen=True)
class Footprint:
    parameters: int
    activation_bytes: int  # what one training batch keeps for its backward pass

    def bytes(self) -> int:
        return self.parameters * BYTES * STATE_COPIES + self.activation_bytes


def kept_elements(model: nn.Module, batch: int) -> int:
    """Elements of every leaf module's output for a batch of `batch` CIFAR images: what autograd keeps."""
    total = 0

    def count(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel()

    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    try:
        model(torch.empty(batch, 3, 32, 32, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    return total


def cifar_footprint(settings: dict, batch_size: int) -> Footprint:
    """The footprint of `CifarResNet(**settings)` training on batches of `batch_size`, from its n=1 and n=2
    twins."""
    depth = settings.get("depth", 20)
    n = check_depth(depth, settings.get("block", "basic"))
    step = (depth - 2) // n  # layers per block of each stage: depth = step * n + 2
    costs = []
    for twin_n in (1, 2):
        with torch.device("meta"):
            twin = CifarResNet(**{**settings, "depth": step * twin_n + 2})
        costs.append((sum(p.numel() for p in twin.parameters()), kept_elements(twin, batch_size)))
    (p1, a1), (p2, a2) = costs
    return Footprint(p1 + (n - 1) * (p2 - p1), (a1 + (n - 1) * (a2 - a1)) * BYTES)


def memory_limit(device: torch.device) -> int:
    """The bytes a run may use on `device`: the GPU's free memory, or the machine's available memory."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):  # not Linux: all the physical memory
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
