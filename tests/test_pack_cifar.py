"""`dev/pack_cifar.py`: packed and unpacked batches are the release's pixels, labels and order."""

from __future__ import annotations

import pickle
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_tiny_cifar

from resnet_exp.data import read_cifar10

SCRIPT = Path(__file__).resolve().parents[1] / "dev" / "pack_cifar.py"
pack_cifar = runpy.run_path(str(SCRIPT))
NAMES = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]


def test_round_trip_gives_the_same_data_set(tmp_path: Path) -> None:
    folder = write_tiny_cifar(tmp_path / "release")
    # Natural-image-like and worst-case pixels: a smooth ramp beside uniform noise (every residual value occurs).
    rng = np.random.default_rng(0)
    with (folder / "data_batch_1").open("rb") as f:
        batch = pickle.load(f)
    ramp = (np.arange(3072) % 251).astype(np.uint8)
    batch["data"] = np.stack([ramp, rng.integers(0, 256, 3072, dtype=np.uint8), 255 - ramp, np.zeros(3072, np.uint8)])
    with (folder / "data_batch_1").open("wb") as f:
        pickle.dump(batch, f)
    assert pack_cifar["main"](["pack", str(tmp_path / "release"), str(tmp_path / "a"), *NAMES[:3]]) == 0
    assert pack_cifar["main"](["pack", str(folder), str(tmp_path / "b"), *NAMES[3:]]) == 0
    target = tmp_path / "there" / "cifar-10-batches-py"
    for part in ("a", "b"):
        assert pack_cifar["main"](["unpack", str(tmp_path / part), str(target)]) == 0
    original, rebuilt = read_cifar10(tmp_path / "release"), read_cifar10(tmp_path / "there")
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(rebuilt, name), getattr(original, name)), name
    assert rebuilt.classes == original.classes


def test_a_corrupted_part_is_refused(tmp_path: Path) -> None:
    folder = write_tiny_cifar(tmp_path / "release")
    pack_cifar["main"](["pack", str(folder), str(tmp_path / "p"), "test_batch"])
    meta = tmp_path / "p" / "test_batch.meta"
    info = pickle.loads(meta.read_bytes())
    meta.write_bytes(pickle.dumps({**info, "sha256": "0" * 64}))
    with pytest.raises(SystemExit, match="does not rebuild the packed images: pack it again"):
        pack_cifar["main"](["unpack", str(tmp_path / "p"), str(tmp_path / "out")])


def test_pack_names_missing_batch_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        pack_cifar["main"](["pack", str(tmp_path), str(tmp_path / "p"), "data_batch_9"])
    assert "no data_batch_9 in" in capsys.readouterr().err
