"""Continuing the run a run dir holds: whether this command may continue its checkpoint, what it may change on the
way, and the one-line refusals that say why not and what to do.

A run dir holds one run. Its checkpoint is continued only by the same configuration: only the length
(`LENGTH`) and what the hardware resolves (`RESOLVED_BY_HARDWARE`) may differ, unless the command asks for other
changes on purpose (`trainer.allow_changes`), and every change but the length goes into the record's `changes`, so
that the record says what each iteration ran with. The net never changes (its weights would be read as another
net's), nor the seed (a resumed run continues the random state its checkpoint holds), and a run is never shortened.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from resnet_exp.errors import CheckpointError
from resnet_exp.models.cifar import check_zero_channels
from resnet_exp.record import RunRecord, flat_record
from resnet_exp.runlog import read_metrics, read_summary
from resnet_exp.training import Trainer
from resnet_exp.training.checkpoint import load_checkpoint
from resnet_exp.training.schedule import StepSchedule

log = logging.getLogger("resnet_exp")
CHECKPOINT = Path("checkpoints") / "last.pt"  # in the run dir
# What the hardware resolves (the precision and memory format `auto` picks, on the machine a run resumes on): a
# resumed run may differ in them without being asked to, and each change goes into the record's `changes`.
RESOLVED_BY_HARDWARE = frozenset({"trainer.precision", "trainer.channels_last"})
LENGTH = "trainer.max_iters"  # a resumed run may be continued to another length: the record keeps the last
NET = ("model", "block")  # a record's keys naming the net; with the model.* settings, never changed on resume
FRESH = "start afresh with trainer.resume=false or another hydra.run.dir"


def check_continuable(run_dir: Path, resume: bool) -> None:
    """Refuse to start afresh, as a side effect, over a run whose checkpoint is gone (deleted, or a file where its
    folder goes): its evaluation points and summary would be replaced without a word. Starting afresh there is
    what trainer.resume=false asks for; a run killed before its first evaluation has no point to lose."""
    checkpoint = run_dir / CHECKPOINT
    if not resume or checkpoint.is_file() or not (points := read_metrics(run_dir)):
        return
    done = read_summary(run_dir) or {}
    ended = f", summary.json: {done.get('status')} at iteration {done.get('iterations')}" if done else ""
    where = f"{str(checkpoint.parent)!r} is a file, not a folder" if checkpoint.parent.is_file() else (
        f"it has no checkpoint {str(CHECKPOINT)!r}")
    raise CheckpointError(
        f"run dir {str(run_dir)!r} holds a run ({len(points)} evaluation points up to iteration "
        f"{points[-1]['iteration']}{ended}), but {where} to continue it from: nothing was changed; start afresh in it "
        "with trainer.resume=false (its files are replaced), or give this run another hydra.run.dir")


def resume(trainer: Trainer, run_dir: Path) -> None:
    """Continue `trainer` from the checkpoint of `run_dir` where there is one and resuming is on, once it is checked
    to hold this run (`check_same_run`); the trainer's record gains the changes it is continued with."""
    path = run_dir / CHECKPOINT
    if not path.is_file():
        return
    if not trainer.settings.resume:
        log.warning("trainer.resume=false: starting afresh, overwriting %s", run_dir)
        return
    state = load_checkpoint(path)
    check_zero_channels(trainer.model, state, str(path))  # first: its message says the fix
    iteration = int(state["iteration"])
    if iteration > trainer.settings.max_iters:
        raise CheckpointError(
            f"run dir {str(run_dir)!r} holds a run trained to iteration {iteration}, past "
            f"trainer.max_iters={trainer.settings.max_iters}: a run cannot be shortened; continue it with "
            f"trainer.max_iters={iteration} or more, or start afresh with trainer.resume=false or another "
            "hydra.run.dir")
    if trainer.record is not None:
        check_same_run(trainer.record, state.get("run"), iteration, trainer.schedule,
                       trainer.settings.allow_changes, str(run_dir))
    try:
        trainer.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError) as e:
        raise CheckpointError(
            f"checkpoint {str(path)!r} was written by another model ({state.get('arch', 'unknown')}, this run builds "
            f"{getattr(trainer.model, 'name', '?')}): use another hydra.run.dir, or trainer.resume=false to overwrite "
            "it") from e
    log.info("resumed from %s at iteration %d", path, iteration)


def check_same_run(record: RunRecord, recorded: dict[str, Any] | None, iteration: int, schedule: StepSchedule,
                   allow_changes: bool, run_dir: str) -> None:
    """Refuse to continue the checkpoint `recorded` (its record), at `iteration`, with `record`'s run where they
    differ in what may not change (the module's docstring), naming each differing setting, old and new; where they
    may, `record.changes` gains them. A run continued to another length keeps the lr milestones it trained with
    where this run's, resolved over the recorded length, are the same (`StepSchedule.keep_recorded`)."""
    if recorded is None:
        if not allow_changes:
            raise CheckpointError(
                f"run dir {run_dir!r} holds a checkpoint with no record of the settings it was trained with, so "
                "this run's cannot be checked against them; add trainer.allow_changes=true to continue it with "
                f"these settings on purpose (summary.json records that they were unchecked), or {FRESH}")
        log.warning("continuing %s, whose checkpoint records no settings, with these from iteration %d on",
                    run_dir, iteration + 1)
        record.changes = [{"iteration": iteration,
                           "unchecked": ["the checkpoint recorded no settings", "continued with these"]}]
        return
    if "settings" not in recorded:
        raise CheckpointError(
            f"run dir {run_dir!r} holds a checkpoint that records its settings in the layout of resnet-exp before "
            f"2026-12-02, which cannot be compared with this run's; {FRESH}")
    old, new = flat_record(recorded), flat_record(record.defining())
    length, milestones = old.get(LENGTH), old.get("schedule.milestones")
    if length != new.get(LENGTH) and schedule.keep_recorded(milestones, length):
        record.settings["schedule.milestones"] = new["schedule.milestones"] = milestones
        log.info("trainer.max_iters %s -> %s: the lr keeps the milestones the run trained with, %s",
                 length, new.get(LENGTH), milestones)
    differ = {key: [old.get(key), new.get(key)] for key in sorted(old.keys() | new.keys())
              if key != LENGTH and old.get(key) != new.get(key)}
    record.changes = list(recorded.get("changes", []))
    if not differ:
        return
    listed = "; ".join(f"{key} {a!r} -> {b!r}" for key, (a, b) in differ.items())
    if any(key in NET or key.startswith("model.") for key in differ):
        raise CheckpointError(f"run dir {run_dir!r} holds a run of another net ({listed}); run with its own "
                              f"settings to continue it, or {FRESH}")
    if "seed" in differ:
        raise CheckpointError(
            f"run dir {run_dir!r} holds a run of seed {differ['seed'][0]!r}, not {differ['seed'][1]!r}: a resumed "
            "run continues the random state its checkpoint holds, so another seed cannot take effect; run with "
            f"seed={differ['seed'][0]} to continue it, or {FRESH}")
    if not allow_changes and not differ.keys() <= RESOLVED_BY_HARDWARE:
        raise CheckpointError(
            f"run dir {run_dir!r} holds a run of another configuration ({listed}); run with its own settings to "
            "continue it, add trainer.allow_changes=true to continue it with these on purpose (summary.json "
            f"records each change), or {FRESH}")
    log.warning("continuing %s with changed settings from iteration %d on: %s", run_dir, iteration + 1, listed)
    record.changes.append({"iteration": iteration, **differ})
