"""The paper's learning-rate schedule: step decay at fixed iterations, with the ResNet-110 warm-up, and an
optional linear ramp over the first iterations (the quick preset's one deviation from the paper)."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

from resnet_exp.errors import ConfigError


class StepSchedule:
    """lr = ramp * base * gamma**(milestones passed); optionally a fixed warm-up lr until training error drops.

    The constant warm-up ends on an observed error, not a fixed length, as in section 4.2 for the 110-layer
    net ("0.01 until the training error is below 80% (about 400 iterations), then back to 0.1").

    `ramp_iters=N` multiplies the lr of update i (counted from 0) by (i+1)/N for i < N: the "gradual
    warmup" of Goyal et al. 2017 (section 2.2). It is not in He et al. 2016; the quick preset uses it
    because at lr 0.1 its 56-layer nets collapse within their first steps (README). The ramp is a function
    of the iteration alone, so a resumed run follows the same lr sequence. With `warmup_lr` too, the ramp
    climbs to the constant warm-up lr, which then holds until the error threshold is crossed.
    """

    def __init__(
        self,
        milestones: Sequence[int] = (32000, 48000),
        gamma: float = 0.1,
        warmup_lr: float | None = None,
        warmup_until_error: float = 80.0,
        ramp_iters: int = 0,
    ) -> None:
        if isinstance(milestones, str) or not all(isinstance(m, int) and not isinstance(m, bool) for m in milestones):
            raise ConfigError(f"schedule.milestones={milestones!r} is not a list of iterations; accepted: a list of "
                              "positive, increasing integers, e.g. [32000,48000]")
        milestones = list(milestones)
        if any(m <= 0 for m in milestones) or milestones != sorted(set(milestones)):
            raise ConfigError(f"schedule.milestones={milestones} must be positive and increasing, e.g. [32000,48000]")
        if not 0 < gamma <= 1:
            raise ConfigError(f"schedule.gamma={gamma} must be in (0, 1], e.g. 0.1")
        if warmup_lr is not None and warmup_lr <= 0:
            raise ConfigError(f"schedule.warmup_lr={warmup_lr} must be positive (0.01 in the paper) or null")
        if isinstance(ramp_iters, bool) or not isinstance(ramp_iters, int) or ramp_iters < 0:
            raise ConfigError(
                f"schedule.ramp_iters={ramp_iters!r} must be a non-negative integer (0: no ramp; e.g. 200)"
            )
        if milestones and ramp_iters >= milestones[0]:
            raise ConfigError(
                f"schedule.ramp_iters={ramp_iters} must be below the first milestone ({milestones[0]}): "
                "the ramp would overlap the first lr decay"
            )
        self.milestones = milestones
        self.gamma = gamma
        self.warmup_lr = warmup_lr
        self.warmup_until_error = warmup_until_error
        self.ramp_iters = ramp_iters
        self.warming = warmup_lr is not None

    def lr(self, iteration: int, base_lr: float) -> float:
        """The lr for the update after `iteration` completed ones."""
        lr = self.warmup_lr if self.warming else base_lr * self.gamma ** bisect_right(self.milestones, iteration)
        if iteration < self.ramp_iters:
            lr *= (iteration + 1) / self.ramp_iters
        return lr

    def observe(self, train_error: float) -> None:
        """End the constant warm-up once the recent training error (percent) is below the threshold."""
        if self.warming and train_error < self.warmup_until_error:
            self.warming = False

    def state_dict(self) -> dict:
        return {"warming": self.warming}

    def load_state_dict(self, state: dict) -> None:
        self.warming = bool(state["warming"])
