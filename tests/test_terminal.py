"""What a run shows on a terminal: a progress bar that log lines do not break, that says when it evaluates, and whose
readout is the latest progress read. The CLI runs under a pseudo-terminal, and its output is replayed as a terminal
shows it (a carriage return overwrites the line, escape sequences are left out)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

from conftest import FAST

ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
LOG_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+\]\[resnet_exp")


def run_on_terminal(*args: str, cwd: Path, columns: int = 120) -> str:
    """`resnet-exp args` with stdout and stderr on a pseudo-terminal `columns` wide; everything it wrote."""
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "COLUMNS": str(columns)}
    proc = subprocess.Popen([sys.executable, "-m", "resnet_exp.cli", *args], cwd=cwd, env=env,
                            stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary)
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the other side closed: the process has ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    assert proc.wait(timeout=300) == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode(errors="replace")


def screen(output: str) -> list[str]:
    """The lines as a terminal leaves them: each line's last write over its columns after a carriage return."""
    lines = []
    for raw in ESCAPE.sub("", output).replace("\r\n", "\n").split("\n"):
        shown: list[str] = []
        for part in raw.split("\r"):
            shown[: len(part)] = part
        lines.append("".join(shown).rstrip())
    return lines


def test_log_lines_do_not_break_the_bar_and_the_bar_reads_the_latest_progress(tmp_path: Path) -> None:
    output = run_on_terminal(*FAST, "trainer.max_iters=10", "trainer.eval_every=10", "trainer.log_every=5",
                             f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    lines = screen(output)
    logged = [line for line in lines if "[resnet_exp" in line]
    assert len(logged) >= 3, output
    broken = [line for line in logged if not LOG_LINE.match(line) or "it/s" in line or "%|" in line]
    assert not broken, "\n".join(broken)
    assert any(re.search(r"iteration 10/10: train loss .* left$", line) for line in logged)
    draws = re.split(r"[\r\n]", ESCAPE.sub("", output))
    # The read at iteration 5 is drawn with its own readout, not the one before it (none, at the first read).
    assert [draw for draw in draws if " 5/10 [" in draw and "err=" in draw], "\n".join(draws)
    assert any(draw.startswith("resnet8 evaluating 128 images:") for draw in draws)  # the bar says what it waits for
