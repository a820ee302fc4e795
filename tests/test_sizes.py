"""Sizes that cannot fit are refused before anything is allocated, with the estimate and the limit."""

from pathlib import Path

import pytest
from conftest import FAST, run_cli

from resnet_exp.models import CifarResNet, count_parameters
from resnet_exp.models.footprint import cifar_footprint, kept_elements


@pytest.mark.parametrize("settings", [
    {"depth": 56}, {"depth": 56, "residual": False}, {"depth": 110, "shortcut": "B"},
    {"depth": 29, "block": "bottleneck"}, {"depth": 38, "block": "preact-bottleneck", "shortcut": "D"},
])
def test_the_footprint_from_two_small_twins_is_the_nets_own(settings: dict) -> None:
    net = CifarResNet(**settings)
    estimate = cifar_footprint(settings, batch_size=4)
    assert estimate.parameters == count_parameters(net)
    assert estimate.activation_bytes == 4 * kept_elements(net.to("meta"), 4)


def test_a_net_too_deep_for_the_memory_is_refused_in_one_line(tmp_path: Path) -> None:
    proc = run_cli(*FAST, "model.depth=999998", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, timeout=60)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip()
    assert line.startswith("resnet-exp: error: model.depth=999998 with trainer.batch_size=32 needs about"), line
    assert "GiB available on cpu" in line and "\n" not in line


def test_a_batch_larger_than_the_training_set_is_refused(tmp_path: Path) -> None:
    proc = run_cli(*FAST, "trainer.batch_size=100000", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == ("resnet-exp: error: trainer.batch_size=100000 is larger than the 512 training "
                                   "images; choose a batch size of at most the training set's size")
