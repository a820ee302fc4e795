import pickle
from pathlib import Path

import pytest
import torch
from conftest import PER_BATCH, Payload, run_cli, tiny_batch

from resnet_exp.data import Cifar10, make_synthetic, read_cifar10
from resnet_exp.data.batches import random_crop_flip
from resnet_exp.errors import ConfigError, DataError


def test_reads_official_format_in_order(tiny_cifar: Path) -> None:
    data = read_cifar10(tiny_cifar)
    assert data.train_images.shape == (5 * PER_BATCH, 3, 32, 32)
    assert data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (PER_BATCH, 3, 32, 32)
    expected = torch.tensor([lab for i in range(5) for lab in tiny_batch(i)["labels"]])
    assert torch.equal(data.train_labels, expected)
    assert torch.equal(data.test_labels, torch.tensor(tiny_batch(5)["labels"]))
    # Row layout: R plane then G then B, each row-major; pixel value encodes (batch, image, channel).
    first = data.train_images[PER_BATCH + 1]  # batch 2 (index 1), image 1
    assert first[0, 0, 0] == 16 + 3 and first[1, 5, 7] == 16 + 3 + 1 and first[2, 31, 31] == 16 + 3 + 2
    assert data.classes[3] == "cat"


def test_accepts_the_batch_folder_itself_as_root(tiny_cifar: Path) -> None:
    assert len(read_cifar10(tiny_cifar / "cifar-10-batches-py").train_labels) == 5 * PER_BATCH


def test_validation_split_holds_out_training_images(tiny_cifar: Path) -> None:
    module = Cifar10(str(tiny_cifar), val_split=5, augment=False)
    batches = module.batches(torch.device("cpu"), batch_size=4, eval_batch_size=100, seed=0)
    assert batches.eval_split == "val" and len(batches.eval) == 5 and batches.train_size == 15
    full = read_cifar10(tiny_cifar).train_images
    held = batches.eval.images
    # The held-out images come from the training set, and the training stream no longer contains them.
    assert all(any(torch.equal(h, f) for f in full) for h in held)
    assert not any(any(torch.equal(h, t) for t in batches.train.images) for h in held)


def test_per_pixel_mean_subtraction(tiny_cifar: Path) -> None:
    module = Cifar10(str(tiny_cifar), augment=False)
    batches = module.batches(torch.device("cpu"), batch_size=20, eval_batch_size=100, seed=0)
    x, _ = next(batches.train)
    assert x.shape == (20, 3, 32, 32) and x.dtype == torch.float32
    # The whole training set in one batch: per-pixel means subtract to zero at every pixel.
    assert x.mean(0).abs().max() < 1e-6
    assert x.std() > 0


def test_per_channel_normalisation(tiny_cifar: Path) -> None:
    module = Cifar10(str(tiny_cifar), augment=False, normalize="channel")
    x, _ = next(module.batches(torch.device("cpu"), 20, 100, seed=0).train)
    assert x.mean((0, 2, 3)).abs().max() < 1e-5
    assert x.transpose(0, 1).reshape(3, -1).std(1) == pytest.approx([1.0] * 3, abs=1e-3)


def test_unknown_normalisation_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"data.normalize='zca'.*pixel, channel"):
        Cifar10("x", normalize="zca")


def test_missing_folder_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"not found under data.root=.*data.download=true.*RESNET_EXP_DATA"):
        read_cifar10(tmp_path / "nowhere")


def test_missing_batch_file_is_named(tiny_cifar: Path) -> None:
    (tiny_cifar / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"data_batch_3' is missing"):
        read_cifar10(tiny_cifar)


def test_truncated_batch_file_is_named(tiny_cifar: Path) -> None:
    path = tiny_cifar / "cifar-10-batches-py" / "data_batch_2"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match=r"data_batch_2' is corrupt or truncated"):
        read_cifar10(tiny_cifar)


def test_wrong_count_and_labels_are_reported(tiny_cifar: Path) -> None:
    path = tiny_cifar / "cifar-10-batches-py" / "test_batch"
    batch = tiny_batch(5)
    batch["labels"] = [0, 1, 2, 12]
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=r"test_batch' labels range 0..12, expected 0..9"):
        read_cifar10(tiny_cifar)
    batch["data"] = batch["data"][:3]
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=r"holds 3 images and 4 labels, expected 4"):
        read_cifar10(tiny_cifar)


def test_crop_offsets_stay_within_padding_and_half_are_flipped() -> None:
    # Each image is a ramp of its column index, so a crop's first row reveals offset and flip.
    n = 4000
    cols = torch.arange(32, dtype=torch.float32) + 100
    x = cols.expand(n, 1, 32, 32).clone()
    out = random_crop_flip(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    row = out[:, 0, 16]  # the middle row is never padding vertically
    valid = row != 0
    flipped = (row[:, 1:] - row[:, :-1])[valid[:, 1:] & valid[:, :-1]].view(-1)
    per_image_slope = torch.stack([
        (r[1:] - r[:-1])[(r[1:] != 0) & (r[:-1] != 0)][0] for r in row
    ])
    assert set(per_image_slope.tolist()) == {1.0, -1.0} and flipped.abs().max() == 1
    assert (per_image_slope < 0).float().mean().item() == pytest.approx(0.5, abs=0.03)
    # Unflipped images start at column (offset - 4): zeros on the left for offsets 0..3.
    unflipped = row[per_image_slope > 0]
    first = unflipped[:, 0]
    dx = torch.where(first == 0, 4 - (unflipped == 0).sum(1), first - 100 + 4)
    assert dx.min() == 0 and dx.max() == 8
    counts = torch.bincount(dx.long(), minlength=9).float() / len(dx)
    assert counts.sub(1 / 9).abs().max() < 0.03


def test_synthetic_is_deterministic_and_balanced() -> None:
    a, b = make_synthetic(200, 50, seed=3), make_synthetic(200, 50, seed=3)
    assert torch.equal(a.train_images, b.train_images)
    assert torch.bincount(a.train_labels).tolist() == [20] * 10
    assert not torch.equal(a.train_images, make_synthetic(200, 50, seed=4).train_images)


def test_train_stream_covers_each_epoch_once(tiny_cifar: Path) -> None:
    module = Cifar10(str(tiny_cifar), augment=False)
    stream = module.batches(torch.device("cpu"), batch_size=5, eval_batch_size=100, seed=0).train
    labels = torch.cat([next(stream)[1] for _ in range(4)])
    assert sorted(labels.tolist()) == sorted(read_cifar10(tiny_cifar).train_labels.tolist())
    assert stream.epoch == 1


@pytest.mark.cifar
def test_real_cifar10_through_the_configured_root(real_cifar_root: str) -> None:
    data = read_cifar10(real_cifar_root)
    assert data.train_images.shape == (50000, 3, 32, 32) and data.test_images.shape == (10000, 3, 32, 32)
    assert torch.bincount(data.train_labels).tolist() == [5000] * 10
    assert data.test_labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert data.train_labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert data.train_images[0, :, 0, 0].tolist() == [59, 62, 63]
    mean = data.train_images.double().div(255).mean((0, 2, 3))
    assert mean.tolist() == pytest.approx([0.49139968, 0.48215841, 0.44653091], abs=1e-6)


def test_download_fetches_the_official_archive_only_when_absent(tmp_path: Path, monkeypatch) -> None:
    import torchvision.datasets.utils as tv_utils
    from conftest import write_tiny_cifar

    from resnet_exp.data import cifar10

    calls = []

    def fake_download(url: str, root: str, md5: str) -> None:
        calls.append((url, md5))
        write_tiny_cifar(Path(root))

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake_download)
    assert len(read_cifar10(tmp_path, download=True).train_labels) == 5 * PER_BATCH
    assert calls == [(cifar10.ARCHIVE_URL, cifar10.ARCHIVE_MD5)]
    read_cifar10(tmp_path, download=True)
    assert len(calls) == 1  # present now: not fetched again


def test_failed_download_is_one_clear_error(tmp_path: Path, monkeypatch) -> None:
    import torchvision.datasets.utils as tv_utils

    def offline(url: str, root: str, md5: str) -> None:
        raise OSError("Name or service not known")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    with pytest.raises(DataError, match=r"could not download CIFAR-10 from https://www.cs.toronto.edu/.*not known"):
        read_cifar10(tmp_path, download=True)


@pytest.mark.parametrize("name", ["batches.meta", "data_batch_1", "test_batch"])
def test_a_batch_file_made_to_run_code_is_refused_unrun(tiny_cifar: Path, tmp_path: Path, name: str) -> None:
    marker = tmp_path / "ran"
    path = tiny_cifar / "cifar-10-batches-py" / name
    with path.open("wb") as f:
        pickle.dump({"labels": [0], "data": Payload(marker)}, f, protocol=2)
    refused = r"names (__builtin__|builtins)\.exec, which CIFAR-10's files never hold.*refused"
    with pytest.raises(DataError, match=refused):
        read_cifar10(tiny_cifar)
    assert not marker.exists()


def test_a_data_folder_made_to_run_code_is_one_line_on_the_command_line(tiny_cifar: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with (tiny_cifar / "cifar-10-batches-py" / "batches.meta").open("wb") as f:
        pickle.dump(Payload(marker), f, protocol=4)
    proc = run_cli("data=cifar10", f"data.root={tiny_cifar}", "model.depth=8", "trainer.device=cpu",
                   "trainer.batch_size=4", "trainer.eval_batch_size=4", "trainer.max_iters=2",
                   f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 2 and not marker.exists()
    assert proc.stderr.strip().splitlines()[-1].startswith("resnet-exp: error: CIFAR-10 file")
    assert "builtins.exec" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_batches_pickled_by_numpy_with_any_protocol_are_read(tiny_cifar: Path, protocol: int) -> None:
    """The release's own files use protocol 2; a lossless re-encoding may use another, and numpy scalars."""
    folder = tiny_cifar / "cifar-10-batches-py"
    for index, name in enumerate([*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]):
        batch = tiny_batch(index)
        batch["labels"] = [torch.tensor(label).numpy()[()] for label in batch["labels"]]  # numpy scalars
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    data = read_cifar10(tiny_cifar)
    assert data.train_images.shape == (5 * PER_BATCH, 3, 32, 32) and data.test_labels.tolist() == [5, 6, 7, 8]
