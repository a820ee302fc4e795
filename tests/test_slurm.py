"""Sweeps on a real SLURM cluster through `hydra/launcher=slurm`: the README's command gives the same table as
the same sweep run here, and a requeue (what a preemption does), a time limit and a killed job lose nothing.

The tests marked `slurm` need a cluster answering `sinfo` on this machine (`scripts/slurm_local.sh start` sets up
a one-node one; conftest.py skips them without one, and fails them in CI). Their jobs write into this machine's
temporary folders, so the cluster's node must be this machine. SLURM acts on signals and limits about every 30 s
and submitit polls job states ever more slowly, so the waits here allow minutes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import FAST, compose_config, finish, run_cli, start_cli
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator
from test_reliability import RUN, comparable, uninterrupted  # noqa: F401  (the fixture, shared)

from resnet_exp import sweep
from resnet_exp.board import TAGS

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")

DETERMINISTIC = "trainer.deterministic=true"


@pytest.fixture(scope="module", autouse=True)
def one_thread_a_process() -> Iterator[None]:
    """One thread in every process here and in the cluster's jobs (sbatch passes the environment on). A job asks
    for one CPU but sees all of them where the node does not bind CPUs (as on the local cluster), so two jobs at
    once would each start a thread per core and slow each other many times over; and the deterministic runs
    compared here must run on as many threads as their references to be bitwise equal."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        yield


def slurm(partition: str | None = None, timeout_min: int = 5, *more: str) -> list[str]:
    """`hydra/launcher=slurm` as a user sets it, sized for this machine: the cluster's default partition (or
    `partition`), no GPU, one CPU and 1 GB a job, where the config asks for a GPU node's 8 CPUs and 32 GB."""
    return ["hydra/launcher=slurm", f"hydra.launcher.partition={partition or default_partition()}",
            "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
            f"hydra.launcher.timeout_min={timeout_min}", *more]


def default_partition() -> str:
    listed = subprocess.run(["sinfo", "--noheader", "--format=%P"], capture_output=True, text=True, check=True)
    names = listed.stdout.split()
    return next((name.rstrip("*") for name in names if name.endswith("*")), names[0])


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout_s:.0f} s for {what}")
        time.sleep(0.2)


def slurm_job(sweep_dir: Path, index: int) -> str:
    """The SLURM id of the sweep's job `index`, from the folder submitit makes for the job's pickle: named
    "<array>_<index>" in a sweep of several jobs (a job array), the job's own id in a sweep of one."""
    found: list[str] = []

    def submitted() -> bool:
        names = [p.parent.name for p in (sweep_dir / ".submitit").glob("*/*_submitted.pkl")]
        found[:] = [n for n in names if re.fullmatch(rf"\d+_{index}", n) or (index == 0 and n.isdigit())]
        return bool(found)

    wait_until(submitted, 60, f"job {index} of {sweep_dir} to be submitted")
    return found[0]


def job_record(job: str) -> dict[str, str]:
    """What `scontrol show job` says of a job (JobState, Restarts, ...); for a finished one as long as the cluster
    keeps it (MinJobAge)."""
    shown = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, check=True).stdout
    return dict(re.findall(r"(\w+)=(\S*)", shown))


def job_log(sweep_dir: Path, job: str) -> str:
    """The job's own stdout and stderr, as submitit collected them over all its starts."""
    return "".join(p.read_text() for p in sorted((sweep_dir / ".submitit" / job).glob("*_log.*")))


def assert_every_point_once(run_dir: Path, max_iters: int, eval_every: int) -> None:
    """Nothing lost, nothing repeated: metrics.jsonl and TensorBoard hold each evaluation once and in order, and
    TensorBoard the lr of every progress read (`trainer.log_every=5`, FAST's), over however many starts."""
    evaluated = list(range(eval_every, max_iters + 1, eval_every))
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in lines] == evaluated
    events = EventAccumulator(str(run_dir), size_guidance={SCALARS: 0})
    events.Reload()
    for tag in (TAGS["train/error"], TAGS["test/error"], TAGS["epoch"]):
        assert [e.step for e in events.Scalars(tag)] == evaluated, tag
    assert [e.step for e in events.Scalars(TAGS["lr"])] == list(range(5, max_iters + 1, 5))


def report(*run_dirs: Path, out: Path) -> subprocess.CompletedProcess:
    """`resnet-exp-report` over `run_dirs`, its table written to `out`.md."""
    cmd = [sys.executable, "-m", "resnet_exp.report.cli", *map(str, run_dirs), "--out", str(out.with_suffix(".png"))]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


@pytest.mark.slurm
def test_a_sweep_through_slurm_reports_the_same_table_as_the_sweep_run_here(tmp_path: Path) -> None:
    grid = [*FAST, "model=plain20,resnet20", "model.depth=8,14", "trainer.max_iters=20", "trainer.eval_every=10",
            DETERMINISTIC]
    there, here = tmp_path / "slurm", tmp_path / "here"
    submitted = start_cli("-m", *slurm(), *grid, f"hydra.sweep.dir={there}", cwd=tmp_path)
    ran_here = run_cli("-m", *grid, f"hydra.sweep.dir={here}", cwd=tmp_path, timeout=600)  # meanwhile, here
    ran_there = finish(submitted, timeout=600)
    assert ran_here.returncode == 0, ran_here.stderr
    assert ran_there.returncode == 0, ran_there.stderr
    statuses = sorted((json.loads(p.read_text())["model"], json.loads(p.read_text())["status"])
                      for p in there.glob("*/summary.json"))
    assert statuses == [(m, "completed") for m in ("plain14", "plain8", "resnet14", "resnet8")]
    report(there, out=tmp_path / "there")
    report(here, out=tmp_path / "here")
    table = (tmp_path / "there.md").read_text()
    assert table == (tmp_path / "here.md").read_text()
    assert table.count("| synthetic |") == 4


@pytest.mark.slurm
def test_a_requeued_job_resumes_to_the_uninterrupted_result(tmp_path: Path, uninterrupted: tuple) -> None:  # noqa: F811
    """`scontrol requeue` is what a preemption with requeue does: SIGTERM, and the job back in the queue."""
    sweep_dir = tmp_path / "sweep"
    run_dir = sweep_dir / "0_resnet8_seed0"
    submitted = start_cli("-m", *slurm(), *RUN, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    job = slurm_job(sweep_dir, 0)
    wait_until((run_dir / "checkpoints" / "last.pt").exists, 180, "the job's first checkpoint")
    subprocess.run(["scontrol", "requeue", job], check=True)
    done = finish(submitted, timeout=300)
    assert done.returncode == 0, done.stderr
    assert job_record(job)["Restarts"] == "1"
    assert "stopped by SIGTERM at iteration" in job_log(sweep_dir, job)
    assert comparable(run_dir) == uninterrupted


@pytest.mark.slurm
def test_a_job_past_its_time_limit_checkpoints_on_usr2_is_requeued_and_completes(tmp_path: Path) -> None:
    """A 3-minute limit and USR2 60 s before it. SLURM may send the signal up to 60 s earlier than asked (sbatch's
    --signal), so each start of the job trains for 60 to 120 s; with a 1-minute limit the signal sometimes came
    before Python had started, and killed the job. The run (about 150 s of training on an idle 2-core machine,
    longer on a busy one) needs at least one requeue. submitit counts each as a time-out (limits under 10
    minutes), hence the test's larger max_num_timeout."""
    sweep_dir = tmp_path / "sweep"
    run_dir = sweep_dir / "0_resnet8_seed0"
    long_run = [*FAST, "trainer.max_iters=16000", "trainer.eval_every=2000", "trainer.batch_size=16",
                "data.train_size=256"]
    limit = slurm(None, 3, "hydra.launcher.signal_delay_s=60", "hydra.launcher.max_num_timeout=20")
    done = run_cli("-m", *limit, *long_run, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr
    job = slurm_job(sweep_dir, 0)
    assert int(job_record(job)["Restarts"]) >= 1, "the run ended before its USR2: make it longer for this machine"
    assert "stopped by SIGUSR2, checkpoint saved" in (run_dir / "cli.log").read_text()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["status"], summary["iterations"]) == ("completed", 16000)
    assert_every_point_once(run_dir, 16000, 2000)


@pytest.mark.slurm
def test_a_killed_job_leaves_a_resumable_run_that_the_report_lists_as_not_completed(tmp_path: Path) -> None:
    """SIGKILL (what an out-of-memory kill or a lost node does) ends the sweep command with submitit's error; the
    other job runs on, and the same command again resumes the killed run from its last checkpoint."""
    sweep_dir = tmp_path / "sweep"
    killed, other = sweep_dir / "0_plain8_seed0", sweep_dir / "1_resnet8_seed0"
    command = ["-m", *slurm(), *RUN, "model=plain20,resnet20", f"hydra.sweep.dir={sweep_dir}"]
    submitted = start_cli(*command, cwd=tmp_path)
    job = slurm_job(sweep_dir, 0)
    wait_until((killed / "checkpoints" / "last.pt").exists, 180, "the job's first checkpoint")
    holder = (killed / ".lock").read_text().split()  # "process PID on HOST", the process training the run
    os.kill(int(holder[1]), signal.SIGKILL)
    done = finish(submitted, timeout=300)
    assert done.returncode != 0
    assert f"Job {job} (task: 0)" in done.stderr and "state: FAILED" in done.stderr, done.stderr
    wait_until(lambda: job_record(slurm_job(sweep_dir, 1))["JobState"] == "COMPLETED", 180, "the other job")
    assert json.loads((other / "summary.json").read_text())["status"] == "completed"  # it ran on
    listed = report(sweep_dir, out=tmp_path / "report")
    assert "runs: 1 completed, 1 running" in listed.stderr + listed.stdout
    assert re.search(rf"{killed}.*plain8 seed 0, \d+/150 iterations", listed.stderr + listed.stdout)
    again = run_cli(*command, cwd=tmp_path, timeout=300)
    assert again.returncode == 0, again.stderr
    assert re.search(r"resumed from .* at iteration [1-9]", (killed / "cli.log").read_text())
    assert [json.loads((d / "summary.json").read_text())["status"] for d in (killed, other)] == ["completed"] * 2
    assert_every_point_once(killed, 150, 30)


@pytest.mark.slurm
def test_a_partition_the_cluster_lacks_is_one_line_naming_what_sinfo_offers(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    proc = run_cli("-m", *slurm("no-such-partition"), *FAST, "trainer.max_iters=2", f"hydra.sweep.dir={sweep_dir}",
                   cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "resnet-exp: error: hydra.launcher.partition=no-such-partition: this cluster has no partition "
        f"'no-such-partition'; sinfo offers: {', '.join(sweep.slurm_partitions())}")
    assert "Traceback" not in proc.stderr and not (sweep_dir / ".submitit").exists()


@pytest.mark.parametrize(("partition", "expected"), [
    ("gpu", None),
    ("null", None),  # SLURM's default partition
    ("a100", "hydra.launcher.partition=a100: this cluster has no partition 'a100'; sinfo offers: cpu, gpu"),
    ('"gpu,a100"', "hydra.launcher.partition=gpu,a100: this cluster has no partition 'a100'; sinfo offers: cpu, gpu"),
])
def test_the_sweep_start_checks_the_partition_against_sinfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            partition: str, expected: str | None) -> None:
    """Without a cluster: a stand-in sinfo listing two partitions (one of them on two lines, as sinfo lists a
    partition per node state)."""
    fake = tmp_path / "sinfo"
    fake.write_text("#!/bin/sh\nprintf 'cpu\\ngpu\\ngpu\\n'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    launcher = compose_config("hydra/launcher=slurm", f"hydra.launcher.partition={partition}", hydra=True)
    assert sweep.check_cluster(launcher.hydra.launcher) == expected


def test_a_slurm_sweep_without_slurm_commands_says_where_to_run_it(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    launcher = compose_config("hydra/launcher=slurm", hydra=True).hydra.launcher
    assert sweep.check_cluster(launcher) == (
        "hydra/launcher=slurm submits its jobs with SLURM's sbatch, but SLURM's sinfo is not on this machine's "
        "PATH; run the sweep where SLURM's commands are (the cluster's login node)")
    assert sweep.check_cluster(compose_config("hydra/launcher=parallel", hydra=True).hydra.launcher) is None
