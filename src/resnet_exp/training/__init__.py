"""The training loop, its schedule, optimizer factory and checkpoints."""

from resnet_exp.training.schedule import StepSchedule
from resnet_exp.training.trainer import Diverged, Trainer, TrainerSettings

__all__ = ["Diverged", "StepSchedule", "Trainer", "TrainerSettings"]
