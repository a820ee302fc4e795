from pathlib import Path

import pytest
import torch
from conftest import compose_config
from hydra.utils import instantiate

from resnet_exp.errors import CheckpointError, ConfigError
from resnet_exp.models import CifarResNet, count_parameters
from resnet_exp.models.cifar import ShortcutA, check_zero_channels

PAPER_PARAMS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}
MODEL_CONFIGS = sorted(p.stem for p in (Path(__file__).parents[1] / "configs" / "model").glob("*[0-9].yaml"))


@pytest.mark.parametrize("depth", sorted(PAPER_PARAMS))
def test_parameter_counts_match_paper_and_plain_twin(depth: int) -> None:
    resnet = CifarResNet(depth, residual=True, shortcut="A")
    plain = CifarResNet(depth, residual=False)
    assert count_parameters(resnet) == PAPER_PARAMS[depth]
    assert count_parameters(plain) == PAPER_PARAMS[depth]


def test_option_b_adds_projections_only_where_shapes_change() -> None:
    # Two projections (16->32, 32->64): 1x1 conv + BN each.
    extra = (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert count_parameters(CifarResNet(20, shortcut="B")) == PAPER_PARAMS[20] + extra


@pytest.mark.parametrize(("zeros", "kept"), [("both", slice(8, 24)), ("end", slice(0, 16))])
def test_option_a_shortcut_is_subsampled_input_with_zero_channels(zeros: str, kept: slice) -> None:
    x = torch.randn(2, 16, 32, 32)
    out = ShortcutA(16, 32, stride=2, zeros=zeros)(x)
    assert out.shape == (2, 32, 16, 16)
    assert torch.equal(out[:, kept], x[:, :, ::2, ::2])
    rest = torch.ones(32, dtype=torch.bool)
    rest[kept] = False
    assert torch.count_nonzero(out[:, rest]) == 0


def test_default_layout_routes_input_channels_as_the_canonical_pytorch_net() -> None:
    """In a tiny net (depth 8, one block a stage), each stage's shortcut feeds input channel c to output
    channel c + width/4 (akamaster/pytorch_resnet_cifar10: planes // 4 zeros on each side)."""
    net = CifarResNet(8).eval()
    assert net.zero_channels == "both"
    for block, width in zip(list(net.blocks)[1:], (32, 64), strict=True):
        x = torch.zeros(1, width // 2, 4, 4)
        for c in range(width // 2):
            x.zero_()
            x[0, c] = 1.0
            out = block.shortcut(x)
            assert out.abs().sum(dim=(0, 2, 3)).nonzero().flatten().tolist() == [c + width // 4]
    assert CifarResNet(8, residual=False).zero_channels is None
    assert CifarResNet(8, shortcut="B").zero_channels is None


def test_bad_zero_channels_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"model.zero_channels='left'.*both, end"):
        CifarResNet(20, zero_channels="left")


def test_a_checkpoint_of_another_or_no_recorded_option_a_layout_is_refused_in_one_line() -> None:
    net = CifarResNet(8)
    check_zero_channels(net, {"zero_channels": "both"}, "last.pt")
    with pytest.raises(CheckpointError, match=r"'last.pt'.*'end' side.*add model.zero_channels=end") as other:
        check_zero_channels(net, {"zero_channels": "end"}, "last.pt")
    with pytest.raises(CheckpointError, match=r"'last.pt' records no option-A layout.*trainer.resume=false") as none:
        check_zero_channels(net, {}, "last.pt")
    assert "\n" not in str(other.value) + str(none.value)
    for no_option_a in (CifarResNet(8, residual=False), CifarResNet(8, shortcut="B")):  # nothing depends on it
        check_zero_channels(no_option_a, {}, "last.pt")


def test_plain_net_has_no_shortcuts_and_layer_count_is_depth() -> None:
    for residual in (True, False):
        net = CifarResNet(56, residual=residual)
        convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
        linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
        assert len(convs) + len(linears) == 56
        assert all((b.shortcut is None) != residual for b in net.blocks)


def test_he_init_scale() -> None:
    conv = CifarResNet(20).blocks[4].conv1  # 32 -> 32 channels: fan_in = 9 * 32
    assert conv.weight.std().item() == pytest.approx((2 / (9 * 32)) ** 0.5, rel=0.05)


def test_the_papers_ten_model_configs_are_found() -> None:
    """Outside the parametrised test, so that a glob finding nothing fails here instead of skipping there."""
    assert sorted(f"{kind}{depth}" for kind in ("plain", "resnet") for depth in PAPER_PARAMS) == MODEL_CONFIGS


@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_every_model_config_instantiates_and_runs(name: str) -> None:
    cfg = compose_config(f"model={name}")
    model = instantiate(cfg.model)
    assert isinstance(model, torch.nn.Module)
    assert model.name == name
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert count_parameters(model) == PAPER_PARAMS[cfg.model.depth]


@pytest.mark.parametrize("depth", [0, 7, 21, 57, "20"])
def test_bad_depth_names_value_and_accepted_form(depth) -> None:
    with pytest.raises(ConfigError, match=rf"model.depth={depth!r}.*6n\+2"):
        CifarResNet(depth)


def test_bad_shortcut_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"model.shortcut='C'.*A, B"):
        CifarResNet(20, shortcut="C")
