"""Device names as users write them (`auto`, `cpu`, `cuda`, `cuda:N`), resolved in one place for the runner
(`trainer.device`), the analyses and the benchmark (`--device`), so all three accept and refuse the same."""

from __future__ import annotations

import argparse
import re

import torch

from resnet_exp.errors import ConfigError

ACCEPTED = "auto, cpu, cuda, cuda:N"


def check_device_name(text: str, setting: str) -> None:
    """Refuse a name that is none of `ACCEPTED`, naming the setting it came from."""
    if not isinstance(text, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", text):
        raise ConfigError(f"{setting}={text!r} is not known; accepted: {ACCEPTED}")


def resolve_device(text: str, setting: str = "trainer.device", job_index: int = 0) -> torch.device:
    """The torch device of a name: `auto` is CUDA when present (job k of a parallel sweep gets GPU k mod the
    visible GPUs), else the CPU; a CUDA name without a visible GPU, or with an index past them, is refused."""
    check_device_name(text, setting)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if text == "auto":
        return torch.device(f"cuda:{job_index % count}" if count else "cpu")
    if text.startswith("cuda") and not count:
        raise ConfigError(f"{setting}={text} but no CUDA device is visible; use {setting}=cpu")
    device = torch.device(text)
    if device.index is not None and device.index >= count:
        raise ConfigError(
            f"{setting}={text} but {count} CUDA device(s) are visible: use cuda:0 .. cuda:{count - 1}"
        )
    return device


def device_argument(text: str) -> torch.device:
    """The `--device` of the command-line tools: `resolve_device`, refused the way argparse refuses a value."""
    try:
        return resolve_device(text, "--device")
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
