"""`make gpu-check`: what a GPU has to show, in one script of about five minutes, with one report.

    python scripts/gpu_check.py                      # every step, report in outputs/gpu_check/ (or --out)
    python scripts/gpu_check.py --steps tests bench  # a subset (e.g. when the real CIFAR-10 is not there yet)
    python scripts/gpu_check.py --dry-run            # on a CPU, tiny sizes: checks the script itself

Steps, each run as its own process (a crash or a timeout in one leaves the others and the report):
- `tests`: the tests marked `cuda` (the CUDA run contract);
- `bench`: `python -m resnet_exp.tools.benchmark --device cuda` for ResNet-20 and ResNet-56: fp32 and bf16, K
  nets batched; `compile`: the compiled step of ResNet-20 (its compile time is the warm-up);
- `quick`: the quick preset (`experiment=degradation_quick`) of ResNet-56 and plain-56 on the real CIFAR-10,
  whose final training errors are set beside the CPU runs' (three seeds, docs/results.md).

The report, `gpu_check.json` and `gpu_check.md` in `--out`, is rewritten after every step, so a run cut short
keeps what it measured. A dry run skips `tests` and `compile`, which check nothing on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from resnet_exp.provenance import provenance

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("tests", "bench", "compile", "quick")
QUICK_MODELS = ("resnet56", "plain56")
# Final training error (%) of the quick preset on a 2-core AMD EPYC (bf16), seeds 0/1/2: docs/results.md.
CPU_QUICK = {"resnet56": (23.80, 25.66, 23.28), "plain56": (64.66, 66.78, 61.11)}
# A CUDA run draws its own augmentation and shuffling (the generator lives on the device): another seed, in
# effect, so it is held to the CPU seeds' range widened by this many points.
QUICK_MARGIN = 3.0
# The options of each step's command in a dry run and in a full one; None: the step is skipped.
DRY = {
    "tests": None,  # on a CPU every CUDA test skips: nothing to learn
    "bench": ["--device", "cpu", "--models", "resnet20", "--set", "model.depth=8", "--batch-size", "16", "--iters",
              "1", "--repeats", "1", "--warmup", "1", "--synthetic-train", "256", "--mm-size", "128", "--nets", "2",
              "--variants", "ours-fp32", "batched-fp32"],
    "compile": None,  # compiling on a CPU takes minutes and checks nothing a GPU run needs
    "quick": ["data=synthetic", "data.train_size=256", "data.test_size=64", "model.depth=8", "trainer.batch_size=32",
              "trainer.max_iters=4", "trainer.eval_every=2", "schedule.ramp_iters=1", "trainer.device=cpu"],
}
FULL = {
    "tests": ["-m", "cuda", "-q", "-rA", "-s", "-p", "no:cacheprovider"],
    "bench": ["--device", "cuda", "--models", "resnet20", "resnet56", "--iters", "50", "--repeats", "3", "--warmup",
              "5", "--nets", "4", "--variants", "ours-fp32", "ours-bf16", "batched-fp32", "batched-bf16"],
    "compile": ["--device", "cuda", "--models", "resnet20", "--iters", "50", "--repeats", "3", "--warmup", "5",
                "--variants", "ours-bf16", "compiled-bf16"],
    "quick": ["trainer.device=cuda"],
}


def run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """A subprocess's exit code, seconds and output (the last 6000 characters), never raising."""
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
        code, out = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as e:
        code, out = "timeout", f"{e.stdout or ''}{e.stderr or ''}"  # text, as `run` collected it after the kill
    return {"command": " ".join(cmd), "exit": code, "seconds": round(time.perf_counter() - start, 1),
            "output": out[-6000:]}


def options(args: argparse.Namespace, name: str) -> list[str] | None:
    """The options of step `name`'s command in this run, None where the step is skipped."""
    return (DRY if args.dry_run else FULL)[name]


def step_tests(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    tests = options(args, "tests")
    if tests is None:
        return {"ok": True, "skipped": "not in a dry run"}
    result = run([sys.executable, "-m", "pytest", *tests], args.timeout)
    return result | read_tests(result["exit"], result["output"])


def read_tests(exit_code: int | str, output: str) -> dict[str, Any]:
    """What the report keeps of pytest's output: the counts of its summary line, and whether all passed (a
    nonzero exit or a timeout, a failure or an error is not ok)."""
    counts = {kind.rstrip("s") if kind.startswith("error") else kind: int(n)
              for n, kind in re.findall(r"(\d+) (passed|failed|skipped|errors?)", output)}
    return {"counts": counts, "ok": exit_code == 0 and not counts.get("failed") and not counts.get("error")}


def step_bench(args: argparse.Namespace, out: Path, name: str = "bench") -> dict[str, Any]:
    bench = options(args, name)
    if bench is None:
        return {"ok": True, "skipped": "not in a dry run"}
    json_path = out / f"{name}.json"
    env = {k: v for k, v in os.environ.items() if k != "RESNET_EXP_DATA"}  # the rates do not depend on pixels
    result = run([sys.executable, "-m", "resnet_exp.tools.benchmark", *bench, "--json", str(json_path)],
                 args.timeout, env)
    result["ok"] = result["exit"] == 0 and json_path.is_file()
    if json_path.is_file():
        report = json.loads(json_path.read_text())
        result["rows"] = [{k: row[k] for k in ("model", "variant", "images_per_s", "vs_ours", "peak_pct",
                                                  "warmup_s", "nets")} for row in report["results"]]
        result["skipped_variants"] = report["skipped"]
    return result


def step_compile(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    return step_bench(args, out, "compile")


def quick_verdict(model: str, train_error: float | None) -> dict[str, Any]:
    """The CUDA run's final training error against the CPU seeds' range, widened by `QUICK_MARGIN`."""
    cpu = CPU_QUICK[model]
    low, high = min(cpu) - QUICK_MARGIN, max(cpu) + QUICK_MARGIN
    return {"cpu_seeds": list(cpu), "accepted_range": [low, high],
            "consistent": train_error is not None and low <= train_error <= high}


def step_quick(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    runs = {}
    for model in QUICK_MODELS:
        run_dir = out / "quick" / model
        overrides = ["experiment=degradation_quick", "hydra.mode=RUN", f"model={model}", f"hydra.run.dir={run_dir}",
                     "trainer.progress=false", *(options(args, "quick") or [])]
        result = run([sys.executable, "-m", "resnet_exp.cli", *overrides], args.timeout)
        summary_path = run_dir / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
        result["summary"] = {k: summary.get(k) for k in ("status", "iterations", "final_train_error",
                                                         "final_test_error", "wall_time_s", "device")}
        result["summary"]["precision"] = summary.get("settings", {}).get("trainer.precision")
        if not args.dry_run:
            result |= quick_verdict(model, summary.get("final_train_error"))
        result["ok"] = result["exit"] == 0 and summary.get("status") == "completed" and result.get("consistent", True)
        runs[model] = result
    return {"ok": all(r["ok"] for r in runs.values()), "runs": runs}


def machine() -> dict[str, Any]:
    """What a run's summary.json records of the code and machine, and the GPU's memory."""
    if not torch.cuda.is_available():
        return provenance(torch.device("cpu"))
    return provenance(torch.device("cuda")) | {
        "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    }


def markdown(report: dict[str, Any]) -> str:
    """The report for people: one section a step, the numbers first, the raw output last."""
    m = report["machine"]
    lines = [f"# gpu-check, {report['started']}", "",
             f"GPU: {m.get('gpu', 'none')} ({m.get('gpu_memory_gib', '-')} GiB); torch {m['torch']}, CUDA "
             f"{m['cuda']}, cuDNN {m['cudnn']}; {'dry run' if report['dry_run'] else 'full run'}.", ""]
    for name, step in report["steps"].items():
        lines += [f"## {name}: {'ok' if step.get('ok') else 'FAILED'}", ""]
        if "skipped" in step:
            lines += [f"skipped: {step['skipped']}", ""]
        if "rows" in step:
            lines += ["| model | variant | images/s | vs eager | % of peak | warm-up s |", "|---|---|---|---|---|---|"]
            for r in step["rows"]:
                vs = "-" if r["vs_ours"] is None else f"{r['vs_ours']:.2f}x"
                lines.append(f"| {r['model']} | {r['variant']} | {r['images_per_s']:.0f} | {vs} | "
                             f"{r['peak_pct']:.2f} | {r['warmup_s']:.1f} |")
            lines += [""]
        if "counts" in step:
            lines += [f"tests: {', '.join(f'{n} {kind}' for kind, n in step['counts'].items()) or 'none ran'}", ""]
        for model, r in step.get("runs", {}).items():
            s = r["summary"]
            lines.append(f"- {model}: {s.get('status')}, {s.get('iterations')} iterations, train error "
                         f"{s.get('final_train_error')}, test error {s.get('final_test_error')}, "
                         f"{s.get('wall_time_s')} s ({s.get('precision')}, {s.get('device')})"
                         + (f"; CPU seeds {r['cpu_seeds']}, consistent: {r['consistent']}" if "cpu_seeds" in r
                            else ""))
        outputs = [step] if "output" in step else list(step.get("runs", {}).values())
        for o in outputs:
            lines += ["", f"`{o['command']}`: exit {o['exit']}, {o['seconds']} s", "", "```", o["output"][-2500:],
                      "```"]
        lines.append("")
    return "\n".join(lines)


def write(report: dict[str, Any], out: Path) -> None:
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "gpu_check.md").write_text(markdown(report))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS), help="default: all")
    parser.add_argument("--dry-run", action="store_true", help="on a CPU with tiny sizes: checks the script runs")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "gpu_check",
                        help="report folder (default: outputs/gpu_check)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per step's process (default: 300)")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        parser.error("no CUDA device is visible: run it on a GPU machine, or --dry-run to test the script here")
    args.out.mkdir(parents=True, exist_ok=True)
    steps = {"tests": step_tests, "bench": step_bench, "compile": step_compile, "quick": step_quick}
    report: dict[str, Any] = {"started": datetime.now().isoformat(timespec="seconds"), "dry_run": args.dry_run,
                              "machine": machine(), "steps": {}}
    for name in args.steps:
        print(f"gpu-check: {name} ...", flush=True)
        report["steps"][name] = steps[name](args, args.out)
        write(report, args.out)
        print(f"gpu-check: {name} {'ok' if report['steps'][name]['ok'] else 'FAILED'}", flush=True)
    print(f"gpu-check: report in {args.out / 'gpu_check.md'}")
    return 0 if all(step["ok"] for step in report["steps"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
