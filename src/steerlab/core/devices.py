"""Which torch device a command runs on: `--device auto|cpu|cuda|mps` (auto: cuda, else mps, else cpu)."""

from __future__ import annotations

import warnings
from contextlib import nullcontext

import torch

from steerlab.core.errors import UserError

DEVICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(name: str = "auto") -> torch.device:
    """The device `name` names; a device that is asked for but absent is a one-line error."""
    base = str(name).split(":")[0]
    if base not in DEVICES:
        raise UserError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)} (e.g. cuda:1)")
    if base == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if base == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA GPU is visible to torch {torch.__version__} "
                        f"(use --device cpu or auto)")
    if base == "mps" and not _mps_available():
        raise UserError(f"--device {name}: Apple MPS is not available here (use --device cpu or auto)")
    dev = torch.device(name)
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return dev


def autocast(device: torch.device, amp: bool):
    """bf16 autocast on CUDA when `amp`; elsewhere a no-op (with a warning if amp was asked for)."""
    if not amp:
        return nullcontext()
    if device.type != "cuda":
        warnings.warn(f"--amp does nothing on {device.type} (bf16 autocast is used on CUDA only)", stacklevel=2)
        return nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16)
