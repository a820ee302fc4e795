"""Everything a run writes for people and for the plotting script: TensorBoard, metrics.jsonl, summary.json.

`metrics.jsonl` (one JSON object per evaluation) and `summary.json` are the contract the report reads;
the TensorBoard scalars carry the same points under the tags of `board.TAGS`, with the run's hyper-parameters and
charts as board.py lays them out.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from resnet_exp.atomic import replaced
from resnet_exp.board import TAGS, describe_run

METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
POINT_ERRORS = ("train/error", "test/error")  # what every evaluation point holds, beside its iteration
EVENTS = "events.out.tfevents."  # TensorBoard's event files, in the run dir itself
# Without a progress bar (output not a terminal: a log file, a cluster job), a line at least this often, seconds.
HEARTBEAT_S = 120.0

log = logging.getLogger(__name__)


def format_duration(seconds: float) -> str:
    """`45 s`, `12 min 05 s`, `3 h 02 min`: as precise as a person reading a log needs."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def write_json_atomic(path: Path, obj: Any) -> None:
    with replaced(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON record (summary.json, a sweep's launch.json, job.json, failure.json); None where it is missing or
    cannot be read as one, so that a reader never stops at a file a killed process left half-written."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError, RecursionError):  # unreadable, not UTF-8 or not JSON, nested past Python's stack
        return None
    return record if isinstance(record, dict) else None


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """A run dir's summary.json; None where there is none or it cannot be read as one."""
    return read_json(Path(run_dir) / SUMMARY)


def is_point(point: Any) -> bool:
    """Whether `point` is an evaluation point as the run writes it: an iteration (a whole number) with its training
    and test errors (numbers), which whatever reads the curves can then use without a check of its own."""
    def number(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    return (isinstance(point, dict) and isinstance(point.get("iteration"), int)
            and not isinstance(point["iteration"], bool) and all(number(point.get(key)) for key in POINT_ERRORS))


def parse_metrics(run_dir: Path) -> tuple[list[dict], list[str]]:
    """The evaluation points of a run's metrics.jsonl, and one line per line that is not a point (a line cut by a
    full disk, appended by hand, or bytes that are not text), which is skipped so that the rest of the run stays
    readable."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return [], []
    points: list[dict] = []
    bad: list[str] = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            point = json.loads(line)
        except (ValueError, RecursionError):  # not JSON, or nested past Python's stack
            point = None
        if is_point(point):
            points.append(point)
        else:
            bad.append(f"{path} line {number} is not an evaluation point; skipped")
    return points, bad


def read_metrics(run_dir: Path) -> list[dict]:
    """`parse_metrics`'s points, each skipped line logged as a warning."""
    points, bad = parse_metrics(run_dir)
    for line in bad:
        log.warning("%s", line)
    return points


class RunLog:
    """Writes one run's curves; on resume it drops points after the checkpoint so none is duplicated.

    Shows progress as a tqdm bar on a terminal; elsewhere as a log line every `HEARTBEAT_S` seconds. Either way
    each evaluation's line says the time elapsed and the time left.
    """

    def __init__(
        self,
        run_dir: Path,
        start_iteration: int,
        max_iters: int,
        hparams: dict[str, Any],
        progress: bool | None = None,
    ) -> None:
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        kept = [m for m in read_metrics(run_dir) if m["iteration"] <= start_iteration] if start_iteration else []
        (run_dir / METRICS).write_text("".join(json.dumps(m) + "\n" for m in kept))
        if not start_iteration:  # a run started afresh (trainer.resume=false) replaces the curves of the one before
            for events in run_dir.glob(f"{EVENTS}*"):
                events.unlink()
        self.writer = SummaryWriter(str(run_dir), purge_step=start_iteration + 1 if start_iteration else None)
        if not start_iteration:
            describe_run(self.writer, hparams)
        # smoothing=0: the time left at the average pace since the start, evaluations included, as the log says it;
        # the bar moves only at progress reads (every trainer.log_every), so it draws each one (no minimum interval)
        self.name = str(hparams.get("model", ""))
        self.bar = tqdm(
            total=max_iters, initial=start_iteration, disable=not progress if progress is not None else None,
            dynamic_ncols=True, unit="it", desc=self.name, smoothing=0, mininterval=0, miniters=1,
        )
        # Log lines go through the bar (tqdm.write) while it is shown, so that none is printed into it.
        self.redirect = None if self.bar.disable else logging_redirect_tqdm()
        if self.redirect:
            self.redirect.__enter__()
        self.max_iters = max_iters
        self.started = self.last_line = time.monotonic()
        self.start_iteration = start_iteration
        self.images_since_line = 0

    def pace(self, iteration: int) -> str:
        """`elapsed ..., ... left`: this process's time so far, and the rest at its average pace (evaluations
        included)."""
        elapsed = time.monotonic() - self.started
        done = iteration - self.start_iteration
        left = (self.max_iters - iteration) * elapsed / done if done else float("nan")
        return f"{format_duration(elapsed)} elapsed, {format_duration(left) if done else '?'} left"

    def tick(self, iteration: int, images: int) -> None:
        """After every iteration: without a bar, one line at least every `HEARTBEAT_S` seconds with the
        iteration, the images/s since the last line, and the pace."""
        self.images_since_line += images
        now = time.monotonic()
        if not self.bar.disable or now - self.last_line < HEARTBEAT_S:
            return
        rate = self.images_since_line / (now - self.last_line)
        log.info("iteration %d/%d: %.0f img/s, %s", iteration, self.max_iters, rate, self.pace(iteration))
        self.last_line, self.images_since_line = now, 0

    def progress(self, iteration: int, loss: float, error: float, lr: float) -> None:
        """The bar, and the `lr` curve at every progress read, so a warm-up ramp shorter than an
        evaluation interval still shows in TensorBoard."""
        self.writer.add_scalar(TAGS["lr"], lr, iteration)
        self.bar.set_postfix(loss=f"{loss:.3f}", err=f"{error:.1f}%", lr=f"{lr:.3g}", refresh=False)
        self.bar.update(iteration - self.bar.n)  # redraws with this read's values

    def evaluating(self, images: int) -> None:
        """Say on the bar that an evaluation runs: it takes seconds to minutes, in which the bar does not move."""
        self.bar.set_description_str(f"{self.name} evaluating {images} images")

    def record(self, iteration: int, metrics: dict[str, float]) -> None:
        """One evaluation point: TensorBoard scalars (`lr` comes from `progress`), a metrics.jsonl line and a
        log line."""
        for key, tag in TAGS.items():
            if key != "lr":  # the lr comes from `progress`
                self.writer.add_scalar(tag, metrics[key], iteration)
        self.writer.flush()
        with (self.run_dir / METRICS).open("a") as f:
            f.write(json.dumps({"iteration": iteration, **metrics}) + "\n")
        self.bar.set_description_str(self.name, refresh=False)
        log.info(
            "iteration %d/%d: train loss %.4f error %.2f%% | test loss %.4f error %.2f%% | lr %.4g | %s",
            iteration, self.max_iters, metrics["train/loss"], metrics["train/error"], metrics["test/loss"],
            metrics["test/error"], metrics["lr"], self.pace(iteration),
        )
        self.last_line, self.images_since_line = time.monotonic(), 0

    def grad_norms(self, iteration: int, norms: dict[str, float]) -> None:
        """Per-parameter gradient norms as scalars, and their spread over layers as one histogram."""
        for name, value in norms.items():
            self.writer.add_scalar(f"grad_norm/{name}", value, iteration)
        self.writer.add_histogram("grad_norm/all_layers", torch.tensor(list(norms.values())), iteration)

    def summary(self, **fields: Any) -> None:
        write_json_atomic(self.run_dir / SUMMARY, fields)

    def close(self) -> None:
        self.bar.close()
        if self.redirect:
            self.redirect.__exit__(None, None, None)
            self.redirect = None
        self.writer.close()
