"""CIFAR-10's python release packed losslessly into files about half the size of the original batches, and back.

    python dev/pack_cifar.py pack $RESNET_EXP_DATA packed/part1 data_batch_1 data_batch_2 data_batch_3
    python dev/pack_cifar.py pack $RESNET_EXP_DATA packed/part2 data_batch_4 data_batch_5 test_batch
    python dev/pack_cifar.py unpack packed/part1 data/cifar-10-batches-py   # each part ~52 MB
    python dev/pack_cifar.py unpack packed/part2 data/cifar-10-batches-py

Each batch file of the official python release becomes a residual image and its labels: every pixel minus the
LOCO-I (JPEG-LS) median prediction from its left, upper and upper-left neighbours, green and blue then minus the
residual of the channel before, compressed with lzma: 17.2 MB a batch instead of 30.9 MB (xz alone: 23.2 MB).
Unpacking rebuilds the pixels, checks them against the sha256 taken when packing, and writes a batch file that
`read_cifar10` reads (it checks content, not the files' md5s). Every pickle is read with the package's restricted
unpickler (`resnet_exp.data.cifar10.read_pickle`), so a crafted batch or part runs nothing: it needs numpy and
this package's `src/` on the path (PYTHONPATH=src where the package is not installed), nothing else of it.
"""

from __future__ import annotations

import argparse
import hashlib
import lzma
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np

from resnet_exp.data.cifar10 import read_pickle

SIDE = 32


def median_prediction(x: np.ndarray) -> np.ndarray:
    """LOCO-I's predictor of each pixel from its left (a), upper (b) and upper-left (c) neighbours (0 off-image)."""
    a = np.zeros_like(x)
    a[..., 1:] = x[..., :-1]
    b = np.zeros_like(x)
    b[..., 1:, :] = x[..., :-1, :]
    c = np.zeros_like(x)
    c[..., 1:, 1:] = x[..., :-1, :-1]
    return predict(a, b, c)


def predict(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    low, high = np.minimum(a, b), np.maximum(a, b)
    return np.where(c >= high, low, np.where(c <= low, high, a + b - c))


def residuals(images: np.ndarray) -> np.ndarray:
    """uint8 [N, 3072] images to uint8 residuals: prediction errors, then each channel's minus the one before."""
    x = images.reshape(-1, 3, SIDE, SIDE).astype(np.int16)
    r = x - median_prediction(x)
    r[:, 1:] -= r[:, :-1].copy()
    return (r % 256).astype(np.uint8)


def images_from(res: np.ndarray) -> np.ndarray:
    """The inverse of `residuals`: each pixel rebuilt from its already rebuilt neighbours, all images at once."""
    r = res.astype(np.int16)
    r = np.where(r > 127, r - 256, r)
    r = np.cumsum(r, axis=1, dtype=np.int16)  # undo the channel differences
    x = np.zeros_like(r)
    zero = np.zeros_like(x[:, :, 0, 0])
    for i in range(SIDE):
        for j in range(SIDE):
            a = x[:, :, i, j - 1] if j else zero
            b = x[:, :, i - 1, j] if i else zero
            c = x[:, :, i - 1, j - 1] if i and j else zero
            x[:, :, i, j] = (r[:, :, i, j] + predict(a, b, c)) % 256
    return x.astype(np.uint8).reshape(-1, 3 * SIDE * SIDE)


META = "batches.meta"


def pack(source: Path, out: Path, names: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if (source / META).is_file():  # 158 bytes, carried with every part
        shutil.copyfile(source / META, out / META)
    for name in names:
        batch = read_pickle(source / name)
        data = np.ascontiguousarray(batch["data"], dtype=np.uint8)
        meta = {key: batch[key] for key in ("batch_label", "labels", "filenames")}
        meta["sha256"] = hashlib.sha256(data.tobytes()).hexdigest()
        blob = lzma.compress(residuals(data).tobytes())
        (out / f"{name}.xz").write_bytes(blob)
        (out / f"{name}.meta").write_bytes(pickle.dumps(meta, protocol=4))
        print(f"{name}: {len(blob) / 1e6:.1f} MB", flush=True)


def unpack(packed: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    blobs = sorted(packed.glob("*.xz"))
    if not blobs:
        raise SystemExit(f"pack_cifar.py: no *.xz batches in {packed}")
    for blob in blobs:
        name = blob.name.removesuffix(".xz")
        meta = read_pickle(packed / f"{name}.meta")
        res = np.frombuffer(lzma.decompress(blob.read_bytes()), np.uint8).reshape(-1, 3, SIDE, SIDE)
        data = images_from(res)
        if hashlib.sha256(data.tobytes()).hexdigest() != meta.pop("sha256"):
            raise SystemExit(f"pack_cifar.py: {blob} does not rebuild the packed images: pack it again")
        with (folder / name).open("wb") as f:
            pickle.dump({**meta, "data": data}, f, protocol=4)
        print(f"{name}: {len(data)} images", flush=True)
    if (packed / META).is_file():
        shutil.copyfile(packed / META, folder / META)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pack_cifar.py", description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    p = verbs.add_parser("pack", help="official batch files to packed ones")
    p.add_argument("source", type=Path, help="a folder holding cifar-10-batches-py/, or that folder")
    p.add_argument("out", type=Path)
    p.add_argument("names", nargs="+", help="batch files, e.g. data_batch_1 test_batch")
    u = verbs.add_parser("unpack", help="packed batch files back to official ones")
    u.add_argument("packed", type=Path)
    u.add_argument("folder", type=Path, help="the cifar-10-batches-py/ to write")
    args = parser.parse_args(argv)
    if args.verb == "pack":
        source = args.source / "cifar-10-batches-py" if (args.source / "cifar-10-batches-py").is_dir() else args.source
        missing = [n for n in args.names if not (source / n).is_file()]
        if missing:
            parser.error(f"no {', '.join(missing)} in {source}: name files of the official python release")
        pack(source, args.out, args.names)
    else:
        unpack(args.packed, args.folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
