"""The trainer in-process: schedule, checkpoints, resume and divergence, on tiny synthetic runs."""

import functools
import json
import math
import signal
import statistics
from pathlib import Path

import pytest
import torch
from conftest import FAST, compose_config
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from resnet_exp.board import TAGS
from resnet_exp.errors import CheckpointError, ConfigError
from resnet_exp.record import UNRECORDED
from resnet_exp.report.runs import find_runs, group_runs
from resnet_exp.report.tables import table_rows
from resnet_exp.run import assemble, train
from resnet_exp.training import Diverged, StepSchedule, Trainer
from resnet_exp.training.checkpoint import load_checkpoint, save_checkpoint
from resnet_exp.training.signals import Interrupted


def config(*overrides: str) -> DictConfig:
    """A tiny fast run's config (`FAST`, no progress bar) with `overrides` on top."""
    return compose_config(*FAST, "trainer.progress=false", *overrides)


def test_step_schedule_matches_the_paper() -> None:
    s = StepSchedule(lr=0.1, max_iters=64000)
    assert s.milestones == [32000, 48000]
    assert [s.lr(i) for i in (0, 31999, 32000, 47999, 48000, 63999)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    )


@pytest.mark.parametrize(("max_iters", "milestones"), [(64000, [32000, 48000]), (2000, [1000, 1500]), (40, [20, 30]),
                                                       (3, [1, 2]), (1, [0, 0])])
def test_the_default_milestones_are_half_and_three_quarters_of_the_run(max_iters: int, milestones: list) -> None:
    assert StepSchedule(lr=0.1, max_iters=max_iters).milestones == milestones


def test_milestones_may_be_iterations_fractions_or_none() -> None:
    assert StepSchedule(lr=0.1, max_iters=2000, milestones=[0.25, 1500]).milestones == [500, 1500]
    constant = StepSchedule(lr=0.1, max_iters=2000, milestones=[])
    assert {constant.lr(i) for i in range(2000)} == {0.1}


@pytest.mark.parametrize(("milestones", "message"), [
    ([32000, 48000], r"iteration 32000 is not before the run's end \(trainer.max_iters=2000\), so the lr would never"),
    ([2000], "iteration 2000 is not before the run's end"),
    ([0.75, 0.5], "must be increasing along the run"),
    ([0.5, 500], "must be increasing along the run"),
    ([1.0], r"a fraction of the run must lie in \(0, 1\), not 1.0"),
    ([0], "iteration 0 is before the first one"),
    (["a"], "'a' is neither a fraction nor an iteration"),
    ("abc", "schedule.milestones='abc' is not a list"),
])
def test_bad_milestones_name_the_value_and_what_is_accepted(milestones, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        StepSchedule(lr=0.1, max_iters=2000, milestones=milestones)
    assert "or [] for a constant lr" in str(refused.value)


def test_warmup_holds_until_training_error_drops() -> None:
    s = StepSchedule(lr=0.1, max_iters=64000, warmup_lr=0.01, warmup_until_error=80.0)
    assert s.lr(0) == 0.01
    s.observe(85.0)
    assert s.lr(100) == 0.01
    s.observe(79.0)
    assert s.lr(101) == pytest.approx(0.1)
    restored = StepSchedule(lr=0.1, max_iters=64000, warmup_lr=0.01)
    restored.load_state_dict(s.state_dict())
    assert not restored.warming


def test_linear_warmup_ramps_to_the_step_schedule() -> None:
    s = StepSchedule(lr=0.1, max_iters=30, milestones=[10, 20], ramp_iters=4)
    assert [s.lr(i) for i in (0, 1, 2, 3, 4, 9, 10, 20)] == pytest.approx(
        [0.025, 0.05, 0.075, 0.1, 0.1, 0.1, 0.01, 0.001]
    )
    assert StepSchedule(lr=0.1, max_iters=30, milestones=[10], ramp_iters=0).lr(0) == pytest.approx(0.1)


def test_linear_warmup_composes_with_the_papers_constant_warmup() -> None:
    s = StepSchedule(lr=0.1, max_iters=200, milestones=[100], warmup_lr=0.01, ramp_iters=4)
    assert [s.lr(i) for i in (0, 3, 10)] == pytest.approx([0.0025, 0.01, 0.01])
    s.observe(70.0)
    assert s.lr(11) == pytest.approx(0.1)


def test_linear_decay_falls_from_the_end_of_the_ramp_to_zero_at_the_end() -> None:
    s = StepSchedule(lr=0.1, max_iters=10, milestones=[], ramp_iters=2, decay="linear")
    assert [s.lr(i) for i in range(10)] == pytest.approx(
        [0.05, 0.1, 0.1, 0.0875, 0.075, 0.0625, 0.05, 0.0375, 0.025, 0.0125])
    assert StepSchedule(lr=0.2, max_iters=4, milestones=[], decay="linear").lr(0) == pytest.approx(0.2)


@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"decay": "cosine"}, r"schedule.decay='cosine' is not a decay; accepted: step, linear"),
    ({"decay": "linear"}, r"schedule.milestones=\[0.5, 0.75\] with schedule.decay=linear.*schedule.milestones=\[\]"),
])
def test_bad_decay_names_value_and_accepted(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        StepSchedule(lr=0.1, max_iters=30, **kwargs)


def test_schedule_linear_runs_its_line_and_is_recorded(tmp_path: Path) -> None:
    summary = train(config("schedule=linear", "trainer.max_iters=4", "trainer.eval_every=2", "trainer.log_every=1"),
                    tmp_path)
    assert lr_curve(tmp_path) == [(1, 0.1), (2, 0.075), (3, 0.05), (4, 0.025)]
    assert summary["settings"]["schedule.decay"] == "linear" and summary["settings"]["schedule.milestones"] == "[]"


@pytest.mark.parametrize("bad", [-1, 1.5, True, "200", 10, 50])
def test_bad_ramp_iters_names_value_and_accepted(bad) -> None:
    with pytest.raises(ConfigError, match=r"schedule.ramp_iters=.*(non-negative integer|below the first milestone)"):
        StepSchedule(lr=0.1, max_iters=30, milestones=[10, 20], ramp_iters=bad)


def test_run_killed_during_the_ramp_resumes_on_the_same_lrs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole, split = tmp_path / "whole", tmp_path / "split"
    run = config("trainer.max_iters=12", "schedule.ramp_iters=8", "schedule.milestones=[10]", "trainer.eval_every=2",
                 "trainer.log_every=1")
    train(run, whole)
    step = Trainer.train_step

    def killed_at_4(self: Trainer, *args, **kwargs):
        if self.iteration == 4:
            signal.raise_signal(signal.SIGTERM)  # inside the ramp, answered before the next step
        return step(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "train_step", killed_at_4)
        with pytest.raises(Interrupted):
            train(run, split)
    assert load_checkpoint(split / "checkpoints" / "last.pt")["iteration"] == 5
    train(run, split)
    lrs = [json.loads(line)["lr"] for line in (split / "metrics.jsonl").read_text().splitlines()]
    assert lrs == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.01])  # update i-1 ends at iteration i
    assert (whole / "metrics.jsonl").read_text() == (split / "metrics.jsonl").read_text()
    for a, b in zip(state_hash(whole), state_hash(split), strict=True):
        assert torch.equal(a, b)
    events = EventAccumulator(str(whole))
    events.Reload()
    assert [e.step for e in events.Scalars(TAGS["lr"])] == list(range(1, 13))
    assert [e.value for e in events.Scalars(TAGS["lr"])] == pytest.approx(
        [0.1 * min(i, 8) / 8 if i <= 10 else 0.01 for i in range(1, 13)]
    )


def test_checkpoint_of_the_other_option_a_layout_is_refused(tmp_path: Path) -> None:
    train(config("trainer.max_iters=2", "trainer.eval_every=2", "model.zero_channels=end"), tmp_path)
    with pytest.raises(CheckpointError, match=r"zero channels at the 'end'.*add model.zero_channels=end"):
        train(config("trainer.max_iters=4", "trainer.eval_every=2"), tmp_path)
    summary = train(config("trainer.max_iters=4", "trainer.eval_every=2", "model.zero_channels=end"), tmp_path)
    assert summary["iterations"] == 4 and summary["settings"]["model.zero_channels"] == "end"


def lr_curve(run_dir: Path) -> list[tuple[int, float]]:
    """The lr at each progress read, as TensorBoard shows it: (iteration, lr of the update that ended there)."""
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return [(e.step, pytest.approx(e.value)) for e in events.Scalars(TAGS["lr"])]


def test_a_shortened_run_with_the_default_schedule_decays_at_half_and_three_quarters(tmp_path: Path) -> None:
    summary = train(config("trainer.max_iters=40", "trainer.eval_every=20", "trainer.log_every=1"), tmp_path)
    assert lr_curve(tmp_path) == [(i, 0.1 if i <= 20 else 0.01 if i <= 30 else 0.001) for i in range(1, 41)]
    assert summary["settings"]["schedule.milestones"] == "[20, 30]"


def test_a_run_continued_to_another_length_keeps_the_milestones_it_trained_with(tmp_path: Path) -> None:
    """A run recording iterations (as every run did before milestones were fractions of the run, here [2, 3] of 4)
    resumed with the default fractions and a longer trainer.max_iters keeps them: its lr does not jump back up."""
    train(config("trainer.max_iters=4", "trainer.eval_every=2", "trainer.log_every=1", "schedule.milestones=[2,3]"),
          tmp_path)
    summary = train(config("trainer.max_iters=8", "trainer.eval_every=2", "trainer.log_every=1"), tmp_path)
    assert lr_curve(tmp_path) == [(1, 0.1), (2, 0.1), (3, 0.01), *((i, 0.001) for i in range(4, 9))]
    assert summary["settings"]["schedule.milestones"] == "[2, 3]" and summary["changes"] == []


def test_a_run_resumed_with_other_milestones_is_refused_naming_them(tmp_path: Path) -> None:
    train(config("trainer.max_iters=4", "trainer.eval_every=2", "schedule.milestones=[1]"), tmp_path)
    with pytest.raises(CheckpointError, match=r"schedule.milestones '\[1\]' -> '\[4, 6\]'"):
        train(config("trainer.max_iters=8", "trainer.eval_every=2"), tmp_path)


def test_learning_rate_milestones_are_applied_in_training(tmp_path: Path) -> None:
    train(config("trainer.max_iters=6", "trainer.eval_every=2", "schedule.milestones=[2,4]"), tmp_path)
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lrs == pytest.approx([0.1, 0.01, 0.001])


def test_checkpoint_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"model": {"w": torch.ones(2)}, "iteration": 1}, path)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies in the middle of torch.save

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"model": {"w": torch.zeros(2)}, "iteration": 2}, path)
    assert load_checkpoint(path)["iteration"] == 1


def test_truncated_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"model": {"w": torch.ones(1000)}, "iteration": 1}, path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CheckpointError, match=r"last.pt' cannot be read.*trainer.resume=false"):
        load_checkpoint(path)


def state_hash(run_dir: Path) -> list[torch.Tensor]:
    return list(load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"].values())


def test_resume_continues_to_identical_weights_and_metrics(tmp_path: Path) -> None:
    whole, split = tmp_path / "whole", tmp_path / "split"
    drops = "schedule.milestones=[6,7]"  # inside both lengths, so that the longer run shows the shorter one's lr
    train(config("trainer.max_iters=12", "trainer.eval_every=4", drops), whole)
    train(config("trainer.max_iters=8", "trainer.eval_every=4", drops), split)
    summary = train(config("trainer.max_iters=12", "trainer.eval_every=4", drops), split)
    assert summary["iterations"] == 12
    for a, b in zip(state_hash(whole), state_hash(split), strict=True):
        assert torch.equal(a, b)
    assert (whole / "metrics.jsonl").read_text() == (split / "metrics.jsonl").read_text()


def test_checkpoint_of_another_model_is_refused(tmp_path: Path) -> None:
    train(config("trainer.max_iters=2", "trainer.eval_every=2"), tmp_path)
    with pytest.raises(CheckpointError, match=r"another net \(model 'resnet8' -> 'plain14'; model.depth 8 -> 14"):
        train(config("model=plain20", "model.depth=14", "trainer.max_iters=4"), tmp_path)


def test_resume_false_starts_afresh(tmp_path: Path) -> None:
    train(config("trainer.max_iters=4", "trainer.eval_every=2"), tmp_path)
    fresh = config("trainer.max_iters=2", "trainer.eval_every=2", "trainer.resume=false")
    summary = train(fresh, tmp_path)
    assert summary["iterations"] == 2
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1


def test_divergence_stops_with_status_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    train(config("trainer.max_iters=5", "trainer.eval_every=5"), tmp_path)
    good = state_hash(tmp_path)
    with pytest.raises(Diverged, match=r"training loss became (nan|inf).*lower optim.lr"):
        train(config("optim.lr=1e30", "trainer.max_iters=40", "trainer.eval_every=40", "trainer.resume=false"),
              tmp_path)  # starts afresh in the same dir, and diverges before its first checkpoint
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "diverged" and "optim.lr" in summary["failure"]
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["iteration"] == 5  # the good one, untouched
    assert all(torch.equal(a, b) for a, b in zip(good, state_hash(tmp_path), strict=True))


def test_summary_records_every_setting_of_the_config_resolved(tmp_path: Path) -> None:
    cfg = config("trainer.max_iters=4", "trainer.eval_every=2", "schedule.ramp_iters=1", "optim.lr=0.05",
                 "trainer.precision=bf16")
    summary = train(cfg, tmp_path)
    assert summary == json.loads((tmp_path / "summary.json").read_text())
    assert {k: summary[k] for k in ("model", "depth", "residual", "block", "data", "seed")} == {
        "model": "resnet8", "depth": 8, "residual": True, "block": "basic", "data": "synthetic", "seed": 0}
    settings = summary["settings"]
    assert {k: settings[k] for k in ("optim.lr", "schedule.ramp_iters", "trainer.precision",
                                     "trainer.channels_last", "model.zero_channels", "trainer.batch_size",
                                     "schedule.milestones", "optim.momentum", "trainer.log_every",
                                     "data.split_seed")} == {
        "optim.lr": 0.05, "schedule.ramp_iters": 1, "trainer.precision": "bf16", "trainer.channels_last": True,
        "model.zero_channels": "both", "trainer.batch_size": 32, "schedule.milestones": "[2, 3]",
        "optim.momentum": 0.9, "trainer.log_every": 5, "data.split_seed": 0,
    }
    # Every key of the config is recorded, but the few that cannot change what is trained or measured.
    flat = {f"{group}.{key}" for group in ("model", "data", "optim", "schedule", "trainer")
            for key in cfg[group] if key != "_target_"}
    assert flat - settings.keys() == flat & UNRECORDED and "trainer.resume" in UNRECORDED
    assert "seed" not in settings and "trainer.device" not in settings


def test_runs_differing_only_in_log_every_under_the_warmup_are_separate_rows(tmp_path: Path) -> None:
    """log_every decides when schedule=warmup can end, so it is a setting of the run like any other."""
    for every in (1, 2):
        train(config("trainer.max_iters=4", "trainer.eval_every=4", "schedule=warmup",
                     "schedule.warmup_until_error=95", f"trainer.log_every={every}"), tmp_path / f"every{every}")
    runs, _ = find_runs([tmp_path])
    rows = table_rows(group_runs(runs))
    assert sorted(row.settings for row in rows) == ["trainer.log_every=1", "trainer.log_every=2"]


def test_training_learns_the_synthetic_set(tmp_path: Path) -> None:
    summary = train(config("trainer.max_iters=60", "trainer.eval_every=60"), tmp_path)
    assert summary["final_test_error"] < 50.0  # chance is 90%


@functools.cache
def compute_path_steps(precision: str, channels_last: bool) -> tuple[set[tuple[torch.dtype, bool]], list[float]]:
    """20 training steps of the tiny run on one compute path: what every conv computed in (its output dtype, and
    whether its input was channels_last) and the loss of each step. Cached: the fp32 reference serves every path."""
    trainer = assemble(config(f"trainer.precision={precision}", f"trainer.channels_last={channels_last}"), None)
    seen: set[tuple[torch.dtype, bool]] = set()

    def record(conv: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        seen.add((out.dtype, args[0].dim() == 4 and args[0].is_contiguous(memory_format=torch.channels_last)))

    for conv in (m for m in trainer.model.modules() if isinstance(m, nn.Conv2d)):
        conv.register_forward_hook(record)
    return seen, [float(trainer.train_step().loss) for _ in range(20)]


@pytest.mark.parametrize(("precision", "channels_last", "dtype", "tolerance"), [
    ("fp32", False, torch.float32, 0.0),
    ("fp32", True, torch.float32, 5e-3),  # the same arithmetic in another order: apart by rounding
    ("bf16", True, torch.bfloat16, 3e-2),  # bf16 keeps 8 bits of mantissa: 0.01 apart after 20 steps
])
def test_each_compute_path_computes_as_set_and_trains_as_fp32_does(
    precision: str, channels_last: bool, dtype: torch.dtype, tolerance: float
) -> None:
    seen, losses = compute_path_steps(precision, channels_last)
    assert seen == {(dtype, channels_last)}  # every conv of every step
    assert losses == pytest.approx(compute_path_steps("fp32", False)[1], abs=tolerance)  # the accuracy reference
    # From chance (ln 10 = 2.30) to about half of it in 20 steps.
    assert losses[0] == pytest.approx(math.log(10), abs=0.1) and statistics.mean(losses[-5:]) < 1.5


def test_the_papers_warmup_ends_at_the_first_progress_read_below_its_error(tmp_path: Path) -> None:
    """`schedule=warmup` trains at lr 0.01 until a progress read (every `trainer.log_every`) finds the training
    error since the previous read below 80%, then at 0.1. Evaluating at every read shows each read's error."""
    train(config("schedule=warmup", "schedule.milestones=[]", "trainer.max_iters=24", "trainer.eval_every=2",
                 "trainer.log_every=2", "trainer.eval_images=32"), tmp_path)
    points = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["iteration"] for m in points] == list(range(2, 25, 2))
    first_below = next(m["iteration"] for m in points if m["train/error"] < 80.0)
    assert first_below == 16
    assert [m["lr"] for m in points] == pytest.approx([0.01] * 8 + [0.1] * 4)  # iterations 2-16, then 18-24


@pytest.mark.slow
def test_compiled_model_trains_and_checkpoints_plain_keys(tmp_path: Path) -> None:
    summary = train(config("trainer.max_iters=10", "trainer.eval_every=10", "trainer.compile=true"), tmp_path)
    assert summary["status"] == "completed"
    assert not any(k.startswith("_orig_mod") for k in load_checkpoint(tmp_path / "checkpoints" / "last.pt")["model"])


@pytest.mark.cuda
def test_cuda_run_uses_bf16_and_matches_the_contract(tmp_path: Path) -> None:
    summary = train(config("trainer.device=cuda", "trainer.max_iters=20", "trainer.eval_every=10"), tmp_path)
    assert summary["status"] == "completed" and summary["device"] != "cpu"
    settings = summary["settings"]
    assert settings["trainer.precision"] == "bf16" and settings["trainer.channels_last"] is True  # CUDA defaults
    assert summary["final_test_error"] < 80.0


def test_gradient_norms_are_logged_at_init_and_every_progress_read(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(config("trainer.max_iters=10", "trainer.eval_every=10", "trainer.log_every=5",
                 "trainer.log_grad_norms=true"), tmp_path)
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert "grad_norm/conv.weight" in tags and "grad_norm/fc.bias" in tags
    assert [e.step for e in events.Scalars("grad_norm/conv.weight")] == [1, 5, 10]
    assert all(e.value > 0 for e in events.Scalars("grad_norm/fc.weight"))
    assert "grad_norm/all_layers" in events.Tags()["histograms"]


def test_summary_records_where_the_result_came_from(tmp_path: Path) -> None:
    from resnet_exp.provenance import git_commit

    summary = train(config("trainer.max_iters=2", "trainer.eval_every=2"), tmp_path)
    origin = summary["provenance"]
    assert origin["torch"] == torch.__version__ and origin["threads"] == torch.get_num_threads()
    assert origin["resnet_exp"] and origin["cpu"] and origin["python"]
    assert origin["git_commit"] is None or len(origin["git_commit"]) == 40
    assert origin["git_dirty"] in (None, True, False)
    assert json.loads((tmp_path / "summary.json").read_text())["provenance"] == origin
    assert git_commit(tmp_path) == (None, None)  # not a git checkout
