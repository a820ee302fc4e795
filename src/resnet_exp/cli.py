"""`resnet-exp`: the Hydra entry point. Hands the config to `run.train`, and reports user errors as one line
(exit code 2) instead of a traceback; in a sweep, as one line per failed job."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from resnet_exp.errors import UserError
from resnet_exp.forecast import run_seconds
from resnet_exp.run import build, step_cost, train
from resnet_exp.runlog import format_duration
from resnet_exp.sweep import jobs_at_once
from resnet_exp.training import Diverged
from resnet_exp.training.signals import Interrupted

log = logging.getLogger("resnet_exp")
OmegaConf.register_new_resolver("jobs_at_once", jobs_at_once, replace=True)  # hydra/launcher=parallel's n_jobs


class JobFailed(CompactHydraException):
    """A sweep's job ended with a user error or a divergence: Hydra prints its message as one line, no traceback,
    after the other jobs have run."""


@hydra.main(version_base="1.3", config_path="pkg://resnet_exp.configs", config_name="config")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    job_index = OmegaConf.select(hydra_cfg, "job.num", default=0) or 0
    try:
        if cfg.predict:
            seconds = run_seconds(step_cost(cfg, job_index), build(cfg.trainer))
            log.info("predicted wall time on this machine: %s", format_duration(seconds))
            return None
        return train(cfg, run_dir, hydra_cfg.runtime.choices.get("data", "?"), job_index)["final_test_error"]
    except Interrupted as e:
        print(f"resnet-exp: {e}", file=sys.stderr)
        sys.exit(128 + e.signum)
    except (UserError, Diverged) as e:
        if hydra_cfg.mode == RunMode.MULTIRUN:
            log.error("job %d failed: %s", job_index, e)
            # Hydra records this job as failed, runs the others, then prints this one line
            raise JobFailed(f"resnet-exp: error: a job of this sweep failed (the first: job {job_index}): {e}") \
                from None
        print(f"resnet-exp: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
