"""Hydra's private API behind one module (hydra_internals.py): a sweep expanded and its jobs composed as Hydra's
basic sweeper does, and, on a hydra-core version that use was not checked on, a refusal in one line before any job
starts."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import hydra
import pytest
import torch
from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig

import resnet_exp.cli  # noqa: F401  (registers the jobs_at_once resolver, as running resnet-exp does)
from resnet_exp import hydra_internals, sweep
from resnet_exp.errors import UserError
from tests.conftest import FAST

JOBS = [["model=resnet20", "seed=0"], ["model=resnet20", "seed=1"], ["model=plain20", "seed=0"],
        ["model=plain20", "seed=1"]]


def refusal(version: str) -> str:
    return (f"hydra-core {version} is not a version resnet-exp's sweep checks were verified on; accepted: hydra-core "
            "1.3.2 or a later 1.3.x (pip install 'hydra-core>=1.3.2,<1.4')")


@contextmanager
def multirun_config(*overrides: str) -> Iterator[DictConfig]:
    """The config `resnet-exp -m <overrides>` starts its sweep with (comma lists unexpanded, Hydra's node kept),
    composed as Hydra's multirun composes it, with Hydra initialized as it is while the sweep's callbacks run."""
    with initialize_config_module("resnet_exp.configs", version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        yield loader.load_configuration("config", list(overrides), run_mode=RunMode.MULTIRUN)


def test_a_sweep_expands_into_its_jobs_in_hydras_launch_order() -> None:
    parsed = OverridesParser.create().parse_overrides(["model=resnet20,plain20", "seed=0,1"])
    assert hydra_internals.expand_sweep(parsed) == JOBS
    with multirun_config("model=resnet20,plain20", "seed=0,1") as cfg:
        assert cfg.hydra.sweeper._target_ == hydra_internals.BASIC_SWEEPER == sweep.BASIC_SWEEPER
        assert sweep.job_overrides(cfg) == JOBS


def test_each_job_is_composed_with_its_own_overrides_as_the_sweeper_will() -> None:
    with multirun_config("model=resnet20,plain20", "seed=0,1") as cfg:
        jobs = [hydra_internals.compose_job(cfg, job) for job in JOBS]
        assert sweep.compose_jobs(cfg) == (JOBS, jobs)
    assert [(job.model.residual, job.model.depth, job.seed) for job in jobs] == [
        (True, 20, 0), (True, 20, 1), (False, 20, 0), (False, 20, 1)]
    assert [list(job.hydra.overrides.task) for job in jobs] == JOBS


def test_the_class_paths_are_hydras_basic_sweeper_and_launcher() -> None:
    from hydra._internal.core_plugins.basic_launcher import BasicLauncher
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    assert f"{BasicSweeper.__module__}.{BasicSweeper.__qualname__}" == hydra_internals.BASIC_SWEEPER
    assert f"{BasicLauncher.__module__}.{BasicLauncher.__qualname__}" == hydra_internals.BASIC_LAUNCHER


@pytest.mark.parametrize("version", ["1.3.2", "1.3.8", "1.3.10"])
def test_a_checked_hydra_core_version_is_accepted(monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    monkeypatch.setattr(hydra, "__version__", version)
    hydra_internals.check_version()


@pytest.mark.parametrize("version", ["1.4.0", "1.3.1", "1.4.0.dev9", "2.0.0", "not-a-version"])
def test_another_hydra_core_version_is_refused_in_one_line_naming_it(monkeypatch: pytest.MonkeyPatch,
                                                                     version: str) -> None:
    monkeypatch.setattr(hydra, "__version__", version)
    with pytest.raises(UserError) as refused:
        hydra_internals.check_version()
    assert str(refused.value) == refusal(version)


@pytest.mark.parametrize("version", ["1.4.0", "1.3.1"])
def test_each_use_of_the_private_api_refuses_another_hydra_core_version(monkeypatch: pytest.MonkeyPatch,
                                                                       version: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # jobs_at_once counts the jobs only on a CPU
    parsed = OverridesParser.create().parse_overrides(["model=resnet20,plain20", "seed=0,1"])
    with multirun_config("model=resnet20,plain20", "seed=0,1", "hydra/launcher=parallel") as cfg:
        monkeypatch.setattr(hydra, "__version__", version)
        uses = {
            "expand_sweep": lambda: hydra_internals.expand_sweep(parsed),
            "compose_job": lambda: hydra_internals.compose_job(cfg, JOBS[0]),
            "job_overrides": lambda: sweep.job_overrides(cfg),
            "compose_jobs": lambda: sweep.compose_jobs(cfg),
            "jobs_at_once": lambda: sweep.jobs_at_once(cfg),
        }
        for name, use in uses.items():
            with pytest.raises(UserError) as refused:
                use()
            assert str(refused.value) == refusal(version), name


def test_another_sweeper_needs_no_private_api_so_any_version_goes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hydra, "__version__", "1.4.0")
    with multirun_config("seed=0,1", "hydra.sweeper._target_=some.other.Sweeper") as cfg:
        assert sweep.job_overrides(cfg) is None and sweep.compose_jobs(cfg) is None


LAUNCH_WITH_VERSION = """
import sys
import hydra
hydra.__version__ = sys.argv[1]
import resnet_exp.cli
sys.argv = [resnet_exp.cli.__file__, *sys.argv[2:]]
resnet_exp.cli.main()
"""


def test_a_sweep_on_another_hydra_core_version_is_refused_in_one_line_before_any_job(tmp_path: Path) -> None:
    """`resnet-exp -m` as a user runs it, with hydra-core saying it is 1.4.0; the parallel launcher, whose n_jobs
    (jobs_at_once) also expands the sweep, must not be reached first."""
    out = tmp_path / "sweep"
    args = ["-m", *FAST, "trainer.max_iters=4", "model=resnet20,plain20", "hydra/launcher=parallel",
            f"hydra.sweep.dir={out}"]
    proc = subprocess.run([sys.executable, "-c", LAUNCH_WITH_VERSION, "1.4.0", *args], cwd=tmp_path,
                          env={**os.environ, "HYDRA_FULL_ERROR": "0"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [f"resnet-exp: error: {refusal('1.4.0')}"], proc.stderr
    assert "job 0" not in proc.stdout and "Traceback" not in proc.stdout, proc.stdout
    assert not out.exists()
