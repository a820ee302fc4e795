"""Training throughput of the project's data pipeline and step against the usual torchvision recipe.

    python scripts/benchmark.py                               # ResNet-56 and ResNet-20, every variant
    python scripts/benchmark.py --models 20 --iters 50 --device cpu --variants reference ours-fp32
    python scripts/benchmark.py --models resnet20 plain20 resnet56 plain56 --variants ours-bf16   # the quick preset

Models are named as the configs name them (`resnet56`, `plain20`; a bare depth means the ResNet). Every
variant trains the same network (`CifarResNet(depth, residual)`, SGD lr 0.1, momentum 0.9, weight decay 1e-4) at
batch 128 (`--batch-size`) on CIFAR-10-shaped data, end to end including augmentation, in this one process:

- `reference`: NCHW fp32, fed by `data.loader=torchvision` (a shuffling DataLoader, 2 workers, PIL
  transforms), plain `model(x)`, cross-entropy and SGD step: how most CIFAR-10 code trains;
- `ours-fp32` / `ours-bf16`: the default device-resident pipeline feeding `Trainer.step` itself
  (channels_last; bf16 autocast for the second), i.e. what `resnet-exp` runs;
- `bare-fp32` / `bare-bf16`: `Trainer.step` on one fixed batch already on the device, so `ours / bare` is
  the share of the step time the data pipeline leaves to training (the target is >= 0.95);
- opt-in (`--variants`): `compiled-fp32` / `compiled-bf16`, the `ours` step with a `torch.compile`d model (its
  compile time is the row's `warmup_s`); `batched-fp32` / `batched-bf16`, `--nets` K nets of the same shape, each
  with its own seed and data stream, stepped as one vmapped computation (`BatchedNets`), images/s summed over the
  K nets. `vs ours` is a row's speed over the `ours` row of its precision.

bf16 variants run only where the device computes bf16 natively (CUDA with bf16, or a CPU with oneDNN and
avx512_bf16/amx_bf16). All variants run with the CLI's torch settings (cuDNN autotuning on). Achieved FLOP/s
is the model's training FLOPs per image (convolutions and matmuls of forward and backward, as torch's
FlopCounterMode counts them) times images/s, reported against a measured matrix-multiply peak of the
same device and dtype.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from resnet_exp.data import DataModule, ImageData, make_synthetic, read_cifar10
from resnet_exp.data.batches import TrainStream
from resnet_exp.data.cifar10 import FOLDER, find_folder
from resnet_exp.data.module import Batches
from resnet_exp.devices import device_argument
from resnet_exp.errors import DataError, UserError
from resnet_exp.forecast import sync
from resnet_exp.models import CifarResNet
from resnet_exp.models.cifar import check_depth
from resnet_exp.precision import bf16_unsupported
from resnet_exp.profiling import conv_backward_split, data_scope, profile_steps, split_conv_backward
from resnet_exp.provenance import cpu_model
from resnet_exp.training import StepSchedule, Trainer, TrainerSettings
from resnet_exp.training.batched import BatchedNets
from resnet_exp.training.optim import sgd

DEFAULT_VARIANTS = ("reference", "ours-fp32", "ours-bf16", "bare-fp32", "bare-bf16")
VARIANTS = (
    *DEFAULT_VARIANTS, "compiled-fp32", "compiled-bf16", "batched-fp32", "batched-bf16"
)
EVAL_BATCH = 1000
SEED = 0
MM_TIMINGS = 5


class Preloaded(DataModule):
    """A data module over images read once, so every variant is fed from the same copy."""

    def __init__(self, data: ImageData, **feeding: Any) -> None:
        super().__init__(**feeding)
        self.data = data

    def read(self) -> ImageData:
        return self.data


def holds_cifar10(root: str) -> bool:
    try:
        find_folder(root)
    except DataError:
        return False
    return True


def load_data(root: str | None, synthetic_train: int) -> tuple[ImageData, str]:
    """The real CIFAR-10 from `root` (or `$RESNET_EXP_DATA` when it holds it), else a synthetic set of its shape.

    Throughput does not depend on the pixels, so the synthetic set times the same work.
    """
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


def variant_parts(variant: str) -> tuple[str, str]:
    """(feed, precision) of a variant name: "ours-bf16" is ("ours", "bf16"); the reference is fp32."""
    feed, _, precision = variant.partition("-")
    return feed, precision or "fp32"


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int) -> float:
    """FLOP/s of a large square `torch.mm`, median of several: the yardstick for the training FLOP/s.

    On CUDA fp32 is timed with TF32 allowed exactly when cuDNN convs may use it (torch's default: yes), so
    the yardstick is the arithmetic the convs really get.
    """
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32
    try:
        torch.mm(a, b)
        seconds = []
        for _ in range(MM_TIMINGS):
            sync(device)
            start = time.perf_counter()
            torch.mm(a, b)
            sync(device)
            seconds.append(time.perf_counter() - start)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
    return 2 * size**3 / statistics.median(seconds)


def parse_model(text: str) -> tuple[int, bool]:
    """(depth, residual) of a model name: "plain56" is (56, False); "resnet20" and "20" are (20, True)."""
    match = re.fullmatch(r"(plain|resnet)?(\d+)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a model: use resnetN or plainN (N = 6n+2), e.g. plain56")
    return int(match[2]), match[1] != "plain"


def model_name(depth: int, residual: bool) -> str:
    return f"{'resnet' if residual else 'plain'}{depth}"


def train_flops_per_image(depth: int, residual: bool, shape: tuple[int, ...], batch_size: int) -> float:
    """Forward plus backward FLOPs of one training image, counted on the meta device (nothing computed)."""
    model = CifarResNet(depth, residual).to("meta")
    x = torch.empty(batch_size, *shape, device="meta")
    y = torch.zeros(batch_size, dtype=torch.long, device="meta")
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / batch_size


def fresh_model(depth: int, residual: bool) -> CifarResNet:
    """The same initial weights for every variant."""
    torch.manual_seed(SEED)
    return CifarResNet(depth, residual)


def reference_step(
    depth: int, residual: bool, data: ImageData, device: torch.device, batch_size: int
) -> Callable[[], None]:
    """One iteration of the usual loop: torchvision-style batch, NCHW fp32 forward, loss, SGD step."""
    model = fresh_model(depth, residual).to(device)
    optimizer = sgd(model.parameters())
    train = Preloaded(data, loader="torchvision").batches(device, batch_size, EVAL_BATCH, SEED).train

    def step() -> None:
        x, y = next(train)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def make_trainer(
    depth: int, residual: bool, feed: str, precision: str, batches: Batches, device: torch.device
) -> Trainer:
    """The CLI's trainer (channels_last) in train mode, with a compiled model for the `compiled` feed."""
    settings = TrainerSettings(device=str(device), precision=precision, channels_last=True, compile=feed == "compiled")
    model = fresh_model(depth, residual)
    trainer = Trainer(settings, model, sgd(model.parameters()), StepSchedule(), batches, device, None)
    trainer.net.train()
    return trainer


def trainer_step(
    depth: int, residual: bool, feed: str, precision: str, batches: Batches, device: torch.device
) -> Callable[[], None]:
    """One iteration of `Trainer.step` fed by the device pipeline; `bare`: on one fixed batch."""
    trainer = make_trainer(depth, residual, feed, precision, batches, device)
    train = batches.train
    if feed == "bare":
        x, y = next(train)
        return lambda: trainer.step(x, y)
    return lambda: trainer.step(*next(train))


def batched_step(
    depth: int, residual: bool, precision: str, batches: Batches, device: torch.device, nets: int
) -> Callable[[], None]:
    """One iteration of `nets` nets (seeds 0..K-1, each its own shuffling and augmentation) as one computation."""
    models = []
    for seed in range(nets):
        torch.manual_seed(seed)
        models.append(CifarResNet(depth, residual).to(device))
    amp = torch.bfloat16 if precision == "bf16" else None
    batched = BatchedNets(models, amp_dtype=amp, memory_format=torch.channels_last)
    own = batches.train
    streams = [TrainStream(own.images, own.labels, own.batch_size, own.normalize, own.augment, seed)
               for seed in range(nets)]

    def step() -> None:
        pairs = [next(stream) for stream in streams]
        batched.step(torch.stack([x for x, _ in pairs]), torch.stack([y for _, y in pairs]), 0.1)

    return step


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


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Each row's speed relative to the reference, to the `ours` row of its precision (for the compiled and
    batched rows) and, for the `ours` rows, to the bare step."""
    by_name = {row["variant"]: row["images_per_s"] for row in rows}
    for row in rows:
        feed, precision = variant_parts(row["variant"])
        reference, bare, ours = (by_name.get(name) for name in ("reference", f"bare-{precision}", f"ours-{precision}"))
        row["vs_reference"] = row["images_per_s"] / reference if reference else None
        row["ours_vs_bare"] = row["images_per_s"] / bare if feed == "ours" and bare else None
        row["vs_ours"] = row["images_per_s"] / ours if feed in ("compiled", "batched") and ours else None


def benchmark(args: argparse.Namespace, device: torch.device, data: ImageData) -> dict[str, Any]:
    """Time every selected variant on every model; the results as the JSON report holds them."""
    no_bf16 = bf16_unsupported(device)
    skipped = {v: no_bf16 for v in args.variants if v.endswith("bf16") and no_bf16}
    variants = [v for v in VARIANTS if v in args.variants and v not in skipped]
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    precisions = {variant_parts(v)[1] for v in variants}
    peaks = {p: matmul_peak(device, dtype, args.mm_size) for p, dtype in dtypes.items() if p in precisions}
    ours = Preloaded(data).batches(device, args.batch_size, EVAL_BATCH, SEED)
    models, results = {}, []
    for depth, residual in args.models:
        name = model_name(depth, residual)
        flops = train_flops_per_image(depth, residual, tuple(data.train_images.shape[1:]), args.batch_size)
        models[name] = {"depth": depth, "residual": residual, "train_gflop_per_image": flops / 1e9}
        rows = []
        for variant in variants:
            feed, precision = variant_parts(variant)
            nets = args.nets if feed == "batched" else 1
            if feed == "reference":
                step = reference_step(depth, residual, data, device, args.batch_size)
            elif feed == "batched":
                step = batched_step(depth, residual, precision, ours, device, nets)
            else:
                step = trainer_step(depth, residual, feed, precision, ours, device)
            rates, warmup_s = throughput(step, device, args, nets)
            del step  # lets the reference stream's workers go before the next variant
            rate = statistics.median(rates)
            peak = peaks[precision]
            rows.append({
                "model": name,
                "variant": variant,
                "images_per_s": rate,
                "runs_images_per_s": rates,
                "warmup_s": warmup_s,
                "nets": nets,
                "gflop_per_s": flops * rate / 1e9,
                "peak_pct": 100 * flops * rate / peak,
            })
            print(f"{name} {variant}: {rate:.1f} img/s", file=sys.stderr)
        add_ratios(rows)
        results += rows
    return {
        "peak_gflop_per_s": {p: peak / 1e9 for p, peak in peaks.items()},
        "models": models,
        "results": results,
        "skipped": skipped,
    }


def profile(args: argparse.Namespace, device: torch.device, data: ImageData) -> list[dict[str, Any]]:
    """Milliseconds per step by operator family of the `ours` variants asked for, each model (profiling.py)."""
    ours = Preloaded(data).batches(device, args.batch_size, EVAL_BATCH, SEED)
    rows = []
    for depth, residual in args.models:
        for variant in [v for v in args.variants if variant_parts(v)[0] == "ours"]:
            precision = variant_parts(variant)[1]
            if precision == "bf16" and bf16_unsupported(device):
                continue
            trainer = make_trainer(depth, residual, "ours", precision, ours, device)

            def step(trainer: Trainer = trainer) -> None:
                with data_scope():
                    x, y = next(ours.train)
                trainer.step(x, y)

            rates, _ = throughput(step, device, args)
            x = next(ours.train)[0].contiguous(memory_format=trainer.memory_format)
            split = conv_backward_split(trainer.model, x, trainer.amp_dtype or torch.float32)
            times = split_conv_backward(profile_steps(step, args.iters, device), *split)
            wall_ms = 1000 * args.batch_size / statistics.median(rates)
            profiled = sum(times.values())
            for family, ms in sorted(times.items(), key=lambda item: -item[1]):
                rows.append({"model": model_name(depth, residual), "variant": variant, "family": family,
                             "ms_per_step": ms, "pct": 100 * ms / profiled, "step_ms_unprofiled": wall_ms})
            print(f"{model_name(depth, residual)} {variant}: profiled", file=sys.stderr)
    return rows


def profile_table(rows: list[dict[str, Any]]) -> str:
    """The profile as a Markdown table, one block of rows per model and variant."""
    lines = ["| model | variant | family | ms/step | % of step |", "|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['variant']} | {r['family']} | {r['ms_per_step']:.1f} | {r['pct']:.1f} |"
              for r in rows]
    return "\n".join(lines)


def table(results: list[dict[str, Any]]) -> str:
    """The results as an aligned text table."""
    header = ("model", "variant", "img/s", "vs reference", "ours/bare", "vs ours", "GFLOP/s", "% of peak", "warm-up s")

    def ratio(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}x"

    lines = [
        (r["model"], r["variant"], f"{r['images_per_s']:.1f}", ratio(r["vs_reference"]), ratio(r["ours_vs_bare"]),
         ratio(r["vs_ours"]), f"{r['gflop_per_s']:.1f}", f"{r['peak_pct']:.1f}", f"{r['warmup_s']:.1f}")
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in [header, *lines])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="benchmark.py",
        description="Time training at batch 128, end to end, through the torchvision-style reference and the "
        "project's own path (see the module docstring); print a table and write it all as JSON.",
    )
    parser.add_argument("--models", nargs="+", type=parse_model, default=[(56, True), (20, True)], metavar="MODEL",
                        help="resnetN or plainN, N = 6n+2 (a bare N is resnetN); plain and residual nets of one "
                        "depth have the same layers and FLOPs (default: resnet56 resnet20)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(DEFAULT_VARIANTS), metavar="VARIANT",
                        help=f"any of {', '.join(VARIANTS)} (default: {' '.join(DEFAULT_VARIANTS)})")
    parser.add_argument("--nets", type=int, default=4, metavar="K",
                        help="nets stepped together by the batched variants (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=128, help="the paper's 128 by default; smaller only "
                        "for quick checks (default: %(default)s)")
    parser.add_argument("--iters", type=int, default=20, help="timed iterations per run (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the median counts (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations first (default: %(default)s)")
    parser.add_argument("--device", type=device_argument, default="auto",
                        help="auto (cuda when available), cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--data-root", help="a folder holding cifar-10-batches-py/ (default: $RESNET_EXP_DATA if it "
                        "holds it, else synthetic data)")
    parser.add_argument("--synthetic-train", type=int, default=50000, metavar="N",
                        help="training images of the synthetic stand-in, with N/5 test images (default: %(default)s)")
    parser.add_argument("--mm-size", type=int, default=2048, metavar="N",
                        help="side of the square matrices timed for the peak (default: %(default)s)")
    parser.add_argument("--profile", action="store_true",
                        help="instead of timing: one step's time by operator family (torch.profiler over --iters "
                        "steps) for the ours-* variants asked for, with the conv backward split into input and "
                        "weight gradients; a Markdown table and the JSON")
    parser.add_argument("--json", type=Path, default=Path("outputs/benchmark.json"),
                        help="where to write the full results (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("batch_size", "iters", "repeats", "synthetic_train", "mm_size", "nets"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be at least 0")
    device = args.device
    try:
        for depth, _ in args.models:
            check_depth(depth)  # a bad depth fails here, before reading the data
        data, source = load_data(args.data_root, args.synthetic_train)
    except UserError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    TrainerSettings().configure_torch()
    header = {
        "device": device_name(device),
        "device_type": device.type,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "data": source,
        "settings": {
            k: getattr(args, k) for k in ("variants", "batch_size", "iters", "repeats", "warmup", "mm_size", "nets")
        } | {"models": [model_name(*model) for model in args.models]},
    }
    print(f"device: {header['device']} ({device.type}); torch {header['torch']}\ndata: {source}", flush=True)
    if args.profile:
        rows = profile(args, device, data)
        print(profile_table(rows))
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**header, "profile": rows}, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
        return 0
    report = {**header, **benchmark(args, device, data)}
    for precision, peak in report["peak_gflop_per_s"].items():
        print(f"matmul peak {precision}: {peak:.1f} GFLOP/s ({args.mm_size}x{args.mm_size} torch.mm)")
    for name, model in report["models"].items():
        print(f"{name}: {model['train_gflop_per_image']:.3f} GFLOP per training image (forward + backward)")
    for variant, reason in report["skipped"].items():
        print(f"skipped {variant}: {reason}")
    print(table(report["results"]))
    print("ours/bare: images/s with the data pipeline over the same step on a fixed batch (target >= 0.95)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
