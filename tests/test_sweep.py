"""A sweep before, during and after its jobs: the checks and the forecast at its start, the jobs at once and their
threads, each job saying which of how many it is, user errors as one line per job, and the summary at its end."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import warnings
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra._internal.callbacks import Callbacks

import resnet_exp.cli  # noqa: F401  (registers the jobs_at_once resolver, as running resnet-exp does)
from resnet_exp import launch, sweep
from resnet_exp.errors import ConfigError
from resnet_exp.rundir import lock_run_dir
from tests.conftest import FAST, compose_config, run_cli

SWEEP = ["-m", *FAST, "trainer.max_iters=4", "trainer.eval_every=2"]


def summaries(sweep_dir: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/summary.json"))}


@pytest.fixture(scope="module")
def mixed_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    """A sweep of two jobs at once, one that completes and one that fails (model.depth=9, which only it has), run
    into a sweep dir where an earlier launch left a failed job 2; what it printed, and its sweep dir."""
    tmp_path = tmp_path_factory.mktemp("mixed")
    out = tmp_path / "sweep"
    earlier = out / "2_earlier_seed0"
    launch.record_failure(earlier, 2, "model.depth=7 is not of the form 6n+2")
    (earlier / launch.JOB).write_text(json.dumps({"launch": "an earlier launch", "job": 2}))
    proc = run_cli(*SWEEP, "model.depth=8,9", "hydra/launcher=parallel", f"hydra.sweep.dir={out}", cwd=tmp_path)
    return proc, out


def assert_each_job_says_first_which_of_how_many(out: Path, jobs: int) -> None:
    """The first line of each job's log (cli.log in its dir) names it as its dir does, with the sweep's size."""
    logs = sorted(out.glob("[0-9]*/cli.log"))
    assert len(logs) == jobs, logs
    for k, path in enumerate(logs):
        first = path.read_text().splitlines()[0]
        assert path.parent.name.startswith(f"{k}_") and f"] - job {k} of {jobs}: " in first, (path, first)


@pytest.mark.parametrize(("preset", "cores", "expected"), [
    ("degradation_quick", 1, 1), ("degradation_quick", 2, 2), ("degradation_quick", 16, 4),
    ("[degradation_quick,seeds]", 16, 12), ("[degradation_quick,seeds]", 64, 12),
])
def test_parallel_runs_one_job_per_core_up_to_the_jobs(monkeypatch: pytest.MonkeyPatch, preset: str, cores: int,
                                                       expected: int) -> None:
    monkeypatch.setattr(sweep, "cpu_count", lambda: cores)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = compose_config(f"experiment={preset}", "hydra/launcher=parallel", hydra=True)
    assert cfg.hydra.launcher.n_jobs == expected
    assert sweep.workers_and_threads(cfg.hydra.launcher) == (expected, max(cores // expected, 1))


def test_parallel_runs_one_job_per_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert compose_config("experiment=degradation_quick", hydra=True).hydra.launcher.n_jobs == 2


def test_the_quick_preset_runs_its_jobs_at_once_longest_first() -> None:
    cfg = compose_config("experiment=degradation_quick", hydra=True)
    assert cfg.hydra.launcher._target_ == sweep.JOBLIB_LAUNCHER
    models = [job[0] for job in sweep.job_overrides(cfg)]
    assert models == ["model=plain56", "model=resnet56", "model=plain20", "model=resnet20"]


def test_predict_says_how_long_the_sweep_takes_and_starts_no_job(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    proc = run_cli(*SWEEP, "model=resnet20,plain20", "trainer.eval_images=64", "hydra/launcher=parallel",
                   "predict=true", f"hydra.sweep.dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    workers, threads = min(sweep.cpu_count(), 2), max(sweep.cpu_count() // min(sweep.cpu_count(), 2), 1)
    text = proc.stdout + proc.stderr
    assert (f"sweep of 2 jobs, {workers} at a time with {threads} thread" in text
            and "predicted wall time on this machine" in text), text
    assert not out.exists() or not list(out.glob("*/summary.json"))


def test_a_run_predicts_itself_and_stops(tmp_path: Path) -> None:
    proc = run_cli(*FAST, "predict=true", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "predicted wall time on this machine" in proc.stdout + proc.stderr
    assert not (tmp_path / "run" / "summary.json").exists()


def test_a_sweep_whose_every_job_would_fail_stops_before_the_first(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    no_data = [o for o in SWEEP if not o.startswith("data")]
    proc = run_cli(*no_data, "data=cifar10", f"data.root={tmp_path / 'nowhere'}", "model=resnet20,plain20",
                   f"hydra.sweep.dir={out}", cwd=tmp_path)
    assert proc.returncode == 2
    assert "every job of this sweep would fail, so none is started: CIFAR-10 not found under data.root=" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout and "HYDRA_FULL_ERROR" not in proc.stderr
    assert not summaries(out)


def test_a_sweep_with_a_config_that_does_not_exist_is_one_line_naming_it_and_the_configs_there_are(
    tmp_path: Path,
) -> None:
    out = tmp_path / "sweep"
    proc = run_cli(*SWEEP, "model=resnet20,resnet21", f"hydra.sweep.dir={out}", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "resnet-exp: error: a job of this sweep cannot be composed, so none is started: model=resnet21 is not a "
        "model config; accepted: " + ", ".join(sorted(
            p.stem for p in (Path(__file__).parents[1] / "configs" / "model").glob("*.yaml")))]
    assert not out.exists()


@pytest.mark.parametrize(("override", "said"), [
    ("optim.lr=-1", "optim.lr=-1 must be a positive number"),
    ("optim.momentum=1.5", "optim.momentum=1.5 must be in [0, 1)"),
    ("model.depth=9", "model.depth=9 is not of the form 6n+2"),
    ("schedule.gamma=2", "schedule.gamma=2 must be in (0, 1]"),
])
def test_the_up_front_check_names_a_jobs_bad_value_so_that_the_others_still_run(override: str, said: str) -> None:
    assert said in sweep.check_job(compose_config(*FAST, override), 0, here=True)
    assert sweep.check_job(compose_config(*FAST), 0, here=True) is None


def test_an_interpolated_override_is_checked_against_each_jobs_own_config(tmp_path: Path) -> None:
    """`model.zero_init_residual=${model.residual}` is false for the plain job, true for the residual one: the
    up-front check must not resolve it against the sweep's default net (a residual one) and refuse the plain job."""
    proc = run_cli(*SWEEP, "model=plain20,resnet20", "model.zero_init_residual=${model.residual}", "predict=true",
                   f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "sweep of 2 jobs" in proc.stderr + proc.stdout and "cannot run" not in proc.stderr


def test_a_second_launch_into_a_sweep_dir_in_use_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    with lock_run_dir(out, "hydra.sweep.dir"):  # as the first launch holds it while its jobs run
        proc = run_cli(*SWEEP, "model=resnet20,plain20", f"hydra.sweep.dir={out}", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"resnet-exp: error: sweep dir '{out}' is in use by process {os.getpid()} on {socket.gethostname()}; wait "
        "for that sweep to end, or give this one another hydra.sweep.dir"]
    assert [p.name for p in out.iterdir()] == [".lock"]


def test_a_failing_job_is_one_line_and_the_others_run_with_their_share_of_the_cores(
    mixed_sweep: tuple[subprocess.CompletedProcess, Path],
) -> None:
    proc, out = mixed_sweep
    assert proc.returncode == 1
    text = proc.stderr + proc.stdout
    assert "Traceback" not in text and "HYDRA_FULL_ERROR" not in text and "Error executing" not in text, text
    assert re.search(r"job 1 \([^)]*model\.depth=9[^)]*\) cannot run: model\.depth=9", text), text
    assert "job 1 failed: model.depth=9" in text
    assert proc.stderr.strip().splitlines()[-1] == (
        "resnet-exp: error: 1 of 2 jobs of this sweep did not complete (job 1); the summary above says why")
    (summary,) = summaries(out).values()
    assert summary["status"] == "completed" and summary["depth"] == 8
    assert summary["provenance"]["threads"] == max(sweep.cpu_count() // 2, 1)


def test_a_sweep_ends_with_its_jobs_by_status_their_errors_and_the_figure_command(
    mixed_sweep: tuple[subprocess.CompletedProcess, Path],
) -> None:
    proc, out = mixed_sweep
    ((completed, done),) = summaries(out).items()
    failed = next(out.glob("1_*")).name
    errors = f"train error {done['final_train_error']:.2f}%, test error {done['final_test_error']:.2f}%"
    # the earlier launch's job 2 is not this launch's, so it is not counted
    assert re.search(r"\] sweep of 2 jobs ended, wall time \d+ s: 1 completed, 1 failed\n"
                     rf"  job 0  {completed} +completed  {re.escape(errors)}\n"
                     rf"  job 1  {failed} +failed +model\.depth=9 is not of the form 6n\+2 [^\n]*\n"
                     rf"  draw the figure: resnet-exp-report {re.escape(str(out))}\n", proc.stdout), proc.stdout
    assert "2_earlier_seed0" not in proc.stdout


def test_a_sweep_describes_its_runs_for_tensorboards_hparams_page(
    mixed_sweep: tuple[subprocess.CompletedProcess, Path],
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    _, out = mixed_sweep
    events = EventAccumulator(str(out / "hparams"))
    events.Reload()
    content = events.PluginTagToContent("hparams")["_hparams_/experiment"]
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content).experiment
    assert [info.name for info in experiment.hparam_infos][:2] == ["model", "model.depth"]


def test_each_job_of_a_parallel_sweep_says_first_which_of_how_many(
    mixed_sweep: tuple[subprocess.CompletedProcess, Path],
) -> None:
    assert_each_job_says_first_which_of_how_many(mixed_sweep[1], 2)


def test_a_sweep_whose_every_launched_job_fails_says_so_without_the_others(tmp_path: Path) -> None:
    """Both jobs diverge, which no check before the first can know; jobs one after another (the basic launcher)."""
    out = tmp_path / "sweep"
    proc = run_cli(*SWEEP, "optim.lr=1e10", "seed=0,1", f"hydra.sweep.dir={out}", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "resnet-exp: error: 2 of 2 jobs of this sweep did not complete (job 0, 1); the summary above says why")
    assert "the others" not in proc.stderr
    assert re.search(r"\] sweep of 2 jobs ended, wall time \d+ s: 2 diverged\n"
                     r"  job 0  0_\S+  diverged  training loss became nan", proc.stdout), proc.stdout
    assert_each_job_says_first_which_of_how_many(out, 2)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible here, so trainer.device=cuda runs")
def test_a_sweep_on_a_gpu_this_machine_lacks_stops_before_its_first_job_with_one_line(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    on_cpu = [o for o in SWEEP if not o.startswith("trainer.device")]
    proc = run_cli(*on_cpu, "trainer.device=cuda", "model=resnet20,plain20", f"hydra.sweep.dir={out}", cwd=tmp_path)
    assert proc.returncode == 2
    text = proc.stdout + proc.stderr
    assert "Warning" not in text and "warnings.warn" not in text, text
    assert text.strip().splitlines() == [
        "resnet-exp: error: every job of this sweep would fail, so none is started: trainer.device=cuda but no CUDA "
        "device is visible; use trainer.device=cpu"]
    assert not out.exists()


def test_a_user_error_while_a_sweep_is_predicted_is_one_line_not_hydras_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """Hydra turns an exception raised in a callback into a warning and goes on; a user error must end the sweep
    there with its one line."""
    def refuse(*args: object) -> None:
        raise ConfigError("trainer.batch_size=4096 does not fit; accepted: at most 1024")

    monkeypatch.setattr(sweep, "forecast_sweep", refuse)
    with initialize_config_module("resnet_exp.configs", version_base="1.3"):
        cfg = compose("config", overrides=[*FAST, f"hydra.sweep.dir={tmp_path / 'sweep'}"], return_hydra_config=True)
        with pytest.raises(SystemExit) as stopped, warnings.catch_warnings():
            warnings.simplefilter("error")  # Hydra's warning, were it given, fails the test here
            Callbacks(cfg).on_multirun_start(config=cfg)
    assert stopped.value.code == 2
    assert capsys.readouterr().err == (
        "resnet-exp: error: trainer.batch_size=4096 does not fit; accepted: at most 1024\n")
