"""How long a run, or a sweep, will take on this machine.

A forecast times a few training steps and one evaluation batch (`StepClock`), then counts what the run has left:
its iterations at that step time, and its evaluations (the intermediate ones on `trainer.eval_images` images, the
last on all) at that time per image (`run_seconds`). A run times its own first steps, so the forecast costs it one
timed evaluation batch and nothing is built twice. A sweep, and `predict=true`, say it before any job starts: they
time each distinct net shape once on a throwaway trainer (`measure`) and place the jobs on the launcher's workers in
the order they are launched (`makespan`). A step's time does not depend on the pixels, so that timing runs on
stand-in images of the training set's shape (`StandIn`) and reads no data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from resnet_exp.data.images import ImageData
from resnet_exp.data.module import DataModule
from resnet_exp.data.synthetic import make_synthetic
from resnet_exp.training.trainer import Trainer, TrainerSettings

WARMUP_STEPS = 2      # the first steps create oneDNN primitives / autotune cuDNN: not timed
MIN_STEPS = 3         # then at least this many steps, and at least MIN_SECONDS of them
MIN_SECONDS = 0.5
MAX_STEPS = 100
EVAL_IMAGES = 1000    # images of the timed evaluation (its time is taken as proportional to the images)


@dataclass(frozen=True)
class Cost:
    """One training step and one evaluated image, in seconds, as measured here, and the images a full
    evaluation of the run covers."""

    step_s: float
    eval_image_s: float
    eval_size: int


class StandIn(DataModule):
    """Images of CIFAR-10's shape, fed as the configured data module feeds its own (normalisation, augmentation,
    loader), for timing only."""

    def __init__(self, like: DataModule, batch_size: int) -> None:
        super().__init__(normalize=like.normalize, augment=like.augment, loader=like.loader)
        self.name = like.name
        self.images: ImageData = make_synthetic(max(2 * batch_size, 10), EVAL_IMAGES)

    def read(self) -> ImageData:
        return self.images


def sync(device: torch.device) -> None:
    """Wait for queued kernels, so a timer read afterwards covers the work (the benchmark and profiler use it
    too)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepClock:
    """Times a trainer's steps as they run: called before each step (`Trainer.fit`'s `before_step`), it leaves out
    the first `WARMUP_STEPS` steps and any step an evaluation or checkpoint followed (`eval_every`), and once it has
    timed `MIN_STEPS` and `MIN_SECONDS` of them (at most `MAX_STEPS`), times one evaluation batch and returns the
    `Cost`, once."""

    def __init__(self, eval_size: int, eval_every: int | None = None) -> None:
        """`eval_size`: the images a full evaluation of the run covers; `eval_every`: the run's evaluation interval
        (None: the trainer does not evaluate between the steps timed)."""
        self.eval_size = eval_size
        self.eval_every = eval_every
        self.steps_seen = 0
        self.steps = 0
        self.seconds = 0.0
        self.last = 0.0
        self.done = False

    def observe(self, trainer: Trainer) -> Cost | None:
        """Before a step: add the step just done to the timing; the Cost once enough are timed, else None."""
        if self.done:
            return None
        sync(trainer.device)
        now = time.perf_counter()
        evaluated = self.eval_every is not None and trainer.iteration % self.eval_every == 0
        if self.steps_seen > WARMUP_STEPS and not evaluated:
            self.steps += 1
            self.seconds += now - self.last
        self.steps_seen += 1
        self.last = now
        if self.steps < MIN_STEPS or (self.seconds < MIN_SECONDS and self.steps < MAX_STEPS):
            return None
        self.done = True
        return Cost(self.seconds / self.steps, evaluation_seconds(trainer), self.eval_size)


def evaluation_seconds(trainer: Trainer) -> float:
    """The time `trainer` takes to evaluate an image, timed on one batch of its evaluation set (the first
    evaluation of a batch shape creates oneDNN primitives or autotunes cuDNN, so it runs once untimed)."""
    evaluation = trainer.batches.eval.subset(min(trainer.settings.eval_batch_size, len(trainer.batches.eval)))
    trainer.evaluate(evaluation)
    start = time.perf_counter()
    trainer.evaluate(evaluation)  # reads its result, so the device has finished
    return (time.perf_counter() - start) / len(evaluation)


def measure(trainer: Trainer, eval_size: int) -> Cost:
    """Time `trainer`'s step and evaluation for a run evaluating `eval_size` images, before the run: the trainer
    trains while timed, so it is a throwaway one (`run.step_cost`)."""
    clock = StepClock(eval_size)
    trainer.net.train()
    while (cost := clock.observe(trainer)) is None:
        trainer.train_step()
    return cost


def evaluation_points(settings: TrainerSettings, start_iteration: int) -> list[int]:
    """The iterations after `start_iteration` at which a run evaluates: every `eval_every`, and the last."""
    points = list(range((start_iteration // settings.eval_every + 1) * settings.eval_every, settings.max_iters,
                        settings.eval_every))
    return [*points, settings.max_iters] if start_iteration < settings.max_iters else []


def run_seconds(cost: Cost, settings: TrainerSettings, start_iteration: int = 0) -> float:
    """The wall time of a run's training from `start_iteration` to the end: its steps and its evaluations (the
    intermediate ones on `trainer.eval_images` images, the last on all)."""
    points = evaluation_points(settings, start_iteration)
    interim = min(settings.eval_images or cost.eval_size, cost.eval_size)
    images = sum(cost.eval_size if point == settings.max_iters else interim for point in points)
    return (settings.max_iters - start_iteration) * cost.step_s + images * cost.eval_image_s


def makespan(durations: list[float], workers: int) -> float:
    """The wall time of jobs taken in order by `workers` parallel workers, each job going to the first worker free
    (how Hydra's basic launcher, with one worker, and its joblib launcher hand them out)."""
    free_at = [0.0] * max(workers, 1)
    for duration in durations:
        soonest = free_at.index(min(free_at))
        free_at[soonest] += duration
    return max(free_at)
