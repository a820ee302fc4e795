"""One process per run dir. Two processes writing one run would interleave its metrics and checkpoints, so a
run holds an exclusive lock on `<run dir>/.lock` for its whole life. It is a kernel lock (flock): it goes with
the process however that ends, a SIGKILL included, so no stale lock is ever left to clean up."""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path
from typing import IO

from resnet_exp.errors import UserError

LOCK = ".lock"


class RunDirInUse(UserError):
    """Another live process holds the run dir's lock."""


def lock_run_dir(run_dir: Path) -> IO[str]:
    """Take the run dir's lock, or refuse at once naming the holder's PID and host. Keep the returned file open
    for as long as the run lasts; closing it (or the process ending) releases the lock."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK
    f = path.open("a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "an unknown process"
        f.close()
        raise RunDirInUse(f"run dir {str(run_dir)!r} is in use by {holder}; wait for that run to end, or give "
                          "this one another hydra.run.dir") from None
    f.seek(0)
    f.truncate()
    f.write(f"process {os.getpid()} on {socket.gethostname()}\n")
    f.flush()
    return f
