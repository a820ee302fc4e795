"""The learning rate of every iteration: the paper's step decay as a shape of the run (lr /10 at 50% and 75% of it),
with the ResNet-110 warm-up, an optional linear ramp over the first iterations (the quick preset's one deviation
from the paper), or a linear decay to zero (`decay: linear`, schedule/linear.yaml) for short runs. The trainer
applies what `StepSchedule.lr` says; metrics, TensorBoard and the divergence message read the lr from here too, so
there is one source of it."""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Sequence

from resnet_exp.errors import ConfigError

# The paper's shape (section 4.2): /10 at 32k and 48k of 64k iterations.
PAPER_MILESTONES = (0.5, 0.75)
DECAYS = ("step", "linear")
ACCEPTED = ("accepted: fractions of the run in (0, 1) such as [0.5,0.75] (the paper's shape), iterations such as "
            "[32000,48000], or [] for a constant lr")


def resolve_milestones(milestones: Sequence[int | float], max_iters: int) -> list[int]:
    """The iterations after which the lr drops: a fraction `f` of the run is iteration floor(f * max_iters), an
    integer is an iteration. Refused, in one line naming the value, when they are not increasing along the run or
    when an iteration lies at or past the run's end: the lr would never drop there, which is what a run shortened
    from 64k iterations silently did before milestones followed the run's length. A fraction always lies inside
    the run; in a run of a few iterations two fractions may fall on the same iteration, and both drops apply."""
    if isinstance(milestones, str) or not isinstance(milestones, Sequence):
        raise ConfigError(f"schedule.milestones={milestones!r} is not a list; {ACCEPTED}")
    given = f"schedule.milestones={list(milestones)}"
    for m in milestones:
        if isinstance(m, bool) or not isinstance(m, int | float):
            raise ConfigError(f"{given}: {m!r} is neither a fraction nor an iteration; {ACCEPTED}")
        if isinstance(m, float) and not 0 < m < 1:
            raise ConfigError(f"{given}: a fraction of the run must lie in (0, 1), not {m}; {ACCEPTED}")
        if isinstance(m, int) and m < 1:
            raise ConfigError(f"{given}: iteration {m} is before the first one; {ACCEPTED}")
        if isinstance(m, int) and m >= max_iters:
            raise ConfigError(
                f"{given}: iteration {m} is not before the run's end (trainer.max_iters={max_iters}), so the lr "
                f"would never drop there; {ACCEPTED}")
    along = [m if isinstance(m, float) else m / max_iters for m in milestones]
    if along != sorted(set(along)):
        raise ConfigError(f"{given} must be increasing along the run (trainer.max_iters={max_iters}); {ACCEPTED}")
    return [int(m * max_iters) if isinstance(m, float) else m for m in milestones]


class StepSchedule:
    """lr = ramp * lr * gamma**(milestones passed); optionally a fixed warm-up lr until training error drops.

    `milestones` are fractions of the run or iterations (`resolve_milestones`); `self.milestones` holds the
    iterations, which the run records (summary.json, the checkpoint) and a resume compares, so a run resumes with
    the milestones it trained with. `lr` (optim.lr) and `max_iters` (trainer.max_iters) come from their own config
    groups, passed in by `run.build_schedule`.

    The constant warm-up ends on an observed error, not a fixed length, as in section 4.2 for the 110-layer
    net ("0.01 until the training error is below 80% (about 400 iterations), then back to 0.1").

    `decay="linear"` replaces the steps by a straight line from the lr (reached at the end of the ramp) down to 0
    at the end of the run, as short recipes do (e.g. cifar10-airbench); it has no milestones. Its slope follows
    `trainer.max_iters`, so a run continued to another length changes the lr only of iterations still to come.

    `ramp_iters=N` multiplies the lr of update i (counted from 0) by (i+1)/N for i < N: the "gradual
    warmup" of Goyal et al. 2017 (section 2.2). It is not in He et al. 2016; the quick preset uses it
    because at lr 0.1 its 56-layer nets collapse within their first steps (README). The ramp is a function
    of the iteration alone, so a resumed run follows the same lr sequence. With `warmup_lr` too, the ramp
    climbs to the constant warm-up lr, which then holds until the error threshold is crossed.
    """

    def __init__(
        self,
        lr: float,
        max_iters: int,
        milestones: Sequence[int | float] = PAPER_MILESTONES,
        gamma: float = 0.1,
        warmup_lr: float | None = None,
        warmup_until_error: float = 80.0,
        ramp_iters: int = 0,
        decay: str = "step",
    ) -> None:
        if decay not in DECAYS:
            raise ConfigError(f"schedule.decay={decay!r} is not a decay; accepted: {', '.join(DECAYS)}")
        if decay == "linear" and list(milestones):
            raise ConfigError(
                f"schedule.milestones={list(milestones)} with schedule.decay=linear: the lr falls along a line to "
                "0 at the run's end, with no steps; accepted: schedule.milestones=[] (schedule=linear sets both)")
        self.milestones = resolve_milestones(milestones, max_iters)
        self.given = list(milestones)
        if not 0 < gamma <= 1:
            raise ConfigError(f"schedule.gamma={gamma} must be in (0, 1], e.g. 0.1")
        if warmup_lr is not None and warmup_lr <= 0:
            raise ConfigError(f"schedule.warmup_lr={warmup_lr} must be positive (0.01 in the paper) or null")
        if not 0 < warmup_until_error <= 100:
            raise ConfigError(f"schedule.warmup_until_error={warmup_until_error} is a training error in percent that "
                              "the warm-up ends below; accepted: above 0 and at most 100 (80 in the paper)")
        if isinstance(ramp_iters, bool) or not isinstance(ramp_iters, int) or ramp_iters < 0:
            raise ConfigError(
                f"schedule.ramp_iters={ramp_iters!r} must be a non-negative integer (0: no ramp; e.g. 200)"
            )
        end = (self.milestones[0], "the first milestone") if self.milestones else (max_iters, "trainer.max_iters")
        if ramp_iters and ramp_iters >= end[0]:
            raise ConfigError(
                f"schedule.ramp_iters={ramp_iters} must be below {end[1]} ({end[0]}): the ramp would not end "
                f"before the lr drops or the run ends; accepted: 0 (no ramp) to {end[0] - 1}"
            )
        self.base_lr = lr
        self.max_iters = max_iters
        self.decay = decay
        self.gamma = gamma
        self.warmup_lr = warmup_lr
        self.warmup_until_error = warmup_until_error
        self.ramp_iters = ramp_iters
        self.warming = warmup_lr is not None

    def lr(self, iteration: int) -> float:
        """The lr for the update after `iteration` completed ones."""
        if self.warming:
            lr = self.warmup_lr
        elif self.decay == "linear":
            lr = self.base_lr * min(1.0, (self.max_iters - iteration) / (self.max_iters - self.ramp_iters))
        else:
            lr = self.base_lr * self.gamma ** bisect_right(self.milestones, iteration)
        if iteration < self.ramp_iters:
            lr *= (iteration + 1) / self.ramp_iters
        return lr

    def keep_recorded(self, recorded: str, recorded_length: int) -> bool:
        """Take the milestones a resumed run recorded (`recorded`, the text summary.json holds, e.g. "[1000, 1500]")
        where this schedule's milestones, resolved over the run's recorded length, give the same: a run continued
        to another trainer.max_iters keeps the lr drops it trained with instead of moving them along its new
        length, which would rewrite the lr of iterations already trained. False where they differ: that is a
        change of the schedule, which the trainer refuses or records."""
        try:
            same = resolve_milestones(self.given, recorded_length) == json.loads(recorded)
        except (ConfigError, ValueError, TypeError):
            return False
        if same:
            self.milestones = json.loads(recorded)
        return same

    def observe(self, train_error: float) -> None:
        """End the constant warm-up once the recent training error (percent) is below the threshold."""
        if self.warming and train_error < self.warmup_until_error:
            self.warming = False

    def state_dict(self) -> dict:
        return {"warming": self.warming}

    def load_state_dict(self, state: dict) -> None:
        self.warming = bool(state["warming"])
