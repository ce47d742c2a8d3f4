"""The fastest dtype of the value models on the hardware at hand (`value_dtype="auto"`).

The reference model stays float32 wherever it runs on a CPU: its log-probabilities are the
footing of every KL (equation 7). The value models only rank candidates, and bfloat16 halves
the bytes their candidate passes move; it is faster where the hardware computes in it natively:

    CUDA with bfloat16 support          bfloat16
    a CPU with AVX512_BF16 or AMX       bfloat16   (read from the CPU's flags)
    anything else                       float32    (bfloat16 there is emulated, and slower)
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from mavis.errors import MavisError

BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU announces bfloat16 instructions (Linux's /proc/cpuinfo flags; False
    where that cannot be read)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    flags = {word for line in text.splitlines() if line.startswith("flags")
             for word in line.split(":", 1)[-1].split()}
    return any(flag in flags for flag in BF16_FLAGS)


def fastest_value_dtype(device: torch.device | str) -> torch.dtype:
    """bfloat16 where `device` computes in it natively, float32 elsewhere."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    return torch.float32


def resolve_dtype(dtype: torch.dtype | str | None, device: torch.device | str,
                  default: torch.dtype = torch.float32) -> torch.dtype:
    """A dtype from a name ("float32", "bfloat16", "auto" for `fastest_value_dtype`), a torch
    dtype, or None (`default`)."""
    if dtype is None:
        return default
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return fastest_value_dtype(device)
    value = getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype):
        raise MavisError(f"dtype {dtype!r}: choose auto, float32, bfloat16 or float16")
    return value


def dtype_identity(value_dtype: torch.dtype | str, device: torch.device | str = "cpu"
                   ) -> dict[str, str]:
    """What a results file keeps of the value models' dtype: the dtype "auto" resolves to on
    `device`, by name, and nothing for float32 (so that files made before keep their
    identity, and "auto" on a machine without native bfloat16 is float32's file)."""
    resolved = resolve_dtype(value_dtype, device)
    return {} if resolved == torch.float32 else {
        "value_dtype": str(resolved).removeprefix("torch.")}
