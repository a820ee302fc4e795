"""`make_report`: the whole report from run dirs to files, the one call the command (and a notebook) needs."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import matplotlib

from resnet_exp.report.figures import RC, axis_limits, figure_path, plot_curves, plot_depth
from resnet_exp.report.runs import ReportError, find_runs, group_runs, repeated_seeds, status_line
from resnet_exp.report.tables import runs_markdown, table_rows, to_markdown, write_csv


def make_report(
    paths: Iterable[str | Path],
    out: str | Path,
    *,
    warn: Callable[[str], None],
    xlim: Sequence[float] | None = None,
    ylim: Sequence[float] | None = None,
    auto_limits: bool = False,
    title: str | None = None,
) -> tuple[str, list[Path]]:
    """Figures and table for the runs under `paths`; returns the Markdown table and the files written.
    Problem runs go to `warn` before anything can fail, so a partial sweep still says what it lacks."""
    figure = figure_path(out)
    runs, problems = find_runs(paths)
    for problem in problems:
        warn(str(problem))
    warn(status_line(runs, problems))
    if not runs:
        raise ReportError("no run under the given paths has an evaluation point yet")
    groups = group_runs(runs)
    for line in repeated_seeds(groups):
        warn(line)
    rows = table_rows(groups)
    markdown = to_markdown(rows, [run for seeds in groups.values() for run in seeds])
    x, y = axis_limits(groups, xlim, ylim, auto_limits)
    figure.parent.mkdir(parents=True, exist_ok=True)
    depth_figure = figure.with_name(f"{figure.stem}_depth{figure.suffix}")
    table, table_csv = figure.with_suffix(".md"), figure.with_suffix(".csv")
    runs_table = figure.with_name(f"{figure.stem}_runs.md")
    with matplotlib.rc_context(RC):
        plot_curves(groups, figure, x, y, title)
        plot_depth(groups, depth_figure, y, title)
    table.write_text(markdown + "\n")
    write_csv(rows, table_csv)
    runs_table.write_text(runs_markdown(groups) + "\n")
    return markdown, [figure, depth_figure, table, table_csv, runs_table]
