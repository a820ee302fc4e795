"""The captured training step: its SGD update equals torch's (CPU), and on a GPU graphed steps train as eager ones."""

from pathlib import Path

import pytest
import torch
from conftest import FAST
from hydra import compose, initialize_config_module

from resnet_exp.cli import assemble
from resnet_exp.errors import ConfigError
from resnet_exp.training import TrainerSettings
from resnet_exp.training.cuda_graph import sgd_update_


@pytest.mark.parametrize(
    "options",
    [
        {"momentum": 0.9, "weight_decay": 1e-4},
        {"momentum": 0.9, "weight_decay": 0.0, "nesterov": True},
        {"momentum": 0.9, "weight_decay": 5e-4, "nesterov": True},
        {"momentum": 0.5, "weight_decay": 1e-4, "dampening": 0.3},
        {"momentum": 0.0, "weight_decay": 1e-4},
    ],
)
def test_graph_update_is_torchs_sgd_with_a_tensor_lr(options: dict) -> None:
    torch.manual_seed(0)
    params = [torch.randn(5, 3), torch.randn(7)]
    ours = [p.clone() for p in params]
    reference = torch.optim.SGD(params, lr=0.1, **options)
    optimizer = torch.optim.SGD(ours, lr=0.1, **options)
    lr = torch.zeros(())
    for step in range(6):
        grads = [torch.randn_like(p) for p in params]
        for p, q, g in zip(params, ours, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        rate = 0.1 if step < 3 else 0.01  # a milestone: the new lr reaches the update through the tensor
        reference.param_groups[0]["lr"] = rate
        if step == 0:  # the momentum buffers come from an eager step, as in the trainer's warm-up
            optimizer.step()
        else:
            lr.fill_(rate)
            sgd_update_(optimizer, ours, lr)
            torch.testing.assert_close(ours[0].grad, grads[0])  # the gradient is left as it was, for grad_norms
        reference.step()
    for p, q in zip(params, ours, strict=True):
        torch.testing.assert_close(q, p, rtol=1e-6, atol=1e-7)  # up to the rounding of lr * g then p - lr * g


def test_cuda_graph_settings_name_the_conflict() -> None:
    with pytest.raises(ConfigError, match=r"trainer.cuda_graph=true needs a CUDA device, the run is on cpu"):
        TrainerSettings(cuda_graph=True).uses_cuda_graph(torch.device("cpu"))
    with pytest.raises(ConfigError, match=r"trainer.cuda_graph=true with trainer.compile=true: choose one"):
        TrainerSettings(cuda_graph=True, compile=True)
    assert not TrainerSettings().uses_cuda_graph(torch.device("cpu"))
    assert TrainerSettings().uses_cuda_graph(torch.device("cuda"))
    assert not TrainerSettings(compile=True).uses_cuda_graph(torch.device("cuda"))


def losses_of(tmp_path: Path, steps: int, *overrides: str) -> tuple[list[float], bool]:
    """Per-step training losses of the first `steps` iterations of a tiny run, and whether a graph ran."""
    with initialize_config_module("resnet_exp.configs", version_base="1.3"):
        cfg = compose("config", overrides=[*FAST, "trainer.device=cuda", "trainer.deterministic=true", *overrides])
    trainer = assemble(cfg, tmp_path)
    trainer.model.train()
    losses = []
    for _ in range(steps):
        trainer.set_lr()
        trainer.step(*next(trainer.batches.train))
        trainer.iteration += 1
        losses.append(trainer.read_pending()[0])
    return losses, trainer.graphed is not None and trainer.graphed.captured


@pytest.mark.cuda
@pytest.mark.parametrize(("precision", "tolerance"), [("fp32", 1e-3), ("bf16", 3e-2)])
def test_graphed_steps_train_as_eager_steps(tmp_path: Path, precision: str, tolerance: float) -> None:
    # A milestone at 25 checks that the lr reaches the replayed update without a re-capture.
    common = (f"trainer.precision={precision}", "schedule.milestones=[25]", "model.depth=14")
    eager, eager_graphed = losses_of(tmp_path / "eager", 50, "trainer.cuda_graph=false", *common)
    graphed, was_graphed = losses_of(tmp_path / "graph", 50, "trainer.cuda_graph=true", *common)
    assert was_graphed and not eager_graphed
    gap = max(abs(a - b) for a, b in zip(eager, graphed, strict=True))
    print(f"{precision}: max |loss difference| over 50 steps {gap:.2e}")
    assert graphed == pytest.approx(eager, rel=tolerance, abs=tolerance)
