"""How long a run, or a sweep, will take on this machine: said before it spends the time.

A forecast times a few training steps and one evaluation of a throwaway copy of the run's net (`measure`), then
counts what the run has left: its iterations at that step time, and its evaluations (the intermediate ones on
`trainer.eval_images` images, the last on all) at that time per image (`run_seconds`). A sweep times each
distinct net shape once and places its jobs on the launcher's workers in the order they are launched
(`makespan`). A step's time does not depend on the pixels, so the timing runs on stand-in images of the
training set's shape (`stand_in`) and reads no data.
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


def measure(trainer: Trainer, eval_size: int) -> Cost:
    """Time `trainer`'s step and evaluation for a run evaluating `eval_size` images. The trainer trains while
    timed, so it is a throwaway one (`run.step_cost`)."""
    trainer.net.train()
    for _ in range(WARMUP_STEPS):
        trainer.step(*next(trainer.batches.train))
    sync(trainer.device)
    steps, start = 0, time.perf_counter()
    while steps < MAX_STEPS and (steps < MIN_STEPS or time.perf_counter() - start < MIN_SECONDS):
        trainer.step(*next(trainer.batches.train))
        steps += 1
        if steps >= MIN_STEPS:
            sync(trainer.device)
    step_s = (time.perf_counter() - start) / steps
    evaluation = trainer.batches.eval
    trainer.evaluate(evaluation)  # the evaluation's batch shape is new to oneDNN / cuDNN: not timed
    start = time.perf_counter()
    trainer.evaluate(evaluation)
    return Cost(step_s, (time.perf_counter() - start) / len(evaluation), eval_size)


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
