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


def to_device(x, device: torch.device | str):
    """A tensor, or a dict of tensors (a camera observation), on `device` (a no-op where it already is)."""
    if isinstance(x, dict):
        return {k: v.to(device) for k, v in x.items()}
    return x.to(device)


def policy_device(policy) -> torch.device:
    """Where `policy` computes: its `device` attribute, an nn.Module's first parameter, the module a wrapper
    holds (`.policy` / `.base`), else the CPU (a policy without torch weights)."""
    dev = getattr(policy, "device", None)
    if isinstance(dev, torch.device):
        return dev
    if isinstance(policy, torch.nn.Module):
        p = next(policy.parameters(), None)
        return p.device if p is not None else torch.device("cpu")
    for name in ("policy", "base"):
        inner = vars(policy).get(name) if hasattr(policy, "__dict__") else None
        if inner is not None:
            return policy_device(inner)
    return torch.device("cpu")


def move_policy(policy, device: torch.device | str):
    """Move `policy`'s weights to `device` when it can move (`.to`, as nn.Module and steerlab's wrappers have);
    returns the policy. Checkpoints always hold CPU tensors, so any checkpoint loads on any device."""
    fn = getattr(policy, "to", None)
    if callable(fn):
        fn(torch.device(device))
    return policy
