"""Start: the first iterations of a run, step by step, replayed by the runner's own trainer.

Per step: the lr, the training loss and error of the batch, the mean of the last block's output (the
features the classifier sees, before pooling), the share of that output which is zero (dead ReLUs), and
the gradient norms of the classifier and of every other layer. A run dir replays that run's first steps
(same config, seed, batches and compute path); `--init` names model configs, changed with `--override`.

Why: at lr 0.1 from He initialisation the 56-layer nets of the paper's recipe can collapse within a few
steps. Every post-activation block adds a unit-variance branch before a ReLU, so the features' common
mean grows with depth; the classifier's gradient grows with it, its first momentum steps overshoot, the
gradients sent back drive the last blocks' outputs below zero, and once they are all zero the net is at
chance with almost no gradient. This shows when that happens and what an override changes (for example
`--override schedule.ramp_iters=200`, the linear ramp the quick preset uses, or `--override schedule=warmup`).
"""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from resnet_exp.canvas import panels
from resnet_exp.run import assemble
from resnet_exp.tools.analysis.common import cifar_blocks

CLASSIFIER = "fc."  # parameter-name prefix of the CIFAR nets' linear layer
SERIES = ("lr", "loss", "error", "feature_mean", "zero_fraction", "grad_classifier", "grad_rest")


def replay(cfg: DictConfig, iters: int) -> dict[str, Any]:
    """Train a fresh net of `cfg` for up to `iters` steps with the runner's own loop (`Trainer.train_step`, and
    `read_progress` every `trainer.log_every` steps, so a warm-up ends where it would end in the run): the net's
    name, its compute precision, and the series of `SERIES`, one value per step (fewer if the loss became NaN:
    `diverged`). Nothing is written anywhere.
    """
    trainer = assemble(cfg, None)
    model = trainer.model
    cifar_blocks(model, "start")
    seen: dict[str, Tensor] = {}
    handle = model.blocks.register_forward_hook(lambda _module, _inputs, out: seen.update(out=out.detach()))
    series: dict[str, list[float]] = {name: [] for name in SERIES}
    result: dict[str, Any] = {"model": model.name, "precision": trainer.precision.name, "series": series}
    model.train()
    try:
        for _ in range(iters):
            step = trainer.train_step(measure_grads=True)
            loss = step.loss.item()
            if not math.isfinite(loss):
                result["diverged"] = f"training loss became {loss} by iteration {trainer.iteration} (lr {step.lr:g})"
                break
            if trainer.iteration % trainer.settings.log_every == 0:
                trainer.read_progress()
            features = seen["out"].float()
            squares = {"grad_classifier": 0.0, "grad_rest": 0.0}
            for name, norm in step.norms.items():
                squares["grad_classifier" if name.startswith(CLASSIFIER) else "grad_rest"] += norm**2
            values = {
                "lr": step.lr,
                "loss": loss,
                "error": 100.0 * step.wrong.item() / step.images,
                "feature_mean": features.mean().item(),
                "zero_fraction": (features <= 0).float().mean().item(),
                **{name: math.sqrt(total) for name, total in squares.items()},
            }
            for name, value in values.items():
                series[name].append(value)
    finally:
        handle.remove()
    return result


def run(configs: dict[str, DictConfig], iters: int) -> tuple[dict[str, Any], Any]:
    """Replay every labelled config; one figure of four panels against the step."""
    fig, axes = panels(4, width=4.2)
    shown = (
        ("loss", "training loss (batch)", "log"),
        ("zero_fraction", "share of zeros in the last block's output", "linear"),
        ("feature_mean", "mean of the last block's output", "linear"),
        ("grad_classifier", "gradient norm of the classifier", "log"),
    )
    results = {}
    for label, cfg in configs.items():
        result = replay(cfg, iters)
        series = result["series"]
        for ax, (name, _title, _scale) in zip(axes, shown, strict=True):
            ax.plot(range(1, len(series[name]) + 1), series[name], label=label)
        results[label] = {
            "depth": int(cfg.model.depth),
            "residual": bool(cfg.model.residual),
            "seed": int(cfg.seed),
            "optim": OmegaConf.to_container(cfg.optim),
            "schedule": OmegaConf.to_container(cfg.schedule),
            **result,
        }
    for ax, (_name, title, scale) in zip(axes, shown, strict=True):
        ax.set(xlabel="iteration", title=title, yscale=scale)
        ax.legend(fontsize="small")
    return {"iterations": iters, "runs": results}, fig
