"""BatchedNets: K nets trained as one vmapped computation equal the same nets trained one by one by `Trainer`."""

from __future__ import annotations

import copy

import pytest
import torch

from resnet_exp.data.module import Batches
from resnet_exp.data.synthetic import Synthetic
from resnet_exp.errors import ConfigError
from resnet_exp.models import CifarResNet
from resnet_exp.tools.batched import BatchedNets
from resnet_exp.training import StepSchedule, Trainer, TrainerSettings
from resnet_exp.training.optim import sgd

# vmap has no batching rule for the as_strided_ that adaptive_avg_pool2d does on channels_last inputs: it loops
# over the nets there (one small op per step), and says so.
pytestmark = pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")
ITERS = 20
BATCH = 16
# Equal up to rounding: vmap turns the K convs into one grouped conv and each BN into one BN over K*C channels
# (then a per-net scale and shift), whose sums run in another order than the separate kernels'. Which order, and
# so which rounding, depends on the CPU's kernels (AVX2, AVX-512, AMX), so tolerances follow from the arithmetic,
# not from one machine's results.
# float64: the rounding is ~1e-16 (measured after 20 steps), so 1e-9 proves the batched step is the separate one;
# a wrong lr, gradient or BN update of any net moves the weights by ~1e-3 or more. The losses are float32 in both
# paths (the logits are cast to float32 as `Trainer.forward` does), so they match to float32 rounding, and the
# predictions are the same.
EXACT = {"rtol": 1e-9, "atol": 1e-11}
# float32: one dot product of n terms is exact to n * 2^-24 relative (the worst-case bound), i.e. 3.4e-5 for the
# 576-term sums of a 64-channel 3x3 conv, and the 8-layer net stacks 8 of them: up to ~3e-4 per forward. A
# pre-ReLU value within that of zero can also take the other sign in one path; that image's gradient then
# differs by ~1e-4 and the runs drift apart like two fp32 runs of one net on different hardware, and a near-tie
# of two logits can flip one prediction. So float32 is checked to 1e-3 (bugs that the float64 run would catch
# move it by far more), and one prediction per step may differ.
FP32 = {"rtol": 1e-3, "atol": 1e-4}
LOSS = {torch.float64: {"rtol": 1e-6, "atol": 1e-6}, torch.float32: FP32}
FLIPS = {torch.float64: 0, torch.float32: 1}


@pytest.fixture(scope="module")
def batches() -> Batches:
    """The trainer needs a `Batches` to be built; `Trainer.step` itself is fed the batches below."""
    return Synthetic(train_size=20, test_size=10).batches(torch.device("cpu"), BATCH, 10, seed=0)


def seeded_nets(kinds: list[tuple[int, bool]], dtype: torch.dtype = torch.float32) -> list[CifarResNet]:
    """Net k built right after torch.manual_seed(k), so the nets start from different weights."""
    nets = []
    for k, (depth, residual) in enumerate(kinds):
        torch.manual_seed(k)
        nets.append(CifarResNet(depth, residual).to(dtype))
    return nets


def data(
    k: int, iters: int = ITERS, size: int = 8, dtype: torch.dtype = torch.float32
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each iteration's [K, B, 3, size, size] images and [K, B] labels: every net gets its own batches (the nets
    run unchanged on small images, thanks to global pooling)."""
    g = torch.Generator().manual_seed(1234)
    return [
        (torch.randn(k, BATCH, 3, size, size, generator=g).to(dtype), torch.randint(0, 10, (k, BATCH), generator=g))
        for _ in range(iters)
    ]


def train_both(
    kinds: list[tuple[int, bool]], channels_last: bool, dtype: torch.dtype, size: int, batches: Batches
) -> tuple[BatchedNets, list[Trainer]]:
    """The same seeded nets trained batched and, one `Trainer` each, separately; losses and errors are compared
    at every step (the lr falls at steps 10 and 15, so the lr each step gets is checked too)."""
    nets = seeded_nets(kinds, dtype)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    batched = BatchedNets(copy.deepcopy(nets), memory_format=layout)
    settings = TrainerSettings(device="cpu", precision="fp32", channels_last=channels_last)
    schedule = StepSchedule(lr=0.1, max_iters=20, milestones=[10, 15])
    cpu = torch.device("cpu")
    trainers = [Trainer(settings, net, sgd(net.parameters()), schedule, batches, cpu, None) for net in nets]
    for iteration, (xs, ys) in enumerate(data(len(nets), size=size, dtype=dtype)):
        lrs = set()
        for k, trainer in enumerate(trainers):
            trainer.iteration = iteration
            lrs.add(trainer.set_lr())
            trainer.step(xs[k], ys[k])
        expected = torch.tensor(
            [trainer.read_progress() for trainer in trainers], dtype=torch.float64
        )  # (loss, error %) per net
        (lr,) = lrs
        losses = batched.step(xs, ys, lr)
        assert losses.shape == (len(nets),) and not losses.requires_grad
        torch.testing.assert_close(losses.double(), expected[:, 0], **LOSS[dtype])
        wrong = (batched.last_wrong.double() - expected[:, 1] * BATCH / 100.0).abs()
        assert wrong.max().item() <= FLIPS[dtype], f"step {iteration}: predictions differ by {wrong.tolist()}"
    assert batched.buffers["bn.num_batches_tracked"].tolist() == [ITERS] * len(nets)
    return batched, trainers


def assert_same_state(batched: BatchedNets, nets: list[torch.nn.Module], tolerance: dict[str, float]) -> None:
    """Every parameter and buffer (BN running statistics included) of every net, under its state_dict key."""
    for k, (state, net) in enumerate(zip(batched.state_dicts(), nets, strict=True)):
        expected = net.state_dict()
        assert list(state) == list(expected)
        for name, tensor in expected.items():
            torch.testing.assert_close(state[name], tensor, **tolerance, msg=lambda m, k=k, n=name: f"net {k} {n}: {m}")


KINDS = {
    "resnet8-x3": ([(8, True)] * 3, False),
    "resnet8-x3-channels-last": ([(8, True)] * 3, True),
    "plain8-resnet8-plain8": ([(8, False), (8, True), (8, False)], False),  # plain and residual twins (option A)
}


# float64 on 8x8 images proves exactness; float32 on 4x4 images checks the everyday dtype to its rounding (FP32).
PRECISIONS = {"float64": (torch.float64, 8, EXACT), "float32": (torch.float32, 4, FP32)}


@pytest.mark.parametrize(("dtype", "size", "tolerance"), PRECISIONS.values(), ids=PRECISIONS.keys())
@pytest.mark.parametrize(("kinds", "channels_last"), KINDS.values(), ids=KINDS.keys())
def test_batched_training_equals_separate_trainers(
    kinds: list[tuple[int, bool]], channels_last: bool, dtype: torch.dtype, size: int, tolerance: dict,
    batches: Batches,
) -> None:
    batched, trainers = train_both(kinds, channels_last, dtype, size, batches)
    assert_same_state(batched, [trainer.model for trainer in trainers], tolerance)


def test_nets_of_other_shapes_are_refused_naming_the_parameter() -> None:
    with pytest.raises(ConfigError, match=r"parameter 'blocks\.1\.conv1\.weight' is \(16, 16, 3, 3\) there"):
        BatchedNets([CifarResNet(8), CifarResNet(14)])
    with pytest.raises(ConfigError, match=r"parameter 'blocks\.1\.shortcut\.0\.weight' is missing there"):
        BatchedNets([CifarResNet(8, shortcut="B"), CifarResNet(8, residual=False)])
    with pytest.raises(ConfigError, match="different zero_channels"):
        BatchedNets([CifarResNet(8), CifarResNet(8, zero_channels="end")])


def test_state_dicts_load_into_single_nets_that_compute_the_batched_outputs() -> None:
    kinds = [(8, True), (8, False)]
    nets = seeded_nets(kinds)
    before = copy.deepcopy(nets[0].state_dict())
    batched = BatchedNets(nets, lr=0.05, nesterov=True)
    for xs, ys in data(len(nets), iters=3):
        batched.step(xs, ys, 0.05)
    for name, tensor in nets[0].state_dict().items():  # training works on copies
        assert torch.equal(tensor, before[name]), name
    xs, _ = data(len(nets), iters=1)[0]
    with torch.no_grad():
        outputs = batched.eval()(xs)
    fresh = [CifarResNet(depth, residual) for depth, residual in kinds]
    for net, state in zip(fresh, batched.state_dicts(), strict=True):
        net.load_state_dict(state)
    batched.load_into(nets)
    for k, (a, b) in enumerate(zip(fresh, nets, strict=True)):
        with torch.no_grad():
            torch.testing.assert_close(a.eval()(xs[k]), outputs[k], **FP32)
            assert torch.equal(b.eval()(xs[k]), a(xs[k]))
    assert fresh[0].bn.num_batches_tracked.item() == 3


def test_bf16_autocast_runs_and_stays_close_to_fp32() -> None:
    nets = seeded_nets([(8, True)] * 2)
    (xs, ys) = data(2, iters=1)[0]
    fp32 = BatchedNets(copy.deepcopy(nets)).step(xs, ys, 0.1)
    bf16 = BatchedNets(nets, amp_dtype=torch.bfloat16, memory_format=torch.channels_last).step(xs, ys, 0.1)
    assert bf16.dtype == torch.float32
    torch.testing.assert_close(bf16, fp32, rtol=2e-2, atol=0)  # bf16 keeps ~3 significant digits
