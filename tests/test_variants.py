"""Block variants (pre-activation, bottleneck, shortcuts B and D) and torchvision's ResNets as model options."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from conftest import compose_config
from hydra.utils import instantiate

from resnet_exp.errors import ConfigError
from resnet_exp.models import CifarResNet, count_parameters
from resnet_exp.models.cifar import BLOCKS, BasicBlock, PreActBasicBlock, projection
from resnet_exp.models.torchvision_nets import torchvision_resnet

# Configs whose names end in a letter are the variants; the bases they start from live in model/base/.
VARIANT_CONFIGS = sorted(p.stem for p in (Path(__file__).parents[1] / "configs" / "model").glob("*[!0-9].yaml"))
CONFIG_PARAMS = {
    "resnet56-B": 855_770,
    "resnet56-D": 855_770,
    "resnet110-preact": 1_727_962,  # the same as resnet110: the BNs only move
    "resnet164-preact-bottleneck-B": 1_703_258,
    "tv_resnet18-cifar": 11_173_962,
    "tv_resnet34-cifar": 21_282_122,
    "tv_resnet50-cifar": 23_520_842,
}
SMALL_DEPTH = {"basic": 8, "preact": 8, "bottleneck": 11, "preact-bottleneck": 11}


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("shortcut", ["A", "B", "D"])
def test_every_block_and_shortcut_runs_with_plain_twin(block: str, shortcut: str) -> None:
    x = torch.randn(2, 3, 32, 32)
    residual = CifarResNet(SMALL_DEPTH[block], shortcut=shortcut, block=block)
    plain = CifarResNet(SMALL_DEPTH[block], residual=False, shortcut=shortcut, block=block)
    assert residual(x).shape == plain(x).shape == (2, 10)
    assert all(b.shortcut is None for b in plain.blocks)
    if shortcut == "A":  # parameter-free shortcuts: plain and residual nets have the same parameters
        assert count_parameters(plain) == count_parameters(residual)


def test_preact_resnet164_is_the_papers_size() -> None:
    net = CifarResNet(164, shortcut="B", block="preact-bottleneck")
    assert count_parameters(net) == 1_703_258
    assert net.name == "resnet164-preact-bottleneck-B"
    # 18 blocks a stage; a projection only where each stage starts (16 -> 64, 64 -> 128, 128 -> 256 channels),
    # a bare 1x1 conv: pre-activation nets put no BN after it (the next block's BN-ReLU follows the addition).
    projections = {i: b.shortcut for i, b in enumerate(net.blocks) if not isinstance(b.shortcut, torch.nn.Identity)}
    assert list(projections) == [0, 18, 36]
    assert [count_parameters(p) for p in projections.values()] == [16 * 64, 64 * 128, 128 * 256]


def test_bottleneck_layers_count_to_depth_and_expand_four_times() -> None:
    net = CifarResNet(29, block="bottleneck", shortcut="B")
    block_convs = [m for b in net.blocks for m in (b.conv1, b.conv2, b.conv3)]
    assert len(block_convs) + 2 == 29  # plus the first conv and the linear layer
    assert [b.out_channels for b in net.blocks][::3] == [64, 128, 256]
    assert [b.conv2.kernel_size for b in net.blocks] == [(3, 3)] * 9
    assert net.fc.in_features == 256


@pytest.mark.parametrize(
    ("block", "bn_widths"),
    [("basic", [32, 32]), ("preact", [16, 32]), ("bottleneck", [32, 32, 128]), ("preact-bottleneck", [64, 32, 32])],
)
def test_each_bn_normalises_its_convs_output_or_in_pre_activation_blocks_its_input(
    block: str, bn_widths: list[int]
) -> None:
    """The first block of stage 2 takes 16 channels (64 after bottlenecks) to a stage width of 32 (128 out)."""
    net = CifarResNet(SMALL_DEPTH[block], block=block, shortcut="B")
    names = list(dict(net.blocks[1].named_children()))
    layers = len(bn_widths)
    # conv1, bn1, conv2, bn2[, conv3, bn3], shortcut: the order in which checkpoints store the optimizer state.
    assert names == [f"{kind}{i}" for i in range(1, layers + 1) for kind in ("conv", "bn")] + ["shortcut"]
    assert [getattr(net.blocks[1], f"bn{i}").num_features for i in range(1, layers + 1)] == bn_widths


def test_option_d_projection_is_average_pool_then_unstrided_conv() -> None:
    x = torch.randn(2, 16, 32, 32)
    d = projection(16, 32, 2, pool=True).eval()
    expected = d[2](F.conv2d(F.avg_pool2d(x, 2), d[1].weight))
    assert torch.allclose(d(x), expected, atol=1e-6)
    assert count_parameters(d) == count_parameters(projection(16, 32, 2))


def test_preact_block_has_no_relu_after_addition_and_zero_branch_is_identity() -> None:
    x = torch.randn(2, 16, 8, 8)
    pre = PreActBasicBlock(16, 16, 1, "A").eval()
    post = BasicBlock(16, 16, 1, "A").eval()
    assert (pre(x) < 0).any()
    assert (post(x) >= 0).all()
    torch.nn.init.zeros_(pre.conv2.weight)
    torch.nn.init.zeros_(post.bn2.weight)
    torch.nn.init.zeros_(post.bn2.bias)
    assert torch.equal(pre(x), x)
    assert torch.equal(post(x), F.relu(x))


LAST_OF_BRANCH = {"basic": "bn2", "bottleneck": "bn3", "preact": "conv2", "preact-bottleneck": "conv3"}


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("shortcut", ["A", "B", "D"])
def test_zero_init_residual_starts_every_block_as_its_shortcut(block: str, shortcut: str) -> None:
    """Only the last layer of each branch starts at zero (a BN's gamma, or in pre-activation blocks the last conv),
    and every block then computes its shortcut alone: the identity where the shape stays, on the non-negative
    inputs a post-activation block receives."""
    net = CifarResNet(SMALL_DEPTH[block], shortcut=shortcut, block=block, zero_init_residual=True).eval()
    standard = CifarResNet(SMALL_DEPTH[block], shortcut=shortcut, block=block)
    zeroed = {name for name, p in net.named_parameters() if not p.any()}
    assert zeroed - {name for name, p in standard.named_parameters() if not p.any()} == {
        f"blocks.{i}.{LAST_OF_BRANCH[block]}.weight" for i in range(len(net.blocks))}
    x = net.stem(torch.randn(2, 3, 32, 32))
    branches: list[torch.Tensor] = []
    for b in net.blocks:
        out = b(x, lambda branch, skip: branches.append(branch) or branch + skip)
        assert not branches[-1].any()
        if not b.reshapes:
            assert torch.equal(out, x)
        x = out


def test_zero_init_residual_is_refused_on_a_plain_net_and_follows_residual_in_a_sweep() -> None:
    with pytest.raises(ConfigError, match=r"model.zero_init_residual=true on a plain net.*accepted on a plain net: "
                                          r"false"):
        CifarResNet(8, residual=False, zero_init_residual=True)
    for name, zeroed in (("plain20", False), ("resnet20", True)):
        cfg = compose_config(f"model={name}", "model.zero_init_residual=${model.residual}")
        assert (not instantiate(cfg.model).blocks[0].bn2.weight.any()) == zeroed


def test_torchvision_zero_init_residual_is_torchvisions_own() -> None:
    net = torchvision_resnet(18, zero_init_residual=True)
    assert not net.layer1[0].bn2.weight.any() and net.layer1[0].bn1.weight.all()
    assert not torchvision_resnet(50, zero_init_residual=True).layer1[0].bn3.weight.any()


def test_preact_net_ends_with_bn_relu_and_starts_with_a_bare_conv() -> None:
    for block, channels in (("preact", 64), ("preact-bottleneck", 256)):
        net = CifarResNet(SMALL_DEPTH[block], block=block).eval()
        assert net.bn.num_features == channels
        x = torch.randn(2, 3, 32, 32)
        assert torch.equal(net.stem(x), net.conv(x))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"depth": 56, "shortcut": "D"}, "resnet56-D"),
        ({"depth": 56, "shortcut": "D", "residual": False}, "plain56"),
        ({"depth": 110, "block": "preact"}, "resnet110-preact"),
        ({"depth": 110, "block": "preact", "residual": False}, "plain110-preact"),
        ({"depth": 20, "block": "bottleneck"}, "resnet20-bottleneck"),
    ],
)
def test_names(kwargs: dict, name: str) -> None:
    assert CifarResNet(**kwargs).name == name


def test_torchvision_resnets_keep_torchvisions_counts() -> None:
    imagenet_stem = torchvision_resnet(34, stem="imagenet")
    reference = torchvision.models.resnet34(num_classes=10)
    assert count_parameters(imagenet_stem) == count_parameters(reference) == 21_289_802
    assert (imagenet_stem.block, torchvision_resnet(50).block) == ("basic", "bottleneck")  # as the nets report it
    stem = torchvision_resnet(18)
    assert count_parameters(stem) == 11_173_962
    assert stem.conv1.kernel_size == (3, 3) and isinstance(stem.maxpool, torch.nn.Identity)
    assert stem(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_torchvision_bn_head_is_pool_bn_linear() -> None:
    net = torchvision_resnet(18, bn_head=True)
    assert net.name == "tv_resnet18-cifar-bnhead"
    assert isinstance(net.fc[0], torch.nn.BatchNorm1d) and net.fc[1].out_features == 10
    assert count_parameters(net) == 11_173_962 + 2 * 512
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"depth": 20, "block": "wide"}, r"model.block='wide'.*basic, bottleneck, preact, preact-bottleneck"),
        ({"depth": 20, "shortcut": "C"}, r"model.shortcut='C'.*A, B, D"),
        ({"depth": 32, "block": "bottleneck"}, r"model.depth=32.*9n\+2.*164"),
        ({"depth": 11, "block": "preact"}, r"model.depth=11.*6n\+2"),
    ],
)
def test_bad_cifar_options_name_value_and_accepted(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        CifarResNet(**kwargs)


def stem_output(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What torchvision's ResNet.forward computes before layer1."""
    return net.maxpool(net.relu(net.bn1(net.conv1(x))))


def test_deep_stem_is_resnet_c() -> None:
    deep = torchvision_resnet(50, stem="deep")
    convs = [m for m in deep.conv1.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (3, 32, (3, 3), (2, 2)), (32, 32, (3, 3), (1, 1)), (32, 64, (3, 3), (1, 1))
    ]
    bns = [m for m in deep.conv1.modules() if isinstance(m, torch.nn.BatchNorm2d)] + [deep.bn1]
    assert [bn.num_features for bn in bns] == [32, 32, 64]  # each conv followed by BN (and ReLU)
    assert isinstance(deep.maxpool, torch.nn.MaxPool2d)  # the max-pool after the stem stays
    conv_weights = 3 * 32 * 9 + 32 * 32 * 9 + 32 * 64 * 9  # no biases
    bn_params = 2 * (32 + 32 + 64)  # weight and bias of each BN
    assert count_parameters(deep.conv1) + count_parameters(deep.bn1) == conv_weights + bn_params == 28_768
    imagenet = torchvision_resnet(50, stem="imagenet")
    stem_7x7 = 3 * 64 * 7 * 7 + 2 * 64
    assert count_parameters(deep) == count_parameters(imagenet) - stem_7x7 + conv_weights + bn_params
    assert deep.name == "tv_resnet50-C" and imagenet.name == "tv_resnet50"


@pytest.mark.parametrize(("size", "after_stem"), [(224, 56), (32, 8)])
def test_deep_stem_output_shape_matches_imagenet_stem(size: int, after_stem: int) -> None:
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        deep = stem_output(torchvision_resnet(18, stem="deep").eval(), x)
        imagenet = stem_output(torchvision_resnet(18, stem="imagenet").eval(), x)
        cifar = stem_output(torchvision_resnet(18, stem="cifar").eval(), x)
    assert deep.shape == imagenet.shape == (2, 64, after_stem, after_stem)
    assert cifar.shape == (2, 64, size, size)
    assert (deep >= 0).all()  # the ReLU after the last conv's BN


def test_deep_stem_trains_forward_and_backward() -> None:
    net = torchvision_resnet(18, stem="deep", bn_head=True)
    assert net.name == "tv_resnet18-C-bnhead"
    loss = F.cross_entropy(net(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in [*net.conv1.parameters(), *net.bn1.parameters()]]
    assert len(grads) == 3 + 2 * 3 and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_stem_option_from_config_and_its_default() -> None:
    cfg = compose_config("model=tv_resnet18-cifar", "model.stem=deep")
    assert instantiate(cfg.model).name == "tv_resnet18-C"
    assert torchvision_resnet(18).name == "tv_resnet18-cifar"


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"depth": 20}, r"model.depth=20.*18, 34, 50"),
        ({"stem": "wide"}, r"model.stem='wide'.*accepted: cifar, imagenet, deep"),
        ({"stem": "C"}, r"model.stem='C'.*accepted: cifar, imagenet, deep"),
        ({"stem": True}, r"model.stem=True.*accepted: cifar, imagenet, deep"),
        ({"residual": False}, r"model.residual=False.*true"),
        ({"shortcut": "A"}, r"model.shortcut='A'.*B"),
    ],
)
def test_bad_torchvision_options_name_value_and_accepted(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        torchvision_resnet(**kwargs)


@pytest.mark.parametrize("name", VARIANT_CONFIGS)
def test_every_variant_config_instantiates_and_runs(name: str) -> None:
    assert sorted(CONFIG_PARAMS) == VARIANT_CONFIGS
    cfg = compose_config(f"model={name}")
    model = instantiate(cfg.model).eval()
    assert model.name == name
    assert {"depth", "residual", "shortcut"} <= set(cfg.model)  # what the runner logs for every model
    assert count_parameters(model) == CONFIG_PARAMS[name]
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_bad_stem_from_the_command_line_reaches_the_user_as_config_error() -> None:
    from resnet_exp.building import build

    cfg = compose_config("model=tv_resnet18-cifar", "model.stem=resnet-c")
    with pytest.raises(ConfigError, match=r"model.stem='resnet-c'.*accepted: cifar, imagenet, deep"):
        build(cfg.model)
