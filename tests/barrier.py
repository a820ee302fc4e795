"""A Hydra callback for the launcher tests: each job waits at its start until `parties` jobs have arrived, so a
test can tell jobs that run at once from jobs run one after another without reading the clock."""

import os
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback


class Barrier(Callback):
    """Each job's start writes `<folder>/<pid>.arrived`, then waits up to `timeout_s` for `parties` arrivals and
    writes `<pid>.met` or `<pid>.alone`. Jobs run one after another never meet."""

    def __init__(self, folder: str, parties: int, timeout_s: float) -> None:
        self.folder, self.parties, self.timeout_s = Path(folder), parties, timeout_s

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        pid = os.getpid()
        (self.folder / f"{pid}.arrived").touch()
        deadline = time.monotonic() + self.timeout_s
        while len(list(self.folder.glob("*.arrived"))) < self.parties and time.monotonic() < deadline:
            time.sleep(0.05)
        met = len(list(self.folder.glob("*.arrived"))) >= self.parties
        (self.folder / f"{pid}.{'met' if met else 'alone'}").touch()
