"""The runs a report reads: finding run dirs under the given paths, reading their summary.json and metrics
(metrics.jsonl, or TensorBoard events where it is missing), and grouping seeds of one configuration (`Key`), with
the lines a reader of a partial sweep should see (missing, running, diverged, repeated seeds) and the labels that
tell configurations apart."""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

from resnet_exp.errors import UserError
from resnet_exp.runlog import METRICS, SUMMARY, TAGS, parse_metrics

TRAIN, TEST = "train/error", "test/error"
REQUIRED = ("model", "depth", "residual", "data", "seed", "settings")
LENGTH = "trainer.max_iters"
EVENTS_PREFIX = "events.out.tfevents."
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
    """The points of a run dir without metrics.jsonl (e.g. copied from TensorBoard logs)."""
    events = EventAccumulator(str(run_dir), size_guidance={SCALARS: 0})
    events.Reload()
    points: dict[int, dict[str, Any]] = defaultdict(dict)
    for tag in set(TAGS) & set(events.Tags()["scalars"]):
        for event in events.Scalars(tag):
            points[event.step][tag] = event.value
    return [{"iteration": step, **values} for step, values in sorted(points.items()) if {TRAIN, TEST} <= set(values)]


WARNING = "warning:"  # a problem line about a run that is still reported


def load_run(run_dir: Path, problems: list[str] | None = None) -> Run:
    """Raises ValueError or OSError when the files cannot say which net the curves belong to. What a reader
    should still know of a readable run (skipped lines, an iteration written twice) is added to `problems`."""
    if not (run_dir / SUMMARY).is_file():
        raise ValueError(f"no {SUMMARY}, so its model and depth are unknown")
    summary = json.loads((run_dir / SUMMARY).read_text())
    missing = [field for field in REQUIRED if field not in summary]
    if missing:
        raise ValueError(f"{SUMMARY} lacks {', '.join(missing)}")
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
        problems.extend(f"{WARNING} {line}" for line in bad)
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
                run = load_run(run_dir, problems)
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
    counts.update(line.split(":", 1)[0] for line in problems if not line.startswith((*counts, WARNING)))
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
        return len({dict(key.settings).get(name) for key in group}) > 1

    every = sorted({name for key in keys for name, _ in key.settings})
    shared = {name for name in every if not name.startswith(NET_PREFIX) and varies(name, keys)}
    texts = {}
    for key in keys:
        same_net = [other for other in keys if other.model == key.model]
        values = dict(key.settings)
        shown = shared | {name for name in every if name.startswith(NET_PREFIX) and varies(name, same_net)}
        texts[key] = " ".join(f"{name}={values.get(name, 'null')}" for name in every if name in shown)
    return texts


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
