"""Stop requests from SIGTERM, SIGINT, SIGUSR1 and SIGUSR2 (SLURM's warning before a time-out: submitit
asks for USR2 by default, many clusters' scripts for USR1).

The handler only records the request; the training loop checkpoints at the next iteration boundary and
then hands the signal on to whoever handled it before (submitit requeues the job there). A second
Ctrl-C interrupts at once.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

log = logging.getLogger("resnet_exp")
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)


class Interrupted(Exception):
    """Training stopped on a signal after writing a checkpoint."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum


class StopRequests:
    """Context manager installing the handlers (main thread only) and restoring the previous ones."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: stop now, without a checkpoint
        self.signum = signum

    def pass_on(self) -> None:
        """Call the handler that was installed before ours for the received signal (submitit's requeue).

        Submitit's handler requeues the SLURM job and exits the process at once, before the run's own message
        about the stop is printed, so the stop is logged here first: otherwise a job's log would show the requeue
        but not that the checkpoint was saved."""
        handler = self.previous.get(self.signum) if self.signum is not None else None
        if callable(handler) and handler is not signal.default_int_handler:
            name = signal.Signals(self.signum).name
            log.warning("stopped by %s, checkpoint saved; handing %s on to %s", name, name,
                        getattr(handler, "__qualname__", handler))
            handler(self.signum, None)
