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


class Submitted(Exception):
    """Stops a SLURM sweep where submitit would call sbatch."""


def test_slurm_sweep_asks_for_one_gpu_per_job_and_warns_before_the_time_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch script that the slurm launcher config makes submitit hand to sbatch for a two-job sweep. Nothing
    reaches SLURM, so it runs on any machine: SLURM's commands are taken off PATH, and submitit's executor, which
    refuses to be built where `srun` is missing, is told a job's CPUs instead of asking srun."""
    from hydra.utils import instantiate
    from submitit.slurm.slurm import SlurmExecutor

    from resnet_exp.training.signals import SIGNALS

    monkeypatch.setenv("PATH", str(tmp_path / "no-slurm"))
    monkeypatch.setattr(SlurmExecutor, "affinity", classmethod(lambda cls: 2))
    submitted: dict = {}

    def submit(executor: SlurmExecutor, command: str) -> None:
        submitted["script"] = executor._make_submission_file_text(command, "test")
        submitted["requeues"] = executor.max_num_timeout
        raise Submitted

    monkeypatch.setattr(SlurmExecutor, "_submit_command", submit)
    cfg = compose_config("hydra/launcher=slurm", "hydra.launcher.partition=gpu", f"hydra.sweep.dir={tmp_path}",
                         "hydra.launcher.setup=[source .venv/bin/activate]", hydra=True)
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=None, config=cfg)
    with pytest.raises(Submitted):
        launcher.launch([["model=plain20"], ["model=resnet20"]], initial_job_idx=0)
    sbatch = {line.removeprefix("#SBATCH ") for line in submitted["script"].splitlines() if line.startswith("#SBATCH")}
    assert {"--partition=gpu", "--nodes=1", "--ntasks-per-node=1", "--gpus-per-node=1", "--cpus-per-task=8",
            "--mem=32GB", "--time=240", "--array=0-1%2"} <= sbatch
    # SLURM warns with USR2 two minutes before the limit; the trainer checkpoints on it, submitit requeues the job.
    assert "--signal=USR2@120" in sbatch and signal.SIGUSR2 in SIGNALS
    assert submitted["requeues"] == 5
    assert f"--output={tmp_path}/.submitit/%A_%a/%A_%a_0_log.out" in sbatch  # the logs go into the sweep dir
    assert "# setup\nsource .venv/bin/activate\n" in submitted["script"]


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
