"""The predicted wall time of a run or a sweep, and the progress lines a run logs without a terminal."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from resnet_exp import forecast, runlog
from resnet_exp.errors import ConfigError
from resnet_exp.forecast import Cost, evaluation_points, makespan, run_seconds
from resnet_exp.run import step_cost, train
from resnet_exp.runlog import format_duration
from resnet_exp.training import TrainerSettings
from tests.conftest import FAST, compose_config


def test_evaluation_points_every_interval_and_the_last() -> None:
    settings = TrainerSettings(max_iters=2000, eval_every=200)
    assert evaluation_points(settings, 0) == list(range(200, 2001, 200))
    assert evaluation_points(settings, 1000) == [1200, 1400, 1600, 1800, 2000]  # resumed at an evaluation
    assert evaluation_points(settings, 1050) == [1200, 1400, 1600, 1800, 2000]
    assert evaluation_points(TrainerSettings(max_iters=2100, eval_every=200), 2000) == [2100]
    assert evaluation_points(settings, 2000) == []


def test_run_seconds_counts_steps_and_evaluated_images() -> None:
    cost = Cost(step_s=0.5, eval_image_s=0.001, eval_size=10_000)
    full = TrainerSettings(max_iters=2000, eval_every=200)
    assert run_seconds(cost, full) == pytest.approx(2000 * 0.5 + 10 * 10_000 * 0.001)
    subset = TrainerSettings(max_iters=2000, eval_every=200, eval_images=1000)
    assert run_seconds(cost, subset) == pytest.approx(2000 * 0.5 + (9 * 1000 + 10_000) * 0.001)
    assert run_seconds(cost, subset, start_iteration=1600) == pytest.approx(400 * 0.5 + (1000 + 10_000) * 0.001)
    larger = TrainerSettings(max_iters=10, eval_every=5, eval_images=50_000)
    assert run_seconds(cost, larger) == pytest.approx(10 * 0.5 + 2 * 10_000 * 0.001)


def test_makespan_places_jobs_in_launch_order_on_the_first_free_worker() -> None:
    assert makespan([3, 1, 1, 1], 1) == 6
    assert makespan([3, 3, 1, 1], 2) == 4            # long jobs first: balanced
    assert makespan([1, 3, 1, 3], 2) == 5            # worker 1: 1 + 1 + 3, worker 2: 3
    assert makespan([2, 2], 8) == 2


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0.4, 45, 65, 3600, 3725)] == ["0 s", "45 s", "1 min 05 s", "1 h 00 min",
                                                                       "1 h 02 min"]


def test_step_cost_times_the_configured_net_without_reading_its_data(tmp_path: Path) -> None:
    fast = [o for o in FAST if not o.startswith("data")]
    cfg = compose_config(*fast, "data=cifar10", f"data.root={tmp_path / 'nowhere'}")
    cost = step_cost(cfg)  # no CIFAR-10 there: stand-in images of its shape are timed
    assert cost.step_s > 0 and cost.eval_image_s > 0 and cost.eval_size == 10_000
    assert step_cost(compose_config(*FAST, "data.val_split=100")).eval_size == 100


def test_a_run_without_a_terminal_logs_its_prediction_and_its_remaining_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(runlog, "HEARTBEAT_S", 0.0)  # a line after every iteration instead of every 2 minutes
    monkeypatch.setattr(forecast, "MIN_SECONDS", 0.0)  # its tiny steps: the forecast after the fewest (3) timed
    cfg = compose_config(*FAST, "trainer.max_iters=24", "trainer.eval_every=12", "trainer.progress=false",
                         "trainer.eval_images=16")
    with caplog.at_level(logging.INFO):
        summary = train(cfg, tmp_path)
    lines = [r.getMessage() for r in caplog.records]
    (predicted,) = [line for line in lines if line.startswith("predicted wall time on this machine")]
    assert re.search(r"\d+ (s|min) .*for iterations 1-24 \([\d.]+ s a step, \d+ threads?\)", predicted)
    assert summary["predicted_wall_time_s"] > 0
    # After its own first steps: 2 untimed, 3 timed, so before the 6th.
    assert lines.index(predicted) < lines.index(next(line for line in lines if line.startswith("iteration 6/24")))
    heartbeats = [line for line in lines if re.fullmatch(r"iteration \d+/24: \d+ img/s, .* elapsed, .* left", line)]
    assert len(heartbeats) >= 20
    evaluations = [line for line in lines if line.startswith(("iteration 12/24: train", "iteration 24/24: train"))]
    assert len(evaluations) == 2 and all(re.search(r"\| .* elapsed, .* left$", line) for line in evaluations)
    points = [line for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert '"test/images": 16' in points[0] and '"test/images": 128' in points[1]  # the last uses all


def test_no_progress_lines_within_the_interval(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = compose_config(*FAST, "trainer.max_iters=4", "trainer.eval_every=4", "trainer.progress=false")
    with caplog.at_level(logging.INFO):
        train(cfg, tmp_path)
    assert not [r for r in caplog.records if re.match(r"iteration \d+/4: \d+ img/s", r.getMessage())]


def test_eval_images_must_be_positive() -> None:
    with pytest.raises(ConfigError, match=r"trainer.eval_images=0 must be a positive integer, or null for all"):
        TrainerSettings(eval_images=0)


def test_interim_evaluations_use_one_fixed_subset(tmp_path: Path) -> None:
    from resnet_exp.run import assemble

    trainer = assemble(compose_config(*FAST, "trainer.eval_images=50"), None)
    subset = trainer.interim_eval
    assert len(subset) == 50 and len(trainer.batches.eval) == 128
    again = assemble(compose_config(*FAST, "trainer.eval_images=50", "seed=3"), None).interim_eval
    assert torch.equal(subset.labels, again.labels) and torch.equal(subset.images, again.images)
    assert trainer.batches.eval.subset(500) is trainer.batches.eval


def test_eval_images_beyond_the_evaluation_set_are_recorded_as_the_images_measured(tmp_path: Path) -> None:
    """FAST's test set has 128 images: asking for a billion measures those 128, and the record says so."""
    summary = train(compose_config(*FAST, "trainer.max_iters=2", "trainer.eval_every=1", "trainer.progress=false",
                                   "trainer.eval_images=1000000000"), tmp_path / "all")
    assert summary["settings"]["trainer.eval_images"] == 128
    points = [json.loads(line) for line in (tmp_path / "all" / "metrics.jsonl").read_text().splitlines()]
    assert [p["test/images"] for p in points] == [128, 128]
    fewer = train(compose_config(*FAST, "trainer.max_iters=2", "trainer.eval_every=2", "trainer.progress=false",
                                 "trainer.eval_images=50"), tmp_path / "fewer")
    assert fewer["settings"]["trainer.eval_images"] == 50


def test_a_run_builds_its_net_and_data_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The forecast times the run's own steps: no throwaway trainer builds a second net or feeds second batches."""
    from resnet_exp import run
    from resnet_exp.data.module import DataModule

    built: list[str] = []
    seeded_model, batches = run.seeded_model, DataModule.batches
    def seeded_on_a_device(cfg: DictConfig) -> torch.nn.Module:  # the checks build it on the meta device: no weights
        built.extend(["net"] if torch.get_default_device().type != "meta" else [])
        return seeded_model(cfg)

    monkeypatch.setattr(run, "seeded_model", seeded_on_a_device)
    monkeypatch.setattr(DataModule, "batches", lambda self, *a: built.append("batches") or batches(self, *a))
    monkeypatch.setattr(forecast, "MIN_SECONDS", 0.0)
    summary = train(compose_config(*FAST, "trainer.max_iters=8", "trainer.eval_every=8"), tmp_path)
    assert built == ["net", "batches"] and summary["predicted_wall_time_s"] > 0


def test_the_forecast_leaves_out_warmup_steps_and_evaluations(monkeypatch: pytest.MonkeyPatch) -> None:
    """The clock times only steps that no evaluation followed, after the first two, and says its cost once."""
    from resnet_exp.run import assemble

    monkeypatch.setattr(forecast, "MIN_SECONDS", float("inf"))  # so it stops at MAX_STEPS timed steps
    monkeypatch.setattr(forecast, "MAX_STEPS", 5)
    trainer = assemble(compose_config(*FAST, "trainer.eval_every=4"), None)
    clock = forecast.StepClock(128, eval_every=4)
    timed, costs = [], []
    for _ in range(20):
        before = clock.steps
        costs.append(clock.observe(trainer))
        timed += [trainer.iteration] if clock.steps > before else []
        trainer.train_step()
    assert timed == [3, 5, 6, 7, 9]  # not 1 and 2 (warm-up), nor 4 and 8 (an evaluation followed them)
    assert [i for i, cost in enumerate(costs) if cost] == [9] and costs[9].step_s > 0 and costs[9].eval_image_s > 0
