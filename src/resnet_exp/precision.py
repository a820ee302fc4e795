"""Which precision a device computes natively, and what `trainer.precision` resolves to on it.

One check serves the trainer (`trainer.precision=auto`) and the benchmark (which skips bf16 rows where bf16 would
only be emulated). bf16 is native on a CUDA GPU that supports it and on a CPU whose oneDNN kernels have bf16
instructions (avx512_bf16 or amx_bf16). Elsewhere oneDNN still runs bf16, by converting to fp32 around every
kernel, which made a ResNet-20 step about 9x slower than fp32 on a 2-core AMD EPYC of the Zen 3 generation
(README, "What the demo costs"), so `auto` never picks it there.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class Precision:
    """`trainer.precision` as resolved once for a run's device: its name as recorded (fp32 or bf16), the autocast
    dtype (None: fp32) and, where bf16 was asked for but is only emulated there, why (`emulated`)."""

    name: str
    dtype: torch.dtype | None
    emulated: str | None = None

    def autocast(self, device: torch.device) -> torch.autocast:
        """The autocast context of this precision on `device`, made once and entered at every forward pass."""
        return torch.autocast(device.type, dtype=self.dtype or torch.bfloat16, enabled=self.dtype is not None)

    def warning(self) -> str | None:
        """The one line a run logs when bf16 was asked for where it is emulated, or None."""
        if self.emulated is None:
            return None
        return (f"trainer.precision=bf16 is emulated here ({self.emulated}), so much slower than fp32 "
                f"({EMULATED_COST}); trainer.precision=auto picks fp32 on this machine")


def resolve_precision(requested: str, device: torch.device) -> Precision:
    """`auto` is bf16 where `device` computes it natively, else fp32; fp32 and bf16 stay what they are (bf16 noting
    whether it is emulated). The device's capability is read once, here."""
    check_precision(requested)
    if requested == "fp32":
        return Precision("fp32", None)
    why = bf16_unsupported(device)
    if requested == "auto" and why:
        return Precision("fp32", None)
    return Precision("bf16", torch.bfloat16, why)
