"""The canonical PyTorch CIFAR ResNets' weights (akamaster/pytorch_resnet_cifar10) in `CifarResNet`: names
mapped tensor by tensor, and the evaluation script on the tiny CIFAR-10 fixture. The published files themselves
are not here (no network), so these weights are our own nets saved under that project's names."""

from __future__ import annotations

import pickle
import runpy
from pathlib import Path

import pytest
import torch
from conftest import Payload

from resnet_exp.data import read_cifar10
from resnet_exp.errors import CheckpointError
from resnet_exp.models import CifarResNet
from resnet_exp.models.published import convert

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "eval_pretrained.py"
script = runpy.run_path(str(SCRIPT))


def published_names(model: CifarResNet, prefix: str = "module.", extra: str = "") -> dict[str, torch.Tensor]:
    """`model`'s weights under the names pytorch_resnet_cifar10 saves (`extra`: "compressible_" in some versions)."""
    n = len(model.blocks) // 3
    outside = {"conv.": f"{extra}conv1.", "bn.": "bn1.", "fc.": f"{extra}linear."}
    names = {}
    for key, tensor in model.state_dict().items():
        if key.startswith("blocks."):
            _, index, rest = key.split(".", 2)
            rest = f"{extra}{rest}" if rest.startswith("conv") else rest
            names[f"{prefix}layer{int(index) // n + 1}.{int(index) % n}.{rest}"] = tensor
        else:
            head = next(p for p in outside if key.startswith(p))
            names[prefix + outside[head] + key[len(head):]] = tensor
    return names


@pytest.mark.parametrize(("depth", "prefix", "extra"), [(8, "module.", ""), (20, "", "compressible_")])
def test_published_names_map_onto_ours_tensor_by_tensor(depth: int, prefix: str, extra: str) -> None:
    torch.manual_seed(0)
    net = CifarResNet(depth)
    found, state = convert(published_names(net, prefix, extra))
    assert found == depth
    assert state.keys() == net.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())


def test_a_state_dict_of_another_net_is_refused() -> None:
    t = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"layer4.0.conv1.weight lies outside 3 stages"):
        convert({"conv1.weight": t, "layer1.0.conv1.weight": t, "layer4.0.conv1.weight": t})
    with pytest.raises(CheckpointError, match=r"'fc.weight' is not in conv1, bn1 or linear"):
        convert({"layer1.0.conv1.weight": t, "fc.weight": t})
    with pytest.raises(CheckpointError, match=r"no blocks layer1.0"):
        convert({"features.0.weight": t})


def test_script_evaluates_saved_weights_as_our_net_does(tiny_cifar: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    torch.manual_seed(0)
    net = CifarResNet(8).eval()
    for bn in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.5, 0.5)  # so that a misplaced BN tensor would change the outputs
    path = tmp_path / "resnet8.th"
    torch.save({"state_dict": published_names(net), "best_prec1": 91.0}, path)
    data = read_cifar10(tiny_cifar)
    expected = script["test_error"](net, data.test_images, data.test_labels, 500)
    assert script["main"]([str(path), "--data-root", str(tiny_cifar)]) == 0
    assert capsys.readouterr().out.strip() == f"resnet8.th: resnet8, zero channels both, test error {expected:.2f}%"
    (tmp_path / "junk.th").write_bytes(b"not a zip")
    assert script["main"]([str(tmp_path / "junk.th"), "--data-root", str(tiny_cifar)]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_a_crafted_weights_file_is_refused_in_one_line_unrun_without_torchs_unsafe_advice(
    tiny_cifar: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    marker, crafted = tmp_path / "ran", tmp_path / "resnet20.th"
    torch.save({"state_dict": Payload(marker)}, crafted)
    assert script["main"]([str(crafted), "--data-root", str(tiny_cifar)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "refused unread" in line and "weights_only" not in line
    assert not marker.exists()


def test_a_data_folder_made_to_run_code_is_refused_in_one_line_unrun(
    tiny_cifar: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    marker = tmp_path / "ran"
    with (tiny_cifar / "cifar-10-batches-py" / "batches.meta").open("wb") as f:
        pickle.dump(Payload(marker), f, protocol=4)
    torch.save({"state_dict": published_names(CifarResNet(8))}, tmp_path / "resnet8.th")
    assert script["main"]([str(tmp_path / "resnet8.th"), "--data-root", str(tiny_cifar)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "batches.meta" in line and "refused" in line and not marker.exists()
