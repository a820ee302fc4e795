"""Plot the degradation study (He et al. 2016, Figures 1/6) and compare final errors with Table 6.

    python scripts/plot_degradation.py outputs/multirun/2026-05-09/12-00-00 --out degradation.png

The documented entry of `make plot` from a checkout; it runs the `resnet-exp-report` command
(`resnet_exp.report.cli`), which a `pip install` provides without this file.
"""

from __future__ import annotations

import sys
from pathlib import Path

from resnet_exp.report.cli import main

if __name__ == "__main__":
    sys.exit(main(prog=Path(__file__).name))
