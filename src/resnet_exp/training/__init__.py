"""The training loop, its schedule, optimizer factory and checkpoints."""

from resnet_exp.training.batched import BatchedNets
from resnet_exp.training.schedule import StepSchedule
from resnet_exp.training.trainer import Diverged, Trainer, TrainerSettings

__all__ = ["BatchedNets", "Diverged", "StepSchedule", "Trainer", "TrainerSettings"]
