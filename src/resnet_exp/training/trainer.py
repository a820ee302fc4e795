"""The training loop, counted in iterations as the paper counts them, with evaluation and checkpoints.

Training statistics are summed on the device (`Meter`) and read only every `log_every` iterations, so a
CUDA step never waits for the host. `train_step` and `read_progress` are the loop's two parts: `fit` runs them
with evaluation and checkpoints, and `resnet-exp-analyze start` replays a run's first steps with the same two.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resnet_exp.data.batches import EvalBatches
from resnet_exp.data.module import Batches
from resnet_exp.devices import check_device_name, resolve_device
from resnet_exp.errors import CheckpointError, ConfigError
from resnet_exp.models.cifar import check_zero_channels
from resnet_exp.precision import check_precision, resolve_precision
from resnet_exp.runlog import RunLog
from resnet_exp.training.checkpoint import load_checkpoint, save_checkpoint
from resnet_exp.training.meter import Meter
from resnet_exp.training.schedule import StepSchedule
from resnet_exp.training.signals import Interrupted, StopRequests

# What the hardware resolves (the precision and memory format `auto` picks, on the machine a run resumes on): a
# resumed run may differ in them without being asked to, and each change goes into the record's `changes`.
RESOLVED_BY_HARDWARE = frozenset({"trainer.precision", "trainer.channels_last"})
LENGTH = "trainer.max_iters"  # a resumed run may be continued to another length: the record keeps the last
COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile's
NET = ("model", "block")  # a record's keys naming the net; with the model.* settings, never changed on resume

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

    def configure_torch(self) -> None:
        """Deterministic kernels when asked (bitwise-repeatable runs), else let cuDNN pick the fastest."""
        if self.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(self.deterministic)
        torch.backends.cudnn.benchmark = not self.deterministic
        torch.backends.cudnn.deterministic = self.deterministic

    def compute_path(self, device: torch.device) -> tuple[torch.dtype | None, torch.memory_format]:
        """Autocast dtype (None: fp32) and memory format.

        `auto` is bf16 autocast where the device computes bf16 natively (precision.py), fp32 elsewhere.
        channels_last is the default everywhere: measured faster for these convs on a CPU (oneDNN,
        docs/speed.md); on GPUs it is cuDNN's preferred layout for bf16 convs, not yet measured here.
        """
        precision = resolve_precision(self.precision, device)
        return (
            torch.bfloat16 if precision == "bf16" else None,
            torch.channels_last if self.channels_last else torch.contiguous_format,
        )


def grad_norms(model: nn.Module) -> dict[str, float]:
    """L2 norm of each parameter's current gradient, keyed by parameter name; call it after `backward`.

    One host-device sync for all parameters, so logging it every `log_every` steps stays cheap.
    """
    named = [(name, p.grad) for name, p in model.named_parameters() if p.grad is not None]
    if not named:
        return {}
    norms = torch.stack([g.detach().norm() for _, g in named]).tolist()
    return {name: norm for (name, _), norm in zip(named, norms, strict=True)}


def flat_record(record: dict[str, Any]) -> dict[str, Any]:
    """A run's record (`run.hparams`) as one level of keys: the net's name and block, the data and the seed beside
    its settings (which hold the depth and residual as model.depth and model.residual)."""
    return {**{key: record.get(key) for key in ("model", "block", "data", "seed")}, **record.get("settings", {})}


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
    ) -> None:
        """`checkpoint_path`: where `fit` saves and `resume` looks; None for a trainer that never saves (the
        benchmark, the `start` replay)."""
        self.settings = settings
        self.amp_dtype, self.memory_format = settings.compute_path(device)
        self.model = model.to(device, memory_format=self.memory_format)
        # The compiled wrapper runs the steps; `self.model` keeps the plain state_dict keys for checkpoints.
        self.net = torch.compile(self.model, mode=settings.compile_mode) if settings.compile else self.model
        self.optimizer = optimizer
        self.schedule = schedule
        self.batches = batches
        self.device = device
        self.checkpoint_path = checkpoint_path
        self.iteration = 0
        self.wall_time = 0.0
        self.meter = Meter(device)
        # What defines the run (run.hparams): written into each checkpoint, and compared on resume, so that a run
        # dir never holds two configurations. None: not recorded (a throwaway trainer).
        self.record: dict[str, Any] | None = None
        # An evaluation point whose training window is measured but whose evaluation a signal cut short: kept in
        # the checkpoint and evaluated first on resume.
        self.pending: dict[str, Any] | None = None
        # Intermediate evaluations may use a fixed subset of the evaluation set (the same images in every run);
        # the last one always uses all of it.
        self.interim_eval = batches.eval.subset(settings.eval_images) if settings.eval_images else batches.eval

    def resume(self) -> None:
        """Continue from `last.pt` if there is one and resuming is on."""
        if self.checkpoint_path is None or not self.checkpoint_path.is_file():
            return
        if not self.settings.resume:
            log.warning("trainer.resume=false: starting afresh, overwriting %s", self.checkpoint_path.parent.parent)
            return
        state = load_checkpoint(self.checkpoint_path)
        check_zero_channels(self.model, state, str(self.checkpoint_path))  # first: its message says the fix
        self.iteration = int(state["iteration"])
        if self.iteration > self.settings.max_iters:
            raise CheckpointError(
                f"run dir {str(self.checkpoint_path.parent.parent)!r} holds a run trained to iteration "
                f"{self.iteration}, past trainer.max_iters={self.settings.max_iters}: a run cannot be shortened; "
                f"continue it with trainer.max_iters={self.iteration} or more, or start afresh with "
                "trainer.resume=false or another hydra.run.dir")
        self.check_same_run(state.get("run"))
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(
                f"checkpoint {str(self.checkpoint_path)!r} was written by another model "
                f"({state.get('arch', 'unknown')}, this run builds {getattr(self.model, 'name', '?')}): "
                "use another hydra.run.dir, or trainer.resume=false to overwrite it"
            ) from e
        self.schedule.load_state_dict(state["schedule"])
        self.batches.train.load_state_dict(state["data"])
        torch.set_rng_state(state["rng"]["torch"])
        if self.device.type == "cuda" and "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self.wall_time = float(state["wall_time"])
        self.meter.window = list(state["window"])
        self.pending = state.get("pending_eval")
        log.info("resumed from %s at iteration %d", self.checkpoint_path, self.iteration)

    def check_same_run(self, recorded: dict[str, Any] | None) -> None:
        """Refuse to continue a checkpoint of another configuration, naming each differing setting, old and new.
        Only the length (`LENGTH`) and what the hardware resolves (`RESOLVED_BY_HARDWARE`) may differ, unless the run
        asks for it (`trainer.allow_changes`); every difference but the length goes into the record's `changes` with
        the iteration after which it took effect, so the record says what each iteration ran with. The net never
        changes (its weights would be read as another net's), nor the seed (a resumed run continues the random state
        its checkpoint holds, so another seed could not take effect). A run continued to another length keeps the lr
        milestones it trained with where this run's milestones, resolved over the recorded length, are the same
        (`StepSchedule.keep_recorded`)."""
        if self.record is None:
            return
        run_dir = str(self.checkpoint_path.parent.parent)
        fresh = "start afresh with trainer.resume=false or another hydra.run.dir"
        if recorded is None:
            if not self.settings.allow_changes:
                raise CheckpointError(
                    f"run dir {run_dir!r} holds a checkpoint with no record of the settings it was trained with, so "
                    "this run's cannot be checked against them; add trainer.allow_changes=true to continue it with "
                    f"these settings on purpose (summary.json records that they were unchecked), or {fresh}")
            log.warning("continuing %s, whose checkpoint records no settings, with these from iteration %d on",
                        run_dir, self.iteration + 1)
            self.record["changes"] = [{"iteration": self.iteration,
                                       "unchecked": ["the checkpoint recorded no settings", "continued with these"]}]
            return
        if "settings" not in recorded:
            raise CheckpointError(
                f"run dir {run_dir!r} holds a checkpoint that records its settings in the layout of resnet-exp before "
                f"2026-12-02, which cannot be compared with this run's; {fresh}")
        old, new = flat_record(recorded), flat_record(self.record)
        length, milestones = old.get(LENGTH), old.get("schedule.milestones")
        if length != new.get(LENGTH) and self.schedule.keep_recorded(milestones, length):
            self.record["settings"]["schedule.milestones"] = new["schedule.milestones"] = milestones
            log.info("trainer.max_iters %s -> %s: the lr keeps the milestones the run trained with, %s",
                     length, new.get(LENGTH), milestones)
        differ = {key: [old.get(key), new.get(key)] for key in sorted(old.keys() | new.keys())
                  if key != LENGTH and old.get(key) != new.get(key)}
        changes = list(recorded.get("changes", []))
        self.record["changes"] = changes
        if not differ:
            return
        listed = "; ".join(f"{key} {a!r} -> {b!r}" for key, (a, b) in differ.items())
        if any(key in NET or key.startswith("model.") for key in differ):
            raise CheckpointError(f"run dir {run_dir!r} holds a run of another net ({listed}); run with its own "
                                  f"settings to continue it, or {fresh}")
        if "seed" in differ:
            raise CheckpointError(
                f"run dir {run_dir!r} holds a run of seed {differ['seed'][0]!r}, not {differ['seed'][1]!r}: a resumed "
                "run continues the random state its checkpoint holds, so another seed cannot take effect; run with "
                f"seed={differ['seed'][0]} to continue it, or {fresh}")
        if not self.settings.allow_changes and not differ.keys() <= RESOLVED_BY_HARDWARE:
            raise CheckpointError(
                f"run dir {run_dir!r} holds a run of another configuration ({listed}); run with its own settings to "
                "continue it, add trainer.allow_changes=true to continue it with these on purpose (summary.json "
                f"records each change), or {fresh}")
        log.warning("continuing %s with changed settings from iteration %d on: %s", run_dir, self.iteration + 1,
                    listed)
        changes.append({"iteration": self.iteration, **differ})

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
            "run": self.record,
            "pending_eval": self.pending,
        }

    def set_lr(self) -> float:
        """Apply the schedule's lr for the next update; the schedule, not the optimizer, is where the lr is read."""
        lr = self.schedule.lr(self.iteration)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    @property
    def precision(self) -> str:
        """The resolved compute precision, as `trainer.precision` spells it."""
        return "bf16" if self.amp_dtype == torch.bfloat16 else "fp32"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=self.memory_format)
        dtype = self.amp_dtype or torch.bfloat16
        with torch.autocast(self.device.type, dtype=dtype, enabled=self.amp_dtype is not None):
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

    def fit(self, runlog: RunLog, stop: StopRequests) -> None:
        """Train to `max_iters`, evaluating and checkpointing every `eval_every` (the points go to `runlog`).

        On a stop request it checkpoints the current iteration and raises `Interrupted`.
        """
        s = self.settings
        started = time.perf_counter() - self.wall_time
        if self.pending is not None:  # the evaluation a signal cut short, redone before training goes on
            self.finish_evaluation(runlog, stop, started)
        self.net.train()
        while self.iteration < s.max_iters:
            if stop.signum is not None:
                self.meter.read()
                self.save(started)
                raise self.interrupted(stop.signum)
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
                self.pending = {"train/loss": train_loss, "train/error": train_error, "lr": step.lr,
                                "epoch": self.batches.train.epoch, "all_images": self.iteration == s.max_iters}
                self.finish_evaluation(runlog, stop, started)
        self.wall_time = time.perf_counter() - started

    def finish_evaluation(self, runlog: RunLog, stop: StopRequests, started: float) -> None:
        """Evaluate for the training window in `self.pending`, record the point and checkpoint. A stop request
        during the evaluation checkpoints with the point still pending instead, so that the resumed run evaluates
        it first: no point is lost or written twice, and the final evaluation's run ends interrupted."""
        pending = self.pending
        evaluation = self.batches.eval if pending["all_images"] else self.interim_eval
        runlog.evaluating(len(evaluation))
        result = self.evaluate(evaluation, stop)
        if result is None:
            self.save(started)
            raise self.interrupted(stop.signum, " during its evaluation (redone on resume)")
        test_loss, test_error = result
        point = {
            "train/loss": pending["train/loss"],
            "train/error": pending["train/error"],
            "test/loss": test_loss,
            "test/error": test_error,
            "test/images": len(evaluation),
            "lr": pending["lr"],
            "epoch": pending["epoch"],
        }
        runlog.record(self.iteration, point)
        self.pending = None
        self.save(started)
