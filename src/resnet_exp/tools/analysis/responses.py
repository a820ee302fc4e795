"""Layer responses (He et al. 2016a, section 4.2 and Fig. 7): residual functions respond weakly.

For each layer of each block, the standard deviation over the test set (all images, channels and positions)
of its response: its output after BN, before the ReLU or the addition (`Block.responses`). The paper shows
these in the nets' order and sorted by magnitude, smaller for residual than for plain nets. Per block also
the mean over test images of ||F(x)|| / ||x||: F the residual branch before the addition, x the shortcut's
output (the block input where the shape is kept); for plain blocks x is the input, where shapes match.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from resnet_exp.canvas import panels
from resnet_exp.models.cifar import Block, CifarResNet, add_shortcut
from resnet_exp.tools.analysis.common import Subject, cifar_blocks, forward, progress


class _Moments:
    """Running count, sum and sum of squares in float64, for one std over the whole test set."""

    def __init__(self) -> None:
        self.sums = torch.zeros(3, dtype=torch.float64)

    def add(self, t: Tensor) -> None:
        t = t.detach().double()
        self.sums += torch.stack([t.new_tensor(t.numel()), t.sum(), t.square().sum()]).cpu()

    def std(self) -> float:
        n, s, sq = self.sums.tolist()
        return max(sq / n - (s / n) ** 2, 0.0) ** 0.5


@torch.no_grad()
def measure_responses(model: CifarResNet, batches: Any) -> dict[str, dict[str, Any]]:
    """{"std": {block: [std per layer]}, "ratio": {block: mean ||F(x)||/||x|| or None}}, keyed by block index."""
    blocks = cifar_blocks(model, "responses")
    moments = {module: _Moments() for block in blocks for module in block.responses()}
    ratio_sums = torch.zeros(len(blocks), dtype=torch.float64)
    count = 0

    def step(i: int, block: Block, x: Tensor) -> Tensor:
        def measured_add(branch: Tensor, skip: Tensor | None) -> Tensor:
            reference = skip if skip is not None else None if block.reshapes else x
            if reference is not None:
                norms = reference.flatten(1).norm(dim=1).clamp_min(torch.finfo(reference.dtype).tiny)
                ratio_sums[i] += (branch.flatten(1).norm(dim=1) / norms).double().sum().cpu()
            return add_shortcut(branch, skip)

        return block(x, add=measured_add)

    hooks = [m.register_forward_hook(lambda m, _, out: moments[m].add(out)) for m in moments]
    try:
        for x, _ in progress(batches, "responses"):
            forward(model, x, step)
            count += len(x)
    finally:
        for hook in hooks:
            hook.remove()
    return {
        "std": {str(i): [moments[m].std() for m in b.responses()] for i, b in enumerate(blocks)},
        "ratio": {
            str(i): None if b.shortcut is None and b.reshapes else ratio_sums[i].item() / count
            for i, b in enumerate(blocks)
        },
    }


def run(subjects: list[Subject]) -> tuple[dict[str, Any], Any]:
    """Measure every subject; one figure: stds in order, stds sorted, ratios per block."""
    fig, (ordered, ranked, ratios) = panels(3)
    results = {}
    for s in subjects:
        result = measure_responses(s.model, s.batches.eval)
        stds = [v for layer_stds in result["std"].values() for v in layer_stds]
        ordered.plot(range(1, len(stds) + 1), stds, label=s.label)
        ranked.plot(range(1, len(stds) + 1), sorted(stds, reverse=True), label=s.label)
        points = [(int(i), r) for i, r in result["ratio"].items() if r is not None]
        ratios.plot(*zip(*points, strict=True), marker=".", label=s.label)
        results[s.label] = {**s.describe(), **result}
    ordered.set(xlabel="layer index (original order)", ylabel="std of response", title="layer responses")
    ranked.set(xlabel="layer index (sorted by magnitude)", ylabel="std of response", title="sorted")
    ratios.set(xlabel="block index", ylabel="mean ||F(x)|| / ||x||", title="residual branch vs shortcut")
    for ax in (ordered, ranked, ratios):
        ax.legend(fontsize="small")
    return {"runs": results}, fig
