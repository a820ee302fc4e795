"""What He et al. 2016 report for CIFAR-10 and how they trained (section 4.2), which the table and the figures are
set against."""

from __future__ import annotations

from resnet_exp.report.runs import Key
from resnet_exp.training.schedule import PAPER_MILESTONES

PAPER_ITERS = 64000
PAPER_XLIM = (0.0, 6.4)  # units of 1e4 iterations, as on the paper's axis
PAPER_YLIM = (0.0, 20.0)
# Table 6: test error (%) of ResNets with option A shortcuts on CIFAR-10 after 64k iterations.
PAPER_TEST_ERROR = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43}
PAPER_110_NOTE = "The paper's ResNet-110 entry is its best of 5 runs (their mean is 6.61 ± 0.16)."

# Section 4.2's recipe by the command-line names summary.json's `settings` records. model.shortcut holds for
# residual nets only; the lr drops and the 110-layer warm-up are shapes, below.
PAPER_RECIPE = {
    "optim.lr": 0.1,
    "optim.momentum": 0.9,
    "optim.weight_decay": 1e-4,
    "optim.nesterov": False,
    "trainer.batch_size": 128,
    "schedule.ramp_iters": 0,
    "data.augment": True,
    "data.normalize": "pixel",
    "model.shortcut": "A",
}
# Options added after runs were first recorded: a summary.json without them ran the paper's choice, so their
# absence is no gap in the record.
PAPER_CHOICES_ADDED = {
    "model.zero_init_residual": False,
    "schedule.decay": "step",
}
PAPER_LR_DROPS = PAPER_MILESTONES  # fractions of the run: lr /10 at 32k and 48k of 64k iterations
PAPER_GAMMA = 0.1
# The 110-layer net's warm-up: lr 0.01 until the training error is below 80%, then the recipe's lr.
PAPER_WARMUP_LR, PAPER_WARMUP_UNTIL_ERROR, PAPER_WARMUP_DEPTH = 0.01, 80.0, 110


def paper_test_error(key: Key) -> float | None:
    """Table 6's test error for a configuration the table holds: a residual net of basic blocks with option A
    shortcuts on CIFAR-10, of one of its depths; None for anything else (plain nets, options B and D, other
    blocks, synthetic data), whose numbers the paper does not give."""
    settings = dict(key.settings)
    option_a = settings.get("model.shortcut") == PAPER_RECIPE["model.shortcut"]
    basic = settings.get("model.block", "basic") == "basic"
    return PAPER_TEST_ERROR.get(key.depth) if key.residual and option_a and basic and key.data == "cifar10" else None
