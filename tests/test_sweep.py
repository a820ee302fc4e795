"""A sweep before and after its jobs: the checks and the forecast at its start, the jobs at once and their threads,
and user errors as one line per job."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

import resnet_exp.cli  # noqa: F401  (registers the jobs_at_once resolver, as running resnet-exp does)
from resnet_exp import sweep
from tests.conftest import FAST, compose_config, run_cli

SWEEP = ["-m", *FAST, "trainer.max_iters=4", "trainer.eval_every=2"]


def summaries(sweep_dir: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/summary.json"))}


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


def test_a_failing_job_is_one_line_and_the_others_run_with_their_share_of_the_cores(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    proc = run_cli(*SWEEP, "model.depth=8,9", "hydra/launcher=parallel", f"hydra.sweep.dir={out}", cwd=tmp_path)
    assert proc.returncode == 1
    text = proc.stderr + proc.stdout
    assert "Traceback" not in text and "HYDRA_FULL_ERROR" not in text and "Error executing" not in text, text
    assert re.search(r"job 1 \([^)]*model\.depth=9[^)]*\) cannot run: model\.depth=9", text), text
    assert "job 1 failed: model.depth=9" in text
    assert proc.stderr.strip().splitlines()[-1] == (
        "resnet-exp: error: 1 job of this sweep failed (job 1; each said why above); the others ran")
    (summary,) = summaries(out).values()
    assert summary["status"] == "completed" and summary["depth"] == 8
    assert summary["provenance"]["threads"] == max(sweep.cpu_count() // 2, 1)
