"""Gradients: per-layer gradient norms, and how shattered the input gradients are (Balduzzi et al. 2017).

Per-layer norms: the L2 norm of each parameter's gradient of the cross-entropy on one test batch, for a net
at initialisation and after training (a run's checkpoint).

Shattered gradients ("The Shattered Gradients Problem: If resnets are the answer, then what is the
question?", Balduzzi et al. 2017): for inputs x_t on the straight line from one test image a to another b,
x_t = a + t (b - a) at `points` evenly spaced t in [0, 1], take the gradients g_t = d(sum of logits)/dx_t.
Their autocorrelation at lag k is

    rho(k) = sum_t <g_t - g_mean, g_{t+k} - g_mean> / sum_t ||g_t - g_mean||^2

(g_mean the mean gradient along the line; rho = 1 for a constant gradient), averaged over `lines` pairs
of test images. Smooth gradients keep rho(1) near 1; in deep plain nets the gradient of nearby inputs
decorrelates towards white noise (rho(1) near 0), much less so in residual nets.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resnet_exp.canvas import panels
from resnet_exp.errors import UserError
from resnet_exp.tools.analysis.common import Subject, progress
from resnet_exp.training.trainer import grad_norms


def loss_grad_norms(model: nn.Module, x: Tensor, y: Tensor) -> dict[str, float]:
    """`grad_norms` of the cross-entropy of one batch; the model's own gradients are left cleared."""
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    norms = grad_norms(model)
    model.zero_grad(set_to_none=True)
    return norms


def input_gradients(model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    """d(sum of logits)/dx for every input; independent per input because BN uses its running statistics."""
    grads = []
    for chunk in x.split(batch_size):
        chunk = chunk.detach().requires_grad_()
        (grad,) = torch.autograd.grad(model(chunk).sum(), chunk)
        grads.append(grad)
    return torch.cat(grads)


def autocorrelation(g: Tensor, max_lag: int) -> list[float]:
    """rho(0..max_lag) of the sequence g_t (first dimension t) as defined in the module docstring."""
    c = g.flatten(1).double()
    c = c - c.mean(0)
    variance = c.square().sum()
    if variance == 0:
        return [1.0] * (max_lag + 1)
    return [((c[: len(c) - k] * c[k:]).sum() / variance).item() for k in range(max_lag + 1)]


def measure_shattering(model: nn.Module, images: Tensor, points: int, batch_size: int) -> list[float]:
    """rho(0..points//4) averaged over the lines between images 0-1, 2-3, ... (an even number of images)."""
    t = torch.linspace(0, 1, points, device=images.device).view(-1, 1, 1, 1)
    curves = [
        autocorrelation(input_gradients(model, a + t * (b - a), batch_size), points // 4)
        for a, b in zip(images[0::2], images[1::2], strict=True)
    ]
    return torch.tensor(curves).mean(0).tolist()


def first_images(batches: Any, count: int) -> Tensor:
    """The first `count` test images, or an error saying how many there are."""
    images = []
    for x, _ in batches:
        images.append(x)
        if sum(map(len, images)) >= count:
            return torch.cat(images)[:count]
    raise UserError(f"--lines needs {count} test images, the test data has {sum(map(len, images))}: raise --limit")


def measure(subject: Subject, points: int, lines: int, batch_size: int) -> dict[str, Any]:
    """Gradient norms on the first test batch and the shattering curve of one net."""
    x, y = next(iter(subject.batches.eval))
    curve = measure_shattering(subject.model, first_images(subject.batches.eval, 2 * lines), points, batch_size)
    return {"grad_norms": loss_grad_norms(subject.model, x, y), "autocorrelation": curve, "lag1": curve[1]}


def run(
    entries: list[dict[str, Subject]], points: int, lines: int, batch_size: int
) -> tuple[dict[str, Any], Any]:
    """Measure each entry's states ("init" and/or "trained" nets); one figure: per-layer gradient norms, the
    autocorrelation against lag, and rho(1) against depth for plain and residual nets."""
    fig, (layers, lags, depths) = panels(3)
    styles = {"init": "--", "trained": "-"}
    results = {}
    by_kind: dict[tuple[bool, str], list[tuple[int, float]]] = {}
    for index, entry in enumerate(progress(entries, "gradients")):
        main = entry.get("trained", entry.get("init"))
        assert main is not None
        color = f"C{index % 10}"
        states = {}
        for state, s in entry.items():
            result = states[state] = measure(s, points, lines, batch_size)
            weights = [n for n, p in s.model.named_parameters() if p.dim() > 1]
            label = f"{main.label} ({state})"
            layers.semilogy([result["grad_norms"][n] for n in weights], styles[state], color=color, label=label)
            lags.plot(result["autocorrelation"], styles[state], color=color, label=label)
            by_kind.setdefault((s.residual, state), []).append((s.depth, result["lag1"]))
        results[main.label] = {**main.describe(), "states": states}
    for (residual, state), pts in sorted(by_kind.items()):
        depths.plot(*zip(*sorted(pts), strict=True), styles[state], marker="o",
                    color="C1" if residual else "C0", label=f"{'residual' if residual else 'plain'} ({state})")
    layers.set(xlabel="weight layer (conv, linear)", ylabel="gradient norm", title="cross-entropy, one batch")
    lags.set(xlabel="lag (points along the line)", ylabel="autocorrelation", title="input gradients along a line")
    depths.set(xlabel="depth", ylabel="autocorrelation at lag 1", title="shattering against depth")
    for ax in (layers, lags, depths):
        ax.legend(fontsize="small")
    return {"points": points, "lines": lines, "runs": results}, fig
