"""One device parser for the runner, the analyses and the measuring tools: the same names accepted and refused."""

from __future__ import annotations

import pytest
import torch

from resnet_exp.devices import resolve_device
from resnet_exp.errors import ConfigError
from resnet_exp.tools import benchmark, step_profile
from resnet_exp.tools.analysis.cli import main as analyze
from resnet_exp.training import TrainerSettings


@pytest.mark.parametrize("bad", ["tpu", "cuda:x", "CPU", "cuda:", "gpu0"])
def test_every_tool_refuses_an_unknown_device_naming_it(bad: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ConfigError, match=rf"trainer.device='{bad}' is not known; accepted: auto, cpu, cuda, cuda:N"):
        TrainerSettings(device=bad)
    for tool, args in ((analyze, ["responses", "run"]), (benchmark.main, []), (step_profile.main, [])):
        with pytest.raises(SystemExit) as exit_info:
            tool([*args, "--device", bad])
        assert exit_info.value.code == 2
        assert f"--device={bad!r} is not known; accepted: auto, cpu, cuda, cuda:N" in capsys.readouterr().err


def test_auto_and_cpu_resolve_everywhere_alike() -> None:
    expected = torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    assert resolve_device("auto") == TrainerSettings(device="auto").torch_device() == expected
    assert resolve_device("cpu", "--device") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_cuda_without_a_gpu_says_what_to_use_instead() -> None:
    with pytest.raises(ConfigError, match=r"--device=cuda:1 but no CUDA device is visible; use --device=cpu"):
        resolve_device("cuda:1", "--device")
    with pytest.raises(ConfigError, match=r"trainer.device=cuda but no CUDA device is visible; use trainer.device=cpu"):
        TrainerSettings(device="cuda").torch_device()
