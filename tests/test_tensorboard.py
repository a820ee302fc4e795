"""What a run writes for TensorBoard, read back as TensorBoard reads it (its EventAccumulator, and its hparams
backend for what the HPARAMS page lists): the scalars of metrics.jsonl at their iterations under tags that open
TensorBoard on the errors, the lr at every progress read, a chart of train and test curves together, the run's
record as hparams and a sweep's description of them, on resume no point twice, and the report reading the points
back from the events of runs written now and before."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from conftest import FAST, compose_config
from omegaconf import DictConfig
from tensorboard.backend.event_processing.data_provider import MultiplexerDataProvider
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
from tensorboard.context import RequestContext
from tensorboard.plugins.base_plugin import TBContext
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import metadata as custom_scalars
from tensorboard.plugins.hparams import api_pb2, backend_context, get_experiment, plugin_data_pb2
from tensorboard.plugins.hparams import metadata as hparams
from torch.utils.tensorboard import SummaryWriter

from resnet_exp.board import DEFINING, SWEEP_HPARAMS, TAGS, write_sweep_hparams
from resnet_exp.report.runs import find_runs, read_events
from resnet_exp.run import train
from resnet_exp.runlog import read_summary

# Evaluations at 5 and 10, progress reads every 2 iterations; the lr drops tenfold after iteration 6.
RUN = ["data.train_size=256", "data.test_size=64", "trainer.progress=false", "trainer.eval_every=5",
       "trainer.log_every=2", "optim.lr=0.05", "schedule.milestones=[6]"]
EVALUATED = ("train/loss", "train/error", "test/loss", "test/error", "epoch")
KINDS = {bool: "bool_value", int: "number_value", float: "number_value", str: "string_value"}


def config(max_iters: int, *overrides: str) -> DictConfig:
    return compose_config(*FAST, *RUN, f"trainer.max_iters={max_iters}", *overrides)


def events(path: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(path))
    accumulator.Reload()
    return accumulator


def series(accumulator: EventAccumulator, key: str) -> list[tuple[int, float]]:
    """The curve of metrics.jsonl's `key`, under its TensorBoard tag."""
    return [(e.step, e.value) for e in accumulator.Scalars(TAGS[key])]


def metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def hparams_data(path: Path, tag: str) -> plugin_data_pb2.HParamsPluginData:
    return plugin_data_pb2.HParamsPluginData.FromString(events(path).PluginTagToContent("hparams")[tag])


def listed_hparams(logdir: Path) -> list[api_pb2.HParamInfo]:
    """The hyper-parameters TensorBoard's HPARAMS page receives for `logdir`, in its order, from TensorBoard's own
    backend; the page shows the first five of them."""
    multiplexer = EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    context = backend_context.Context(TBContext(data_provider=MultiplexerDataProvider(multiplexer, str(logdir))))
    request = api_pb2.GetExperimentRequest(hparams_limit=1000)  # as the page asks
    return list(get_experiment.Handler(RequestContext(), context, "", request).run().hparam_infos)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sweep of two runs: resnet8, and its plain twin on noisier data."""
    sweep = tmp_path_factory.mktemp("sweep")
    train(config(10), sweep / "0_resnet8")
    train(config(10, "model.residual=false", "data.noise=30.0"), sweep / "1_plain8")
    return sweep


@pytest.fixture(scope="module")
def run_dir(sweep: Path) -> Path:
    return sweep / "0_resnet8"


def test_evaluations_are_the_scalars_of_metrics_jsonl(run_dir: Path) -> None:
    accumulator = events(run_dir)
    assert set(accumulator.Tags()["scalars"]) == set(TAGS.values())
    points = metrics(run_dir)
    assert [m["iteration"] for m in points] == [5, 10]
    for key in EVALUATED:
        assert series(accumulator, key) == [(m["iteration"], pytest.approx(m[key])) for m in points], key


def test_tensorboard_opens_on_the_errors_then_the_losses(run_dir: Path) -> None:
    """TensorBoard groups tags by what precedes the '/', sorts the groups by name and opens the first two."""
    groups: dict[str, set[str]] = defaultdict(set)
    for tag in events(run_dir).Tags()["scalars"]:
        groups[tag.split("/")[0]].add(tag)
    assert sorted(groups) == ["error", "loss", "schedule"]
    assert groups == {"error": {"error/train", "error/test"}, "loss": {"loss/train", "loss/test"},
                      "schedule": {"schedule/lr", "schedule/epoch"}}


def test_train_and_test_curves_share_a_chart(run_dir: Path) -> None:
    accumulator = events(run_dir)
    [config_event] = accumulator.Tensors(custom_scalars.CONFIG_SUMMARY_TAG)
    layout = layout_pb2.Layout.FromString(config_event.tensor_proto.string_val[0])
    charts = {(category.title, chart.title): list(chart.multiline.tag)
              for category in layout.category for chart in category.chart}
    assert charts == {("train and test", "error (%)"): ["error/train", "error/test"],
                      ("train and test", "loss"): ["loss/train", "loss/test"]}
    scalars = accumulator.Tags()["scalars"]
    for regex in (regex for tags in charts.values() for regex in tags):  # each draws its own curve, no other
        assert [tag for tag in scalars if re.search(regex, tag)] == [regex]


def test_the_lr_is_logged_at_every_progress_read_and_evaluation(run_dir: Path) -> None:
    assert series(events(run_dir), "lr") == [(2, pytest.approx(0.05)), (4, pytest.approx(0.05)),
                                             (5, pytest.approx(0.05)), (6, pytest.approx(0.05)),
                                             (8, pytest.approx(0.005)), (10, pytest.approx(0.005))]


def test_hparams_are_the_settings_summary_json_records_each_once(run_dir: Path) -> None:
    """Each key once by its command-line name (the net's depth, shortcuts and block as model.*), with its type."""
    values = dict(hparams_data(run_dir, hparams.SESSION_START_INFO_TAG).session_start_info.hparams)
    shown = {name: getattr(value, value.WhichOneof("kind")) for name, value in values.items()}
    summary = json.loads((run_dir / "summary.json").read_text())
    recorded = {"model": summary["model"], "data": summary["data"], "seed": summary["seed"], **summary["settings"]}
    assert shown == {name: "null" if value is None else value for name, value in recorded.items()}
    assert {name: value.WhichOneof("kind") for name, value in values.items()} == {
        name: KINDS[type(value)] if value is not None else "string_value" for name, value in recorded.items()}
    assert shown["model.residual"] is True and shown["data.augment"] is True
    assert (shown["model.depth"], shown["model.residual"], shown["model.block"]) == (
        summary["depth"], summary["residual"], summary["block"])
    assert (shown["model"], shown["optim.lr"], shown["schedule.milestones"]) == ("resnet8", 0.05, "[6]")
    # a run describes no experiment of its own: TensorBoard would take one run's for the whole logdir
    assert hparams.EXPERIMENT_TAG not in events(run_dir).PluginTagToContent("hparams")


def test_a_sweeps_hparams_page_shows_what_tells_its_runs_apart_then_what_defines_them(sweep: Path) -> None:
    """The runs differ in the net (model, model.residual) and in data.noise; the page shows five keys: those,
    then the first run-defining ones, model.depth and model.block (seed and optim.lr are the same in both)."""
    records = [read_summary(run) for run in sorted(sweep.iterdir()) if run.is_dir()]
    path = write_sweep_hparams(sweep, records)
    assert path == sweep / SWEEP_HPARAMS
    written = hparams_data(path, hparams.EXPERIMENT_TAG).experiment
    names = [info.name for info in written.hparam_infos]
    assert names[:len(DEFINING)] == list(DEFINING) and len(names) == len(set(names))
    assert not {"block", "depth", "residual"} & set(names)
    assert [info.name.tag for info in written.metric_infos] == ["error/train", "error/test"]
    listed = listed_hparams(sweep)
    assert [info.name for info in listed[:5]] == ["data.noise", "model", "model.block", "model.depth",
                                                  "model.residual"]
    assert [info.name for info in listed if info.differs] == [info.name for info in listed[:5]]
    assert {info.name: info.type for info in listed}["model.residual"] == api_pb2.DATA_TYPE_BOOL
    runs, problems = find_runs([sweep])  # the report takes the sweep's file for no run
    assert len(runs) == 2 and problems == []


def test_the_report_reads_the_points_of_events_written_now_and_before(run_dir: Path, tmp_path: Path) -> None:
    """Runs written before the tags were grouped logged under metrics.jsonl's keys."""
    points = [{"iteration": m["iteration"], **{key: pytest.approx(m[key]) for key in TAGS}} for m in metrics(run_dir)]
    assert read_events(run_dir) == points
    with SummaryWriter(str(tmp_path)) as earlier:
        for point in metrics(run_dir):
            for key in TAGS:
                earlier.add_scalar(key, point[key], point["iteration"])
    assert read_events(tmp_path) == points


def test_a_resumed_run_replaces_what_was_logged_after_its_checkpoint(tmp_path: Path) -> None:
    """A run stopped after its checkpoint at 10 had logged the lr at 12 already; the resumed run logs 12 again,
    and TensorBoard shows its point, not the stopped run's."""
    run_dir = tmp_path / "run"
    train(config(10), run_dir)
    with SummaryWriter(str(run_dir)) as stopped:  # what the stopped run wrote after its checkpoint
        stopped.add_scalar(TAGS["lr"], 999.0, 12)
        stopped.add_scalar(TAGS["test/error"], 999.0, 12)
    train(config(14), run_dir)
    accumulator = events(run_dir)
    assert [step for step, _ in series(accumulator, "lr")] == [2, 4, 5, 6, 8, 10, 12, 14]
    assert 999.0 not in [value for _, value in series(accumulator, "lr")]
    assert series(accumulator, "test/error") == [(m["iteration"], pytest.approx(m["test/error"]))
                                                 for m in metrics(run_dir)]
    assert [m["iteration"] for m in metrics(run_dir)] == [5, 10, 14]
