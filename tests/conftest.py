"""Shared fixtures: tiny data in the official CIFAR-10 format, a way to run the CLI, and one to compose its
config in-process. Tests marked `cuda` need a GPU and tests marked `slurm` a SLURM cluster; see the hooks at the
end."""

from __future__ import annotations

import functools
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

PER_BATCH = 4
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def tiny_batch(index: int) -> dict:
    """Images whose pixels encode (batch, position) so order and layout can be asserted."""
    data = np.zeros((PER_BATCH, 3072), dtype=np.uint8)
    for i in range(PER_BATCH):
        data[i] = (index * 16 + i * 3 + np.arange(3072) // 1024) % 256  # R, G, B planes differ by 1
    labels = [(index + i) % 10 for i in range(PER_BATCH)]
    return {"batch_label": f"batch {index}", "labels": labels, "data": data, "filenames": [f"{i}.png" for i in labels]}


def write_tiny_cifar(root: Path) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for index, name in enumerate([*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]):
        with (folder / name).open("wb") as f:
            pickle.dump(tiny_batch(index), f, protocol=2)
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump({"num_cases_per_batch": PER_BATCH, "label_names": CLASSES, "num_vis": 3072}, f, protocol=2)
    return folder


@pytest.fixture
def tiny_cifar(tmp_path: Path) -> Path:
    """A root folder holding cifar-10-batches-py/ with 5x4 training and 4 test images."""
    write_tiny_cifar(tmp_path / "data")
    return tmp_path / "data"


@pytest.fixture(scope="session")
def real_cifar_root() -> str:
    """The user's CIFAR-10 through the same variable the configs read; skips when it is absent."""
    root = os.environ.get("RESNET_EXP_DATA")
    if not root or not (Path(root) / "cifar-10-batches-py" / "data_batch_1").is_file():
        pytest.skip("real CIFAR-10 not available: set RESNET_EXP_DATA to a folder holding cifar-10-batches-py/")
    # Absolute, because the CLI tests run in their own temporary working directories.
    return str(Path(root).resolve())


# Small, fast settings shared by the CLI tests: an 8-layer net on a small synthetic set.
FAST = [
    "data=synthetic",
    "data.train_size=512",
    "data.test_size=128",
    "model.depth=8",
    "trainer.device=cpu",
    "trainer.batch_size=32",
    "trainer.eval_batch_size=128",
    "trainer.log_every=5",
]


def compose_config(*overrides: str, hydra: bool = False) -> DictConfig:
    """The config `resnet-exp` would run with these command-line overrides ("model=resnet20", "trainer.max_iters=4"),
    composed from the package's configs without running anything. A sweep's comma lists stay unexpanded; `hydra=True`
    keeps Hydra's own node (`cfg.hydra`: launcher, sweeper and its params, mode) as `return_hydra_config` does.
    Raises what Hydra raises for a bad override (e.g. `MissingConfigException` for an unknown option)."""
    with initialize_config_module("resnet_exp.configs", version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


def start_cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    """Start `resnet-exp` in a subprocess as a user would (same interpreter, no terminal), for a test that acts on
    it while it runs; `finish` waits for it."""
    cmd = [sys.executable, "-m", "resnet_exp.cli", *args]
    full_env = {**os.environ, **(env or {}), "HYDRA_FULL_ERROR": "0"}
    return subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 300) -> subprocess.CompletedProcess:
    """Wait for a process from `start_cli`; killed, with what it printed so far, where it outlasts `timeout`."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"resnet-exp ran past {timeout:.0f} s; its output:\n{out}\n{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `resnet-exp` in a subprocess as a user would (same interpreter, no terminal)."""
    return finish(start_cli(*args, cwd=cwd, env=env), timeout)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `cuda` are skipped, with the reason, where no CUDA GPU is visible."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)


@functools.cache
def no_slurm_cluster() -> str | None:
    """Why no SLURM cluster answers on this machine, as the sweep's own check says it; None where `sinfo` lists
    a partition."""
    from resnet_exp.errors import UserError
    from resnet_exp.sweep import slurm_partitions

    try:
        return None if slurm_partitions() else "sinfo lists no partition"
    except UserError as e:
        return str(e)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked `slurm` are skipped, with the reason, where no SLURM cluster answers `sinfo`
    (`scripts/slurm_local.sh start` sets up one on this machine), but fail in CI (`CI=true`): there the cluster is
    part of the set-up, and a broken set-up must not pass as skipped tests."""
    if item.get_closest_marker("slurm") is None or (why := no_slurm_cluster()) is None:
        return
    message = f"no SLURM cluster answers here ({why}); scripts/slurm_local.sh start sets up a one-node one"
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"CI={os.environ['CI']}, where the slurm tests must run: {message}", pytrace=False)
    pytest.skip(message)


class Payload:
    """What a crafted pickle holds: an object whose unpickling calls `exec`, here to create `marker`, so that a test
    can tell whether a file it crafted was run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)
