"""`resnet-exp-report`: the degradation figure and tables from run dirs, as a command (`scripts/plot_degradation.py`
and `make plot` call the same `main`).

    resnet-exp-report outputs/multirun/2026-05-09/12-00-00 --out degradation.png

User errors (a path that does not exist or holds no runs, an unknown figure format) end with one line, exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from resnet_exp.errors import UserError
from resnet_exp.report.figures import DEFAULT_FIGURE, units_help
from resnet_exp.report.make import make_report
from resnet_exp.report.paper import PAPER_ITERS, PAPER_XLIM, PAPER_YLIM

PROG = "resnet-exp-report"

# Raw text (the example must stay on its own line), so wrapped here by hand.
DESCRIPTION = """\
Draw the degradation study of He et al. 2016 (Figures 1/6) from training runs
and compare their final errors with the paper's Table 6: training (dashed) and
test (bold) error against iterations, plain nets left and residual nets right,
seeds of one configuration as a mean with a min..max band. The table of final
errors is printed. Runs still running or failed are listed on stderr and
plotted as far as they got.

example:
  %(prog)s outputs/multirun/<date>/<time> --out fig.png"""

EPILOG = """\
Next to OUT=<stem>.<ext> it also writes <stem>_depth.<ext> (final error against
depth, plain vs residual), the table as <stem>.md and <stem>.csv (also on
stdout), and one row per run (seed, final errors, wall time) as <stem>_runs.md.
Exit code 2 when a path does not exist or holds no runs, or OUT cannot be written."""


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The command line, named `prog` in its usage and errors."""
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, metavar="RUN_OR_SWEEP_DIR",
                        help="a run dir, a sweep dir (outputs/multirun/<date>/<time>) or outputs/; searched "
                        "recursively for run dirs with summary.json or metrics.jsonl")
    parser.add_argument("--out", type=Path, default=Path(DEFAULT_FIGURE),
                        help="figure file, or a folder to write %(default)s into; the extension picks the format: "
                        ".png, .pdf or .svg (default: %(default)s)")
    parser.add_argument("--xlim", nargs=2, type=float, metavar=("LO", "HI"),
                        help=f"iteration range in the units the x axis shows: {units_help()}")
    parser.add_argument("--ylim", nargs=2, type=float, metavar=("LO", "HI"), help="error range in %%")
    parser.add_argument("--auto-limits", action="store_true",
                        help="fit the axes to the data even for full-length runs. Default: the paper's ranges "
                        f"(0 to {PAPER_XLIM[1]} x 1e4 iterations, {PAPER_YLIM[0]:g} to {PAPER_YLIM[1]:g}%% error) "
                        f"when every run is full-length (max_iters >= {PAPER_ITERS}), otherwise fitted to the data; "
                        "--xlim/--ylim override either")
    parser.add_argument("--title", help="a title above the figures. Either way a caption below them says what "
                        "they show, from the runs' summary.json: data set, iterations, seeds per line, deviations "
                        "from the paper's recipe (section 4.2)")
    return parser


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """The command; `prog` names it in help and errors as the user typed it (the script passes its file name)."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        markdown, written = make_report(
            args.paths, args.out, warn=lambda line: print(line, file=sys.stderr), xlim=args.xlim, ylim=args.ylim,
            auto_limits=args.auto_limits, title=args.title,
        )
    except UserError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # --out in a folder that cannot be written, or a full disk
        where = f" {str(e.filename)!r}" if e.filename else ""
        print(f"{parser.prog}: error: cannot write{where}: {e.strerror or e}; choose another --out", file=sys.stderr)
        return 2
    print(markdown)
    print("wrote " + ", ".join(map(str, written)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
