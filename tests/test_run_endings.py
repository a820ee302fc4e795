"""Whatever ends a run, summary.json says how; and a run dir belongs to one process at a time."""

import errno
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FAST, compose_config, run_cli
from omegaconf import DictConfig

from resnet_exp.errors import CheckpointError
from resnet_exp.run import train
from resnet_exp.rundir import RunDirInUse, lock_run_dir
from resnet_exp.runlog import RunLog
from resnet_exp.training import Diverged, Trainer
from resnet_exp.training import checkpoint as checkpoint_module
from resnet_exp.training.checkpoint import load_checkpoint


def config(*overrides: str) -> DictConfig:
    return compose_config(*FAST, "trainer.progress=false", *overrides)


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_an_exception_mid_run_is_recorded_as_failed_and_raised_unchanged(tmp_path: Path, monkeypatch) -> None:
    step = Trainer.train_step

    def failing_step(self: Trainer, *args, **kwargs):
        if self.iteration == 3:
            raise RuntimeError("injected: out of memory")
        return step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "train_step", failing_step)
    with pytest.raises(RuntimeError, match="injected: out of memory") as raised:
        train(config("trainer.max_iters=6", "trainer.eval_every=2"), tmp_path)
    assert raised.traceback[-1].name == "failing_step"  # the original traceback, not a re-raise elsewhere
    ended = summary(tmp_path)
    assert (ended["status"], ended["iterations"]) == ("failed", 3)
    assert ended["failure"] == "RuntimeError: injected: out of memory"
    assert ended["final_train_error"] is not None and "finished_at" in ended  # the evaluation at iteration 2


def test_a_fault_while_the_forecast_times_the_first_steps_is_recorded_as_failed(tmp_path: Path, monkeypatch) -> None:
    """The forecast times the run's own steps and one evaluation batch: a fault there (injected at the 6th loss
    computed) ends the run as any fault does, with its summary, where a throwaway trainer once ended it first."""
    import torch.nn.functional as F

    from resnet_exp import forecast

    monkeypatch.setattr(forecast, "MIN_SECONDS", 0.0)  # so the timed evaluation comes at the 6th step
    cross_entropy, calls = F.cross_entropy, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 6:
            raise RuntimeError("injected at the 6th loss")
        return cross_entropy(*args, **kwargs)

    monkeypatch.setattr(F, "cross_entropy", failing)
    with pytest.raises(RuntimeError, match="injected at the 6th loss"):
        train(config("trainer.max_iters=20", "trainer.eval_every=10"), tmp_path)
    assert summary(tmp_path)["status"] == "failed" and "injected" in summary(tmp_path)["failure"]


def test_a_failed_checkpoint_write_ends_as_failed_and_leaves_no_temporary_file(tmp_path: Path, monkeypatch) -> None:
    train(config("trainer.max_iters=2", "trainer.eval_every=2"), tmp_path)
    save = checkpoint_module.torch.save

    def disk_full(obj, f, *args, **kwargs):
        save(obj, f, *args, **kwargs)  # part of the file is written, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        train(config("trainer.max_iters=4", "trainer.eval_every=2"), tmp_path)
    assert summary(tmp_path)["status"] == "failed" and "No space left" in summary(tmp_path)["failure"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.pt"]
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["iteration"] == 2  # the previous one stays


def test_divergence_before_any_checkpoint_does_not_promise_one(tmp_path: Path) -> None:
    with pytest.raises(Diverged, match="No checkpoint was written") as raised:
        train(config("optim.lr=1e30", "trainer.max_iters=40", "trainer.eval_every=40"), tmp_path)
    assert "is kept in" not in str(raised.value)
    assert summary(tmp_path)["status"] == "diverged"


def test_a_second_process_on_a_run_dir_is_refused_naming_the_first(tmp_path: Path) -> None:
    with lock_run_dir(tmp_path / "run"):  # as a run in progress holds it
        proc = run_cli(*FAST, "trainer.max_iters=2", "trainer.eval_every=2", f"hydra.run.dir={tmp_path / 'run'}",
                       cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("resnet-exp: error: run dir") and "in use by process" in line, proc.stderr
    assert socket.gethostname() in line and "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_the_lock_goes_with_its_process(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", "import time; from pathlib import Path; from resnet_exp.rundir "
                               f"import lock_run_dir; lock = lock_run_dir(Path({str(tmp_path)!r})); print('locked', "
                               "flush=True); time.sleep(600)"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "locked\n"  # it holds the lock now
    with pytest.raises(RunDirInUse, match=rf"in use by process {holder.pid} on"):
        lock_run_dir(tmp_path)
    holder.kill()  # SIGKILL: no handler runs, the kernel drops the lock
    holder.wait()
    lock_run_dir(tmp_path).close()
    train(config("trainer.max_iters=2", "trainer.eval_every=2"), tmp_path)  # the lock file stays
    assert summary(tmp_path)["status"] == "completed"


@pytest.mark.parametrize(("changed", "named", "net"), [
    (["model=plain20", "model.depth=8"], "model 'resnet8' -> 'plain8'; model.residual True -> False", True),
    (["optim.lr=0.05", "trainer.max_iters=8"], "optim.lr 0.1 -> 0.05", False),
    (["data.val_split=16", "trainer.precision=fp32"], "data.val_split 0 -> 16", False),
])
def test_resume_refuses_another_configuration_naming_each_difference(tmp_path: Path, changed: list[str],
                                                                    named: str, net: bool) -> None:
    train(config("trainer.max_iters=4", "trainer.eval_every=2"), tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with pytest.raises(CheckpointError, match=f"holds a run of another {'net' if net else 'configuration'}") as refused:
        train(config("trainer.max_iters=4", "trainer.eval_every=2", *changed), tmp_path)
    assert named in str(refused.value) and "trainer.resume=false" in str(refused.value)
    assert ("trainer.allow_changes=true" in str(refused.value)) is not net  # a net is never continued as another
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before  # nothing rewritten


def test_a_seed_change_on_resume_is_refused_even_when_changes_are_allowed(tmp_path: Path) -> None:
    """A resumed run continues the random state its checkpoint holds, so a seed given on resume cannot take effect:
    recording it would say something that did not happen."""
    train(config("trainer.max_iters=2", "trainer.eval_every=2"), tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with pytest.raises(CheckpointError, match=r"holds a run of seed 0, not 5: a resumed run continues the random "
                                              r"state.*run with seed=0 to continue it, or start afresh"):
        train(config("trainer.max_iters=4", "trainer.eval_every=2", "seed=5", "trainer.allow_changes=true"), tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


@pytest.mark.parametrize(("first", "then", "change"), [
    ("trainer.precision=fp32", "trainer.precision=bf16", {"trainer.precision": ["fp32", "bf16"]}),
    ("trainer.channels_last=true", "trainer.channels_last=false", {"trainer.channels_last": [True, False]}),
])
def test_what_the_hardware_resolves_may_change_on_resume_and_is_recorded_with_its_iteration(
    tmp_path: Path, first: str, then: str, change: dict
) -> None:
    """As `auto` may resolve otherwise on the machine a run resumes on, a resume may change the precision or the
    memory format without trainer.allow_changes; the record then says from which iteration on."""
    train(config("trainer.max_iters=2", "trainer.eval_every=2", first), tmp_path)
    ended = train(config("trainer.max_iters=4", "trainer.eval_every=2", then), tmp_path)
    assert ended["changes"] == [{"iteration": 2, **change}]
    assert summary(tmp_path)["changes"] == ended["changes"]


def test_a_checkpoint_without_its_run_record_is_continued_only_on_purpose_and_so_recorded(tmp_path: Path) -> None:
    train(config("trainer.max_iters=2", "trainer.eval_every=2"), tmp_path)
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    del state["run"]
    checkpoint_module.save_checkpoint(state, tmp_path / "checkpoints" / "last.pt")
    with pytest.raises(CheckpointError, match=r"a checkpoint with no record of the settings it was trained with.*"
                                              r"add trainer.allow_changes=true"):
        train(config("trainer.max_iters=4", "trainer.eval_every=2", "optim.lr=0.05"), tmp_path)
    ended = train(config("trainer.max_iters=4", "trainer.eval_every=2", "optim.lr=0.05", "trainer.allow_changes=true"),
                  tmp_path)
    assert ended["changes"] == [
        {"iteration": 2, "unchecked": ["the checkpoint recorded no settings", "continued with these"]}]


def test_a_run_is_never_shortened_and_a_lost_summary_is_written_again_from_the_run(tmp_path: Path) -> None:
    """With summary.json gone, asking for fewer iterations than the checkpoint holds is refused (the record would
    say trainer.max_iters=2 beside 4 iterations); the run's own length writes the summary again, as it ended."""
    first = train(config("trainer.max_iters=4", "trainer.eval_every=2"), tmp_path)
    (tmp_path / "summary.json").unlink()
    with pytest.raises(CheckpointError, match=r"trained to iteration 4, past trainer.max_iters=2: a run cannot be "
                                              r"shortened; continue it with trainer.max_iters=4 or more"):
        train(config("trainer.max_iters=2", "trainer.eval_every=2"), tmp_path)
    assert not (tmp_path / "summary.json").exists()
    again = train(config("trainer.max_iters=4", "trainer.eval_every=2"), tmp_path)
    assert (again["status"], again["iterations"], again["settings"]["trainer.max_iters"]) == ("completed", 4, 4)
    assert again["final_train_error"] == first["final_train_error"] and summary(tmp_path) == again


def test_resume_may_extend_the_run(tmp_path: Path) -> None:
    train(config("trainer.max_iters=4", "trainer.eval_every=2"), tmp_path)
    extended = train(config("trainer.max_iters=6", "trainer.eval_every=2"), tmp_path)
    assert (extended["status"], extended["iterations"], extended["settings"]["trainer.max_iters"]) == (
        "completed", 6, 6)


def test_a_run_continued_on_purpose_with_another_lr_records_where_it_changed(tmp_path: Path) -> None:
    constant = "schedule.milestones=[]"  # so that the lr of every point is the one set on the command line
    train(config("trainer.max_iters=4", "trainer.eval_every=2", constant), tmp_path)
    ended = train(config("trainer.max_iters=8", "trainer.eval_every=2", "optim.lr=0.05", "trainer.allow_changes=true",
                         constant), tmp_path)
    assert ended["changes"] == [{"iteration": 4, "optim.lr": [0.1, 0.05]}] and ended["settings"]["optim.lr"] == 0.05
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lrs == [0.1, 0.1, 0.05, 0.05]
    # Resumed again with its new settings it is the same run: the history stays, nothing more is recorded.
    again = train(config("trainer.max_iters=10", "trainer.eval_every=2", "optim.lr=0.05", constant), tmp_path)
    assert again["changes"] == ended["changes"] and again["iterations"] == 10


def test_a_run_dir_that_cannot_be_written_ends_as_failed_in_one_line(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoints").touch()  # a file where the checkpoint folder goes: unwritable, even for root
    proc = run_cli(*FAST, "trainer.max_iters=4", "trainer.eval_every=2", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f"resnet-exp: error: File exists: '{run_dir / 'checkpoints'}'; resnet-exp writes its run there")
    assert "Traceback" not in proc.stderr
    assert summary(run_dir)["status"] == "failed" and summary(run_dir)["failure"].startswith("FileExistsError")


def test_a_checkpoint_recording_its_settings_in_the_earlier_layout_is_refused_in_one_line(tmp_path: Path) -> None:
    train(config("trainer.max_iters=2", "trainer.eval_every=2"), tmp_path)
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    record = state["run"]
    state["run"] = {key: value for key, value in record.items() if key != "settings"} | {"lr": 0.1}  # flat, as before
    checkpoint_module.save_checkpoint(state, tmp_path / "checkpoints" / "last.pt")
    with pytest.raises(CheckpointError, match="records its settings in the layout of resnet-exp before") as refused:
        train(config("trainer.max_iters=4", "trainer.eval_every=2"), tmp_path)
    assert "trainer.resume=false" in str(refused.value)


def every_file(run_dir: Path) -> dict[str, bytes]:
    """The run dir's files by relative path, but `.lock` (it names whichever process took the lock last)."""
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.mark.parametrize("damage", ["checkpoint deleted", "checkpoints a file"])
def test_a_run_whose_checkpoint_is_gone_is_never_overwritten_as_a_side_effect(tmp_path: Path, damage: str) -> None:
    train(config("trainer.max_iters=4", "trainer.eval_every=2"), tmp_path)
    (tmp_path / "checkpoints" / "last.pt").unlink()
    if damage == "checkpoints a file":
        (tmp_path / "checkpoints").rmdir()
        (tmp_path / "checkpoints").write_text("")
    before = every_file(tmp_path)
    with pytest.raises(CheckpointError, match=r"holds a run \(2 evaluation points up to iteration 4, summary.json: "
                                              r"completed at iteration 4\), but .* to continue it from: nothing was "
                                              r"changed; start afresh in it with trainer.resume=false"):
        train(config("trainer.max_iters=2", "trainer.eval_every=2", "optim.lr=0.05"), tmp_path)
    assert every_file(tmp_path) == before


def test_starting_afresh_on_purpose_replaces_the_curves_of_the_run_before(tmp_path: Path) -> None:
    train(config("trainer.max_iters=4", "trainer.eval_every=2"), tmp_path)
    (tmp_path / "checkpoints" / "last.pt").unlink()
    again = train(config("trainer.max_iters=2", "trainer.eval_every=2", "trainer.resume=false"), tmp_path)
    assert again["iterations"] == 2 and len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1  # TensorBoard shows this run alone


def test_a_summary_that_cannot_be_written_at_the_end_is_an_error_not_a_success(tmp_path: Path, monkeypatch) -> None:
    written = RunLog.summary

    def failing_summary(self: RunLog, **summary) -> None:
        if summary.get("status") != "running":
            raise OSError(errno.EROFS, "Read-only file system", str(self.run_dir / "summary.json"))
        written(self, **summary)

    monkeypatch.setattr(RunLog, "summary", failing_summary)
    with pytest.raises(OSError, match="Read-only file system"):
        train(config("trainer.max_iters=2", "trainer.eval_every=2"), tmp_path)


def test_events_that_cannot_be_written_end_the_run_in_error_after_its_summary(tmp_path: Path, monkeypatch) -> None:
    """TensorBoard's writer raises a failed write of its events when it is closed: the summary is still written,
    and the run ends with the error rather than exit code 0."""
    closed = RunLog.close

    def failing_close(self: RunLog) -> None:
        closed(self)
        raise OSError(errno.ENOSPC, "No space left on device", str(self.run_dir / "events.out.tfevents.x"))

    monkeypatch.setattr(RunLog, "close", failing_close)
    with pytest.raises(OSError, match="No space left on device"):
        train(config("trainer.max_iters=2", "trainer.eval_every=2"), tmp_path)
    assert summary(tmp_path)["status"] == "completed" and summary(tmp_path)["iterations"] == 2


def test_a_full_disk_in_the_checkpoint_write_is_one_line_and_keeps_the_checkpoint_before(tmp_path: Path) -> None:
    """torch's writer reports a full disk as a RuntimeError deep in its zip writer; injected as torch raises it."""
    run_dir = tmp_path / "run"
    args = (*FAST, "trainer.max_iters=4", "trainer.eval_every=2", f"hydra.run.dir={run_dir}")
    code = ("import sys, torch\n"
            "from resnet_exp.training import checkpoint\n"
            "saves = []\n"
            "def save(state, f):\n"
            "    saves.append(1)\n"
            "    if len(saves) == 2: raise RuntimeError('[enforce fail at inline_container.cc:672] . unexpected pos "
            "64 vs 0')\n"
            "    torch.save(state, f)\n"
            "checkpoint.torch = type('T', (), {'save': staticmethod(save)})\n"
            "from resnet_exp.cli import main\n"
            f"sys.argv = ['resnet-exp', *{args!r}]\n"
            "main()\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = [line for line in proc.stderr.strip().splitlines() if line.startswith("resnet-exp: error:")]
    assert line == proc.stderr.strip().splitlines()[-1] and "the checkpoint could not be written" in line
    assert "the disk may be full" in line and str(run_dir / "checkpoints" / "last.pt") in line
    assert summary(run_dir)["status"] == "failed" and load_checkpoint(run_dir / "checkpoints" / "last.pt")[
        "iteration"] == 2


def test_a_resume_over_damaged_metrics_keeps_the_readable_points_and_ends_its_run(tmp_path: Path) -> None:
    """Binary bytes and JSON nested past Python's stack in metrics.jsonl are lines skipped with a warning, not a
    UnicodeDecodeError or RecursionError that would end the resume."""
    train(config("trainer.max_iters=2", "trainer.eval_every=2"), tmp_path)
    with (tmp_path / "metrics.jsonl").open("ab") as f:
        f.write(b"\x80\xff\n" + b"[" * 100_000 + b"]" * 100_000 + b"\n")
    ended = train(config("trainer.max_iters=4", "trainer.eval_every=2"), tmp_path)
    assert ended["status"] == "completed"
    assert [json.loads(line)["iteration"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [2, 4]
