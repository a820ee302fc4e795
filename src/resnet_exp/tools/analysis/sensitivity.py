"""Sensitivity to input perturbations: are residual nets "differential amplifiers" that react more strongly
to small changes of the input than plain nets?

For each test image x and size eps (in normalised input units), two perturbations d of the same size
(||d||_inf = eps, ||d||_2 = eps sqrt(dim)) that differ only in direction: random signs, and the sign of
the gradient of the cross-entropy (FGSM, Goodfellow et al. 2015), the direction that changes the loss
fastest. Reported per eps: the mean relative change of the logits ||f(x+d) - f(x)|| / ||f(x)|| and the
fraction of predictions that flip. With plain and residual runs both given, the JSON says for each eps
whether the residual nets (mean over them) change more than the plain ones.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resnet_exp.canvas import panels
from resnet_exp.tools.analysis.common import Subject, progress

KINDS = ("random", "fgsm")
METRICS = ("relative_change", "flip_rate")


def directions(model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator) -> tuple[Tensor, dict[str, Tensor]]:
    """The clean logits and the unit-size (entries +-1) random and FGSM directions for a batch."""
    x = x.detach().requires_grad_()
    logits = model(x)
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, y), x)
    signs = torch.randint(0, 2, x.shape, device=x.device, generator=generator).mul_(2).sub_(1).to(x.dtype)
    return logits.detach(), {"random": signs, "fgsm": grad.sign()}


def measure_sensitivity(model: nn.Module, batches: Any, eps: list[float], seed: int = 0) -> dict[str, Any]:
    """{kind: {str(eps): {"relative_change": mean, "flip_rate": fraction}}} for kind in random, fgsm."""
    sums = torch.zeros(len(KINDS), len(eps), len(METRICS), dtype=torch.float64)
    count = 0
    generator: torch.Generator | None = None
    for x, y in progress(batches, "sensitivity"):
        if generator is None:
            generator = torch.Generator(device=x.device).manual_seed(seed)
        logits, dirs = directions(model, x, y, generator)
        with torch.no_grad():
            for k, kind in enumerate(KINDS):
                for e, size in enumerate(eps):
                    out = model(x + size * dirs[kind])
                    change = (out - logits).norm(dim=1) / logits.norm(dim=1).clamp_min(torch.finfo(x.dtype).tiny)
                    flips = (out.argmax(1) != logits.argmax(1)).to(change.dtype)
                    sums[k, e] += torch.stack([change.sum(), flips.sum()]).double().cpu()
        count += len(y)
    means = (sums / count).tolist()
    return {
        kind: {str(size): dict(zip(METRICS, means[k][e], strict=True)) for e, size in enumerate(eps)}
        for k, kind in enumerate(KINDS)
    }


def compare(results: dict[str, dict[str, Any]], eps: list[float]) -> dict[str, Any]:
    """Residual against plain runs per kind and eps (means over runs of each); empty unless both are given."""
    groups = {flag: [r for r in results.values() if r["residual"] is flag] for flag in (True, False)}
    if not all(groups.values()):
        return {}

    def row(kind: str, size: float) -> dict[str, Any]:
        means = {
            f"{name}_{metric}": sum(r[kind][str(size)][metric] for r in runs) / len(runs)
            for name, runs in (("residual", groups[True]), ("plain", groups[False]))
            for metric in METRICS
        }
        return {**means, "residual_more_sensitive": means["residual_relative_change"] > means["plain_relative_change"]}

    return {kind: {str(size): row(kind, size) for size in eps} for kind in KINDS}


def run(subjects: list[Subject], eps: list[float], seed: int) -> tuple[dict[str, Any], Any]:
    """Measure every subject; one figure: relative logit change and flip rate against eps, random and FGSM."""
    fig, axes = panels(4, width=4.5, rows=2)
    results = {}
    for s in subjects:
        result = measure_sensitivity(s.model, s.batches.eval, eps, seed)
        style = "-" if s.residual else "--"
        for row, metric in enumerate(METRICS):
            for col, kind in enumerate(KINDS):
                values = [result[kind][str(size)][metric] for size in eps]
                axes[2 * row + col].plot(eps, values, style, marker="o", markersize=3, label=s.label)
        results[s.label] = {**s.describe(), **result}
    for row, metric in enumerate(METRICS):
        for col, kind in enumerate(KINDS):
            ax = axes[2 * row + col]
            if metric == "relative_change":
                ax.set(yscale="log", ylabel="||f(x+d) - f(x)|| / ||f(x)||")
            else:
                ax.set(ylabel="predictions flipped")
            ax.set(xscale="log", xlabel="eps (normalised input units)", title=f"{kind} direction")
            ax.legend(fontsize="small")
    return {"eps": eps, "seed": seed, "runs": results, "residual_vs_plain": compare(results, eps)}, fig
