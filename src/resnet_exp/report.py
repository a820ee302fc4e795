"""The degradation report, read from the run files that `runlog` writes (summary.json, metrics.jsonl, events).

For a figure `OUT.<ext>` (png, pdf or svg) it writes:

- `OUT.<ext>`: the paper's Figures 1/6, error against iterations, plain nets left and residual nets right,
  training error dashed and test error bold, one colour per depth, seeds as a mean line with a min..max band;
- `OUT_depth.<ext>`: final training and test error against depth, plain vs residual (a separate figure so the
  first one keeps the paper's two-panel layout);
- `OUT.md` and `OUT.csv`: one row per configuration with final errors (mean ± std over seeds) next to the
  paper's Table 6;
- `OUT_runs.md`: one row per run (seed, final errors, wall time, device), the numbers behind the means.

A configuration is everything summary.json records that changes training (`runlog.SETTING_KEYS`: lr,
schedule, batch size, precision, ...); only runs that differ in nothing but the seed are averaged. Where
configurations of one net differ, legends and the table name the settings that differ (`resnet56 lr=0.05`).

Every figure is drawn on its own Agg canvas, never through pyplot, so it works on headless training machines
and leaves the caller's matplotlib backend alone.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from itertools import cycle
from pathlib import Path
from typing import Any, NamedTuple

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

from resnet_exp.errors import UserError
from resnet_exp.runlog import METRICS, SETTING_KEYS, SUMMARY, TAGS, read_metrics

TRAIN, TEST = "train/error", "test/error"
REQUIRED = ("model", "depth", "residual", "data", "seed", "max_iters")
EVENTS_PREFIX = "events.out.tfevents."
NO_RUNS_HINT = "expected run dirs with summary.json or metrics.jsonl, e.g. outputs/multirun/<date>/<time>"
FIGURE_FORMATS = (".png", ".pdf", ".svg")

PAPER_ITERS = 64000
PAPER_XLIM = (0.0, 6.4)  # units of 1e4 iterations, as on the paper's axis
PAPER_YLIM = (0.0, 20.0)
# Table 6: test error (%) of ResNets with option A shortcuts on CIFAR-10 after 64k iterations.
PAPER_TEST_ERROR = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43}
# Settings of the net itself: the model name spells shortcut and block, and option A's layout applies to some nets.
NET_SETTINGS = ("shortcut", "block", "zero_channels")
PAPER_110_NOTE = "The paper's ResNet-110 entry is its best of 5 runs (their mean is 6.61 ± 0.16)."

# Fixed colours for the paper's depths, so figures of different sweeps compare at a glance.
DEPTH_COLORS = {20: "tab:orange", 32: "tab:blue", 44: "tab:green", 56: "tab:red", 110: "black"}
SPARE_COLORS = ("tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")
STYLES = {TRAIN: {"linestyle": "--", "linewidth": 1.0}, TEST: {"linestyle": "-", "linewidth": 2.2}}
RC = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8, "xtick.labelsize": 8,
      "ytick.labelsize": 8}

Limits = tuple[float, float]


class ReportError(UserError):
    """Nothing to report from the given paths; the CLI prints it as one line and exits with code 2."""


class Key(NamedTuple):
    """One configuration: runs sharing it are seeds of each other. Field order sorts plain before residual.

    `settings` holds (name, value as text) for every other setting summary.json records (`SETTING_KEYS`);
    a setting an older summary.json lacks reads as null."""

    residual: bool
    depth: int
    model: str
    data: str
    max_iters: int
    settings: tuple[tuple[str, str], ...] = ()


@dataclass
class Run:
    """One run dir; every point has both error tags, in order of iteration."""

    dir: Path
    summary: dict[str, Any]
    points: list[dict[str, Any]]

    @property
    def key(self) -> Key:
        s = self.summary
        settings = tuple((name, _text(s.get(name))) for name in SETTING_KEYS if name not in Key._fields)
        return Key(bool(s["residual"]), int(s["depth"]), s["model"], s["data"], int(s["max_iters"]), settings)

    @property
    def status(self) -> str:
        return self.summary.get("status", "unknown")

    @property
    def iterations(self) -> int:
        """Reached so far: summary.json's count is only written when a run starts and when it ends."""
        return max(self.summary.get("iterations", 0), self.points[-1]["iteration"] if self.points else 0)

    def final(self, tag: str) -> float:
        """The last evaluation, which for a running run stands in for the still missing final error."""
        return self.points[-1][tag]

    def describe(self) -> str:
        s = self.summary
        return f"{s['model']} seed {s['seed']}, {self.iterations}/{s['max_iters']} iterations, status {self.status}"


def _text(value: Any) -> str:
    """A setting as a label shows it: strings as they are, everything else as JSON (null, true, 0.05)."""
    return value if isinstance(value, str) else json.dumps(value)


@dataclass
class Row:
    """One table row; the field names are the CSV header. `settings`: what sets this configuration apart
    from the others of the table (empty when they differ only in the net)."""

    model: str
    settings: str
    data: str
    depth: int
    residual: str
    seeds: int
    iterations: int
    max_iters: int
    train_error_mean: float
    train_error_std: float
    test_error_mean: float
    test_error_std: float
    paper_test_error: float | None
    diff: float | None
    eval_split: str


def read_events(run_dir: Path) -> list[dict[str, Any]]:
    """The points of a run dir without metrics.jsonl (e.g. copied from TensorBoard logs)."""
    events = EventAccumulator(str(run_dir), size_guidance={SCALARS: 0})
    events.Reload()
    points: dict[int, dict[str, Any]] = defaultdict(dict)
    for tag in set(TAGS) & set(events.Tags()["scalars"]):
        for event in events.Scalars(tag):
            points[event.step][tag] = event.value
    return [{"iteration": step, **values} for step, values in sorted(points.items()) if {TRAIN, TEST} <= set(values)]


def load_run(run_dir: Path) -> Run:
    """Raises ValueError or OSError when the files cannot say which net the curves belong to."""
    if not (run_dir / SUMMARY).is_file():
        raise ValueError(f"no {SUMMARY}, so its model and depth are unknown")
    summary = json.loads((run_dir / SUMMARY).read_text())
    missing = [field for field in REQUIRED if field not in summary]
    if missing:
        raise ValueError(f"{SUMMARY} lacks {', '.join(missing)}")
    points = read_metrics(run_dir) if (run_dir / METRICS).is_file() else read_events(run_dir)
    return Run(run_dir, summary, points)


def find_runs(paths: Iterable[str | Path]) -> tuple[list[Run], list[str]]:
    """The runs with points under `paths`, and one line per run a reader of a partial sweep should know about
    (missing, running, diverged, without points, unreadable). A path that holds nothing run-like is an error,
    since it is most likely a typo rather than a sweep that has not started."""
    runs: list[Run] = []
    problems: list[str] = []
    seen: set[Path] = set()
    for path in map(Path, paths):
        if not path.exists():
            raise ReportError(f"'{path}' does not exist ({NO_RUNS_HINT})")
        found = False
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames.sort()
            run_dir = Path(dirpath)
            has_files = SUMMARY in filenames or METRICS in filenames or any(
                name.startswith(EVENTS_PREFIX) for name in filenames)
            if not has_files and ".hydra" not in dirnames:
                continue
            found = True
            if run_dir.resolve() in seen:
                continue
            seen.add(run_dir.resolve())
            if not has_files:
                problems.append(f"missing: {run_dir} (a job that has not written metrics yet)")
                continue
            try:
                run = load_run(run_dir)
            except json.JSONDecodeError as e:
                problems.append(f"skipped: {run_dir} (invalid JSON, perhaps still being written: {e})")
                continue
            except (OSError, ValueError) as e:
                problems.append(f"skipped: {run_dir} ({e})")
                continue
            if not run.points:
                problems.append(f"no points: {run_dir} ({run.describe()})")
                continue
            if run.status != "completed":
                problems.append(f"{run.status}: {run_dir} ({run.describe()})")
            runs.append(run)
        if not found:
            raise ReportError(f"no runs under '{path}' ({NO_RUNS_HINT})")
    return runs, problems


def status_line(runs: Sequence[Run], problems: Sequence[str]) -> str:
    """One line saying how far a sweep has got: runs by status, plus jobs without files or points."""
    counts = Counter(run.status for run in runs)
    counts.update(line.split(":", 1)[0] for line in problems if not line.startswith(tuple(counts)))
    return "runs: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def group_runs(runs: Iterable[Run]) -> dict[Key, list[Run]]:
    """Seeds of one configuration together, in table order (plain before residual, then by depth)."""
    groups: dict[Key, list[Run]] = defaultdict(list)
    for run in runs:
        groups[run.key].append(run)
    return {key: sorted(groups[key], key=lambda run: run.summary["seed"]) for key in sorted(groups)}


def setting_labels(keys: Iterable[Key]) -> dict[Key, str]:
    """What tells each configuration apart, as `name=value` ("lr=0.05 precision=bf16"): the settings whose value
    differs between configurations. Settings of the net itself (`NET_SETTINGS`: its name spells them, or they
    apply to some nets only) count only between configurations of the same net."""
    keys = list(keys)

    def varies(name: str, group: Sequence[Key]) -> bool:
        return len({dict(key.settings).get(name) for key in group}) > 1

    shared = {name for name in SETTING_KEYS if name not in NET_SETTINGS and varies(name, keys)}
    texts = {}
    for key in keys:
        same_net = [other for other in keys if other.model == key.model]
        values = dict(key.settings)
        shown = shared | {name for name in NET_SETTINGS if varies(name, same_net)}
        names = [name for name in SETTING_KEYS if name in values and name in shown]
        texts[key] = " ".join(f"{name}={values[name]}" for name in names)
    return texts


def repeated_seeds(groups: dict[Key, list[Run]]) -> list[str]:
    """One line per configuration holding two runs of one seed (e.g. the same sweep run twice): they are averaged
    but counted as one seed."""
    names = labels(groups)
    lines = []
    for key, runs in groups.items():
        counts = Counter(run.summary["seed"] for run in runs)
        repeated = sorted(seed for seed, n in counts.items() if n > 1)
        if repeated:
            lines.append(f"repeated seeds: {names[key]} has several runs of seed {', '.join(map(str, repeated))} "
                         f"({', '.join(str(run.dir) for run in runs if counts[run.summary['seed']] > 1)})")
    return lines


def curve_band(runs: Sequence[Run], tag: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Iterations, mean, min and max over seeds, at the iterations every seed has reached, so that a seed
    still running cannot bend the mean at the end."""
    series = [{point["iteration"]: point[tag] for point in run.points} for run in runs]
    iterations = sorted(set.intersection(*(set(s) for s in series)))
    values = np.array([[s[i] for i in iterations] for s in series], dtype=float)
    return np.array(iterations, dtype=float), values.mean(axis=0), values.min(axis=0), values.max(axis=0)


def table_rows(groups: dict[Key, list[Run]]) -> list[Row]:
    rows = []
    settings = setting_labels(groups)
    for key, runs in groups.items():
        train, test = ([run.final(tag) for run in runs] for tag in (TRAIN, TEST))
        option_a = all(run.summary.get("shortcut") == "A" for run in runs)
        paper = PAPER_TEST_ERROR.get(key.depth) if key.residual and option_a and key.data == "cifar10" else None
        test_mean = statistics.fmean(test)
        rows.append(Row(
            model=key.model, settings=settings[key], data=key.data, depth=key.depth,
            residual="residual" if key.residual else "plain", seeds=len({run.summary["seed"] for run in runs}),
            iterations=max(run.iterations for run in runs), max_iters=key.max_iters,
            train_error_mean=statistics.fmean(train), train_error_std=_std(train),
            test_error_mean=test_mean, test_error_std=_std(test),
            paper_test_error=paper, diff=None if paper is None else test_mean - paper,
            eval_split="/".join(sorted({run.summary.get("eval_split", "test") for run in runs})),
        ))
    return rows


def _std(values: Sequence[float]) -> float:
    """Sample std over seeds; 0 for a single seed, where the table omits it."""
    return statistics.stdev(values) if len(values) > 1 else 0.0


def to_markdown(rows: Sequence[Row]) -> str:
    """The table; a settings column only when configurations of the table differ in more than their nets."""
    with_settings = any(r.settings for r in rows)
    header = ["model", *(["settings"] if with_settings else []), "data", "depth", "residual", "seeds", "iterations",
              "train error (%)", "test error (%)", "paper test error (%)", "diff (points)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [
            r.model, *([r.settings] if with_settings else []), r.data, str(r.depth), r.residual, str(r.seeds),
            str(r.iterations) if r.iterations >= r.max_iters else f"{r.iterations}/{r.max_iters}",
            _mean_std(r.train_error_mean, r.train_error_std, r.seeds),
            _mean_std(r.test_error_mean, r.test_error_std, r.seeds),
            "" if r.paper_test_error is None else f"{r.paper_test_error:.2f}",
            "" if r.diff is None else f"{r.diff:+.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    notes = []
    val = [r.model for r in rows if "val" in r.eval_split.split("/")]
    if val:
        notes.append(f"Test errors of {', '.join(val)} are on the validation split held out from the training set "
                     "(eval_split = val), not on the test set the paper reports.")
    if any(r.paper_test_error is not None and r.iterations < PAPER_ITERS for r in rows):
        notes.append(f"The paper's errors are after {PAPER_ITERS // 1000}k iterations; runs here with fewer "
                     "iterations are not directly comparable.")
    if any(r.paper_test_error is not None and r.depth == 110 for r in rows):
        notes.append(PAPER_110_NOTE)
    table = "\n".join(lines)
    return table + "\n\n" + "\n".join(notes) if notes else table


def runs_markdown(groups: dict[Key, list[Run]]) -> str:
    """One row per run, in table order then by seed: what each seed ended at and how long it took where."""
    names = labels(groups)
    lines = ["| run | seed | iterations | train error (%) | test error (%) | wall time (s) | device | status |",
             "|---|---|---|---|---|---|---|---|"]
    for key, runs in groups.items():
        for run in runs:
            wall = run.summary.get("wall_time_s")
            cells = [names[key], str(run.summary["seed"]), f"{run.iterations}/{key.max_iters}",
                     f"{run.final(TRAIN):.2f}", f"{run.final(TEST):.2f}", "" if wall is None else f"{wall:.0f}",
                     str(run.summary.get("device", "")), run.status]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _mean_std(mean: float, std: float, seeds: int) -> str:
    return f"{mean:.2f} ± {std:.2f}" if seeds > 1 else f"{mean:.2f}"


def write_csv(rows: Sequence[Row], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[field.name for field in fields(Row)])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(row).items()})


def figure_path(out: str | Path) -> Path:
    """`out` with .png added when it has no extension; the extension picks the format."""
    out = Path(out)
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


def labels(keys: Iterable[Key]) -> dict[Key, str]:
    """Model names, plus data set, length and other settings only where the runs differ in them, to keep
    legends short: "resnet56", or "resnet56 lr=0.05" beside "resnet56 lr=0.1"."""
    keys = list(keys)
    many_data = len({key.data for key in keys}) > 1
    many_lengths = len({key.max_iters for key in keys}) > 1
    settings = setting_labels(keys)
    names = {}
    for key in keys:
        parts = [key.model]
        if many_data:
            parts.append(key.data)
        if many_lengths:
            parts.append(f"{key.max_iters} it.")
        if settings[key]:
            parts.append(settings[key])
        names[key] = " ".join(parts)
    return names


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


def _figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas: no pyplot state and no GUI backend, so it works without a display."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


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
    fig = _figure(10, 3.5)
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
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
    fig = _figure(5, 3.5)
    ax = fig.subplots()
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
    for line in problems:
        warn(line)
    warn(status_line(runs, problems))
    if not runs:
        raise ReportError("no run under the given paths has an evaluation point yet")
    groups = group_runs(runs)
    for line in repeated_seeds(groups):
        warn(line)
    rows = table_rows(groups)
    markdown = to_markdown(rows)
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
