"""Operator families of the step profile, and the conv backward split into its two gradients."""

from __future__ import annotations

import pytest
import torch

from resnet_exp.models import CifarResNet
from resnet_exp.tools.profiling import conv_backward_split, op_family, split_conv_backward


@pytest.mark.parametrize(
    ("name", "scopes", "family"),
    [
        ("aten::convolution_backward", [], "conv backward"),
        ("aten::mkldnn_convolution", ["aten::convolution", "aten::conv2d"], "conv forward"),
        ("aten::native_batch_norm_backward", [], "batch norm backward"),
        ("aten::native_batch_norm", [], "batch norm forward"),
        ("aten::threshold_backward", [], "ReLU forward/backward"),
        ("aten::add_", [], "additions (shortcuts, gradient sums)"),
        ("aten::add_", ["Optimizer.step#SGD.step"], "optimizer step"),
        ("aten::index", ["data"], "data pipeline"),
        ("aten::_to_copy", ["aten::to"], "copies and dtype casts (autocast)"),
        ("aten::empty", [], "other (allocation, bookkeeping)"),
    ],
)
def test_operators_fall_in_their_family(name: str, scopes: list[str], family: str) -> None:
    assert op_family(name, scopes) == family


def test_conv_backward_is_divided_by_the_measured_ratio() -> None:
    times = split_conv_backward({"conv backward": 9.0, "conv forward": 4.0}, 1.0, 2.0)
    assert times == pytest.approx({"conv backward: input gradient": 3.0, "conv backward: weight gradient": 6.0,
                                   "conv forward": 4.0})
    assert split_conv_backward({"conv forward": 4.0}, 1.0, 2.0) == {"conv forward": 4.0}


def test_conv_backward_split_times_every_layer() -> None:
    model = CifarResNet(8, True)
    input_s, weight_s = conv_backward_split(model, torch.randn(4, 3, 32, 32), torch.float32, repeats=1)
    assert input_s > 0 and weight_s > 0
