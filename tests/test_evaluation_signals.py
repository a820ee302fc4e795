"""A signal during an evaluation is answered within a batch, and the cut evaluation is redone on resume: nothing
is lost or written twice, and a run stopped in its final evaluation ends interrupted, not completed."""

import hashlib
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import FAST, compose_config
from omegaconf import DictConfig

from resnet_exp.run import train
from resnet_exp.training import Trainer
from resnet_exp.training.checkpoint import load_checkpoint
from resnet_exp.training.signals import Interrupted

# 4 evaluation batches of 32 images, points at iterations 2, 4 and 6 (the last on all test images).
RUN = ("trainer.max_iters=6", "trainer.eval_every=2", "trainer.eval_batch_size=32", "trainer.deterministic=true",
       "trainer.progress=false")


def config() -> DictConfig:
    return compose_config(*FAST, *RUN)


def weights(run_dir: Path) -> str:
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]
    return hashlib.sha256(b"".join(name.encode() + t.numpy().tobytes() for name, t in state.items())).hexdigest()


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    run_dir = tmp_path_factory.mktemp("whole")
    train(config(), run_dir)
    return (run_dir / "metrics.jsonl").read_text(), weights(run_dir)


def signal_during_evaluation(monkeypatch: pytest.MonkeyPatch, at_iteration: int) -> list[int]:
    """Send SIGTERM to this process after the first batch of the run's evaluation at `at_iteration`; returns the
    number of batches that evaluation read."""
    evaluate = Trainer.evaluate
    read: list[int] = []

    def first_batch_then_signal(batches) -> Iterator:
        for index, batch in enumerate(batches):
            read.append(index)
            yield batch
            if index == 0:
                signal.raise_signal(signal.SIGTERM)

    class Signalling:
        def __init__(self, batches) -> None:
            self.batches = batches

        def __len__(self) -> int:
            return len(self.batches)

        def __iter__(self) -> Iterator:
            return first_batch_then_signal(self.batches)

    def evaluating(self: Trainer, batches=None, stop=None):
        if stop is not None and self.iteration == at_iteration:
            batches = Signalling(batches)
        return evaluate(self, batches, stop)

    monkeypatch.setattr(Trainer, "evaluate", evaluating)
    return read


@pytest.mark.parametrize("at_iteration", [4, 6], ids=["mid-run", "final"])
def test_a_signal_during_an_evaluation_stops_within_a_batch_and_the_resumed_run_redoes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, whole: tuple[str, str], at_iteration: int
) -> None:
    read = signal_during_evaluation(monkeypatch, at_iteration)
    with pytest.raises(Interrupted, match=f"at iteration {at_iteration} during its evaluation"):
        train(config(), tmp_path)
    assert len(read) <= 2  # of 4 batches: the signal is answered at the next batch
    stopped = summary(tmp_path)
    assert (stopped["status"], stopped["iterations"]) == ("interrupted", at_iteration)  # the final one too
    points = [json.loads(line)["iteration"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert points == list(range(2, at_iteration, 2))  # the cut evaluation wrote no point
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["pending_eval"] is not None

    monkeypatch.undo()
    train(config(), tmp_path)
    assert summary(tmp_path)["status"] == "completed"
    assert ((tmp_path / "metrics.jsonl").read_text(), weights(tmp_path)) == whole
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["pending_eval"] is None


def test_a_finished_run_asked_for_again_changes_nothing_on_disk(tmp_path: Path) -> None:
    first = train(config(), tmp_path)

    def snapshot() -> dict[str, bytes]:
        return {str(p.relative_to(tmp_path)): p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}

    before = snapshot()
    assert train(config(), tmp_path) == first
    assert snapshot() == before  # no rewritten summary, no new TensorBoard event file, no checkpoint write
