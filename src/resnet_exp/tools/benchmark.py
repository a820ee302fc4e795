"""Training throughput of the project's data pipeline and step against the usual torchvision recipe (`make bench`).

    python -m resnet_exp.tools.benchmark                      # ResNet-56 and ResNet-20, every default variant
    python -m resnet_exp.tools.benchmark --models resnet20 --iters 50 --device cpu --variants reference ours-fp32
    python -m resnet_exp.tools.benchmark --models resnet20 plain20 --set model.depth=8 --batch-size 16  # a quick check

Nets are chosen by their model configs (`resnet56`, `plain20`, `resnet110-preact`; `--set` overrides them as
`resnet-exp` would). Every variant trains the same net, with the weights, optimizer (SGD lr 0.1, momentum 0.9,
weight decay 1e-4) and batch 128 (`--batch-size`) of its run, on CIFAR-10-shaped data, end to end including
augmentation, in this one process:

- `reference`: NCHW fp32, fed by `data.loader=torchvision` (a shuffling DataLoader, 2 workers, PIL
  transforms), plain `model(x)`, cross-entropy and SGD step: how most CIFAR-10 code trains;
- `ours-fp32` / `ours-bf16`: the trainer `resnet-exp` assembles, fed by the default device-resident pipeline
  (channels_last; bf16 autocast for the second), stepping as `resnet-exp` steps;
- `bare-fp32` / `bare-bf16`: the same step on one fixed batch already on the device, so `ours / bare` is
  the share of the step time the data pipeline leaves to training (the target is >= 0.95);
- opt-in (`--variants`): `compiled-fp32` / `compiled-bf16`, the `ours` step with `trainer.compile=true` (its
  compile time is the row's `warmup_s`); `batched-fp32` / `batched-bf16`, `--nets` K nets of the same shape, each
  with its own seed and data stream, stepped as one vmapped computation (`BatchedNets`), images/s summed over the
  K nets. `vs ours` is a row's speed over the `ours` row of its precision.

bf16 variants run only where the device computes bf16 natively (CUDA with bf16, or a CPU with oneDNN and
avx512_bf16/amx_bf16). All variants run with the runner's torch settings (cuDNN autotuning on). Achieved FLOP/s
is the net's training FLOPs per image (convolutions and matmuls of forward and backward, as torch's
FlopCounterMode counts them) times images/s, reported against a measured matrix-multiply peak of the
same device and dtype. Where a step's time goes: `python -m resnet_exp.tools.step_profile`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch.utils.flop_counter import FlopCounterMode

from resnet_exp.building import build
from resnet_exp.data import ImageData
from resnet_exp.data.batches import TrainStream
from resnet_exp.forecast import sync
from resnet_exp.precision import bf16_unsupported
from resnet_exp.run import seeded_model
from resnet_exp.tools.batched import BatchedNets
from resnet_exp.tools.timing import (
    EVAL_BATCH,
    Net,
    Preloaded,
    Workload,
    at_least,
    prepare,
    project_trainer,
    throughput,
    tool_parser,
    variant_parts,
    write_report,
)

DEFAULT_VARIANTS = ("reference", "ours-fp32", "ours-bf16", "bare-fp32", "bare-bf16")
VARIANTS = (*DEFAULT_VARIANTS, "compiled-fp32", "compiled-bf16", "batched-fp32", "batched-bf16")
MM_TIMINGS = 5


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


def train_flops_per_image(net: Net, shape: tuple[int, ...], batch_size: int) -> float:
    """Forward plus backward FLOPs of one training image, counted on the meta device (nothing computed)."""
    model = build(net.cfg.model).to("meta")
    x = torch.empty(batch_size, *shape, device="meta")
    y = torch.zeros(batch_size, dtype=torch.long, device="meta")
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / batch_size


def reference_step(net: Net, data: ImageData, device: torch.device, batch_size: int) -> Callable[[], None]:
    """One iteration of the usual loop: torchvision-style batch, NCHW fp32 forward, loss, SGD step, on the run's
    initial weights with the run's optimizer."""
    model = seeded_model(net.cfg).to(device)
    optimizer = build(net.cfg.optim, params=model.parameters())
    train = Preloaded(data, loader="torchvision").batches(device, batch_size, EVAL_BATCH, net.cfg.seed).train

    def step() -> None:
        x, y = next(train)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def trainer_step(
    net: Net, feed: str, precision: str, data: ImageData, device: torch.device, batch_size: int
) -> Callable[[], None]:
    """One iteration of `Trainer.step` fed by the device pipeline; `bare`: on one fixed batch; `compiled`: with
    a compiled model."""
    trainer = project_trainer(net, data, device, batch_size, precision, compile=feed == "compiled")
    train = trainer.batches.train
    if feed == "bare":
        x, y = next(train)
        return lambda: trainer.step(x, y)
    return lambda: trainer.step(*next(train))


def batched_step(
    net: Net, precision: str, data: ImageData, device: torch.device, batch_size: int, nets: int
) -> Callable[[], None]:
    """One iteration of `nets` copies of the net (seeds seed..seed+K-1, each its own shuffling and augmentation)
    as one computation."""
    seeds = range(net.cfg.seed, net.cfg.seed + nets)
    models = [seeded_model(OmegaConf.merge(net.cfg, {"seed": seed})).to(device) for seed in seeds]
    amp = torch.bfloat16 if precision == "bf16" else None
    batched = BatchedNets(models, amp_dtype=amp, memory_format=torch.channels_last)
    own = Preloaded(data).batches(device, batch_size, EVAL_BATCH, net.cfg.seed).train
    streams = [TrainStream(own.images, own.labels, own.batch_size, own.normalize, own.augment, seed) for seed in seeds]
    lr = float(net.cfg.optim.lr)

    def step() -> None:
        pairs = [next(stream) for stream in streams]
        batched.step(torch.stack([x for x, _ in pairs]), torch.stack([y for _, y in pairs]), lr)

    return step


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


def benchmark(work: Workload) -> dict[str, Any]:
    """Time every selected variant on every net; the results as the JSON report holds them."""
    args, device, data = work.args, work.device, work.data
    no_bf16 = bf16_unsupported(device)
    skipped = {v: no_bf16 for v in args.variants if v.endswith("bf16") and no_bf16}
    variants = [v for v in VARIANTS if v in args.variants and v not in skipped]
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    precisions = {variant_parts(v)[1] for v in variants}
    peaks = {p: matmul_peak(device, dtype, args.mm_size) for p, dtype in dtypes.items() if p in precisions}
    models, results = {}, []
    for net in work.nets:
        flops = train_flops_per_image(net, tuple(data.train_images.shape[1:]), args.batch_size)
        models[net.name] = {"config": net.config, "depth": net.cfg.model.depth,
                            "residual": net.cfg.model.get("residual"), "train_gflop_per_image": flops / 1e9}
        rows = []
        for variant in variants:
            feed, precision = variant_parts(variant)
            nets = args.nets if feed == "batched" else 1
            if feed == "reference":
                step = reference_step(net, data, device, args.batch_size)
            elif feed == "batched":
                step = batched_step(net, precision, data, device, args.batch_size, nets)
            else:
                step = trainer_step(net, feed, precision, data, device, args.batch_size)
            rates, warmup_s = throughput(step, device, args, nets)
            del step  # lets the reference stream's workers go before the next variant
            rate = statistics.median(rates)
            rows.append({
                "model": net.name,
                "variant": variant,
                "images_per_s": rate,
                "runs_images_per_s": rates,
                "warmup_s": warmup_s,
                "nets": nets,
                "gflop_per_s": flops * rate / 1e9,
                "peak_pct": 100 * flops * rate / peaks[precision],
            })
            print(f"{net.name} {variant}: {rate:.1f} img/s", file=sys.stderr)
        add_ratios(rows)
        results += rows
    return {
        "peak_gflop_per_s": {p: peak / 1e9 for p, peak in peaks.items()},
        "models": models,
        "results": results,
        "skipped": skipped,
    }


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
    parser = tool_parser(
        "python -m resnet_exp.tools.benchmark",
        "Time training at batch 128, end to end, through the torchvision-style reference and the project's own "
        "path (see the module docstring); print a table and write it all as JSON.",
        VARIANTS, DEFAULT_VARIANTS, "outputs/benchmark.json",
    )
    parser.add_argument("--nets", type=at_least(1), default=4, metavar="K",
                        help="nets stepped together by the batched variants (default: %(default)s)")
    parser.add_argument("--mm-size", type=at_least(1), default=2048, metavar="N",
                        help="side of the square matrices timed for the peak (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    work = prepare(build_parser(), argv)
    report = {**work.header, **benchmark(work)}
    for precision, peak in report["peak_gflop_per_s"].items():
        print(f"matmul peak {precision}: {peak:.1f} GFLOP/s ({work.args.mm_size}x{work.args.mm_size} torch.mm)")
    for name, model in report["models"].items():
        print(f"{name}: {model['train_gflop_per_image']:.3f} GFLOP per training image (forward + backward)")
    for variant, reason in report["skipped"].items():
        print(f"skipped {variant}: {reason}")
    print(table(report["results"]))
    print("ours/bare: images/s with the data pipeline over the same step on a fixed batch (target >= 0.95)")
    write_report(work.args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
