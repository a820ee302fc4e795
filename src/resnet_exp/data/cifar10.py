"""CIFAR-10 in the official python layout: download, verify by content, read into uint8 tensors.

Verification checks what training depends on (shapes, dtypes, label range, counts) rather than file
md5s, so a lossless re-encoding of the release (same pixels, labels and order) is accepted.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from resnet_exp.data.images import ImageData
from resnet_exp.data.module import DataModule
from resnet_exp.errors import DataError

log = logging.getLogger(__name__)

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
NUM_CLASSES = 10
HOW_TO_GET = (
    "get it with data.download=true (fetches and verifies the official archive), "
    "or point data.root (or the RESNET_EXP_DATA environment variable) at a folder holding "
    f"{FOLDER}/ from {ARCHIVE_URL}"
)


def find_folder(root: str | os.PathLike) -> Path:
    """The batch folder: `root/cifar-10-batches-py`, or `root` itself if it holds the batches."""
    root = Path(root).expanduser()
    for folder in (root / FOLDER, root):
        if (folder / META_FILE).is_file() or (folder / TEST_FILE).is_file():
            return folder
    raise DataError(f"CIFAR-10 not found under data.root={str(root)!r}: {HOW_TO_GET}")


def fetch_archive(root: str | os.PathLike) -> None:
    """Fetch and md5-check the official archive, then extract it under `root`."""
    from torchvision.datasets.utils import download_and_extract_archive

    try:
        download_and_extract_archive(ARCHIVE_URL, str(root), md5=ARCHIVE_MD5)
    except Exception as e:  # network errors come in many types; all mean the same to the user
        raise DataError(f"could not download CIFAR-10 from {ARCHIVE_URL} into {root!s}: {e}") from e


# The only globals a pickle of CIFAR-10's python release (or a re-encoding of it by numpy 1 or 2, pickle protocol 2
# to 5) names: numpy arrays, dtypes and scalars, and the latin-1 bytes of protocol 2. Dicts, lists, strings, bytes and
# ints need none. Any other global is a class or function the file would have called while being read.
NUMPY_GLOBALS = frozenset({
    *((f"numpy.{core}.multiarray", name) for core in ("core", "_core") for name in ("_reconstruct", "scalar")),
    *((f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
})


class ForeignObject(pickle.UnpicklingError):
    """A pickle naming a global that CIFAR-10's files never hold."""


class BatchUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` that admits only what CIFAR-10's files hold (`NUMPY_GLOBALS`): a pickle is a program, and
    a crafted batch file in a shared data folder would otherwise run code of its choosing as it is read."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in NUMPY_GLOBALS:
            raise ForeignObject(f"{module}.{name}")
        return super().find_class(module, name)


def read_pickle(path: Path) -> Any:
    """The object pickled in `path`, read with `BatchUnpickler` (latin-1 for the release's Python 2 strings)."""
    with path.open("rb") as f:
        return BatchUnpickler(f, encoding="latin1").load()


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"CIFAR-10 file {str(path)!r} is missing: {HOW_TO_GET}")
    try:
        return read_pickle(path)
    except ForeignObject as e:
        raise DataError(
            f"CIFAR-10 file {str(path)!r} names {e}, which CIFAR-10's files never hold (a file made to run code "
            f"when read): refused, nothing of it was run; delete {path.parent} and {HOW_TO_GET}") from None
    except Exception as e:  # truncated or foreign files raise anything from EOFError to UnpicklingError
        raise DataError(
            f"CIFAR-10 file {str(path)!r} is corrupt or truncated ({type(e).__name__}): "
            f"delete {path.parent} and {HOW_TO_GET}"
        ) from e


def read_meta(folder: Path) -> tuple[list[str], int]:
    """Class names and images per batch from `batches.meta`."""
    meta = _unpickle(folder / META_FILE)
    try:
        names = [str(n) for n in meta["label_names"]]
        per_batch = int(meta["num_cases_per_batch"])
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"CIFAR-10 file {str(folder / META_FILE)!r} lacks label_names/num_cases_per_batch") from e
    if len(names) != NUM_CLASSES:
        raise DataError(f"{folder / META_FILE} names {len(names)} classes, CIFAR-10 has {NUM_CLASSES}")
    return names, per_batch


def read_batch(path: Path, expected: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch file as (N, 3, 32, 32) uint8 images and int64 labels, checked by content."""
    batch = _unpickle(path)
    try:
        data = np.asarray(batch["data"])
        labels = np.asarray(batch["labels"])
    except (KeyError, TypeError) as e:
        raise DataError(f"CIFAR-10 file {str(path)!r} lacks 'data'/'labels': {HOW_TO_GET}") from e
    problem = None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        problem = f"data is {data.dtype} {data.shape}, expected uint8 ({expected}, 3072)"
    elif data.shape[0] != expected or labels.shape != (expected,):
        problem = f"holds {data.shape[0]} images and {labels.size} labels, expected {expected} of each"
    elif labels.min() < 0 or labels.max() >= NUM_CLASSES:
        problem = f"labels range {labels.min()}..{labels.max()}, expected 0..{NUM_CLASSES - 1}"
    if problem:
        raise DataError(f"CIFAR-10 file {str(path)!r} {problem}: {HOW_TO_GET}")
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return images, torch.from_numpy(labels.astype(np.int64))


def read_split(folder: Path, files: tuple[str, ...], per_batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [read_batch(folder / name, per_batch) for name in files]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def read_cifar10(root: str | os.PathLike, download: bool = False) -> ImageData:
    """Read the official batches under `root` (downloading them first if asked and absent)."""
    if download:
        try:
            find_folder(root)
        except DataError:
            log.info("CIFAR-10 not found under %s: downloading %s (163 MB) and checking its md5", root, ARCHIVE_URL)
            fetch_archive(root)
    folder = find_folder(root)
    classes, per_batch = read_meta(folder)
    train_x, train_y = read_split(folder, TRAIN_FILES, per_batch)
    test_x, test_y = read_split(folder, (TEST_FILE,), per_batch)
    return ImageData(train_x, train_y, test_x, test_y, classes, source=str(folder))


class Cifar10(DataModule):
    """`data=cifar10`: the official release under `root`, fed with the paper's augmentation."""

    name = "cifar10"

    def __init__(self, root: str, download: bool = False, **feeding: Any) -> None:
        super().__init__(**feeding)
        self.root = root
        self.download = download

    def check(self) -> None:
        """The folder is there, or will be downloaded."""
        if not self.download:
            find_folder(self.root)

    def read(self) -> ImageData:
        return read_cifar10(self.root, self.download)
