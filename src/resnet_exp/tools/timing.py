"""What the benchmark and the step profile share: the nets they time, chosen by their config names as
`resnet-exp model=...` chooses them; the images they are fed; the trainer `resnet-exp` assembles for them; the
timing loop; their common options and the header of their JSON reports.

Throughput does not depend on the pixels, so without the real CIFAR-10 both time a synthetic set of its shape.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_module
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from resnet_exp.data import DataModule, ImageData, make_synthetic, read_cifar10
from resnet_exp.data.cifar10 import FOLDER, find_folder
from resnet_exp.devices import device_argument
from resnet_exp.errors import DataError, UserError
from resnet_exp.forecast import sync
from resnet_exp.provenance import cpu_model
from resnet_exp.run import assemble, configure_torch, seeded_model
from resnet_exp.training import Trainer

EVAL_BATCH = 1000
# What `--set` may change: the net and its initial weights. The variants choose the trainer's settings themselves.
SETTABLE = ("model.", "seed=")


class Preloaded(DataModule):
    """A data module over images read once, so every variant is fed from the same copy."""

    name = "preloaded"  # as the record of a trainer it feeds names its data

    def __init__(self, data: ImageData, **feeding: Any) -> None:
        super().__init__(**feeding)
        self.data = data

    def read(self) -> ImageData:
        return self.data


@dataclass(frozen=True)
class Net:
    """One net to time: the model config it was chosen by, the run config composed from it, and its own name
    (as runs record it: `resnet56`, or `resnet8` for `resnet20` with `--set model.depth=8`)."""

    config: str
    cfg: DictConfig
    name: str


def model_configs() -> list[str]:
    """The names `model=` accepts: the files of configs/model/."""
    return sorted(f.name.removesuffix(".yaml") for f in files("resnet_exp.configs.model").iterdir()
                  if f.name.endswith(".yaml"))


def compose_net(config: str, overrides: Sequence[str]) -> Net:
    """The run config of `model=<config>` with `overrides`, and the name of the net it builds (built once here,
    so that a bad name, override or depth fails before any data is read)."""
    known = model_configs()
    if config not in known:
        raise UserError(f"--models {config!r} is not a model config; accepted: {', '.join(known)}")
    for override in overrides:
        if not override.startswith(SETTABLE):
            raise UserError(f"--set {override!r} does not change the net; accepted: model.KEY=VALUE "
                            "(e.g. model.depth=8) or seed=N, as resnet-exp spells them")
    try:
        cfg = compose_run(config, overrides)
    except HydraException as e:
        keys = ", ".join(k for k in compose_run(config, ()).model if k != "_target_")
        raise UserError(f"--set {' '.join(overrides)}: {str(e).splitlines()[0]} (model {config} has the keys "
                        f"{keys}, and seed)") from e
    return Net(config, cfg, seeded_model(cfg).name)


def compose_run(config: str, overrides: Sequence[str]) -> DictConfig:
    """The config `resnet-exp model=<config> <overrides>` would run."""
    with initialize_config_module("resnet_exp.configs", version_base="1.3"):
        return compose("config", overrides=[f"model={config}", *overrides])


def compose_nets(configs: Sequence[str], overrides: Sequence[str]) -> list[Net]:
    """`compose_net` of each config; two configs of one net would time the same thing twice under one name."""
    nets = [compose_net(config, overrides) for config in configs]
    names = [net.name for net in nets]
    for net in nets:
        if names.count(net.name) > 1:
            raise UserError(f"--models {' '.join(configs)} names the net {net.name} twice; give each net once")
    return nets


def run_config(net: Net, device: torch.device, batch_size: int, precision: str, compile: bool = False) -> DictConfig:
    """The config of the net's run on `device` with one compute path: channels_last (the default layout),
    `precision` (fp32 or bf16 autocast) and, with `compile`, a `torch.compile`d model."""
    trainer = {"device": str(device), "batch_size": batch_size, "precision": precision, "channels_last": True,
               "compile": compile, "progress": False}
    cfg = OmegaConf.merge(net.cfg, {"trainer": trainer})
    assert isinstance(cfg, DictConfig)
    return cfg


def project_trainer(
    net: Net, data: ImageData, device: torch.device, batch_size: int, precision: str, compile: bool = False
) -> Trainer:
    """The trainer `resnet-exp` assembles for the net (its seeded weights, optimizer and schedule), fed from
    `data` through the default device-resident pipeline, in train mode."""
    trainer = assemble(run_config(net, device, batch_size, precision, compile), None, data=Preloaded(data))
    trainer.net.train()
    return trainer


def variant_parts(variant: str) -> tuple[str, str]:
    """(feed, precision) of a variant name: "ours-bf16" is ("ours", "bf16"); the reference is fp32."""
    feed, _, precision = variant.partition("-")
    return feed, precision or "fp32"


def holds_cifar10(root: str) -> bool:
    try:
        find_folder(root)
    except DataError:
        return False
    return True


def load_data(root: str | None, synthetic_train: int) -> tuple[ImageData, str]:
    """The real CIFAR-10 from `root` (or `$RESNET_EXP_DATA` when it holds it), else a synthetic set of its shape,
    and a line saying which."""
    if root is None:
        env = os.environ.get("RESNET_EXP_DATA")
        root = env if env and holds_cifar10(env) else None
    if root is not None:
        data = read_cifar10(root)
        return data, f"CIFAR-10 from {data.source}"
    data = make_synthetic(synthetic_train, max(synthetic_train // 5, 1))
    return data, (
        f"synthetic: no {FOLDER} under --data-root or $RESNET_EXP_DATA, so make_synthetic({synthetic_train}, "
        f"{len(data.test_labels)}) of the same shape"
    )


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()}, {torch.get_num_threads()} threads"


def throughput(
    step: Callable[[], None], device: torch.device, args: argparse.Namespace, nets: int = 1
) -> tuple[list[float], float]:
    """Images/s (over `nets` nets stepped together) of `args.repeats` timed runs of `args.iters` steps each, after
    `args.warmup` untimed steps; and the seconds those took (a compile happens there)."""
    sync(device)
    start = time.perf_counter()
    for _ in range(args.warmup):
        step()
    sync(device)
    warmup_s = time.perf_counter() - start
    rates = []
    for _ in range(args.repeats):
        sync(device)
        start = time.perf_counter()
        for _ in range(args.iters):
            step()
        sync(device)
        rates.append(nets * args.iters * args.batch_size / (time.perf_counter() - start))
    return rates, warmup_s


def at_least(low: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `low`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least {low}")
        return value

    return parse


def tool_parser(
    prog: str, description: str, variants: Sequence[str], default_variants: Sequence[str], json_path: str
) -> argparse.ArgumentParser:
    """The options both tools take: which nets and variants, how long to time them, where, on what data, and
    where the JSON report goes."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--models", nargs="+", default=["resnet56", "resnet20"], metavar="MODEL",
                        help="model configs, as `resnet-exp model=` names them (configs/model/: resnet20, plain56, "
                        "resnet110-preact, tv_resnet18-cifar, ...); plain and residual twins have the same layers "
                        "and FLOPs (default: resnet56 resnet20)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="overrides of every net's config, as resnet-exp spells them: model.KEY=VALUE or seed=N "
                        "(e.g. model.depth=8 for a quick check)")
    parser.add_argument("--variants", nargs="+", choices=variants, default=list(default_variants), metavar="VARIANT",
                        help=f"any of {', '.join(variants)} (default: {' '.join(default_variants)})")
    parser.add_argument("--batch-size", type=at_least(1), default=128,
                        help="the paper's 128 by default; smaller only for quick checks (default: %(default)s)")
    parser.add_argument("--iters", type=at_least(1), default=20, help="timed iterations per run (default: %(default)s)")
    parser.add_argument("--repeats", type=at_least(1), default=3,
                        help="timed runs; the median counts (default: %(default)s)")
    parser.add_argument("--warmup", type=at_least(0), default=5, help="untimed iterations first (default: %(default)s)")
    parser.add_argument("--device", type=device_argument, default="auto",
                        help="auto (cuda when available), cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--data-root", help="a folder holding cifar-10-batches-py/ (default: $RESNET_EXP_DATA if it "
                        "holds it, else synthetic data)")
    parser.add_argument("--synthetic-train", type=at_least(1), default=50000, metavar="N",
                        help="training images of the synthetic stand-in, with N/5 test images (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=Path(json_path),
                        help="where to write the full results (default: %(default)s)")
    return parser


@dataclass
class Workload:
    """What a tool's run measures: its options, the device, the nets and the images, and the report's header."""

    args: argparse.Namespace
    device: torch.device
    nets: list[Net]
    data: ImageData
    header: dict[str, Any]


def prepare(parser: argparse.ArgumentParser, argv: list[str] | None) -> Workload:
    """Parse the options, compose the nets and read the data; a user error ends the tool with its one line and
    exit code 2, before anything is timed."""
    args = parser.parse_args(argv)
    try:
        nets = compose_nets(args.models, args.overrides)
        data, source = load_data(args.data_root, args.synthetic_train)
    except UserError as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    configure_torch(deterministic=False)  # the runner's torch settings (cuDNN autotuning on) for every variant
    device = args.device
    settings = {k: v for k, v in vars(args).items() if k not in ("json", "data_root", "device", "models")}
    header = {
        "device": device_name(device),
        "device_type": device.type,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "data": source,
        "settings": settings | {"models": [net.name for net in nets], "model_configs": [net.config for net in nets]},
    }
    print(f"device: {header['device']} ({device.type}); torch {header['torch']}\ndata: {source}", flush=True)
    return Workload(args, device, nets, data, header)


def write_report(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}", file=sys.stderr)
