"""`resnet-exp`: the Hydra entry point. Hands the config to `run.train`, and reports user errors as one line
(exit code 2) instead of a traceback. In a sweep each job first says which job of how many it is; a failed job
logs one line and leaves `failure.json` in its dir, and the sweep's summary at its end (sweep.py) counts it and
exits with 1, without Hydra's traceback."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, OmegaConf

from resnet_exp.building import build
from resnet_exp.composition import composing
from resnet_exp.errors import UserError
from resnet_exp.forecast import run_seconds
from resnet_exp.launch import record_failure, start_job
from resnet_exp.run import net_name, step_cost, train
from resnet_exp.runlog import format_duration
from resnet_exp.sweep import jobs_at_once
from resnet_exp.training import Diverged
from resnet_exp.training.signals import Interrupted

log = logging.getLogger("resnet_exp")
OmegaConf.register_new_resolver("jobs_at_once", jobs_at_once, replace=True)  # hydra/launcher=parallel's n_jobs
OmegaConf.register_new_resolver("net_name", net_name, replace=True)  # run dirs named after the net built


def main() -> None:
    """`resnet-exp`: Hydra's entry, with errors of composing the config in one line (composition.py)."""
    composing(run, sys.argv[1:])


@hydra.main(version_base="1.3", config_path="pkg://resnet_exp.configs", config_name="config")
def run(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    job_index = OmegaConf.select(hydra_cfg, "job.num", default=0) or 0
    sweeping = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        if sweeping:
            start_job(Path(hydra_cfg.sweep.dir), run_dir, job_index, list(hydra_cfg.overrides.task))
        if cfg.predict:
            seconds = run_seconds(step_cost(cfg, job_index), build(cfg.trainer))
            log.info("predicted wall time on this machine: %s", format_duration(seconds))
            return None
        return train(cfg, run_dir, job_index, hydra_files(cfg))["final_test_error"]
    except Interrupted as e:
        print(f"resnet-exp: {e}", file=sys.stderr)
        sys.exit(128 + e.signum)
    except KeyboardInterrupt:  # Ctrl-C before training started (while building the net), or a second one
        print("resnet-exp: interrupted; a checkpoint it wrote stays, and the same command resumes from it",
              file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
    except (UserError, Diverged, OSError) as e:
        message = unwritable(e) if isinstance(e, OSError) else str(e)
        if sweeping:  # the other jobs go on; the sweep's end counts this one (sweep.SweepStart)
            log.error("job %d failed: %s", job_index, message)
            record_failure(run_dir, job_index, message, "diverged" if isinstance(e, Diverged) else "failed")
            return None
        print(f"resnet-exp: error: {message}", file=sys.stderr)
        sys.exit(2)


def hydra_files(cfg: DictConfig) -> dict[str, DictConfig | ListConfig]:
    """What Hydra writes into a run dir's `.hydra/` as a job starts (the config, Hydra's own, the overrides), for the
    run to write once it is accepted (configs/config.yaml sets hydra.output_subdir to null)."""
    hydra_cfg = HydraConfig.get()
    return {".hydra/config.yaml": cfg, ".hydra/hydra.yaml": OmegaConf.create({"hydra": hydra_cfg}),
            ".hydra/overrides.yaml": hydra_cfg.overrides.task}


def unwritable(e: OSError) -> str:
    """A failed write in the run dir (a folder that cannot be written, a full disk) as one line: the file and
    what to do, where a traceback would only show our own write calls."""
    where = f": {e.filename!r}" if e.filename else ""
    return (f"{e.strerror or e}{where}; resnet-exp writes its run there, so it needs a writable folder with room "
            "(choose another with hydra.run.dir, or hydra.sweep.dir in a sweep)")


if __name__ == "__main__":
    main()
