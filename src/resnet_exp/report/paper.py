"""What He et al. 2016 report for CIFAR-10, which the table and the figures are set against."""

from __future__ import annotations

PAPER_ITERS = 64000
PAPER_XLIM = (0.0, 6.4)  # units of 1e4 iterations, as on the paper's axis
PAPER_YLIM = (0.0, 20.0)
# Table 6: test error (%) of ResNets with option A shortcuts on CIFAR-10 after 64k iterations.
PAPER_TEST_ERROR = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43}
PAPER_110_NOTE = "The paper's ResNet-110 entry is its best of 5 runs (their mean is 6.61 ± 0.16)."
