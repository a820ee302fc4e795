"""Plot the degradation study (He et al. 2016, Figures 1/6) and compare final errors with Table 6.

    python scripts/plot_degradation.py outputs/multirun/2026-05-09/12-00-00 --out degradation.png

The work is in `resnet_exp.report`; this file only maps the command line onto it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from resnet_exp import report
from resnet_exp.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plot_degradation.py",
        description="Plot training (dashed) and test (bold) error against iterations, plain nets left and "
        "residual nets right, seeds of one configuration as a mean with a min..max band; print the table of final "
        "errors next to the paper's Table 6. Runs still running or failed are listed on stderr and plotted as far "
        "as they got.",
        epilog="Next to OUT=<stem>.<ext> it also writes <stem>_depth.<ext> (final error against depth, plain vs "
        "residual), the table as <stem>.md and <stem>.csv (also on stdout), and one row per run (seed, final errors, "
        "wall time) as <stem>_runs.md. Exit code 2 when a path "
        "does not exist or holds no runs.",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="RUN_OR_SWEEP_DIR",
                        help="a run dir, a sweep dir (outputs/multirun/<date>/<time>) or outputs/; searched "
                        "recursively for run dirs with summary.json or metrics.jsonl")
    parser.add_argument("--out", type=Path, default=Path("degradation.png"),
                        help="figure file; the extension picks the format: .png, .pdf or .svg (default: %(default)s)")
    parser.add_argument("--xlim", nargs=2, type=float, metavar=("LO", "HI"),
                        help="iteration range in the axis units (1e4 iterations, or 1e3 for runs shorter than 20k)")
    parser.add_argument("--ylim", nargs=2, type=float, metavar=("LO", "HI"), help="error range in %%")
    parser.add_argument("--auto-limits", action="store_true",
                        help="fit the axes to the data even for full-length runs. Default: the paper's ranges "
                        f"(0 to {report.PAPER_XLIM[1]} x 1e4 iterations, {report.PAPER_YLIM[0]:g} to "
                        f"{report.PAPER_YLIM[1]:g}%% error) when every run is full-length (max_iters >= "
                        f"{report.PAPER_ITERS}), otherwise fitted to the data; --xlim/--ylim override either")
    parser.add_argument("--title", help="a title above the figures")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        markdown, written = report.make_report(
            args.paths, args.out, warn=lambda line: print(line, file=sys.stderr), xlim=args.xlim, ylim=args.ylim,
            auto_limits=args.auto_limits, title=args.title,
        )
    except UserError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    print(markdown)
    print("wrote " + ", ".join(map(str, written)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
