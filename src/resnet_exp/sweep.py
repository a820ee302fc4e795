"""A sweep before its first job and after its last: its jobs, whether they can run, how many run at once, how long
it will take; and how it ended.

`SweepStart` is a Hydra callback (configs/config.yaml, `hydra.callbacks`). At the start of a multirun it composes
every job's config as Hydra's basic sweeper will (through Hydra's private API, used only in hydra_internals.py and
only on the hydra-core versions it was checked on: on another the sweep stops there, with one line), checks each
one (a sweep whose every job would fail stops there, with one line), and logs the predicted wall time of the whole
sweep: each distinct net shape timed once (forecast.py) with the threads a job will have, and the jobs placed on the
launcher's workers in launch order.
`jobs_at_once` is the resolver behind `hydra/launcher=parallel`'s `n_jobs`. A SLURM sweep (`hydra/launcher=slurm`)
first asks `sinfo` whether the cluster answers and has the partition it names: otherwise sbatch's refusal would
come from inside submitit, as a traceback, after every job had been composed. A user error found there is one
line (exit code 2), never Hydra's warning for an exception raised in a callback.

At the sweep's end it prints the summary of this launch's jobs (launch.py) and exits with 1 where any did not
complete.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NoReturn

import joblib
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from resnet_exp.building import build
from resnet_exp.composition import one_line
from resnet_exp.errors import UserError
from resnet_exp.forecast import Cost, makespan, run_seconds
from resnet_exp.hydra_internals import BASIC_LAUNCHER, BASIC_SWEEPER, compose_job, expand_sweep
from resnet_exp.launch import Launch, describe, describe_for_tensorboard, launched_jobs, plural, sweep_summary
from resnet_exp.run import check_run, step_cost
from resnet_exp.rundir import lock_run_dir
from resnet_exp.runlog import format_duration

log = logging.getLogger("resnet_exp")
JOBLIB_LAUNCHER = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
SLURM_LAUNCHER = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
NONE_STARTED = "every job of this sweep would fail, so none is started: "


def stop(message: str, code: int) -> NoReturn:
    """End the sweep with `message` as one line. Raised from a callback, an exception would not end it: Hydra turns
    it into a warning and goes on."""
    print(f"resnet-exp: error: {message}", file=sys.stderr)
    sys.exit(code)


def job_overrides(config: DictConfig) -> list[list[str]] | None:
    """Each job's overrides, in launch order, as Hydra's basic sweeper expands the sweep's params and the command
    line; None for another sweeper (its jobs are not known in advance). Raises UserError on a hydra-core version
    whose private API was not checked (hydra_internals.py)."""
    if config.hydra.sweeper._target_ != BASIC_SWEEPER:
        return None
    # As given: read through the config, `model.zero_init_residual=${model.residual}` would arrive resolved against
    # the sweep's own config (its default model), not the job's.
    given = OmegaConf.to_container(config.hydra, resolve=False)
    params = [f"{key}={value}" for key, value in (given["sweeper"].get("params") or {}).items()]
    parsed = OverridesParser.create().parse_overrides([*params, *given["overrides"]["task"]])
    return expand_sweep(parsed)


def cpu_count() -> int:
    """The CPUs this process may use (affinity and container quotas included), as joblib counts them when it
    gives each worker cpu_count // n_jobs threads."""
    return joblib.cpu_count()


def jobs_at_once(_root_: DictConfig) -> int:
    """`n_jobs` of `hydra/launcher=parallel`: one job per visible GPU; on a CPU one job per core, at most one per
    job of the sweep, so that joblib gives each the cores // jobs threads and no core idles. On a hydra-core version
    whose private API was not checked it raises that UserError (job_overrides) rather than guess: in a sweep it is
    never reached then, as Hydra resolves `n_jobs` only when it builds the launcher, after `SweepStart` has refused
    the sweep in one line."""
    if torch.cuda.is_available():
        return torch.cuda.device_count()
    jobs = job_overrides(_root_)
    return max(1, min(cpu_count(), len(jobs) if jobs else cpu_count()))


def workers_and_threads(launcher: DictConfig) -> tuple[int, int] | None:
    """(jobs at once, threads of each) for launchers that run the jobs on this machine; None for the others."""
    if launcher._target_ == BASIC_LAUNCHER:
        return 1, torch.get_num_threads()
    if launcher._target_ == JOBLIB_LAUNCHER:
        n = int(launcher.n_jobs)
        workers = n if n > 0 else max(cpu_count() + 1 + n, 1)  # joblib's negative n_jobs: all CPUs but |n| - 1
        threads = int(os.environ.get("OMP_NUM_THREADS", max(cpu_count() // workers, 1)))
        return workers, threads
    return None


def compose_jobs(config: DictConfig) -> tuple[list[list[str]], list[DictConfig]] | None:
    """Each job's overrides and config, composed as the sweeper will compose them; None for another sweeper. Raises
    UserError on a hydra-core version whose private API was not checked (hydra_internals.py)."""
    overrides = job_overrides(config)
    if overrides is None:
        return None
    return overrides, [compose_job(config, job) for job in overrides]


@dataclass
class SweepForecast:
    """The predicted wall time of a sweep's jobs, each and all, on this machine."""

    jobs: list[float]
    total: float
    workers: int
    threads: int
    shapes: int

    def line(self) -> str:
        threads = plural(self.threads, "thread")
        return (f"sweep of {plural(len(self.jobs), 'job')}, {min(self.workers, len(self.jobs))} at a time with "
                f"{threads} each: predicted wall time on this machine {format_duration(self.total)} "
                f"({plural(self.shapes, 'net shape')} timed; jobs {', '.join(format_duration(d) for d in self.jobs)})")


def forecast_sweep(jobs: list[DictConfig], workers: int, threads: int) -> SweepForecast:
    """Time each distinct net shape of `jobs` once, with the threads each job will have, and place the jobs on
    `workers` in launch order."""
    saved = torch.get_num_threads()
    costs: dict[str, Cost] = {}
    durations = []
    try:
        torch.set_num_threads(threads)
        for cfg in jobs:
            shape = shape_key(cfg)
            if shape not in costs:
                costs[shape] = step_cost(cfg)
            durations.append(run_seconds(costs[shape], build(cfg.trainer)))
    finally:
        torch.set_num_threads(saved)
    return SweepForecast(durations, makespan(durations, workers), workers, threads, len(costs))


class SweepStart(Callback):
    """A sweep's start and end. Before the first job starts: every job checked and the sweep's wall time predicted
    (with `predict=true` it stops there), then the launch written for its jobs. At the end: the summary."""

    started = 0.0
    launch: Launch | None = None
    lock: IO[str] | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.monotonic()
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            jobs = check_sweep(config)
            if config.get("predict"):
                sys.exit(0)
            if error := check_cluster(config.hydra.launcher):
                raise UserError(error)
            # Held until this process ends: a second launch into this dir would write into its jobs' dirs.
            self.lock = lock_run_dir(sweep_dir, "hydra.sweep.dir")
        except UserError as e:
            stop(str(e), 2)
        except HydraException as e:  # a job's config does not compose (model=resnet20,resnet21): none is launched
            stop(f"a job of this sweep cannot be composed, so none is started: {one_line(e, [])}", 2)
        except Exception:  # a bug: Hydra warns of it and launches the jobs all the same, so the end must count them
            self.launch = Launch.begin(sweep_dir, None)
            raise
        self.launch = Launch.begin(sweep_dir, jobs)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """The summary of this launch's jobs; where any did not complete, one line saying which and exit code 1."""
        if self.launch is None:  # the sweep dir could not be written: its jobs failed as they started, and said so
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        ends = launched_jobs(sweep_dir, self.launch.id)
        log.info("%s", sweep_summary(ends, time.monotonic() - self.started, sweep_dir))
        describe_for_tensorboard(sweep_dir)
        if unfinished := [end.index for end in ends if end.status != "completed"]:
            stop(f"{len(unfinished)} of {plural(len(ends), 'job')} of this sweep did not complete "
                 f"(job {', '.join(map(str, unfinished))}); the summary above says why", 1)


def check_sweep(config: DictConfig) -> int | None:
    """Check every job of the sweep and log the sweep's predicted wall time, before the first job starts; the
    number of jobs, None where the sweeper does not know them in advance. Raises UserError where every job would
    fail."""
    composed = compose_jobs(config)
    if not composed:
        return None
    overrides, jobs = composed
    placement = workers_and_threads(config.hydra.launcher)
    # A job's device and data are checked only where it runs in this process's view of the machine: a cluster's
    # nodes have their own, and submitit's local jobs see only the GPUs its gpus_per_node gives them.
    here = placement is not None
    failures = {index: error for index, cfg in enumerate(jobs) if (error := check_job(cfg, index, here))}
    refuse_failing(failures, overrides)
    if placement is None:
        log.info("sweep of %s: no time predicted for the jobs of %s", plural(len(jobs), "job"),
                 config.hydra.launcher._target_.rsplit(".", 1)[-1])
    else:
        runnable = [cfg for index, cfg in enumerate(jobs) if index not in failures]
        log.info("%s", forecast_sweep(runnable, *placement).line())
    return len(jobs)


def refuse_failing(failures: dict[int, str], overrides: list[list[str]]) -> None:
    """Log why each job of `failures` cannot run (launched all the same, it fails with that line); raise
    UserError where that is every job: its reason where they share one, else the lines above."""
    reasons = set(failures.values())
    every = len(failures) == len(overrides)
    if every and len(reasons) == 1:
        raise UserError(NONE_STARTED + reasons.pop())
    for index, error in failures.items():
        log.error("job %d (%s) cannot run: %s", index, describe(overrides[index]), error)
    if every:
        raise UserError(NONE_STARTED + "see the lines above")


def check_job(cfg: DictConfig, job_index: int, here: bool) -> str | None:
    """Why `cfg`'s run would fail before training (`run.check_run`), None where nothing is found."""
    try:
        check_run(cfg, job_index, here)
    except UserError as e:
        return str(e)
    return None


def slurm_partitions() -> list[str]:
    """The partitions the SLURM cluster of this machine offers, as `sinfo` lists them. Raises UserError where
    SLURM's commands are missing or its controller does not answer."""
    try:
        listed = subprocess.run(["sinfo", "--noheader", "--format=%R"], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise UserError("hydra/launcher=slurm submits its jobs with SLURM's sbatch, but SLURM's sinfo is not on this "
                        "machine's PATH; run the sweep where SLURM's commands are (the cluster's login node)") from None
    except subprocess.TimeoutExpired:
        raise UserError("hydra/launcher=slurm: the SLURM controller did not answer sinfo within 60 s") from None
    if listed.returncode != 0:
        said = (listed.stderr.strip().splitlines() or [f"exit code {listed.returncode}"])[-1]
        raise UserError(f"hydra/launcher=slurm: sinfo failed, so no job can be submitted: {said}")
    return sorted(set(listed.stdout.split()))


def check_cluster(launcher: DictConfig) -> str | None:
    """Why a SLURM sweep cannot be submitted from here (no cluster answers, or it lacks the partition named by
    `hydra.launcher.partition`, a comma list as sbatch takes it); None for other launchers and where all is well.
    Without a partition SLURM chooses its default one, so only the cluster's answer is checked."""
    if launcher._target_ != SLURM_LAUNCHER:
        return None
    try:
        offered = slurm_partitions()
    except UserError as e:
        return str(e)
    wanted = launcher.get("partition")
    missing = [name for name in str(wanted).split(",") if name not in offered] if wanted else []
    if missing:
        return (f"hydra.launcher.partition={wanted}: this cluster has no partition {', '.join(map(repr, missing))}; "
                f"sinfo offers: {', '.join(offered) or 'none'}")
    return None


def shape_key(cfg: DictConfig) -> str:
    """What a step's time depends on: the net, the batch, the compute path and the feeding (not the seed, the lr
    or the schedule)."""
    t = cfg.trainer
    return OmegaConf.to_yaml({
        "model": cfg.model, "batch": t.batch_size, "eval_batch": t.eval_batch_size, "precision": t.precision,
        "channels_last": t.channels_last, "compile": t.compile, "loader": cfg.data.get("loader"),
        "augment": cfg.data.get("augment"), "device": t.device,
    })
