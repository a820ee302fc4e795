"""What a run is and how it went, held in one `RunRecord`: summary.json, TensorBoard's hyper-parameters and the
record each checkpoint carries (compared on resume) are all written from it, so a new field is one edit here.

What defines the run is its net (as it names itself, its depth, whether residual, its block kind), its data (as it
names itself), its seed, and `settings`: every other key of the resolved config by its command-line name
(`optim.lr`), but the few that cannot change what is trained or measured (`UNRECORDED`), with the values the run
resolved in place of the ones asked for (`auto`'s precision, lr milestones given as fractions of the run, the
images the intermediate evaluations measure). A new config key is thus recorded without a line of code. `changes`
lists the settings changed on purpose when the run was continued (resume.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from omegaconf import DictConfig, OmegaConf

from resnet_exp.board import shown_hparams

# Config keys that cannot change what a run trains or what its evaluations measure: where the data lies and
# whether to fetch it, the device's index, resuming, progress display, gradient-norm logging, the evaluation's batch
# size, and `predict` (which trains nothing). Every other key is recorded.
UNRECORDED = frozenset({
    "predict", "data.root", "data.download", "trainer.device", "trainer.resume", "trainer.allow_changes",
    "trainer.progress", "trainer.log_grad_norms", "trainer.eval_batch_size",
})
# The fields that define the run: the checkpoint's record, compared when the run is continued.
DEFINING = ("model", "depth", "residual", "block", "data", "seed", "settings", "changes")
# The fields a run's end fills in; summary.json holds them all once it has ended, unknown ones as null.
ENDING = ("final_train_error", "final_test_error", "final_train_loss", "final_test_loss", "wall_time_s",
          "finished_at")


@dataclass
class RunRecord:
    """One run: what defines it (`DEFINING`), what it ran on, and how it went, in the order summary.json lists them.
    Fields still unknown are None and left out of the summary (the ending ones until the run has ended)."""

    model: str
    depth: int
    residual: bool
    block: str
    data: str
    seed: int
    settings: dict[str, Any]
    changes: list[dict[str, Any]] = field(default_factory=list)
    params: int | None = None
    device: str | None = None
    eval_split: str | None = None
    train_size: int | None = None
    started_at: str | None = None
    predicted_wall_time_s: float | None = None  # from the run's own first steps (forecast.StepClock)
    provenance: dict[str, Any] | None = None
    status: str = "running"
    iterations: int = 0
    final_train_error: float | None = None
    final_test_error: float | None = None
    final_train_loss: float | None = None
    final_test_loss: float | None = None
    wall_time_s: float | None = None
    finished_at: str | None = None
    failure: str | None = None  # why it ended, unless it completed

    @classmethod
    def of(cls, cfg: DictConfig, name: str, block: str, data: str, resolved: dict[str, Any], **facts: Any
           ) -> RunRecord:
        """The record of `cfg`'s run: its net `name` and `block`, its `data`'s name, its settings with the values
        `resolved` by the run in place of the ones asked for, and `facts` of what it runs on (`params`, ...)."""
        given = {key: OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
                 for key, value in cfg.items() if key != "hydra"}  # a sweep's job config holds Hydra's own
        settings = flat_settings(given) | resolved
        return cls(name, cfg.model.depth, cfg.model.residual, block, data, cfg.seed, settings, **facts)

    def start(self, iteration: int, provenance: dict[str, Any]) -> None:
        """The run starts (or continues) training at `iteration`, with the code and machine of `provenance`."""
        self.started_at, self.iterations, self.provenance = now(), iteration, provenance

    def end(self, status: str, iteration: int, last: dict[str, Any], wall_time: float, failure: str | None) -> None:
        """The run ended with `status` at `iteration`: its last evaluation point `last` ({} before the first), its
        wall time, and, unless it completed, why (`failure`)."""
        self.status, self.iterations, self.failure = status, iteration, failure
        self.final_train_error, self.final_test_error = last.get("train/error"), last.get("test/error")
        self.final_train_loss, self.final_test_loss = last.get("train/loss"), last.get("test/loss")
        self.wall_time_s, self.finished_at = round(wall_time, 2), now()

    def defining(self) -> dict[str, Any]:
        """What defines the run (`DEFINING`), as each checkpoint records it."""
        return {key: getattr(self, key) for key in DEFINING}

    def hparams(self) -> dict[str, bool | int | float | str]:
        """The run's hyper-parameters as TensorBoard shows them (board.py)."""
        return shown_hparams(self.defining())

    def summary(self) -> dict[str, Any]:
        """summary.json: every field known so far; once the run has ended, every ending field."""
        ended = self.finished_at is not None
        return {key: value for key, value in asdict(self).items()
                if value is not None or (ended and key in ENDING)}


def flat_settings(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`node`'s leaves by dotted key, without `_target_`s, the seed (recorded on its own) and `UNRECORDED`; lists
    written as strings, as TensorBoard needs."""
    flat: dict[str, Any] = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_settings(value, f"{name}."))
        elif key != "_target_" and name != "seed" and name not in UNRECORDED:
            flat[name] = str(value) if isinstance(value, list) else value
    return flat


def flat_record(record: dict[str, Any]) -> dict[str, Any]:
    """A run's defining record (`RunRecord.defining`, or a summary.json) as one level of keys: the net's name and
    block, the data and the seed beside its settings (which hold the depth and residual as model.depth and
    model.residual)."""
    return {**{key: record.get(key) for key in ("model", "block", "data", "seed")}, **record.get("settings", {})}


def now() -> str:
    """A moment as summary.json records it: local time to the millisecond."""
    return datetime.now().isoformat(timespec="milliseconds")
