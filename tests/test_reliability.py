"""Runs survive kills and signals: resume to identical results, clean stops, clear errors."""

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import FAST, finish, run_cli, start_cli

from resnet_exp.training.checkpoint import load_checkpoint
from resnet_exp.training.signals import StopRequests

RUN = [*FAST, "trainer.max_iters=150", "trainer.eval_every=30", "trainer.deterministic=true",
       "trainer.batch_size=16", "data.train_size=256"]


def weights_hash(run_dir: Path) -> str:
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]
    digest = hashlib.sha256()
    for name, tensor in state.items():
        digest.update(name.encode() + tensor.numpy().tobytes())
    return digest.hexdigest()


def comparable(run_dir: Path) -> tuple[dict, str, str]:
    summary = json.loads((run_dir / "summary.json").read_text())
    for timing in ("wall_time_s", "predicted_wall_time_s", "started_at", "finished_at"):
        summary.pop(timing, None)  # the forecast, where the run had steps enough to time, and the times
    return summary, (run_dir / "metrics.jsonl").read_text(), weights_hash(run_dir)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, str]:
    run_dir = tmp_path_factory.mktemp("whole") / "run"
    proc = run_cli(*RUN, f"hydra.run.dir={run_dir}", cwd=run_dir.parent)
    assert proc.returncode == 0, proc.stderr
    return comparable(run_dir)


def start_and_signal(run_dir: Path, sig: int, after_checkpoint: bool) -> subprocess.CompletedProcess:
    """Start a run, send `sig` once it has trained (past its first checkpoint if asked), wait for it."""
    proc = start_cli(*RUN, f"hydra.run.dir={run_dir}", cwd=run_dir.parent)
    marker = run_dir / ("checkpoints/last.pt" if after_checkpoint else "summary.json")
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(sig)
    return finish(proc, timeout=120)


def test_sigkill_after_checkpoint_then_resume_gives_identical_results(tmp_path: Path, uninterrupted) -> None:
    run_dir = tmp_path / "run"
    killed = start_and_signal(run_dir, signal.SIGKILL, after_checkpoint=True)
    assert killed.returncode == -signal.SIGKILL
    assert 0 < load_checkpoint(run_dir / "checkpoints" / "last.pt")["iteration"] < 150
    resumed = run_cli(*RUN, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert comparable(run_dir) == uninterrupted


def test_sigterm_checkpoints_mid_interval_and_resumes_identically(tmp_path: Path, uninterrupted) -> None:
    run_dir = tmp_path / "run"
    stopped = start_and_signal(run_dir, signal.SIGTERM, after_checkpoint=False)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr
    assert "stopped by SIGTERM at iteration" in stopped.stderr
    assert f"hydra.run.dir={run_dir}" in stopped.stderr
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["iterations"] == state["iteration"] < 150
    # A crash during a later checkpoint write leaves only a temporary file, which resume never reads.
    (run_dir / "checkpoints" / "last.pt.tmp").write_bytes(b"half a checkpoint")
    resumed = run_cli(*RUN, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert comparable(run_dir) == uninterrupted


def test_first_signal_is_recorded_second_ctrl_c_interrupts() -> None:
    with StopRequests() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signum == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)


def test_signal_is_passed_on_to_the_previous_handler() -> None:
    received = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: received.append(signum))
    try:
        with StopRequests() as stop:
            os.kill(os.getpid(), signal.SIGUSR1)
        assert received == []  # ours ran, not the previous one
        stop.pass_on()
        assert received == [signal.SIGUSR1]
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_truncated_checkpoint_through_the_cli_is_one_clear_line(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert run_cli(*FAST, "trainer.max_iters=2", "trainer.eval_every=2", f"hydra.run.dir={run_dir}",
                   cwd=tmp_path).returncode == 0
    path = run_dir / "checkpoints" / "last.pt"
    path.write_bytes(path.read_bytes()[:1000])
    proc = run_cli(*FAST, "trainer.max_iters=4", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 2
    assert "last.pt' cannot be read" in proc.stderr and "trainer.resume=false" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0


def test_divergence_in_a_sweep_fails_that_job_only(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", *FAST, "optim.lr=1e30,0.1", "trainer.max_iters=20", "trainer.eval_every=10",
                   f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode != 0
    statuses = sorted(json.loads(p.read_text())["status"] for p in sweep.glob("*/summary.json"))
    assert statuses == ["completed", "diverged"]
    assert "training loss became" in proc.stderr + proc.stdout


def test_deterministic_switch_enables_deterministic_algorithms(tmp_path: Path) -> None:
    from resnet_exp.run import configure_torch

    try:
        configure_torch(deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        configure_torch(deterministic=False)
    assert not torch.are_deterministic_algorithms_enabled()
