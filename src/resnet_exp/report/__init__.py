"""The degradation report, read from the run files that `runlog` writes (summary.json, metrics.jsonl, events).

For a figure `OUT.<ext>` (png, pdf or svg) it writes:

- `OUT.<ext>`: the paper's Figures 1/6, error against iterations, plain nets left and residual nets right (one
  panel where all runs are of one kind), training error dashed and test error bold, one colour per depth, seeds as
  a mean line with a min..max band; the x axis in the paper's 1e4 iterations for runs of its scale, in plain
  iterations for short ones; for runs of the paper's 64k iterations, Table 6's test errors marked at the right end;
- `OUT_depth.<ext>`: final training and test error against depth, plain vs residual (a separate figure so the
  first one keeps the paper's two-panel layout);
- under both figures a caption from summary.json alone: the data set, the iterations, the seeds per line, the
  deviations from the paper's recipe (section 4.2: the quick preset's lr ramp, other milestones, lr, batch, ...)
  and test points on a subset; `--title` adds a title above;
- `OUT.md` and `OUT.csv`: one row per configuration with final errors (mean ± std over seeds) next to the
  paper's Table 6; under the Markdown table, notes on the comparison and where the runs came from (the
  provenance and compute path of summary.json: what differs between runs, with counts, or one line if nothing);
- `OUT_runs.md`: one row per run (seed, final errors, wall time, device), the numbers behind the means.

A configuration is the net, the data and everything under summary.json's `settings` (every config key that can
change training: optim.lr, schedule.*, trainer.batch_size, trainer.precision, ...), with the history of settings
changed during the run; only runs that differ in nothing but the seed are averaged. Where configurations differ,
legends and the table name the settings that differ (`resnet56 optim.lr=0.05`).

Failed sweep jobs (`failure.json`) are listed with their error line, and the status line counts every job once.

Modules: `runs` (finding, reading and grouping runs), `tables`, `figures`, `caption` (what a figure says of its
runs), `paper` (the paper's numbers and recipe), `make` (`make_report`, all of it from paths to files) and `cli`
(the `resnet-exp-report` command).
"""

from resnet_exp.report.figures import axis_limits, curve_band, figure_path, plot_curves, plot_depth
from resnet_exp.report.make import make_report
from resnet_exp.report.paper import PAPER_ITERS, PAPER_TEST_ERROR, PAPER_XLIM, PAPER_YLIM
from resnet_exp.report.runs import (
    NO_RUNS_HINT,
    TEST,
    TRAIN,
    Key,
    Problem,
    ReportError,
    Run,
    find_runs,
    group_runs,
    status_line,
)
from resnet_exp.report.tables import Row, provenance_notes, runs_markdown, table_rows, to_markdown, write_csv

__all__ = [
    "NO_RUNS_HINT",
    "PAPER_ITERS",
    "PAPER_TEST_ERROR",
    "PAPER_XLIM",
    "PAPER_YLIM",
    "TEST",
    "TRAIN",
    "Key",
    "Problem",
    "ReportError",
    "Row",
    "Run",
    "axis_limits",
    "curve_band",
    "figure_path",
    "find_runs",
    "group_runs",
    "make_report",
    "plot_curves",
    "plot_depth",
    "provenance_notes",
    "runs_markdown",
    "status_line",
    "table_rows",
    "to_markdown",
    "write_csv",
]
