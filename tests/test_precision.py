"""`trainer.precision=auto` follows the hardware: the capability checks are patched to stand for each kind of
device, so the resolution is tested on any machine."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from resnet_exp import precision
from resnet_exp.errors import ConfigError
from resnet_exp.precision import bf16_unsupported, resolve_precision
from resnet_exp.run import train
from resnet_exp.training import TrainerSettings
from tests.conftest import FAST, compose_config

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def as_cpu(monkeypatch: pytest.MonkeyPatch, flags: str) -> None:
    monkeypatch.setattr(precision, "cpu_info", lambda key: flags if key == "flags" else "")
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)


@pytest.mark.parametrize(("flags", "native"), [
    ("fpu sse avx2 avx512f avx512_bf16", True),   # AMD Zen 4/5
    ("fpu avx2 avx512f amx_bf16 amx_tile", True),  # Intel Sapphire Rapids
    ("fpu sse avx2 fma", False),                   # AMD Zen 3, most laptops
    ("", False),                                   # no /proc/cpuinfo (macOS)
])
def test_cpu_resolution_follows_the_flags(monkeypatch: pytest.MonkeyPatch, flags: str, native: bool) -> None:
    as_cpu(monkeypatch, flags)
    assert resolve_precision("auto", CPU).name == ("bf16" if native else "fp32")
    assert resolve_precision("fp32", CPU).name == "fp32" and resolve_precision("bf16", CPU).name == "bf16"
    assert resolve_precision("bf16", CPU).dtype == torch.bfloat16 and resolve_precision("fp32", CPU).dtype is None
    assert (bf16_unsupported(CPU) is None) == native
    assert (resolve_precision("bf16", CPU).warning() is None) == native
    assert resolve_precision("auto", CPU).warning() is None and resolve_precision("fp32", CPU).warning() is None


def test_cpu_without_onednn_is_not_native(monkeypatch: pytest.MonkeyPatch) -> None:
    as_cpu(monkeypatch, "avx512_bf16")
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    assert resolve_precision("auto", CPU).name == "fp32"
    assert "oneDNN" in bf16_unsupported(CPU)


@pytest.mark.parametrize("supported", [True, False])
def test_cuda_resolution_follows_the_gpu(monkeypatch: pytest.MonkeyPatch, supported: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: supported)
    assert resolve_precision("auto", CUDA).name == ("bf16" if supported else "fp32")
    assert (resolve_precision("bf16", CUDA).warning() is None) == supported


def test_unknown_precision_names_the_accepted_values() -> None:
    with pytest.raises(ConfigError, match=r"trainer.precision='fp16' is not known; accepted: auto, fp32, bf16"):
        TrainerSettings(precision="fp16")
    with pytest.raises(ConfigError, match="accepted: auto"):
        resolve_precision(None, CPU)  # type: ignore[arg-type]


def test_presets_leave_precision_to_the_hardware() -> None:
    for preset in ("degradation_quick", "degradation"):
        assert compose_config(f"experiment={preset}").trainer.precision == "auto"


@pytest.mark.parametrize(("flags", "resolved"), [("avx2", "fp32"), ("avx512_bf16", "bf16")])
def test_run_records_the_resolved_precision(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                            flags: str, resolved: str) -> None:
    as_cpu(monkeypatch, flags)
    summary = train(compose_config(*FAST, "trainer.max_iters=2", "trainer.eval_every=2"), tmp_path)
    assert summary["settings"]["trainer.precision"] == resolved


def test_explicit_bf16_where_emulated_runs_with_one_warning(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    as_cpu(monkeypatch, "avx2")
    with caplog.at_level(logging.WARNING):
        summary = train(compose_config(*FAST, "trainer.max_iters=2", "trainer.eval_every=2",
                                       "trainer.precision=bf16"), tmp_path)
    assert summary["settings"]["trainer.precision"] == "bf16" and summary["status"] == "completed"
    warnings = [r.getMessage() for r in caplog.records if "emulated" in r.getMessage()]
    assert len(warnings) == 1 and "avx512_bf16" in warnings[0] and "9x" in warnings[0]


def test_a_run_reads_the_devices_capability_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """One resolution serves the trainer's autocast, the record and the emulation check: the CPU's flags are read
    once a run, with no throwaway trainer resolving its own."""
    reads: list[str] = []
    monkeypatch.setattr(precision, "cpu_info", lambda key: reads.append(key) or "avx512_bf16")
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    summary = train(compose_config(*FAST, "trainer.max_iters=2", "trainer.eval_every=2"), tmp_path)
    assert summary["settings"]["trainer.precision"] == "bf16" and reads == ["flags"]
