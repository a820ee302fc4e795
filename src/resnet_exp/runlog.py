"""Everything a run writes for people and for the plotting script: TensorBoard, metrics.jsonl, summary.json.

`metrics.jsonl` (one JSON object per evaluation) and `summary.json` are the contract the report reads;
the TensorBoard scalars carry the same points under the tags of `TAGS`, and the hyper-parameters are a run's
record as `shown_hparams` lays it out.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.plugins.hparams.summary_v2 import hparams_pb
from tensorboard.summary.writer.record_writer import RecordWriter
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from resnet_exp.atomic import replaced

METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
# The TensorBoard tag of each curve, by its metrics.jsonl key. TensorBoard groups tags by what precedes the '/',
# sorts the groups by name and opens the first two: the errors, then the losses; the schedule (lr, epoch) after them.
TAGS = {
    "train/error": "error/train", "test/error": "error/test", "train/loss": "loss/train", "test/loss": "loss/test",
    "lr": "schedule/lr", "epoch": "schedule/epoch",
}
# TensorBoard's Custom Scalars page: a run's train and test curves in one chart, one for the error and one for the loss.
CHARTS = {"train and test": {
    "error (%)": ["Multiline", [TAGS["train/error"], TAGS["test/error"]]],
    "loss": ["Multiline", [TAGS["train/loss"], TAGS["test/loss"]]],
}}
# The hyper-parameters that define a run, in the order `shown_hparams` lists them first.
DEFINING = ("model", "model.depth", "model.residual", "model.block", "seed", "optim.lr")
# How many hyper-parameters TensorBoard's HPARAMS page shows before one ticks more: the first five of its list,
# which it sorts by `differs`, then by name (tf-hparams-query-pane; backend_context.py).
SHOWN_BY_DEFAULT = 5
# A sweep's hparams description (`write_sweep_hparams`), in the sweep dir: in a dir of its own, which TensorBoard
# lists as a run named "hparams" beside the jobs, under a name that TensorBoard reads (it holds "tfevents") but the
# report takes for no run's (which start with "events.out.tfevents.").
SWEEP_HPARAMS = Path("hparams", "sweep.tfevents")
# TensorBoard's type of a hyper-parameter by its Python type: numbers are all floats to it (depth 8 shows as 8.0000).
HPARAM_TYPES = {bool: api_pb2.DATA_TYPE_BOOL, int: api_pb2.DATA_TYPE_FLOAT64, float: api_pb2.DATA_TYPE_FLOAT64,
                str: api_pb2.DATA_TYPE_STRING}
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


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """A run dir's summary.json; None where there is none or it cannot be read as one."""
    try:
        summary = json.loads((Path(run_dir) / SUMMARY).read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def parse_metrics(run_dir: Path) -> tuple[list[dict], list[str]]:
    """The evaluation points of a run's metrics.jsonl, and one line per line that is not a point (a line cut by a
    full disk, or appended by hand), which is skipped so that the rest of the run stays readable."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return [], []
    points: list[dict] = []
    bad: list[str] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            point = json.loads(line)
        except json.JSONDecodeError:
            point = None
        if isinstance(point, dict) and isinstance(point.get("iteration"), int):
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


def shown_hparams(record: dict[str, Any]) -> dict[str, bool | int | float | str]:
    """A run's record (`run.hparams`, or its summary.json) as TensorBoard's hyper-parameters: the keys that define
    the run first (`DEFINING`), then the data and every other setting, each once and by its command-line name (the
    net's depth, shortcuts and block kind as `model.depth`, `model.residual`, `model.block`, also for torchvision's
    nets, whose config names no block), types kept (booleans stay booleans) and unset as "null" (TensorBoard takes
    no None)."""
    flat = {**record["settings"], "model": record["model"], "model.depth": record["depth"],
            "model.residual": record["residual"], "model.block": record["block"], "data": record["data"],
            "seed": record["seed"]}
    ordered = {key: flat[key] for key in DEFINING if key in flat} | flat
    return {key: "null" if value is None else value for key, value in ordered.items()}


def write_sweep_hparams(sweep_dir: Path, records: Iterable[dict[str, Any]]) -> Path:
    """Write `sweep_experiment` of the runs' records (`run.hparams`, or their summary.json) into the sweep dir as
    `SWEEP_HPARAMS`, replacing an earlier one; returns its path. TensorBoard's HPARAMS page takes it for a logdir
    at or above the sweep (for a logdir of several sweeps, any one of theirs). Without it TensorBoard describes the
    runs itself: the keys whose values differ first, then all the others by name."""
    summary = Summary()
    plugin_data = plugin_data_pb2.HParamsPluginData(experiment=sweep_experiment(records))
    summary.value.add(tag=hparams_metadata.EXPERIMENT_TAG, tensor=hparams_metadata.NULL_TENSOR,
                      metadata=hparams_metadata.create_summary_metadata(plugin_data))
    path = Path(sweep_dir) / SWEEP_HPARAMS
    path.parent.mkdir(exist_ok=True)
    with replaced(path) as tmp, tmp.open("wb") as f:
        RecordWriter(f).write(Event(wall_time=time.time(), summary=summary).SerializeToString())
    return path


def sweep_experiment(records: Iterable[dict[str, Any]]) -> api_pb2.Experiment:
    """What TensorBoard's HPARAMS page shows of a sweep: every key of its runs (`shown_hparams`), in their order,
    with its type, and the final errors as metrics. The page lists first the keys marked `differs`, by name, and
    shows the first five (`SHOWN_BY_DEFAULT`): so marked are the keys whose values tell the runs apart, and then
    the run-defining ones (`DEFINING`, in that order) while fewer than five are marked."""
    values: dict[str, list[bool | int | float | str]] = defaultdict(list)
    for record in records:
        for key, value in shown_hparams(record).items():
            values[key].append(value)
    differing = [key for key, seen in values.items() if len(set(seen)) > 1]
    defining = [key for key in DEFINING if key in values and key not in differing]
    marked = {*differing, *defining[:max(0, SHOWN_BY_DEFAULT - len(differing))]}
    return api_pb2.Experiment(
        hparam_infos=[hparam_info(key, seen, key in marked) for key, seen in values.items()],
        metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=TAGS[key]))
                      for key in ("train/error", "test/error")],
        time_created_secs=time.time(),
    )


def hparam_info(name: str, values: list[bool | int | float | str], marked: bool) -> api_pb2.HParamInfo:
    """One key of `sweep_experiment`: its type, a string where the runs' values differ in type (as TensorBoard
    types a "null" beside numbers), and for a boolean both values as its domain, which the page offers as a
    filter."""
    types = {HPARAM_TYPES[type(value)] for value in values}
    info = api_pb2.HParamInfo(name=name, type=types.pop() if len(types) == 1 else api_pb2.DATA_TYPE_STRING,
                              differs=marked)
    if info.type == api_pb2.DATA_TYPE_BOOL:
        info.domain_discrete.extend([False, True])
    return info


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
        self.writer = SummaryWriter(str(run_dir), purge_step=start_iteration + 1 if start_iteration else None)
        if not start_iteration:
            # An empty trial id makes each run its own row of the HPARAMS table, named by its dir, rather than
            # a hash of its values (which would also merge two runs of the same settings into one row).
            self.writer.file_writer.add_summary(hparams_pb(hparams, trial_id=""))
            self.writer.add_custom_scalars(CHARTS)
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
