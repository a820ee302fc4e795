"""Test error of the canonical PyTorch CIFAR ResNets' published weights, run by this project's `CifarResNet`.

    python scripts/eval_pretrained.py resnet56-4bfd9763.th resnet20-12fca82f.th

The files are akamaster/pytorch_resnet_cifar10's `pretrained_models/` (its README lists test errors of 8.27%
for ResNet-20 and 6.61% for ResNet-56). They load into the default net (option A with the zero channels on both
sides), and the test images are normalised per channel with ImageNet statistics, as that code trained them.
With `--zero-channels end` the same weights run with the channels appended instead, to see what the layout
changes.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from resnet_exp.data import read_cifar10
from resnet_exp.errors import CheckpointError, UserError
from resnet_exp.models import CifarResNet
from resnet_exp.models.cifar import ZERO_CHANNELS
from resnet_exp.models.published import IMAGENET_MEAN, IMAGENET_STD, convert


def load(path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside a published `.th` file ({"state_dict": ...}, or the bare dict)."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"weights file {str(path)!r} does not exist") from None
    except Exception as e:  # a truncated file, or pickled objects weights_only refuses
        # torch's own message advises retrying with weights_only=False, which would run whatever the file names
        raise CheckpointError(
            f"cannot read {str(path)!r} as a weights file ({type(e).__name__}): it is damaged, or holds objects "
            "other than tensors, which are refused unread; use the published .th files") from None
    state = saved.get("state_dict", saved) if isinstance(saved, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{str(path)!r} holds no state dict of tensors (expected {{'state_dict': ...}})")
    return state


@torch.no_grad()
def test_error(model: CifarResNet, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> float:
    """Error (%) on uint8 images normalised with ImageNet's per-channel statistics."""
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
    model.eval()
    wrong = 0
    for start in range(0, len(labels), batch_size):
        x = (images[start : start + batch_size].float() / 255 - mean) / std
        wrong += (model(x).argmax(1) != labels[start : start + batch_size]).sum().item()
    return 100.0 * wrong / len(labels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eval_pretrained.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", nargs="+", type=Path, help="published .th files")
    parser.add_argument("--data-root", default=os.environ.get("RESNET_EXP_DATA", "./data"),
                        help="the folder holding cifar-10-batches-py/ (default: $RESNET_EXP_DATA, else ./data)")
    parser.add_argument("--zero-channels", choices=ZERO_CHANNELS, default="both",
                        help="option A layout to run them with (default: %(default)s, the one they were trained in)")
    parser.add_argument("--batch-size", type=int, default=500, help="test images per forward (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        data = read_cifar10(args.data_root)
        for path in args.weights:
            depth, state = convert(load(path))
            model = CifarResNet(depth, zero_channels=args.zero_channels)
            try:
                model.load_state_dict(state)
            except RuntimeError as e:
                raise CheckpointError(f"{str(path)!r} does not fit resnet{depth}: {str(e).splitlines()[0]}") from e
            error = test_error(model, data.test_images, data.test_labels, args.batch_size)
            print(f"{path.name}: resnet{depth}, zero channels {args.zero_channels}, test error {error:.2f}%")
    except UserError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
