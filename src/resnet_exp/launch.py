"""A sweep's launch, as its jobs and its end see it: the record each launch writes into the sweep dir, each job's
start ("job k of N", its dir marked as this launch's), a failed job's `failure.json`, and how the launch's jobs ended,
as the summary the sweep ends with and as TensorBoard's description of the sweep.

Each launch of a sweep writes `launch.json` into the sweep dir: its id and its number of jobs. Each job, in its own
process (joblib, submitit, SLURM), reads it through its `hydra.sweep.dir`, says "job k of N" first (k counted
from 0, as in the job dirs' names, `<k>_<net>_seed<s>`) and marks its dir as this launch's (`job.json`). At the sweep's
end those marks tell this launch's jobs from the ones an earlier launch left in the same sweep dir (file times
cannot: a rerun of a completed job rewrites nothing, and a cluster's nodes keep their own clocks).
"""

from __future__ import annotations

import json
import logging
import shlex
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from resnet_exp.board import write_sweep_hparams
from resnet_exp.record import DEFINING
from resnet_exp.runlog import SUMMARY, format_duration, read_json, read_summary, write_json_atomic

log = logging.getLogger("resnet_exp")
FAILURE = "failure.json"  # in a failed job's dir: its index, how it ended and its error
LAUNCH = "launch.json"  # in the sweep dir: the id of its latest launch and that launch's number of jobs
JOB = "job.json"  # in a job's dir: the launch it belongs to and its index
# What TensorBoard describes of a run (board.shown_hparams): what defines it, but the changes, which it does not show.
RECORD = tuple(key for key in DEFINING if key != "changes")
STATUSES = ("completed", "diverged", "interrupted", "failed", "running")  # a run's status, as summary.json says


def record_failure(run_dir: Path, job_index: int, error: str, status: str = "failed") -> None:
    """failure.json: why the job failed, and how (`failed`, or `diverged`), for the sweep's end to count."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / FAILURE).write_text(json.dumps({"job": job_index, "status": status, "error": error}) + "\n")


def describe(overrides: list[str]) -> str:
    """A job as the sweep's lines name it: its overrides."""
    return " ".join(overrides) or "(no overrides)"


def describe_for_tensorboard(sweep_dir: Path) -> None:
    """The sweep's hyper-parameters for TensorBoard's HPARAMS page, from every run in the sweep dir (this launch's
    and earlier ones'): the settings that tell them apart shown first (`runlog.write_sweep_hparams`). A sweep dir
    that cannot be written loses only that page's order, so it is a warning."""
    summaries = [read_summary(path.parent) for path in sorted(sweep_dir.glob(f"*/{SUMMARY}"))]
    records = [s for s in summaries if s and set(RECORD) <= s.keys()]  # a run's record, not an older layout
    if not records:
        return
    try:
        write_sweep_hparams(sweep_dir, records)
    except OSError as e:
        log.warning("TensorBoard's description of the sweep could not be written into %s: %s", sweep_dir, e)


@dataclass(frozen=True)
class Launch:
    """One launch of a sweep, as its jobs learn it from the sweep dir: an id no other launch has, and its number
    of jobs (None where the sweeper does not know them in advance)."""

    id: str
    jobs: int | None

    @classmethod
    def begin(cls, sweep_dir: Path, jobs: int | None) -> Launch:
        """A new launch, written into `sweep_dir` (over an earlier launch's) for its jobs to read."""
        launch = cls(uuid.uuid4().hex, jobs)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(sweep_dir / LAUNCH, asdict(launch))
        return launch

    @classmethod
    def read(cls, sweep_dir: Path) -> Launch | None:
        """The launch `sweep_dir` holds; None where it holds none (a sweep started without `SweepStart`)."""
        record = read_json(sweep_dir / LAUNCH)
        return cls(str(record["id"]), record.get("jobs")) if record and "id" in record else None


def start_job(sweep_dir: Path, run_dir: Path, job_index: int, overrides: list[str]) -> None:
    """A job's start, in its own process: its first line, "job k of N: its overrides", and its dir marked as this
    launch's for the sweep's end, which counts it (a failure.json of an earlier attempt goes)."""
    launch = Launch.read(sweep_dir)
    of = f" of {launch.jobs}" if launch and launch.jobs else ""
    log.info("job %d%s: %s", job_index, of, describe(overrides))
    (run_dir / FAILURE).unlink(missing_ok=True)
    if launch:
        write_json_atomic(run_dir / JOB, {"launch": launch.id, "job": job_index})


@dataclass(frozen=True)
class JobEnd:
    """How one job of a launch ended: its status (one of `STATUSES`) and one line, its final errors or why it
    failed."""

    index: int
    dir: Path
    status: str
    detail: str


def launched_jobs(sweep_dir: Path, launch_id: str) -> list[JobEnd]:
    """How each job of launch `launch_id` ended, in the order of their indices; job dirs that an earlier launch
    left in `sweep_dir` are not its."""
    ends = []
    for mark in sweep_dir.rglob(JOB):
        record = read_json(mark)
        if record and record.get("launch") == launch_id:
            ends.append(job_end(mark.parent, int(record["job"])))
    return sorted(ends, key=lambda end: end.index)


def job_end(run_dir: Path, index: int) -> JobEnd:
    """How the job in `run_dir` ended: as its failure.json says, which only this launch can have left (a job
    removes an earlier one as it starts), else as its summary.json says."""
    if failure := read_json(run_dir / FAILURE):
        return JobEnd(index, run_dir, str(failure.get("status", "failed")), str(failure.get("error")))
    summary = read_summary(run_dir)
    if summary is None:
        return JobEnd(index, run_dir, "failed", f"it left neither {SUMMARY} nor {FAILURE}")
    return JobEnd(index, run_dir, str(summary.get("status")), final_errors(summary))


def final_errors(summary: dict[str, Any]) -> str:
    """A run's final training and test errors, as its summary.json says them ("-" before its first evaluation)."""
    train, test = (summary.get(f"final_{split}_error") for split in ("train", "test"))
    return f"train error {percent(train)}, test error {percent(test)}"


def percent(value: Any) -> str:
    """An error as the summary prints it; "-" where a run has none yet."""
    return f"{value:.2f}%" if isinstance(value, int | float) else "-"


def plural(count: int, noun: str) -> str:
    """`1 job`, `2 jobs`: the counts of the sweep's lines."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def sweep_summary(ends: list[JobEnd], seconds: float, sweep_dir: Path) -> str:
    """What a launch did, short enough for a terminal: its jobs by status and its wall time, a line per job, and
    the command that draws the figure where any job got further than failing."""
    counts = Counter(end.status for end in ends)
    statuses = [*STATUSES, *sorted(set(counts) - set(STATUSES))]
    tally = ", ".join(f"{counts[status]} {status}" for status in statuses if counts[status])
    lines = [f"sweep of {plural(len(ends), 'job')} ended, wall time {format_duration(seconds)}: "
             f"{tally or 'no job left a record'}"]
    names = [str(end.dir.relative_to(sweep_dir)) for end in ends]
    width, status_width = max(map(len, names), default=0), max((len(end.status) for end in ends), default=0)
    lines += [f"  job {end.index}  {name:<{width}}  {end.status:<{status_width}}  {end.detail}"
              for end, name in zip(ends, names, strict=True)]
    if any(end.status != "failed" for end in ends):
        lines.append(f"  draw the figure: resnet-exp-report {shlex.quote(str(sweep_dir))}")
    return "\n".join(lines)
