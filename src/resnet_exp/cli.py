"""`resnet-exp`: the Hydra entry point. Hands the config to `run.train`, and reports user errors as one line
(exit code 2) instead of a traceback."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from resnet_exp.errors import UserError
from resnet_exp.run import train
from resnet_exp.training import Diverged
from resnet_exp.training.signals import Interrupted

log = logging.getLogger("resnet_exp")


@hydra.main(version_base="1.3", config_path="pkg://resnet_exp.configs", config_name="config")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        job_index = OmegaConf.select(hydra_cfg, "job.num", default=0) or 0
        return train(cfg, run_dir, hydra_cfg.runtime.choices.get("data", "?"), job_index)["final_test_error"]
    except Interrupted as e:
        print(f"resnet-exp: {e}", file=sys.stderr)
        sys.exit(128 + e.signum)
    except (UserError, Diverged) as e:
        if hydra_cfg.mode == RunMode.MULTIRUN:
            log.error("%s", e)
            raise  # Hydra records this job as failed and the sweep goes on with the others
        print(f"resnet-exp: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
