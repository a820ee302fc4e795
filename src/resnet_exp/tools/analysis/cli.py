"""`resnet-exp-analyze`: measurements on trained runs and on nets at initialisation, written as
`<out>/<name>.png` and `<out>/<name>.json` (per-block or per-layer numbers keyed by block index or layer name).

    resnet-exp-analyze responses RUN_DIR...              # layer response std, ||F(x)||/||x|| per block
    resnet-exp-analyze lesion RUN_DIR... --draws 5       # delete blocks at test time
    resnet-exp-analyze gradients [RUN_DIR...] --init plain20,plain56,resnet20,resnet56
    resnet-exp-analyze sensitivity RUN_DIR... --eps 0.001,0.01
    resnet-exp-analyze start --init resnet20,resnet56 --iters 60   # the first steps of training, step by step

User errors (a run dir without config or checkpoint, missing data, bad values) end with one line, exit code 2.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from resnet_exp.devices import device_argument
from resnet_exp.errors import UserError
from resnet_exp.tools.analysis import gradients, lesion, responses, sensitivity, start
from resnet_exp.tools.analysis.common import Subject, Workbench, compose_config, relabel, write_outputs
from resnet_exp.tools.analysis.runconfig import read_config

PROG = "resnet-exp-analyze"


def at_least(low: int) -> Callable[[str], int]:
    """An argparse type for integers >= `low`."""

    def parse(text: str) -> int:
        if not text.isdigit() or int(text) < low:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= {low}")
        return int(text)

    return parse


def positive_floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of positive numbers")
    return values


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("runs", nargs="*", type=Path, metavar="RUN_DIR",
                        help="run dirs (with summary.json and checkpoints/last.pt); several are overlaid")
    common.add_argument("--out", type=Path, help="output folder (default: RUN_DIR/analysis of the first run dir, "
                        "or ./analysis with --init only)")
    common.add_argument("--data-root", help="override data.root of the runs (the folder holding cifar-10-batches-py)")
    common.add_argument("--limit", type=at_least(1), help="use only the first N test images (faster)")
    common.add_argument("--batch-size", type=at_least(1), default=200, help="images per forward (default: 200)")
    common.add_argument("--device", type=device_argument, default="auto",
                        help="auto, cpu, cuda or cuda:N (default: auto)")
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True,
                                metavar="{responses,lesion,gradients,sensitivity,start}")

    def command(name: str, module: Any) -> argparse.ArgumentParser:
        doc = module.__doc__
        summary = " ".join(doc.split("\n\n")[0].split())  # the docstring's first paragraph, whole
        return sub.add_parser(name, parents=[common], help=summary, description=doc,
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    command("responses", responses)
    les = command("lesion", lesion)
    les.add_argument("--draws", type=at_least(1), default=5, help="random draws per k (default: 5)")
    les.add_argument("--seed", type=int, default=0, help="seed of the random draws (default: 0)")
    def init_options(sub_parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub_parser.add_argument("--init", type=lambda text: [n for n in text.split(",") if n], default=[],
                                help="model config names of nets at initialisation, e.g. plain20,resnet56")
        sub_parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                                help="a Hydra override for the --init configs, repeatable (e.g. data=synthetic)")
        return sub_parser

    grad = init_options(command("gradients", gradients))
    grad.add_argument("--points", type=at_least(8), default=256, help="inputs along each line (default: 256)")
    grad.add_argument("--lines", type=at_least(1), default=4, help="lines between test images (default: 4)")
    grad.add_argument("--bn-batches", type=at_least(0), default=10, help="training batches that set the BN "
                      "statistics of nets at initialisation; 0 keeps BN the identity (default: 10)")
    sens = command("sensitivity", sensitivity)
    sens.add_argument("--eps", type=positive_floats, default=[0.001, 0.003, 0.01, 0.03],
                      help="perturbation sizes in normalised input units (default: 0.001,0.003,0.01,0.03)")
    sens.add_argument("--seed", type=int, default=0, help="seed of the random directions (default: 0)")
    begin = init_options(command("start", start))
    begin.add_argument("--iters", type=at_least(1), default=60, help="training steps per net (default: 60)")
    return parser


def analyse(args: argparse.Namespace, bench: Workbench) -> tuple[dict[str, Any], Any]:
    """Build the subjects the command asks for and measure them."""
    if args.command == "start":
        names = [run.name for run in args.runs]
        configs = {run.name if names.count(run.name) == 1 else str(run): read_config(run) for run in args.runs}
        configs.update((name, compose_config(name, args.override)) for name in args.init)
        for cfg in configs.values():
            cfg.trainer.device = str(bench.device)
            cfg.data = bench.data_config(cfg)
        return start.run(configs, args.iters)
    trained = relabel([bench.trained(run) for run in args.runs])
    if args.command == "responses":
        return responses.run(trained)
    if args.command == "lesion":
        return lesion.run(trained, args.draws, args.seed)
    if args.command == "sensitivity":
        return sensitivity.run(trained, args.eps, args.seed)
    entries: list[dict[str, Subject]] = [{"init": bench.fresh(s.cfg, s.run_dir), "trained": s} for s in trained]
    entries += [{"init": bench.configured(name, args.override)} for name in args.init]
    relabel([entry.get("trained", entry["init"]) for entry in entries])
    return gradients.run(entries, args.points, args.lines, args.batch_size)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.runs and not getattr(args, "init", None):
        parser.error(f"{args.command} needs a RUN_DIR" + (" or --init" if hasattr(args, "init") else ""))
    bench = Workbench(args.device, args.batch_size, args.limit, args.data_root, getattr(args, "bn_batches", 0))
    out = args.out or (args.runs[0] / "analysis" if args.runs else Path("analysis"))
    try:
        payload, fig = analyse(args, bench)
    except UserError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # an analysis writes its outputs at the end, so nothing partial is left behind
        print(f"{PROG}: interrupted; nothing was written", file=sys.stderr)
        return 128 + signal.SIGINT
    written = write_outputs(out, args.command, payload, fig)
    print("wrote " + ", ".join(map(str, written)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
