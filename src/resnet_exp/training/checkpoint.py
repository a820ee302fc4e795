"""Checkpoints that survive crashes: written to a temporary file and renamed, read with weights_only."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import torch

from resnet_exp.atomic import replaced
from resnet_exp.errors import CheckpointError


def save_checkpoint(state: dict, path: Path) -> None:
    """Replace `path` only once the new file is complete, so a kill mid-write keeps the previous one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced(path) as tmp, tmp.open("wb") as f:
        try:
            torch.save(state, f)
        except RuntimeError as e:  # torch's writer reports a failed write (a full disk) as "unexpected pos ..."
            raise OSError(errno.EIO, "the checkpoint could not be written, the disk may be full (torch: "
                          f"{str(e).splitlines()[0][:120]})", str(path)) from e
        f.flush()
        os.fsync(f.fileno())


RESUME_REMEDY = "delete it, or start afresh with trainer.resume=false"


def load_checkpoint(path: Path, remedy: str = RESUME_REMEDY) -> dict:
    """Read a checkpoint onto the CPU; any unreadable file becomes one clear error naming it and ending with
    `remedy`, what the reading command's user can do (the trainer's default; the analyses say their own)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zips, foreign pickles and bad tensors all raise different types
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be read ({type(e).__name__}); it is corrupt or not a resnet-exp "
            f"checkpoint: {remedy}"
        ) from e
    if not isinstance(state, dict) or "model" not in state or "iteration" not in state:
        raise CheckpointError(f"checkpoint {str(path)!r} is not a resnet-exp checkpoint (no model/iteration)")
    return state
