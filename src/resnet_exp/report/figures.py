"""The report's figures: the paper's Figures 1/6 (error against iterations, plain nets left and residual nets
right, or one panel for runs of one kind, training error dashed and test error bold, one colour per depth, seeds as
a mean line with a min..max band, Table 6's errors marked for runs of the paper's length) and final error against
depth, with the axis ranges and units, colours, styles and caption (`caption`) they share."""

from __future__ import annotations

import math
import re
import statistics
import textwrap
from collections import defaultdict
from collections.abc import Iterable, Sequence
from itertools import cycle
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from resnet_exp.canvas import panels
from resnet_exp.report.caption import caption
from resnet_exp.report.paper import PAPER_ITERS, PAPER_XLIM, PAPER_YLIM, paper_test_error
from resnet_exp.report.runs import TEST, TRAIN, Key, ReportError, Run, labels

FIGURE_FORMATS = (".png", ".pdf", ".svg")
DEFAULT_FIGURE = "degradation.png"  # the figure's name where --out is a folder, and the default --out
# Fixed colours for the paper's depths, so figures of different sweeps compare at a glance.
DEPTH_COLORS = {20: "tab:orange", 32: "tab:blue", 44: "tab:green", 56: "tab:red", 110: "black"}
SPARE_COLORS = ("tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")
STYLES = {TRAIN: {"linestyle": "--", "linewidth": 1.0}, TEST: {"linestyle": "-", "linewidth": 2.2}}
RC = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8, "xtick.labelsize": 8,
      "ytick.labelsize": 8}

# (the longest run at least, iterations per x-axis unit), the first that fits.
ITERATION_UNITS = ((20000, 10000), (10000, 1000), (0, 1))
# The paper's Table 6 error of a net, at the right end of the axis in the net's colour.
PAPER_MARK = {"linestyle": ":", "linewidth": 2.2, "marker": "<", "markevery": [0], "markersize": 4}
PAPER_MARK_SPAN = (0.93, 1.0)  # in axes fractions
PAPER_MARK_GID = "table6"  # tells the marks from the curves (SVG ids, tests)
CAPTION_SIZE = 8  # points
DEPTH = "model.depth"  # a setting of every run, which sets its net apart from others of its family
Limits = tuple[float, float]


def figure_path(out: str | Path) -> Path:
    """`out` with .png added when it has no extension, or `out`/degradation.png where `out` is a folder; the
    extension picks the format."""
    out = Path(out)
    if out.is_dir():
        return out / DEFAULT_FIGURE
    if not out.suffix:
        return out.with_suffix(".png")
    if out.suffix.lower() not in FIGURE_FORMATS:
        raise ReportError(f"cannot write a figure as '{out.suffix}' ('{out}'): use {', '.join(FIGURE_FORMATS)}")
    return out


def axis_limits(
    keys: Iterable[Key], xlim: Sequence[float] | None, ylim: Sequence[float] | None, auto_limits: bool
) -> tuple[Limits | None, Limits | None]:
    """(x in axis units of iterations, y in %), None meaning fit to the data. The paper's ranges only suit full-length
    runs: a short run ends before the first tick and its errors sit far above 20%."""
    paper = not auto_limits and all(key.max_iters >= PAPER_ITERS for key in keys)
    default = (PAPER_XLIM, PAPER_YLIM) if paper else (None, None)
    return (tuple(xlim) if xlim else default[0]), (tuple(ylim) if ylim else default[1])


def iteration_unit(keys: Iterable[Key]) -> int:
    """Iterations per unit of the x axis, chosen by the longest run (`ITERATION_UNITS`): the paper's 1e4 for runs
    of its scale, whose ticks read 0..6.4; 1e3 from 10k; plain iterations below, where either would read 0.02."""
    longest = max(key.max_iters for key in keys)
    return next(unit for shortest, unit in ITERATION_UNITS if longest >= shortest)


def _power(unit: int) -> str:
    return f"1e{round(math.log10(unit))}"


def iteration_label(unit: int) -> str:
    """The x axis's label for `unit` iterations per tick unit: "iter. (1e4)" as in the paper, or "iterations"."""
    return "iterations" if unit == 1 else f"iter. ({_power(unit)})"


def units_help() -> str:
    """`ITERATION_UNITS` in words, for --xlim's help: the unit its numbers are in."""
    (longest, unit), *others = [(shortest, unit) for shortest, unit in ITERATION_UNITS if unit > 1]
    return ", ".join([f"units of {_power(unit)} iterations where the longest run has {longest} or more",
                      *(f"of {_power(unit)} from {shortest}" for shortest, unit in others), "else iterations"])


def key_colors(keys: Iterable[Key]) -> dict[Key, str]:
    """The paper's colour per depth, the same in both panels; a second configuration of one net and depth (another
    lr, say) takes a spare colour, so that no two lines of a panel share one."""
    keys = list(keys)
    others = sorted({key.depth for key in keys} - DEPTH_COLORS.keys())
    depth_color = {**DEPTH_COLORS, **{depth: SPARE_COLORS[i % len(SPARE_COLORS)] for i, depth in enumerate(others)}}
    spare = cycle(reversed(SPARE_COLORS))
    colors, seen = {}, set()
    for key in keys:
        first = (key.residual, key.depth) not in seen
        seen.add((key.residual, key.depth))
        colors[key] = depth_color[key.depth] if first else next(spare)
    return colors


def curve_band(runs: Sequence[Run], tag: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Iterations, mean, min and max over seeds, at the iterations every seed has reached, so that a seed
    still running cannot bend the mean at the end."""
    series = [{point["iteration"]: point[tag] for point in run.points} for run in runs]
    iterations = sorted(set.intersection(*(set(s) for s in series)))
    values = np.array([[s[i] for i in iterations] for s in series], dtype=float)
    return np.array(iterations, dtype=float), values.mean(axis=0), values.min(axis=0), values.max(axis=0)


def _draw(ax: Axes, x: Any, mean: Any, lo: Any, hi: Any, color: str, style: dict[str, Any], label: str | None) -> None:
    """A mean line over its min..max band across seeds (a band of no width for one seed)."""
    ax.fill_between(x, lo, hi, color=color, alpha=0.2, linewidth=0)
    ax.plot(x, mean, color=color, label=label, **style)


def _legend(ax: Axes, paper_marks: bool = False) -> None:
    """Colours name the nets; grey keys explain the line styles, as the paper's caption does, and the paper's
    marks where there are any."""
    handles, _ = ax.get_legend_handles_labels()
    keys = [Line2D([], [], color="grey", label=tag.split("/")[0], **style) for tag, style in STYLES.items()]
    if paper_marks:
        keys.append(Line2D([], [], color="grey", label="paper, Table 6", **PAPER_MARK))
    ax.legend(handles=handles + keys, loc="best", ncol=2)


def _paper_marks(ax: Axes, keys: Iterable[Key], colors: dict[Key, str]) -> bool:
    """Table 6's test error of each net the table holds (`paper_test_error`) as a short dotted line in the net's
    colour at the axis's right end, where the net's runs are as long as the paper's: a shorter run's errors are
    not comparable. Whether any was drawn."""
    drawn = False
    for key in keys:
        error = paper_test_error(key)
        if error is not None and key.max_iters >= PAPER_ITERS:
            ax.plot(PAPER_MARK_SPAN, (error, error), transform=ax.get_yaxis_transform(), color=colors[key],
                    gid=PAPER_MARK_GID, **PAPER_MARK)
            drawn = True
    return drawn


def _caption(fig: Figure, groups: dict[Key, list[Run]], title: str | None, per: str) -> None:
    """`title` above the panels, where given, and below them the caption (`caption.caption`), wrapped to the
    figure's width: at the foot of the figure, where a paper puts it, it stays clear of the panels' titles."""
    if title:
        fig.suptitle(title)
    chars = round(fig.get_figwidth() * 72 / (CAPTION_SIZE * 0.55))  # a character is about 0.55 em wide
    text = textwrap.fill(caption(groups, per), width=chars, break_on_hyphens=False)
    fig.supxlabel(text, fontsize=CAPTION_SIZE, ha="left", x=0.01, multialignment="left")


def plot_curves(groups: dict[Key, list[Run]], path: Path, xlim: Limits | None, ylim: Limits | None,
                title: str | None) -> Figure:
    """The paper's Figures 1/6: plain nets left, residual nets right, on shared axes; one panel where the runs are
    of one kind. `xlim` is in the x axis's units (`iteration_unit`); the caption says what the curves are."""
    colors = key_colors(groups)
    names = labels(groups)
    unit = iteration_unit(groups)
    kinds = sorted({key.residual for key in groups})
    fig, axes = panels(len(kinds), width=5, height=3.5, share=True)
    for ax, residual in zip(axes, kinds, strict=True):
        keys = [key for key in groups if key.residual == residual]
        for key in keys:
            for tag, style in STYLES.items():
                iterations, mean, lo, hi = curve_band(groups[key], tag)
                label = names[key] if tag == TEST else None
                _draw(ax, iterations / unit, mean, lo, hi, colors[key], style, label)
        _legend(ax, _paper_marks(ax, keys, colors))
        ax.set_title(f"{'residual' if residual else 'plain'} networks")
        ax.set_xlabel(iteration_label(unit))
        if unit == 1:  # whole iterations: ticks of 0, 20, ..., 100, never 2.5
            ax.xaxis.set_major_locator(MaxNLocator(nbins="auto", steps=[1, 2, 2.5, 5, 10], integer=True))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("error (%)")
    axes[0].set_xlim(xlim or (0, None))  # from the start, as the paper's axis, though the first point comes later
    if ylim:
        axes[0].set_ylim(ylim)
    _caption(fig, groups, title, "line")
    fig.savefig(path, dpi=200)
    return fig


def plot_depth(groups: dict[Key, list[Run]], path: Path, ylim: Limits | None, title: str | None) -> Figure:
    """Final error against depth, one pair of lines (train, test) per family of nets (plain, resnet, resnet-B)."""
    families: dict[Key, list[Key]] = defaultdict(list)
    for key in groups:
        settings = tuple(setting for setting in key.settings if setting[0] != DEPTH)  # what the x axis shows
        families[key._replace(depth=0, model=re.sub(r"\d+", "", key.model), settings=settings)].append(key)
    names = labels(families)
    fig, [ax] = panels(1, width=5, height=3.5)
    for i, (family, keys) in enumerate(families.items()):
        depths = [key.depth for key in keys]
        for tag, style in STYLES.items():
            finals = [[run.final(tag) for run in groups[key]] for key in keys]
            _draw(ax, depths, [statistics.fmean(v) for v in finals], [min(v) for v in finals],
                  [max(v) for v in finals], f"C{i}", {**style, "marker": "o", "markersize": 4},
                  names[family] if tag == TEST else None)
    _legend(ax)
    ax.set_xticks(sorted({key.depth for key in groups}))
    ax.set_xlabel("depth (layers)")
    ax.set_ylabel("final error (%)")
    if ylim:
        ax.set_ylim(ylim)
    ax.set_title("error against depth")
    ax.grid(alpha=0.3)
    _caption(fig, groups, title, "point")
    fig.savefig(path, dpi=200)
    return fig
