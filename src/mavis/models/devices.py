"""Device strings ("cpu", "cuda", "cuda:1", "mps"), checked against what torch offers on this
machine before any model loads: a name torch does not know, or a device this machine lacks
(cuda without a GPU or without a CUDA build of torch, cuda:3 on a machine with one GPU), is a
`MavisError` that names it and what is available, not a traceback from deep inside torch."""

from __future__ import annotations

import torch

from mavis.errors import MavisError


def available_devices() -> list[str]:
    """The devices this machine offers, as device strings."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        found.append("mps")
    return found


def check_device(device: str | None, what: str = "device") -> str | None:
    """`device` (None stays None: the default, cpu), or a `MavisError` saying why this
    machine cannot use it; `what` names it in the message (e.g. "--device")."""
    if device is None:
        return None
    here = ", ".join(available_devices())
    if not isinstance(device, str) or not device.strip():
        raise MavisError(f"{what} is {device!r}; give a device, e.g. cpu (here: {here})")
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise MavisError(f"{what} {device!r} is not a device name; give cpu, cuda, cuda:N or "
                         f"mps (this machine has: {here})") from None
    if parsed.type == "cpu":
        return device
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch was built without CUDA" if torch.version.cuda is None
                   else "torch sees no GPU")
            raise MavisError(f"{what} {device!r}: {why} (this machine has: {here})")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise MavisError(f"{what} {device!r}: this machine has {count} GPU(s), cuda:0 to "
                             f"cuda:{count - 1}")
        return device
    if parsed.type == "mps" and torch.backends.mps.is_available():
        return device
    raise MavisError(f"{what} {device!r} is not available on this machine; give one of: {here}")
