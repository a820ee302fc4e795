"""The folder a run writes: checked before Hydra creates it, and held by one process at a time.

`OutputDirCheck` is a Hydra callback (configs/config.yaml, `hydra.callbacks`): Hydra creates `hydra.run.dir` (or
`hydra.sweep.dir`) before our code runs, so a path that names a file or an unwritable folder would end in
Hydra's traceback; the callback says it in one line first.

Two processes writing one run would interleave its metrics and checkpoints, so a run holds an exclusive lock on
`<run dir>/.lock` for its whole life; a sweep holds one on `<sweep dir>/.lock`, so that a second launch into the same
dir cannot write into its jobs. It is a kernel lock (flock): it goes with the process however that ends, a
SIGKILL included, so no stale lock is ever left to clean up."""

from __future__ import annotations

import fcntl
import os
import socket
import sys
from pathlib import Path
from typing import IO, Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from resnet_exp.composition import released
from resnet_exp.errors import ConfigError, UserError

LOCK = ".lock"


class RunDirInUse(UserError):
    """Another live process holds the run dir's lock."""


def lock_run_dir(run_dir: Path, key: str = "hydra.run.dir") -> IO[str]:
    """Take the lock of the run dir (or sweep dir: `key` names its setting), or refuse at once naming the holder's
    PID and host. Keep the returned file open for as long as the run (or the sweep) lasts; closing it (or the
    process ending) releases the lock."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK
    f = path.open("a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "an unknown process"
        f.close()
        what = "sweep" if key == "hydra.sweep.dir" else "run"
        raise RunDirInUse(f"{what} dir {str(run_dir)!r} is in use by {holder}; wait for that {what} to end, or give "
                          f"this one another {key}") from None
    f.seek(0)
    f.truncate()
    f.write(f"process {os.getpid()} on {socket.gethostname()}\n")
    f.flush()
    return f


def check_output_dir(path: Path, key: str) -> None:
    """Refuse an output folder (`key` names its setting) that cannot be created or written: it names a file, or
    its nearest existing folder is not writable."""
    existing = next(p for p in (path, *path.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        what = "is a file" if existing == path else f"lies under {str(existing)!r}, which is a file"
        raise ConfigError(f"{key}={str(path)!r} {what}; accepted: a folder that exists or can be created")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={str(path)!r} cannot be written ({str(existing)!r} is not writable); accepted: a "
                          "folder you can write, e.g. under your home")


class OutputDirCheck(Callback):
    """`hydra.run.dir` or `hydra.sweep.dir` checked before Hydra creates it (one line and exit code 2)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        released()  # the config is composed: Hydra reports what follows as usual (composition.py)
        # The run dir names the net through `${hydra:runtime.choices.model}`, which reads Hydra's config; Hydra sets
        # it only as the job starts, so it is set here as Hydra then sets it (else the check fails with a warning).
        HydraConfig.instance().set_config(config)
        self.check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        released()
        self.check(config, "hydra.sweep.dir")

    @staticmethod
    def check(config: DictConfig, key: str) -> None:
        try:
            given = str(config.hydra.get(key.split(".")[1]).dir)
            if not given.strip():  # Path("") is the current folder, which would take the run's files loose
                raise ConfigError(f"{key}={given!r} is empty; accepted: a folder that exists or can be created, "
                                  "e.g. outputs/run1")
            check_output_dir(Path(given), key)
        except ConfigError as e:
            print(f"resnet-exp: error: {e}", file=sys.stderr)
            sys.exit(2)
