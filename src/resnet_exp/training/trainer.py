"""The training loop, counted in iterations as the paper counts them, with evaluation and checkpoints.

Training statistics are summed on the device (`Meter`) and read only every `log_every` iterations, so a
CUDA step never waits for the host. `train_step` and `read_progress` are the loop's two parts: `fit` runs them
with evaluation and checkpoints, and `resnet-exp-analyze start` replays a run's first steps with the same two.
Whether a checkpoint may be continued, and the run's record written into it, are the run's (resume.py, record.py):
the trainer saves and loads its own state.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from resnet_exp.data.batches import EvalBatches
from resnet_exp.data.module import Batches
from resnet_exp.devices import check_device_name, resolve_device
from resnet_exp.errors import ConfigError
from resnet_exp.precision import Precision, check_precision, resolve_precision
from resnet_exp.runlog import RunLog
from resnet_exp.training.checkpoint import save_checkpoint
from resnet_exp.training.meter import Meter
from resnet_exp.training.schedule import StepSchedule
from resnet_exp.training.signals import Interrupted, StopRequests

if TYPE_CHECKING:
    from resnet_exp.record import RunRecord

COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile's

log = logging.getLogger(__name__)


@dataclass
class TrainerSettings:
    """`cfg.trainer`; checked on construction so a bad value fails before any data is read."""

    device: str = "auto"
    max_iters: int = 64000
    batch_size: int = 128
    eval_every: int = 1000
    eval_batch_size: int = 1000
    eval_images: int | None = None
    log_every: int = 50
    resume: bool = True
    allow_changes: bool = False
    progress: bool | None = None
    precision: str = "auto"
    channels_last: bool = True
    deterministic: bool = False
    compile: bool = False
    compile_mode: str | None = None
    log_grad_norms: bool = False

    def __post_init__(self) -> None:
        for name in ("max_iters", "batch_size", "eval_every", "eval_batch_size", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"trainer.{name}={value!r} must be a positive integer")
        if self.eval_images is not None and (not isinstance(self.eval_images, int) or self.eval_images <= 0):
            raise ConfigError(f"trainer.eval_images={self.eval_images!r} must be a positive integer, or null for all")
        for name in ("resume", "allow_changes", "channels_last", "deterministic", "compile", "log_grad_norms"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"trainer.{name}={getattr(self, name)!r} is not a boolean; accepted: true, false")
        if self.compile_mode not in COMPILE_MODES:
            raise ConfigError(f"trainer.compile_mode={self.compile_mode!r} is not a mode of torch.compile; accepted: "
                              f"{', '.join(map(str, COMPILE_MODES[1:]))}, or null")
        check_device_name(self.device, "trainer.device")
        check_precision(self.precision)

    def torch_device(self, job_index: int = 0) -> torch.device:
        """`auto` picks CUDA when present; job k of a parallel sweep gets GPU k mod the visible GPUs."""
        return resolve_device(self.device, "trainer.device", job_index)


def grad_norms(model: nn.Module) -> dict[str, float]:
    """L2 norm of each parameter's current gradient, keyed by parameter name; call it after `backward`.

    One host-device sync for all parameters, so logging it every `log_every` steps stays cheap.
    """
    named = [(name, p.grad) for name, p in model.named_parameters() if p.grad is not None]
    if not named:
        return {}
    norms = torch.stack([g.detach().norm() for _, g in named]).tolist()
    return {name: norm for (name, _), norm in zip(named, norms, strict=True)}


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class StepResult:
    """What one training step leaves: its lr, its batch's mean loss and wrong predictions (device tensors, read
    only by whoever needs them), and the gradient norms when they were measured."""

    lr: float
    loss: torch.Tensor
    wrong: torch.Tensor
    images: int
    norms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PendingEvaluation:
    """An evaluation point whose training window is measured but whose evaluation has not run: kept in the
    checkpoint when a signal cuts the evaluation short, and evaluated first on resume."""

    train_loss: float
    train_error: float
    lr: float
    epoch: int
    all_images: bool  # the run's last point, which measures the whole evaluation set

    def to_checkpoint(self) -> dict[str, Any]:
        """As the checkpoint holds it: plain values under the metrics' own keys (it is read with weights_only)."""
        return {"train/loss": self.train_loss, "train/error": self.train_error, "lr": self.lr, "epoch": self.epoch,
                "all_images": self.all_images}

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any] | None) -> PendingEvaluation | None:
        if state is None:
            return None
        return cls(state["train/loss"], state["train/error"], state["lr"], state["epoch"], state["all_images"])


class Trainer:
    def __init__(
        self,
        settings: TrainerSettings,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: StepSchedule,
        batches: Batches,
        device: torch.device,
        checkpoint_path: Path | None,
        precision: Precision | None = None,
        record: RunRecord | None = None,
    ) -> None:
        """`checkpoint_path`: where `fit` saves; None for a trainer that never saves (the benchmark, the `start`
        replay). `precision`: `settings.precision` as resolved for `device` (resolved here where not given).
        `record`: what defines the run (record.py), written into each checkpoint so that a resumed run can be
        compared with it; None for a trainer whose checkpoints need none."""
        self.settings = settings
        self.precision = precision or resolve_precision(settings.precision, device)
        self.autocast = self.precision.autocast(device)
        self.memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
        self.model = model.to(device, memory_format=self.memory_format)
        # The compiled wrapper runs the steps; `self.model` keeps the plain state_dict keys for checkpoints.
        self.net = torch.compile(self.model, mode=settings.compile_mode) if settings.compile else self.model
        self.optimizer = optimizer
        self.schedule = schedule
        self.batches = batches
        self.device = device
        self.checkpoint_path = checkpoint_path
        self.record = record
        self.iteration = 0
        self.wall_time = 0.0
        self.meter = Meter(device)
        self.pending: PendingEvaluation | None = None
        # Intermediate evaluations may use a fixed subset of the evaluation set (the same images in every run);
        # the last one always uses all of it.
        self.interim_eval = batches.eval.subset(settings.eval_images) if settings.eval_images else batches.eval

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's state (`state_dict`): weights, optimizer, schedule, the data order, the random
        state, the wall time, the training window and a pending evaluation. Whether the checkpoint may be continued
        by this run is checked before (resume.py)."""
        self.iteration = int(state["iteration"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.batches.train.load_state_dict(state["data"])
        torch.set_rng_state(state["rng"]["torch"])
        if self.device.type == "cuda" and "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self.wall_time = float(state["wall_time"])
        self.meter.window = list(state["window"])
        self.pending = PendingEvaluation.from_checkpoint(state.get("pending_eval"))

    def state_dict(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "iteration": self.iteration,
            "arch": getattr(self.model, "name", type(self.model).__name__),
            "zero_channels": getattr(self.model, "zero_channels", None),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "data": self.batches.train.state_dict(),
            "rng": rng,
            "wall_time": self.wall_time,
            "window": list(self.meter.window),
            "run": None if self.record is None else self.record.defining(),
            "pending_eval": None if self.pending is None else self.pending.to_checkpoint(),
        }

    def set_lr(self) -> float:
        """Apply the schedule's lr for the next update; the schedule, not the optimizer, is where the lr is read."""
        lr = self.schedule.lr(self.iteration)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=self.memory_format)
        with self.autocast:
            return self.net(x).float()

    def step(self, x: torch.Tensor, y: torch.Tensor, measure_grads: bool = False) -> StepResult:
        """One SGD step on (x, y) at the schedule's lr for the next iteration, added to the meter (the net is in
        train mode: `evaluate` switches back after itself); with `measure_grads`, the per-parameter gradient norms
        too."""
        lr = self.set_lr()
        logits = self.forward(x)
        loss = F.cross_entropy(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norms = grad_norms(self.model) if measure_grads else {}
        self.optimizer.step()
        with torch.no_grad():
            wrong = (logits.argmax(1) != y).sum()
        self.meter.add(loss, wrong, len(y))
        return StepResult(lr, loss.detach(), wrong, len(y), norms)

    def train_step(self, measure_grads: bool = False) -> StepResult:
        """The next iteration: the next training batch, one step."""
        result = self.step(*next(self.batches.train), measure_grads)
        self.iteration += 1
        return result

    def read_progress(self) -> tuple[float, float]:
        """(loss, error %) since the last read; the schedule observes the error (a warm-up ends on it), and a
        non-finite loss stops training here (`Diverged`). Called every `log_every` iterations."""
        loss_sum, wrong, images = self.meter.read()
        if not math.isfinite(loss_sum):
            has_checkpoint = self.checkpoint_path is not None and self.checkpoint_path.is_file()
            kept = f"The last good checkpoint is kept in {self.checkpoint_path}" if has_checkpoint else (
                "No checkpoint was written before it")
            raise Diverged(
                f"training loss became {loss_sum / max(images, 1)} by iteration {self.iteration} "
                f"(lr {self.schedule.lr(self.iteration - 1):g}); lower optim.lr or check the data. "
                + kept
            )
        error = 100.0 * wrong / max(images, 1)
        self.schedule.observe(error)
        return loss_sum / max(images, 1), error

    @torch.no_grad()
    def evaluate(
        self, batches: EvalBatches | None = None, stop: StopRequests | None = None
    ) -> tuple[float, float] | None:
        """Loss and error (%) on `batches` (default: the whole evaluation set), in eval mode (BN running
        statistics). None when a stop request (`stop`) comes first: it is checked between batches, so a signal is
        answered within one batch, not after an evaluation of many thousand images."""
        batches = batches or self.batches.eval
        self.net.eval()
        totals = torch.zeros(2, device=self.device)
        try:
            for x, y in batches:
                if stop is not None and stop.signum is not None:
                    return None
                logits = self.forward(x)
                totals += torch.stack(
                    [F.cross_entropy(logits, y, reduction="sum"), (logits.argmax(1) != y).sum().float()])
        finally:
            self.net.train()
        loss_sum, wrong = totals.tolist()
        n = len(batches)
        return loss_sum / n, 100.0 * wrong / n

    def save(self, started: float) -> None:
        self.wall_time = time.perf_counter() - started
        if self.checkpoint_path is not None:
            save_checkpoint(self.state_dict(), self.checkpoint_path)

    def interrupted(self, signum: int, during: str = "") -> Interrupted:
        where = f"hydra.run.dir={self.checkpoint_path.parent.parent}" if self.checkpoint_path else "its run dir"
        return Interrupted(
            signum,
            f"stopped by {signal.Signals(signum).name} at iteration {self.iteration}{during}, checkpoint saved; to "
            f"resume, run the same command with {where}",
        )

    def fit(self, runlog: RunLog, stop: StopRequests, before_step: Callable[[Trainer], None] | None = None) -> None:
        """Train to `max_iters`, evaluating and checkpointing every `eval_every` (the points go to `runlog`).
        `before_step` is called before each step (the run's forecast times its first steps with it).

        On a stop request it checkpoints the current iteration and raises `Interrupted`.
        """
        s = self.settings
        started = time.perf_counter() - self.wall_time
        if self.pending is not None:  # the evaluation a signal cut short, redone before training goes on
            self.finish_evaluation(self.pending, runlog, stop, started)
        self.net.train()
        while self.iteration < s.max_iters:
            if stop.signum is not None:
                self.meter.read()
                self.save(started)
                raise self.interrupted(stop.signum)
            if before_step is not None:
                before_step(self)
            # Gradient norms at the first step (initialisation) and at every progress read.
            measure = s.log_grad_norms and (self.iteration == 0 or (self.iteration + 1) % s.log_every == 0)
            step = self.train_step(measure)
            if step.norms:
                runlog.grad_norms(self.iteration, step.norms)
            at_eval = self.iteration % s.eval_every == 0 or self.iteration == s.max_iters
            if at_eval or self.iteration % s.log_every == 0:
                loss, error = self.read_progress()
                runlog.progress(self.iteration, loss, error, step.lr)
            runlog.tick(self.iteration, step.images)
            if at_eval:
                train_loss, train_error = self.meter.take_window()
                self.pending = PendingEvaluation(train_loss, train_error, step.lr, self.batches.train.epoch,
                                                 all_images=self.iteration == s.max_iters)
                self.finish_evaluation(self.pending, runlog, stop, started)
        self.wall_time = time.perf_counter() - started

    def finish_evaluation(self, pending: PendingEvaluation, runlog: RunLog, stop: StopRequests, started: float
                          ) -> None:
        """Evaluate for the training window of `pending` (`self.pending`), record the point and checkpoint. A stop
        request during the evaluation checkpoints with the point still pending instead, so that the resumed run
        evaluates it first: no point is lost or written twice, and the final evaluation's run ends interrupted."""
        evaluation = self.batches.eval if pending.all_images else self.interim_eval
        runlog.evaluating(len(evaluation))
        result = self.evaluate(evaluation, stop)
        if result is None:
            self.save(started)
            raise self.interrupted(stop.signum, " during its evaluation (redone on resume)")
        test_loss, test_error = result
        point = {
            "train/loss": pending.train_loss,
            "train/error": pending.train_error,
            "test/loss": test_loss,
            "test/error": test_error,
            "test/images": len(evaluation),
            "lr": pending.lr,
            "epoch": pending.epoch,
        }
        runlog.record(self.iteration, point)
        self.pending = None
        self.save(started)
