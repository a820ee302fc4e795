"""Where a training step's time goes: torch.profiler's operators grouped into the families one can act on.

`make profile` (`resnet_exp.tools.step_profile`) uses it. Self times are summed per family (so nothing is counted
twice), on the CPU from the CPU clock and on CUDA from the device's kernel times. oneDNN and cuDNN compute a
convolution's input gradient and weight gradient in one `convolution_backward` call; `conv_backward_split` times
the two separately on the net's own layer shapes, and the profiled backward time is divided in that ratio.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function

from resnet_exp.forecast import sync

DATA_SCOPE = "data"
# Checked in order; the first match names the family. Scopes (an enclosing profiler range) come first.
SCOPES = (
    ("data pipeline", DATA_SCOPE), ("optimizer step", "Optimizer.step"), ("optimizer step", "Optimizer.zero_grad")
)
FAMILIES = (
    ("conv backward", r"convolution_backward"),
    ("conv forward", r"convolution|conv2d"),
    ("batch norm backward", r"batch_norm_backward|batch_norm_elemt_backward|bn_bw"),
    ("batch norm forward", r"batch_norm"),
    ("ReLU forward/backward", r"relu|clamp_min|threshold"),
    ("additions (shortcuts, gradient sums)", r"^aten::add_?$"),
    ("copies and dtype casts (autocast)", r"_to_copy|^aten::to$|^aten::copy_$"),
    ("loss, argmax, device sums", r"cross_entropy|log_softmax|nll_loss|argmax|^aten::ne$|^aten::sum$|stack"),
    ("pooling and classifier", r"mean|avg_pool|addmm|^aten::mm$|linear"),
)
OTHER = "other (allocation, bookkeeping)"
CONV_BACKWARD = "conv backward"


def op_family(name: str, scopes: Iterable[str]) -> str:
    """The family of an operator `name` run inside the profiler ranges `scopes` (innermost first)."""
    for family, scope in SCOPES:
        if any(s.startswith(scope) for s in scopes):
            return family
    for family, pattern in FAMILIES:
        if re.search(pattern, name):
            return family
    return OTHER


def scopes_of(event: Any) -> list[str]:
    names = []
    parent = event.cpu_parent
    while parent is not None:
        names.append(parent.name)
        parent = parent.cpu_parent
    return names


def profile_steps(step: Callable[[], None], steps: int, device: torch.device) -> dict[str, float]:
    """Milliseconds per step by family over `steps` calls of `step` (already warmed up)."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        sync(device)
    totals: dict[str, float] = defaultdict(float)
    for event in prof.events():
        self_us = event.self_device_time_total if device.type == "cuda" else event.self_cpu_time_total
        if self_us > 0:
            totals[op_family(event.name, scopes_of(event))] += self_us / 1000 / steps
    return dict(totals)


def conv_layers(model: nn.Module, x: torch.Tensor) -> list[tuple[torch.Tensor, nn.Conv2d]]:
    """Each convolution's input in one forward pass of `x`, with the layer."""
    seen: list[tuple[torch.Tensor, nn.Conv2d]] = []
    hooks = [m.register_forward_hook(lambda m, args, out: seen.append((args[0].detach(), m)))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def seconds(call: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Mean seconds of `call` after one untimed call, kernels waited for on CUDA."""
    call()
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    sync(device)
    return (time.perf_counter() - start) / repeats


def conv_backward_split(
    model: nn.Module, x: torch.Tensor, dtype: torch.dtype, repeats: int = 3
) -> tuple[float, float]:
    """Seconds of all input-gradient and of all weight-gradient computations of the net's convolutions, each
    timed alone through `aten::convolution_backward` with one output requested, in `dtype` and x's layout."""
    totals = [0.0, 0.0]
    for inp, conv in conv_layers(model, x):
        inp = inp.to(dtype)
        weight = conv.weight.detach().to(dtype)
        grad = torch.randn_like(F.conv2d(inp, weight, None, conv.stride, conv.padding, conv.dilation, conv.groups))
        geometry = (list(conv.stride), list(conv.padding), list(conv.dilation), False, [0, 0], conv.groups)
        for which, mask in ((0, [True, False, False]), (1, [False, True, False])):
            call = partial(torch.ops.aten.convolution_backward, grad, inp, weight, None, *geometry, mask)
            totals[which] += seconds(call, x.device, repeats)
    return totals[0], totals[1]


def split_conv_backward(times: dict[str, float], input_s: float, weight_s: float) -> dict[str, float]:
    """`times` with the conv backward family divided into its input- and weight-gradient shares."""
    if CONV_BACKWARD not in times or input_s + weight_s <= 0:
        return times
    total = times[CONV_BACKWARD]
    share = input_s / (input_s + weight_s)
    rest = {k: v for k, v in times.items() if k != CONV_BACKWARD}
    return {f"{CONV_BACKWARD}: input gradient": total * share, f"{CONV_BACKWARD}: weight gradient": total * (1 - share),
            **rest}


def data_scope() -> Any:
    """The profiler range the caller wraps its batch fetching in, so the data pipeline is its own family."""
    return record_function(DATA_SCOPE)
