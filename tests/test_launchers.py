"""Sweeps through Hydra's launcher plugins: submitit (local processes, SLURM config) and joblib."""

import json
import signal
from pathlib import Path

import pytest
from conftest import FAST, compose_config, run_cli
from test_reliability import RUN, start_and_signal

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
pytest.importorskip("hydra_plugins.hydra_joblib_launcher")

TINY = [*FAST, "model=plain20,resnet20", "model.depth=8", "trainer.max_iters=4", "trainer.eval_every=2"]


def summaries(sweep: Path) -> list[dict]:
    return sorted((json.loads(p.read_text()) for p in sweep.glob("*/summary.json")), key=lambda s: s["model"])


def test_submitit_local_runs_both_jobs_into_the_sweep_dir(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "hydra/launcher=local", *TINY, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [(s["model"], s["status"]) for s in summaries(sweep)] == [("plain8", "completed"), ("resnet8", "completed")]
    assert all((d / "metrics.jsonl").is_file() and (d / "checkpoints" / "last.pt").is_file()
               for d in sweep.iterdir() if d.name[0].isdigit())


def test_joblib_runs_two_jobs_at_once(tmp_path: Path) -> None:
    """Both jobs reach a barrier at their start only if two worker processes run them at the same time."""
    sweep, arrivals = tmp_path / "sweep", tmp_path / "arrivals"
    barrier = ["+hydra.callbacks.barrier._target_=barrier.Barrier", f"+hydra.callbacks.barrier.folder={arrivals}",
               "+hydra.callbacks.barrier.parties=2", "+hydra.callbacks.barrier.timeout_s=120"]
    proc = run_cli("-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", *TINY, *barrier,
                   f"hydra.sweep.dir={sweep}", cwd=tmp_path, env={"PYTHONPATH": str(Path(__file__).parent)})
    assert proc.returncode == 0, proc.stderr
    assert len(list(arrivals.glob("*.met"))) == 2, sorted(p.name for p in arrivals.iterdir())
    assert [s["status"] for s in summaries(sweep)] == ["completed", "completed"]


def test_slurm_launcher_composes_with_one_gpu_per_job() -> None:
    launcher = compose_config("hydra/launcher=slurm", "hydra.launcher.partition=gpu", hydra=True).hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.tasks_per_node, launcher.nodes) == ("gpu", 1, 1, 1)
    assert launcher.timeout_min > 0 and launcher.mem_gb > 0 and launcher.cpus_per_task > 0
    assert launcher.signal_delay_s >= 60 and launcher.max_num_timeout > 0


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGUSR2])
def test_preemption_signal_leaves_a_checkpoint_that_a_rerun_resumes(tmp_path: Path, sig: int) -> None:
    run_dir = tmp_path / "run"
    stopped = start_and_signal(run_dir, sig, after_checkpoint=False)
    assert stopped.returncode == 128 + sig, stopped.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    resumed = run_cli(*RUN, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"at iteration {summary['iterations']}" in (run_dir / "cli.log").read_text()
    assert json.loads((run_dir / "summary.json").read_text())["iterations"] == 150
