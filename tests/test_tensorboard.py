"""What a run writes for TensorBoard, read back as TensorBoard reads it (its EventAccumulator): the scalars of
metrics.jsonl at their iterations, the lr at every progress read, the run's settings as hparams, and on resume
no point twice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import FAST, compose_config
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2
from torch.utils.tensorboard import SummaryWriter

from resnet_exp.run import train

# Evaluations at 5 and 10, progress reads every 2 iterations; the lr drops tenfold after iteration 6.
RUN = ["data.train_size=256", "data.test_size=64", "trainer.progress=false", "trainer.eval_every=5",
       "trainer.log_every=2", "optim.lr=0.05", "schedule.milestones=[6]"]
EVALUATED = ("train/loss", "train/error", "test/loss", "test/error", "epoch")


def config(max_iters: int) -> DictConfig:
    return compose_config(*FAST, *RUN, f"trainer.max_iters={max_iters}")


def events(run_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir))
    accumulator.Reload()
    return accumulator


def series(accumulator: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in accumulator.Scalars(tag)]


def metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def as_shown(value: Any) -> Any:
    """A summary.json value as the hparams table holds it: unset as "null" (TensorBoard would drop a None), numbers
    as floats and booleans as 0/1 (torch's writer tests for int before bool)."""
    if value is None:
        return "null"
    return pytest.approx(float(value)) if isinstance(value, bool | int | float) else value


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("tb") / "run"
    train(config(10), run_dir)
    return run_dir


def test_evaluations_are_the_scalars_of_metrics_jsonl(run_dir: Path) -> None:
    accumulator = events(run_dir)
    assert set(accumulator.Tags()["scalars"]) == {"lr", *EVALUATED}
    points = metrics(run_dir)
    assert [m["iteration"] for m in points] == [5, 10]
    for tag in EVALUATED:
        assert series(accumulator, tag) == [(m["iteration"], pytest.approx(m[tag])) for m in points], tag


def test_the_lr_is_logged_at_every_progress_read_and_evaluation(run_dir: Path) -> None:
    assert series(events(run_dir), "lr") == [(2, pytest.approx(0.05)), (4, pytest.approx(0.05)),
                                             (5, pytest.approx(0.05)), (6, pytest.approx(0.05)),
                                             (8, pytest.approx(0.005)), (10, pytest.approx(0.005))]


def test_hparams_are_the_settings_summary_json_records(run_dir: Path) -> None:
    content = events(run_dir).PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    shown = {name: getattr(value, value.WhichOneof("kind")) for name, value in start.hparams.items()}
    summary = json.loads((run_dir / "summary.json").read_text())
    recorded = {**{key: summary[key] for key in ("model", "block", "data", "seed")}, **summary["settings"]}
    assert shown == {name: as_shown(value) for name, value in recorded.items()}
    assert (shown["model"], shown["optim.lr"], shown["schedule.milestones"]) == ("resnet8", pytest.approx(0.05), "[6]")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {info.name.tag for info in experiment.metric_infos} == {"test/error", "train/error"}


def test_a_resumed_run_replaces_what_was_logged_after_its_checkpoint(tmp_path: Path) -> None:
    """A run stopped after its checkpoint at 10 had logged the lr at 12 already; the resumed run logs 12 again,
    and TensorBoard shows its point, not the stopped run's."""
    run_dir = tmp_path / "run"
    train(config(10), run_dir)
    with SummaryWriter(str(run_dir)) as stopped:  # what the stopped run wrote after its checkpoint
        stopped.add_scalar("lr", 999.0, 12)
        stopped.add_scalar("test/error", 999.0, 12)
    train(config(14), run_dir)
    accumulator = events(run_dir)
    assert [step for step, _ in series(accumulator, "lr")] == [2, 4, 5, 6, 8, 10, 12, 14]
    assert 999.0 not in [value for _, value in series(accumulator, "lr")]
    assert series(accumulator, "test/error") == [(m["iteration"], pytest.approx(m["test/error"]))
                                                 for m in metrics(run_dir)]
    assert [m["iteration"] for m in metrics(run_dir)] == [5, 10, 14]
