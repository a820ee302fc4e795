"""The report's figures: the paper's Figures 1/6 (error against iterations, plain nets left and residual nets
right, training error dashed and test error bold, one colour per depth, seeds as a mean line with a min..max band)
and final error against depth, with the axis ranges, colours and styles they share."""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from itertools import cycle
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from resnet_exp.canvas import panels
from resnet_exp.report.paper import PAPER_ITERS, PAPER_XLIM, PAPER_YLIM
from resnet_exp.report.runs import TEST, TRAIN, Key, ReportError, Run, labels

FIGURE_FORMATS = (".png", ".pdf", ".svg")
DEFAULT_FIGURE = "degradation.png"  # the figure's name where --out is a folder, and the default --out
# Fixed colours for the paper's depths, so figures of different sweeps compare at a glance.
DEPTH_COLORS = {20: "tab:orange", 32: "tab:blue", 44: "tab:green", 56: "tab:red", 110: "black"}
SPARE_COLORS = ("tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")
STYLES = {TRAIN: {"linestyle": "--", "linewidth": 1.0}, TEST: {"linestyle": "-", "linewidth": 2.2}}
RC = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8, "xtick.labelsize": 8,
      "ytick.labelsize": 8}

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


def iteration_unit(keys: Iterable[Key]) -> float:
    """1e4 iterations per axis unit as in the paper; 1e3 for short runs, whose ticks would read 0.025."""
    return 1e4 if max(key.max_iters for key in keys) >= 20000 else 1e3


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


def _legend(ax: Axes) -> None:
    """Colours name the nets; two grey keys explain the line styles, as the paper's caption does."""
    handles, _ = ax.get_legend_handles_labels()
    keys = [Line2D([], [], color="grey", label=tag.split("/")[0], **style) for tag, style in STYLES.items()]
    ax.legend(handles=handles + keys, loc="best", ncol=2)


def plot_curves(groups: dict[Key, list[Run]], path: Path, xlim: Limits | None, ylim: Limits | None,
                title: str | None) -> Figure:
    """The paper's Figures 1/6: plain nets left, residual nets right, on shared axes."""
    colors = key_colors(groups)
    names = labels(groups)
    unit = iteration_unit(groups)
    fig, axes = panels(2, width=5, height=3.5, share=True)
    for ax, residual in zip(axes, (False, True), strict=True):
        kind = "residual" if residual else "plain"
        keys = [key for key in groups if key.residual == residual]
        for key in keys:
            for tag, style in STYLES.items():
                iterations, mean, lo, hi = curve_band(groups[key], tag)
                label = names[key] if tag == TEST else None
                _draw(ax, iterations / unit, mean, lo, hi, colors[key], style, label)
        if keys:
            _legend(ax)
        else:
            ax.text(0.5, 0.5, f"no {kind} runs", transform=ax.transAxes, ha="center", va="center")
        ax.set_title(f"{kind} networks")
        ax.set_xlabel(f"iter. (1e{round(math.log10(unit))})")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("error (%)")
    if xlim:
        axes[0].set_xlim(xlim)
    if ylim:
        axes[0].set_ylim(ylim)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=200)
    return fig


def plot_depth(groups: dict[Key, list[Run]], path: Path, ylim: Limits | None, title: str | None) -> None:
    """Final error against depth, one pair of lines (train, test) per family of nets (plain, resnet, resnet-B)."""
    families: dict[Key, list[Key]] = defaultdict(list)
    for key in groups:
        families[key._replace(depth=0, model=re.sub(r"\d+", "", key.model))].append(key)
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
    ax.set_title(title or "error against depth")
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=200)
