"""Where a training step's time goes (`make profile`): milliseconds per step by operator family.

    python -m resnet_exp.tools.step_profile                                  # ResNet-56 and ResNet-20, fp32 and bf16
    python -m resnet_exp.tools.step_profile --models resnet20 --variants ours-bf16 --iters 10

The step is the one `resnet-exp` runs and the benchmark's `ours` variants time: the net's trainer fed by the
default device-resident pipeline, channels_last, fp32 or bf16 autocast (bf16 only where the device computes it
natively). torch.profiler's self times over `--iters` steps are grouped into the families one can act on
(`resnet_exp.tools.profiling`), the batch fetching as its own family, with the conv backward split into its input and
weight gradients. Each model's unprofiled step time (`step_ms_unprofiled`, timed as the benchmark times) tells
how much the profiler itself added. A Markdown table, and everything as JSON.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

import torch

from resnet_exp.precision import bf16_unsupported
from resnet_exp.tools import timing
from resnet_exp.tools.profiling import conv_backward_split, data_scope, profile_steps, split_conv_backward
from resnet_exp.training import Trainer

VARIANTS = ("ours-fp32", "ours-bf16")


def profile(work: timing.Workload) -> list[dict[str, Any]]:
    """Milliseconds per step by operator family of each variant asked for, on each net."""
    args, device = work.args, work.device
    rows = []
    for net in work.nets:
        for variant in args.variants:
            precision = timing.variant_parts(variant)[1]
            if precision == "bf16" and bf16_unsupported(device):
                print(f"{net.name} {variant}: skipped, {bf16_unsupported(device)}", file=sys.stderr)
                continue
            trainer = timing.project_trainer(net, work.data, device, args.batch_size, precision)

            def step(trainer: Trainer = trainer) -> None:
                with data_scope():
                    x, y = next(trainer.batches.train)
                trainer.step(x, y)

            rates, _ = timing.throughput(step, device, args)
            x = next(trainer.batches.train)[0].contiguous(memory_format=trainer.memory_format)
            split = conv_backward_split(trainer.model, x, trainer.precision.dtype or torch.float32)
            times = split_conv_backward(profile_steps(step, args.iters, device), *split)
            wall_ms = 1000 * args.batch_size / statistics.median(rates)
            profiled = sum(times.values())
            for family, ms in sorted(times.items(), key=lambda item: -item[1]):
                rows.append({"model": net.name, "variant": variant, "family": family, "ms_per_step": ms,
                             "pct": 100 * ms / profiled, "step_ms_unprofiled": wall_ms})
            print(f"{net.name} {variant}: profiled", file=sys.stderr)
    return rows


def profile_table(rows: list[dict[str, Any]]) -> str:
    """The profile as a Markdown table, one block of rows per model and variant."""
    lines = ["| model | variant | family | ms/step | % of step |", "|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['variant']} | {r['family']} | {r['ms_per_step']:.1f} | {r['pct']:.1f} |"
              for r in rows]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    return timing.tool_parser(
        "python -m resnet_exp.tools.step_profile",
        "One training step's time by operator family (torch.profiler over --iters steps), with the conv backward "
        "split into input and weight gradients; a Markdown table and the JSON.",
        VARIANTS, VARIANTS, "outputs/step_profile.json",
    )


def main(argv: list[str] | None = None) -> int:
    work = timing.prepare(build_parser(), argv)
    rows = profile(work)
    print(profile_table(rows))
    timing.write_report(work.args.json, {**work.header, "profile": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
