"""The report's tables: one row per configuration with its final errors over seeds beside the paper's Table 6
(Markdown and CSV, the Markdown with notes under it, among them where the runs came from), and one row per run
(the numbers behind the means)."""

from __future__ import annotations

import csv
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from resnet_exp.report.paper import PAPER_110_NOTE, PAPER_ITERS, paper_test_error
from resnet_exp.report.runs import TEST, TRAIN, Key, Run, labels, setting_labels


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


def table_rows(groups: dict[Key, list[Run]]) -> list[Row]:
    """One row per configuration; the paper's error only where the run matches Table 6 (`paper_test_error`)."""
    rows = []
    settings = setting_labels(groups)
    for key, runs in groups.items():
        train, test = ([run.final(tag) for run in runs] for tag in (TRAIN, TEST))
        paper = paper_test_error(key)
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


def to_markdown(rows: Sequence[Row], runs: Iterable[Run] = ()) -> str:
    """The table; a settings column only when configurations of the table differ in more than their nets.
    Notes under it say what the comparison with the paper needs to know and, given the table's `runs`, where
    they came from (`provenance_notes`)."""
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
    notes.extend(provenance_notes(runs))
    table = "\n".join(lines)
    return table + "\n\n" + "\n".join(notes) if notes else table


NOT_RECORDED = "not recorded"


def _commit(provenance: dict[str, Any]) -> str:
    """The commit's first 10 hex digits, with `git describe`'s "-dirty" where the checkout had uncommitted
    changes; "none" outside a git checkout."""
    commit, dirty = provenance.get("git_commit"), provenance.get("git_dirty")
    return "none" if commit is None else commit[:10] + ("-dirty" if dirty else "")


def _field(key: str) -> Callable[[dict[str, Any]], str]:
    """A plain value of summary.json or its provenance as text; null as "none"."""
    return lambda d: NOT_RECORDED if key not in d else "none" if d[key] is None else str(d[key])


def _setting(key: str) -> Callable[[dict[str, Any]], str]:
    """A setting the run resolved, from summary.json's settings."""
    return lambda summary: _field(key)(summary.get("settings", {}))


def _memory_format(summary: dict[str, Any]) -> str:
    text = _setting("trainer.channels_last")(summary)
    return {"True": "channels_last", "False": "contiguous"}.get(text, text)


# What the footer names, in its order: (label, the value as text). PROVENANCE reads summary.json's "provenance"
# (its "gpu" is left out: on a GPU the device below is that name), COMPUTE the compute path the run resolved.
PROVENANCE: tuple[tuple[str, Callable[[dict[str, Any]], str]], ...] = (
    ("resnet_exp", _field("resnet_exp")),
    ("commit", lambda p: _commit(p) if "git_commit" in p else NOT_RECORDED),
    ("Python", _field("python")),
    ("torch", _field("torch")),
    ("CUDA", _field("cuda")),
    ("cuDNN", _field("cudnn")),
    ("CPU", _field("cpu")),
    ("threads", _field("threads")),
)
COMPUTE: tuple[tuple[str, Callable[[dict[str, Any]], str]], ...] = (
    ("precision", _setting("trainer.precision")),
    ("memory format", _memory_format),
    ("device", _field("device")),
)


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def provenance_notes(runs: Iterable[Run]) -> list[str]:
    """Where the runs came from, in at most three lines: the runs whose summary.json has no "provenance" (older
    runs), what differs between runs with the count of each value ("Runs differ in provenance: torch 2.14.1
    (3 runs), 2.11.0 (1 run)"), and what all of them share ("All runs: resnet_exp 0.1.0, commit 0123456789-dirty,
    ..., device cpu"). Provenance differences are compared between the runs that record it; a compute setting an
    older summary lacks reads "not recorded"; a shared "not recorded" is left out."""
    runs = list(runs)
    if not runs:
        return []
    recorded = [run.summary["provenance"] for run in runs if isinstance(run.summary.get("provenance"), dict)]
    missing = [run for run in runs if not isinstance(run.summary.get("provenance"), dict)]
    values = [(label, Counter(text(p) for p in recorded)) for label, text in PROVENANCE if recorded]
    values += [(label, Counter(text(run.summary) for run in runs)) for label, text in COMPUTE]
    notes = []
    if missing:
        names = ", ".join(f"{run.summary['model']} seed {run.summary['seed']}" for run in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        every = "the run" if len(runs) == 1 else f"any of the {len(runs)} runs"
        notes.append(f"Provenance not recorded for {every}." if not recorded else
                     f"Provenance not recorded for {len(missing)} of {len(runs)} runs ({names}{more}).")
    differ = [f"{label} " + ", ".join(f"{value} ({_runs(n)})" for value, n in counts.most_common())
              for label, counts in values if len(counts) > 1]
    if differ:
        notes.append("Runs differ in provenance: " + "; ".join(differ) + ".")
    shared = [f"{label} {value}" for label, counts in values if len(counts) == 1
              for value in counts if value != NOT_RECORDED]
    if shared:
        notes.append(("All other runs: " if missing and recorded else "All runs: ") + ", ".join(shared) + ".")
    return notes


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
    """The table for spreadsheets and scripts: every field of `Row`, floats rounded to 4 places."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[field.name for field in fields(Row)])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(row).items()})
