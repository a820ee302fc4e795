"""The command line as a user runs it, in subprocesses on the synthetic set."""

import json
from pathlib import Path

import pytest
from conftest import FAST, run_cli
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from resnet_exp.board import TAGS


def test_single_run_writes_the_contract_files(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_cli(*FAST, "model=plain20", "model.depth=8", "trainer.max_iters=30", "trainer.eval_every=10",
                   f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    points = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [p["iteration"] for p in points] == [10, 20, 30]
    assert all(set(TAGS) <= set(p) for p in points)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["model"] == "plain8" and summary["depth"] == 8 and summary["status"] == "completed"
    assert summary["iterations"] == 30 and summary["device"] == "cpu" and summary["params"] > 0
    assert summary["final_test_error"] == points[-1]["test/error"]
    assert summary["final_train_error"] == points[-1]["train/error"]
    assert summary["wall_time_s"] > 0
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert set(TAGS.values()) <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars(TAGS["test/error"])] == [10, 20, 30]


def test_default_run_dir_is_under_outputs_runs_named_after_the_net_built(tmp_path: Path) -> None:
    """FAST's model.depth=8 turns the default model=resnet20 into resnet8, and the run dir says so."""
    proc = run_cli(*FAST, "trainer.max_iters=2", "trainer.eval_every=2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "warn" not in proc.stderr.lower()  # the run dir is checked before Hydra creates it, without a warning
    [run_dir] = (tmp_path / "outputs" / "runs").glob("*/*_resnet8")
    assert (run_dir / "summary.json").is_file()


def test_multirun_sweeps_two_models_into_the_sweep_dir(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", *FAST, "model=plain20,resnet20", "model.depth=8", "trainer.max_iters=4",
                   "trainer.eval_every=2", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summaries = sorted(json.loads(p.read_text())["model"] for p in sweep.glob("*/summary.json"))
    assert summaries == ["plain8", "resnet8"]
    assert sorted(p.parent.name for p in sweep.glob("*/summary.json")) == ["0_plain8_seed0", "1_resnet8_seed0"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model=plain57"], "model=plain57 is not a model config; accepted: plain110, plain20,"),
        (["model.depth=21"], "model.depth=21 is not of the form 6n+2"),
        (["data=imagenet"], "data=imagenet is not a data config; accepted: cifar10, synthetic"),
        (["trainer.batch_size=0"], "trainer.batch_size=0 must be a positive integer"),
        (["optim.lr=-0.1"], "optim.lr=-0.1 must be a positive number"),
        (["schedule.milestones=[0.75,0.5]"], "schedule.milestones=[0.75, 0.5] must be increasing along the run"),
        (["schedule.milestones=[32000,48000]"], "iteration 32000 is not before the run's end (trainer.max_iters=2)"),
        (["trainer.device=tpu"], "trainer.device='tpu' is not known; accepted: auto, cpu, cuda"),
        (["trainer.device=cuda:x"], "trainer.device='cuda:x' is not known; accepted: auto, cpu, cuda, cuda:N"),
        (["schedule.ramp_iters=-5"], "schedule.ramp_iters=-5 must be a non-negative integer"),
        (["seed=abc"], "seed='abc' is not a seed; accepted: an integer from 0 to 2**63 - 1"),
        (["schedule.milestones=abc"], "schedule.milestones='abc' is not a list; accepted: fractions of the run"),
    ],
)
def test_bad_input_ends_with_one_clear_line(tmp_path: Path, overrides: list[str], message: str) -> None:
    proc = run_cli(*FAST, "trainer.max_iters=2", *overrides, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.strip().count("\n") == 0  # exactly one line


def test_missing_cifar_message_says_how_to_get_it(tmp_path: Path) -> None:
    proc = run_cli("data=cifar10", "trainer.max_iters=2", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path,
                   env={"RESNET_EXP_DATA": str(tmp_path / "empty")})
    assert proc.returncode == 2
    assert f"CIFAR-10 not found under data.root='{tmp_path / 'empty'}'" in proc.stderr
    assert "data.download=true" in proc.stderr and "RESNET_EXP_DATA" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr


def test_cifar10_config_reads_the_official_format_from_data_root(tmp_path: Path, tiny_cifar: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_cli("data=cifar10", f"data.root={tiny_cifar}", "model.depth=8", "trainer.device=cpu",
                   "trainer.batch_size=8", "trainer.max_iters=3", "trainer.eval_every=3",
                   f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["data"] == "cifar10" and summary["train_size"] == 20


@pytest.mark.cifar
def test_real_cifar10_short_run(tmp_path: Path, real_cifar_root: str) -> None:
    run_dir = tmp_path / "run"
    proc = run_cli("model=resnet20", "data=cifar10", "trainer.device=cpu", "trainer.max_iters=20",
                   "trainer.eval_every=20", f"hydra.run.dir={run_dir}", cwd=tmp_path,
                   env={"RESNET_EXP_DATA": real_cifar_root})
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["train_size"] == 50000 and summary["final_test_error"] < 90.0


def test_user_config_dir_adds_a_model(tmp_path: Path) -> None:
    mine = tmp_path / "mine" / "model"
    mine.mkdir(parents=True)
    (mine / "mynet.yaml").write_text("defaults:\n  - base/cifar\n  - _self_\n\ndepth: 14\nshortcut: B\n")
    proc = run_cli("--config-dir", str(tmp_path / "mine"), "model=mynet", "--cfg", "job", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "depth: 14" in proc.stdout and "shortcut: B" in proc.stdout
