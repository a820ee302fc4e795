"""What every measurement needs: nets rebuilt from run dirs or configs, their test data, block-wise forward
passes, and writing `<name>.json` + `<name>.png`."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, TypeVar

import torch
from hydra import compose, initialize_config_module
from hydra.errors import HydraException
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.optim.swa_utils import update_bn
from tqdm import tqdm

from resnet_exp.building import build
from resnet_exp.data.batches import EvalBatches
from resnet_exp.data.module import Batches
from resnet_exp.errors import CheckpointError, UserError
from resnet_exp.models.cifar import Block, CifarResNet, check_zero_channels
from resnet_exp.record import flat_settings
from resnet_exp.run import seeded_model
from resnet_exp.runlog import SUMMARY
from resnet_exp.tools.analysis.runconfig import read_config
from resnet_exp.training.checkpoint import load_checkpoint

CHECKPOINT = Path("checkpoints") / "last.pt"
T = TypeVar("T")


@dataclass
class Subject:
    """One net to measure, in eval mode on its device, with the batches of its own data config."""

    label: str
    model: nn.Module
    cfg: DictConfig
    batches: Batches
    run_dir: Path | None = None

    @property
    def residual(self) -> bool:
        return bool(self.cfg.model.residual)

    @property
    def depth(self) -> int:
        return int(self.cfg.model.depth)

    def describe(self) -> dict[str, Any]:
        """The facts every JSON entry starts with, so a result can be traced to its net."""
        source = {"run_dir": str(self.run_dir)} if self.run_dir else {"config": self.label}
        return {**source, "model": self.model.name, "depth": self.depth, "residual": self.residual}


@dataclass
class Workbench:
    """Builds subjects on one device; data sets are read once per distinct data config."""

    device: torch.device
    batch_size: int = 200
    limit: int | None = None
    data_root: str | None = None
    bn_batches: int = 10
    _data: dict[str, Batches] = field(default_factory=dict)

    def data(self, cfg: DictConfig) -> Batches:
        """The run's training stream and its test batches, cut to the first `limit` images."""
        data_cfg = self.data_config(cfg)
        key = OmegaConf.to_yaml(data_cfg) + f"seed={cfg.seed}"
        if key not in self._data:
            batches = build(data_cfg).batches(self.device, self.batch_size, self.batch_size, int(cfg.seed))
            ev = batches.eval
            if self.limit is not None:
                ev = EvalBatches(ev.images[: self.limit], ev.labels[: self.limit], ev.batch_size, ev.normalize)
            self._data[key] = Batches(batches.train, ev, batches.eval_split, batches.train_size)
        return self._data[key]

    def data_config(self, cfg: DictConfig) -> DictConfig:
        """A copy of the run's data config, reading from `data_root` where one was given."""
        data_cfg = cfg.data.copy()
        if self.data_root is not None:
            if "root" not in data_cfg:
                raise UserError(f"--data-root given, but data {data_cfg._target_} reads no folder (no data.root)")
            data_cfg.root = self.data_root
        return data_cfg

    def trained(self, run_dir: Path) -> Subject:
        """The net of a run dir with the weights of its last checkpoint, built from the settings the checkpoint
        records (summary.json's for a checkpoint without them): what trained those weights."""
        path = run_dir / CHECKPOINT
        if not path.is_file() and not (run_dir / SUMMARY).is_file():
            raise UserError(f"{str(run_dir)!r} is not a resnet-exp run dir: it has neither {SUMMARY!r} nor "
                            f"{str(CHECKPOINT)!r}")
        if not path.is_file():
            raise CheckpointError(
                f"run dir {str(run_dir)!r} has no checkpoint {str(CHECKPOINT)!r}: the run has not reached its first "
                "evaluation (trainer.eval_every) yet; for nets at initialisation use `gradients --init`"
            )
        state = load_checkpoint(path, remedy="analyse another run, or rerun this one (resnet-exp with its "
                                "hydra.run.dir and trainer.resume=false) to write a whole checkpoint")
        cfg = read_config(run_dir, state.get("run"), str(path))
        model = build(cfg.model)
        check_zero_channels(model, state, str(path))  # the trainer's check on resume: one policy for both
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as e:
            raise CheckpointError(
                f"checkpoint {str(path)!r} does not fit the run's model {model.name}: {str(e).splitlines()[0]}"
            ) from e
        return Subject(model.name, model.to(self.device).eval(), cfg, self.data(cfg), run_dir)

    def fresh(self, cfg: DictConfig, run_dir: Path | None = None) -> Subject:
        """The net at initialisation, seeded as the runner seeds it, so a run's init is its actual init.

        Its BN running statistics are re-estimated on `bn_batches` training batches, so eval mode normalises
        as training mode does at the first step; 0 keeps the defaults (mean 0, variance 1: BN is the identity,
        which lets the activations of deep residual nets grow with depth).
        """
        model = seeded_model(cfg).to(self.device)
        batches = self.data(cfg)
        if self.bn_batches:
            update_bn(itertools.islice(batches.train, self.bn_batches), model)
        return Subject(model.name, model.eval(), cfg, batches, run_dir)

    def configured(self, name: str, overrides: Sequence[str] = ()) -> Subject:
        """A fresh net from a model config name (plain56, resnet110-preact, ...) and Hydra overrides."""
        return self.fresh(compose_config(name, overrides))


def compose_config(name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """The full run config of model config `name` (plain56, resnet110-preact, ...) with Hydra overrides."""
    try:
        with initialize_config_module("resnet_exp.configs", version_base="1.3"):
            return compose("config", overrides=[f"model={name}", *overrides])
    except HydraException as e:
        known = sorted(f.name.removesuffix(".yaml") for f in files("resnet_exp.configs.model").iterdir()
                       if f.name.endswith(".yaml"))
        raise UserError(
            f"--init {name!r} with overrides {list(overrides)}: {str(e).splitlines()[0]}; "
            f"model configs: {', '.join(known)}"
        ) from e


def relabel(subjects: list[Subject]) -> list[Subject]:
    """Make labels unique: nets of the same name get the settings they differ in appended ("resnet56
    model.zero_init_residual=true", "resnet20 seed=1"), or, where none differ (reruns), their run dir's name or
    "init"."""
    settings = [{**flat_settings(OmegaConf.to_container(s.cfg, resolve=True)), "seed": s.cfg.seed} for s in subjects]
    for name, count in Counter(s.label for s in subjects).items():
        same = [i for i, s in enumerate(subjects) if s.label == name]
        if count < 2:
            continue
        differ = sorted({key for i in same for j in same for key in settings[i].keys() | settings[j].keys()
                         if settings[i].get(key) != settings[j].get(key)})
        for i in same:
            said = " ".join(f"{key}={json.dumps(settings[i].get(key))}" for key in differ)
            where = subjects[i].run_dir.name if subjects[i].run_dir else "init"
            subjects[i].label = f"{name} {said}" if said else f"{name} ({where})"
    return subjects


def cifar_blocks(model: nn.Module, command: str) -> list[Block]:
    """The blocks of a CIFAR net; the block-wise measurements (`command`) are defined on those only."""
    if not isinstance(model, CifarResNet):
        raise UserError(
            f"{getattr(model, 'name', type(model).__name__)} is not one of the CIFAR nets (models/cifar.py); "
            f"{command} measures their blocks: use model=resnet*/plain* (and their variants)"
        )
    return list(model.blocks)


Step = Callable[[int, Block, Tensor], Tensor]


def forward(model: CifarResNet, x: Tensor, step: Step) -> Tensor:
    """The net's forward pass with each block's call replaced by `step(index, block, input)`."""
    x = model.stem(x)
    for i, block in enumerate(model.blocks):
        x = step(i, block, x)
    return model.head(x)


@torch.no_grad()
def error_rate(predict: Callable[[Tensor], Tensor], batches: Iterable[tuple[Tensor, Tensor]]) -> float:
    """Top-1 error in percent of `predict` (inputs to logits) over the batches."""
    wrong = total = 0
    for x, y in batches:
        wrong += int((predict(x).argmax(1) != y).sum())
        total += len(y)
    return 100.0 * wrong / total


def progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """A tqdm bar on a terminal, nothing in logs and tests."""
    yield from tqdm(items, desc=desc, total=total, disable=None, leave=False)


def write_outputs(out_dir: Path, name: str, payload: dict[str, Any], fig: Figure) -> list[Path]:
    """`<out_dir>/<name>.json` and `.png`; the JSON is what the figure shows, for tables and tests."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out_dir / f"{name}.json", out_dir / f"{name}.png"
    json_path.write_text(json.dumps(payload, indent=1) + "\n")
    fig.savefig(png_path, dpi=150)
    return [png_path, json_path]
