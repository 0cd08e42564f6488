"""Which torch device a command runs on: `--device auto|cpu|cuda|mps` (auto: cuda, else mps, else cpu)."""

from __future__ import annotations

import threading
import warnings
from contextlib import contextmanager, nullcontext

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


def resident(tensors: dict, device: torch.device, fraction: float = 0.25) -> dict:
    """A training set held where it feeds `device` fastest: on an accelerator when it takes under `fraction` of its
    free memory (batches are then gathered there: no host copy per step; camera frames stay uint8 and are converted
    per batch on the device), else in pinned host memory (copies overlap the compute, `gather(..., non_blocking)`).
    On the CPU: the tensors themselves (the same numbers as ever)."""
    if device.type == "cpu":
        return tensors
    size = sum(t.numel() * t.element_size() for t in tensors.values())
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else 0
    if device.type == "mps" or size < fraction * free:
        return {k: v.to(device) for k, v in tensors.items()}
    return {k: v.pin_memory() for k, v in tensors.items()}


def gather(t: torch.Tensor, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Rows `idx` of `t` (from `resident`), on `device`."""
    return t[idx.to(t.device)].to(device, non_blocking=True)


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


# ---------------------------------------------------------------------- a compute device for CPU-side code
# `steerlab personalize` and `steerlab attack` run code that builds its data, keys and random starts on the CPU
# (CPU generators: the same streams on every device) and scores on the CPU. `use_compute_device(device)` names
# where models compute; `place(module)` moves a module there and gives each of its submodules a boundary: a call
# from outside the module tree moves its tensor inputs to the device and its outputs back to where the inputs
# were (autograd flows through both moves); calls inside stay on the device. On the CPU both are no-ops, so CPU
# results are bitwise what they were.
# With `amp`, each outermost call into a placed module runs under bf16 autocast on its device and hands back float32
# (the CPU-side code around it, losses and scores, keeps its precision; the backward pass needs no autocast).
_COMPUTE = {"device": torch.device("cpu"), "amp": False}
_DEPTH = threading.local()


@contextmanager
def use_compute_device(device: torch.device | str, amp: bool = False):
    """Inside the block, `place` puts modules on `device`; `amp`: bf16 autocast in their calls (CUDA; elsewhere a
    warning and no effect)."""
    before = dict(_COMPUTE)
    _COMPUTE["device"] = torch.device(device)
    if amp and _COMPUTE["device"].type != "cuda":
        warnings.warn(f"--amp does nothing on {_COMPUTE['device'].type} (bf16 autocast is used on CUDA only)",
                      stacklevel=3)
        amp = False
    _COMPUTE["amp"] = bool(amp)
    try:
        yield _COMPUTE["device"]
    finally:
        _COMPUTE.update(before)


def compute_device() -> torch.device:
    return _COMPUTE["device"]


def _move(x, device):
    if torch.is_tensor(x):
        return x.to(device)
    if isinstance(x, (list, tuple)):
        return type(x)(_move(v, device) for v in x)
    if isinstance(x, dict):
        return {k: _move(v, device) for k, v in x.items()}
    return x


def _first_device(x):
    if torch.is_tensor(x):
        return x.device
    items = x.values() if isinstance(x, dict) else x if isinstance(x, (list, tuple)) else ()
    return next((d for d in (_first_device(v) for v in items) if d is not None), None)


def _enter(module, args, kwargs):
    depth = getattr(_DEPTH, "n", 0)
    _DEPTH.n = depth + 1
    if depth == 0:
        _DEPTH.origin = _first_device((args, kwargs))
        if _COMPUTE["amp"]:
            _DEPTH.amp = torch.autocast(module._steerlab_device.type, dtype=torch.bfloat16)
            _DEPTH.amp.__enter__()
    return _move(args, module._steerlab_device), _move(kwargs, module._steerlab_device)


def _float32(x):
    if torch.is_tensor(x):
        return x.float() if x.dtype == torch.bfloat16 else x
    if isinstance(x, (list, tuple)):
        return type(x)(_float32(v) for v in x)
    if isinstance(x, dict):
        return {k: _float32(v) for k, v in x.items()}
    return x


def _leave(module, args, kwargs, output):
    _DEPTH.n -= 1
    if _DEPTH.n == 0 and getattr(_DEPTH, "amp", None) is not None:
        _DEPTH.amp.__exit__(None, None, None)
        _DEPTH.amp = None
        output = _float32(output)
    origin = getattr(_DEPTH, "origin", None)
    if _DEPTH.n == 0 and origin is not None:
        return _move(output, origin)
    return output


def place(module: torch.nn.Module) -> torch.nn.Module:
    """`module` on the compute device with its boundaries (idempotent; new submodules get theirs when placed
    again). On the CPU (the default): returned unchanged."""
    device = compute_device()
    if device.type == "cpu" or not isinstance(module, torch.nn.Module):
        return module
    return _attach(module, device)


def _attach(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    module.to(device)
    for m in module.modules():
        if getattr(m, "_steerlab_device", None) is None:
            m.register_forward_pre_hook(_enter, with_kwargs=True)
            m.register_forward_hook(_leave, with_kwargs=True, always_call=True)
        m._steerlab_device = device
    return module
