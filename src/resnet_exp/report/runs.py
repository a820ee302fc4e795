"""The runs a report reads: finding run dirs under the given paths, reading their summary.json and metrics
(metrics.jsonl, or TensorBoard events where it is missing), and grouping seeds of one configuration (`Key`), with
the lines a reader of a partial sweep should see (missing, failed with its error line, running, diverged,
repeated seeds) and the labels that tell configurations apart."""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

from resnet_exp.board import TAGS
from resnet_exp.errors import UserError
from resnet_exp.launch import FAILURE
from resnet_exp.runlog import EVENTS, METRICS, POINT_ERRORS, SUMMARY, parse_metrics, read_json, read_summary

TRAIN, TEST = POINT_ERRORS
REQUIRED = ("model", "depth", "residual", "data", "seed", "settings")
LENGTH = "trainer.max_iters"
MILESTONES = "schedule.milestones"
NO_RUNS_HINT = "expected run dirs with summary.json or metrics.jsonl, e.g. outputs/multirun/<date>/<time>"
# Settings of the net itself (model.*): the model name spells shortcut and block, option A's layout applies to some
# nets only, so they tell configurations apart only between runs of one net.
NET_PREFIX = "model."


class ReportError(UserError):
    """Nothing to report from the given paths; the CLI prints it as one line and exits with code 2."""


class Key(NamedTuple):
    """One configuration: runs sharing it are seeds of each other. Field order sorts plain before residual.

    `settings` holds (name, value as text) for every other setting summary.json records, by its command-line name
    (`optim.lr`); a setting another run's summary.json lacks reads as null. A setting changed on purpose during the
    run reads as its history, "0.1, 0.05 after 6", so the run is not labelled by its last value alone."""

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
        texts = {name: _text(value) for name, value in s["settings"].items() if name != LENGTH}
        history: dict[str, str] = {}
        for change in s.get("changes", []):
            for name, (old, new) in ((n, values) for n, values in change.items() if n != "iteration"):
                history[name] = f"{history.get(name, _text(old))}, {_text(new)} after {change['iteration']}"
        settings = tuple(sorted({**texts, **history}.items()))
        return Key(bool(s["residual"]), int(s["depth"]), s["model"], s["data"], self.max_iters, settings)

    @property
    def max_iters(self) -> int:
        return int(self.summary["settings"][LENGTH])

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
        return f"{s['model']} seed {s['seed']}, {self.iterations}/{self.max_iters} iterations, status {self.status}"


def _text(value: Any) -> str:
    """A setting as a label shows it: strings as they are, everything else as JSON (null, true, 0.05)."""
    return value if isinstance(value, str) else json.dumps(value)


def read_events(run_dir: Path) -> list[dict[str, Any]]:
    """The points of a run dir without metrics.jsonl (e.g. copied from TensorBoard logs), by metrics.jsonl's keys,
    from the tags of `TAGS` or, in runs written before those, from tags named like the keys."""
    events = EventAccumulator(str(run_dir), size_guidance={SCALARS: 0})
    events.Reload()
    keys = {key: key for key in TAGS} | {tag: key for key, tag in TAGS.items()}  # by tag, earlier and current
    points: dict[int, dict[str, Any]] = defaultdict(dict)
    for tag in keys.keys() & set(events.Tags()["scalars"]):
        for event in events.Scalars(tag):
            points[event.step][keys[tag]] = event.value
    return [{"iteration": step, **values} for step, values in sorted(points.items()) if {TRAIN, TEST} <= set(values)]


WARNING = "warning"  # the kind of a problem about a run that is still reported: a line of its files was not used


@dataclass(frozen=True)
class Problem:
    """One line a reader of a partial sweep should see, printed as `str(problem)`: "failed: DIR (its error)", or
    for a warning "warning: FILE line 4 ..." (its detail names the file itself, so it has no `run_dir`).

    `counted`: the line is about a job without a run (missing, failed, no points, skipped), which `status_line`
    counts by `kind`; a line about a run that is reported (its status, a warning) is not, as the run is counted
    by its status."""

    kind: str
    run_dir: Path | None
    detail: str
    counted: bool = False

    def __str__(self) -> str:
        if self.run_dir is None:
            return f"{self.kind}: {self.detail}"
        return f"{self.kind}: {self.run_dir} ({self.detail})"


def load_run(run_dir: Path, problems: list[Problem] | None = None) -> Run:
    """Raises ValueError or OSError when the files cannot say which net the curves belong to. What a reader
    should still know of a readable run (skipped lines, an iteration written twice) is added to `problems`."""
    if not (run_dir / SUMMARY).is_file():
        raise ValueError(f"no {SUMMARY}, so its model and depth are unknown")
    summary = read_summary(run_dir)
    if summary is None:
        raise ValueError(f"{SUMMARY} cannot be read as a JSON object (perhaps still being written)")
    check_summary(summary)
    if (run_dir / METRICS).is_file():
        points, bad = parse_metrics(run_dir)
    else:
        points, bad = read_events(run_dir), []
    iterations = [point["iteration"] for point in points]
    repeated = sorted(i for i, times in Counter(iterations).items() if times > 1)
    if repeated:  # two processes wrote this run at once, before runs took a lock on their dir
        bad.append(f"{run_dir / METRICS} repeats iteration{'s' * (len(repeated) > 1)} "
                   f"{', '.join(map(str, repeated[:5]))}{' ...' * (len(repeated) > 5)}; its curves may be wrong")
    if problems is not None:
        problems.extend(Problem(WARNING, None, line) for line in bad)
    return Run(run_dir, summary, points)


# What the report reads of summary.json, by field: how to tell a value of it, and what it must be.
FIELDS: dict[str, tuple[Any, str]] = {
    "model": (lambda v: isinstance(v, str), "text"),
    "depth": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0, "a positive whole number"),
    "residual": (lambda v: isinstance(v, bool), "true or false"),
    "data": (lambda v: isinstance(v, str), "text"),
    "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool), "a whole number"),
    "settings": (lambda v: isinstance(v, dict) and isinstance(v.get(LENGTH), int)
                 and all(isinstance(x, str | int | float | bool | None) for x in v.values()),
                 f"settings by name with plain values, {LENGTH} among them"),
    "changes": (lambda v: isinstance(v, list) and all(
        isinstance(c, dict) and isinstance(c.get("iteration"), int) and all(
            isinstance(pair, list) and len(pair) == 2 for name, pair in c.items() if name != "iteration")
        for c in v), "a list of changes, each an iteration and [old, new] per setting"),
    "status": (lambda v: isinstance(v, str), "text"),
    "iterations": (lambda v: isinstance(v, int) and not isinstance(v, bool), "a whole number"),
}


def check_summary(summary: dict[str, Any]) -> None:
    """Raise ValueError naming the first field of summary.json that the report needs and lacks, or that holds
    another kind of value than the runner writes (a hand-edited or damaged file)."""
    missing = [field for field in REQUIRED if field not in summary]
    if missing:
        raise ValueError(f"{SUMMARY} lacks {', '.join(missing)}")
    for field, (valid, kind) in FIELDS.items():
        if field in summary and not valid(summary[field]):
            raise ValueError(f"{SUMMARY} holds {field}={str(summary[field])[:60]!r}, not {kind}")


def find_runs(paths: Iterable[str | Path]) -> tuple[list[Run], list[Problem]]:
    """The runs with points under `paths`, and one `Problem` per run a reader of a partial sweep should know about
    (missing, failed, running, diverged, without points, unreadable). A path that holds nothing run-like is an
    error, since it is most likely a typo rather than a sweep that has not started."""
    runs: list[Run] = []
    problems: list[Problem] = []
    seen: set[Path] = set()
    for path in map(Path, paths):
        if not path.exists():
            raise ReportError(f"'{path}' does not exist ({NO_RUNS_HINT})")
        found = False
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames.sort()
            run_dir = Path(dirpath)
            has_files = SUMMARY in filenames or METRICS in filenames or any(
                name.startswith(EVENTS) for name in filenames)
            if not has_files and ".hydra" not in dirnames and FAILURE not in filenames:
                continue
            found = True
            if run_dir.resolve() not in seen:
                seen.add(run_dir.resolve())
                run = read_job(run_dir, has_files, problems)
                if run:
                    runs.append(run)
        if not found:
            raise ReportError(f"no runs under '{path}' ({NO_RUNS_HINT})")
    return runs, problems


def read_failure(run_dir: Path) -> str | None:
    """The one line a failed sweep job left in its dir (`sweep.record_failure`), None where it left none."""
    path = run_dir / FAILURE
    if not path.is_file():
        return None
    record = read_json(path)
    if record is None or not isinstance(record.get("error"), str):
        return f"{FAILURE} unreadable"
    return record["error"]


def read_job(run_dir: Path, has_files: bool, problems: list[Problem]) -> Run | None:
    """The run of a job dir where it has points; otherwise None and, in `problems`, why not. A job that failed
    (`failure.json`) is told by its error line, also beside the status of a run it leaves with points."""
    failure = read_failure(run_dir)
    run, (kind, detail) = None, ("missing", "a job that has not written metrics yet")
    if has_files:
        try:
            run = load_run(run_dir, problems)
            kind, detail = "no points", run.describe()
        except (OSError, ValueError) as e:
            kind, detail = "skipped", str(e)
    if run is None or not run.points:
        problems.append(Problem("failed", run_dir, failure, counted=True) if failure
                        else Problem(kind, run_dir, detail, counted=True))
        return None
    if run.status != "completed" or failure:  # the run is counted by its status, not by this line
        problems.append(Problem(run.status, run_dir, run.describe() + (f"; {failure}" if failure else "")))
    return run


def status_line(runs: Sequence[Run], problems: Sequence[Problem]) -> str:
    """One line saying how far a sweep has got: runs by status, plus one count per kind of problem about a job
    without a run (missing, failed, no points, skipped; `Problem.counted`), so that the counts add up to the jobs
    listed. Problems about a counted run (its status, a warning) are not counted again."""
    counts = Counter(run.status for run in runs)
    counts.update(problem.kind for problem in problems if problem.counted)
    return "runs: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def group_runs(runs: Iterable[Run]) -> dict[Key, list[Run]]:
    """Seeds of one configuration together, in table order (plain before residual, then by depth)."""
    groups: dict[Key, list[Run]] = defaultdict(list)
    for run in runs:
        groups[run.key].append(run)
    return {key: sorted(groups[key], key=lambda run: run.summary["seed"]) for key in sorted(groups)}


def setting_labels(keys: Iterable[Key]) -> dict[Key, str]:
    """What tells each configuration apart, as `name=value` ("optim.lr=0.05 trainer.precision=bf16"): the settings
    whose value differs between configurations. Settings of the net itself (`NET_PREFIX`) count only between
    configurations of the same net."""
    keys = list(keys)

    def varies(name: str, group: Sequence[Key]) -> bool:
        return len({shown_value(key, name) for key in group}) > 1

    every = sorted({name for key in keys for name, _ in key.settings})
    shared = {name for name in every if not name.startswith(NET_PREFIX) and varies(name, keys)}
    texts = {}
    for key in keys:
        same_net = [other for other in keys if other.model == key.model]
        shown = shared | {name for name in every if name.startswith(NET_PREFIX) and varies(name, same_net)}
        texts[key] = " ".join(f"{name}={shown_value(key, name)}" for name in every if name in shown)
    return texts


def shown_value(key: Key, name: str) -> str:
    """A setting of `key` as labels compare and show it; the lr milestones, recorded as iterations, as fractions of
    the run ("[0.5, 0.75]"), so that runs of other lengths with the paper's shape are not told apart by them."""
    value = dict(key.settings).get(name, "null")
    if name == MILESTONES:
        try:
            iterations = json.loads(value)
        except ValueError:  # a history of changes ("[10], [20] after 6"), shown as it is
            return value
        if isinstance(iterations, list) and all(isinstance(m, int) for m in iterations):
            return "[" + ", ".join(f"{m / key.max_iters:.3g}" for m in iterations) + "]"
    return value


def labels(keys: Iterable[Key]) -> dict[Key, str]:
    """Model names, plus data set, length and other settings only where the runs differ in them, to keep
    legends short: "resnet56", or "resnet56 optim.lr=0.05" beside "resnet56 optim.lr=0.1"."""
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
