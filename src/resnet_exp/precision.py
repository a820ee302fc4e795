"""Which precision a device computes natively, and what `trainer.precision` resolves to on it.

One check serves the trainer (`trainer.precision=auto`) and the benchmark (which skips bf16 rows where bf16 would
only be emulated). bf16 is native on a CUDA GPU that supports it and on a CPU whose oneDNN kernels have bf16
instructions (avx512_bf16 or amx_bf16). Elsewhere oneDNN still runs bf16, by converting to fp32 around every
kernel, which made a ResNet-20 step about 9x slower than fp32 on a 2-core AMD EPYC of the Zen 3 generation
(README, "What the demo costs"), so `auto` never picks it there.
"""

from __future__ import annotations

import torch

from resnet_exp.errors import ConfigError
from resnet_exp.provenance import cpu_info

PRECISIONS = ("auto", "fp32", "bf16")
NATIVE_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
EMULATED_COST = "a ResNet-20 step took 9x as long as in fp32 on an AMD EPYC (Zen 3) without them"


def check_precision(value: object, setting: str = "trainer.precision") -> None:
    if value not in PRECISIONS:
        raise ConfigError(f"{setting}={value!r} is not known; accepted: {', '.join(PRECISIONS)}")


def bf16_unsupported(device: torch.device) -> str | None:
    """Why `device` has no native bf16, as one clause for a message, or None where it has."""
    if device.type == "cuda":
        return None if torch.cuda.is_bf16_supported() else "this GPU has no native bf16"
    if device.type != "cpu":
        return f"bf16 on {device.type} is not measured here"
    if not torch.backends.mkldnn.is_available():
        return "this torch build has no oneDNN"
    if not set(NATIVE_CPU_FLAGS) & set(cpu_info("flags").split()):
        return f"the CPU reports neither {' nor '.join(NATIVE_CPU_FLAGS)}"
    return None


def resolve_precision(requested: str, device: torch.device) -> str:
    """`auto` is bf16 where `device` computes it natively, else fp32; fp32 and bf16 stay what they are."""
    check_precision(requested)
    if requested == "auto":
        return "fp32" if bf16_unsupported(device) else "bf16"
    return requested


def emulation_warning(requested: str, device: torch.device) -> str | None:
    """The one line a run logs when it was asked for bf16 where bf16 is emulated, or None."""
    why = bf16_unsupported(device) if requested == "bf16" else None
    if why is None:
        return None
    return (f"trainer.precision=bf16 is emulated here ({why}), so much slower than fp32 ({EMULATED_COST}); "
            "trainer.precision=auto picks fp32 on this machine")
