"""What TensorBoard shows of runs and sweeps: the tags of the curves, grouped so that the errors open first, a chart
of train and test curves per run (Custom Scalars), and the hyper-parameters, the run-defining ones first, each
once, booleans as booleans; for a sweep, which ones the HPARAMS page shows by default. Read back by the report
(`report.runs.read_events`) for runs without metrics.jsonl."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.plugins.hparams.summary_v2 import hparams_pb
from tensorboard.summary.writer.record_writer import RecordWriter
from torch.utils.tensorboard import SummaryWriter

from resnet_exp.atomic import replaced

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


def describe_run(writer: SummaryWriter, hparams: dict[str, Any]) -> None:
    """A new run's hyper-parameters (`shown_hparams`) and its Custom Scalars charts (`CHARTS`), once at its start."""
    # An empty trial id makes each run its own row of the HPARAMS table, named by its dir, rather than a hash of its
    # values (which would also merge two runs of the same settings into one row).
    writer.file_writer.add_summary(hparams_pb(hparams, trial_id=""))
    writer.add_custom_scalars(CHARTS)


def shown_hparams(record: dict[str, Any]) -> dict[str, bool | int | float | str]:
    """A run's record (`RunRecord.defining`, or its summary.json) as TensorBoard's hyper-parameters: the keys that
    define the run first (`DEFINING`), then the data and every other setting, each once and by its command-line name
    (the net's depth, shortcuts and block kind as `model.depth`, `model.residual`, `model.block`, also for torchvision's
    nets, whose config names no block), types kept (booleans stay booleans) and unset as "null" (TensorBoard takes
    no None)."""
    flat = {**record["settings"], "model": record["model"], "model.depth": record["depth"],
            "model.residual": record["residual"], "model.block": record["block"], "data": record["data"],
            "seed": record["seed"]}
    ordered = {key: flat[key] for key in DEFINING if key in flat} | flat
    return {key: "null" if value is None else value for key, value in ordered.items()}


def write_sweep_hparams(sweep_dir: Path, records: Iterable[dict[str, Any]]) -> Path:
    """Write `sweep_experiment` of the runs' records (`RunRecord.defining`, or their summary.json) into the sweep dir
    as `SWEEP_HPARAMS`, replacing an earlier one; returns its path. TensorBoard's HPARAMS page takes it for a logdir
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
