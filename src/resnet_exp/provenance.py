"""Where a result came from: the code's version and commit, the libraries, the machine. A reproduction tool
owes its readers this beside every number, so each run's summary.json carries it."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

import resnet_exp

SOURCE = Path(__file__).resolve().parents[2]  # the checkout's root, for an editable install


def git_commit(root: Path = SOURCE) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout the package runs from, or (None, None) outside a git checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, dirty


def cpu_info(key: str) -> str:
    """A field of /proc/cpuinfo (its first occurrence), or "" where there is none (not Linux)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip() == key:
            return value.strip()
    return ""


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what `platform` knows."""
    return cpu_info("model name") or platform.processor() or platform.machine()


def provenance(device: torch.device) -> dict[str, Any]:
    """The package version and commit (with a dirty flag), torch / CUDA / cuDNN versions, the CPU model, the
    GPU's name when training on one, and the intra-op thread count."""
    commit, dirty = git_commit()
    info: dict[str, Any] = {
        "resnet_exp": resnet_exp.__version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
