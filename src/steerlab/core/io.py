"""Crash-safe file writes: every file (and every folder of files) appears complete or not at all.

A file is written to a temporary name in the same folder and renamed into place (`os.replace` is
atomic on POSIX). A *set* of files that must agree (a training-state snapshot) is written into a fresh
temporary folder and switched in with one rename, see `atomic_dir`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from steerlab.core.errors import CheckpointError, OutputExistsError


def fsync_dir(path: str | Path) -> None:
    """Make a rename inside `path` durable (best effort where the platform has no directory fsync)."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


NULLS = "nulls"


def strict_json(obj: Any, reasons: dict[str, str] | None = None) -> Any:
    """`obj` ready for strict JSON: every NaN/±inf float becomes null, and a dict at the top gains a
    `"nulls": {field: reason}` map naming each null field and why (docs/results.md, "Strict JSON").

    The reason is the writer's own where it gave one (`reasons`, or an existing `"nulls"` map in `obj`), else
    "not a finite number (nan)". Field names are dotted paths ("smoothness.jerk", "curve[3]")."""
    found: dict[str, str] = {}

    def walk(x, path):
        if isinstance(x, float) and not math.isfinite(x):
            found[path] = f"not a finite number ({x})"
            return None
        if isinstance(x, dict):
            return {k: walk(v, f"{path}.{k}" if path else str(k)) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(x)]
        if isinstance(x, np.floating | np.integer | np.bool_):
            return walk(x.item(), path)
        return x

    out = walk(obj, "")
    if isinstance(out, dict):
        given = {**(out.get(NULLS) or {}), **(reasons or {})}
        nulls = {k: v for k, v in given.items() if k in found or _is_null(out, k)}
        nulls.update({k: v for k, v in found.items() if k not in nulls})
        out.pop(NULLS, None)
        if nulls:
            out[NULLS] = dict(sorted(nulls.items()))
    return out


def _is_null(obj: dict, dotted: str) -> bool:
    """Whether the top-level or dotted field `dotted` of `obj` holds null (a reason for it is kept)."""
    x: Any = obj
    for part in dotted.split("."):
        if not isinstance(x, dict) or part not in x:
            return False
        x = x[part]
    return x is None


def dumps_strict(obj: Any, **kwargs) -> str:
    """`json.dumps` of `strict_json(obj)`, refusing NaN/inf (allow_nan=False) as a last line of defence."""
    return json.dumps(strict_json(obj), allow_nan=False, **kwargs)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write `obj` as strict JSON (non-finite floats become null with a reason, `strict_json`), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; checkpoints and results are meant to be shared
    try:
        with os.fdopen(fd, "w") as f:
            f.write(dumps_strict(obj, indent=2, sort_keys=True))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save_tensors(path: str | Path, tensors: dict[str, torch.Tensor]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o644)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"missing {path.name} in {path.parent}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON ({err})") from err


def load_tensors(path: str | Path, check_finite: bool = True) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file; a float tensor holding NaN or inf is a corrupt file, not weights."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"missing {path.name} in {path.parent}")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is corrupt or not a safetensors file ({err})") from err
    if check_finite:
        for name, t in tensors.items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise CheckpointError(f"{path}: tensor {name!r} holds NaN or inf (corrupt weights)")
    return tensors


@contextlib.contextmanager
def atomic_dir(final: str | Path, replace: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary folder beside `final`; on success it becomes `final` in one step.

    Readers see either the previous complete folder or the new complete one, never a mix. An existing
    `final` is replaced only with `replace=True` (the caller's own earlier output, e.g. a run's previous
    snapshot); it is renamed aside to `final.old` first and deleted only after the new one is in place, so
    a crash at any moment leaves a complete folder under `final` or `final.old` (`recover_dir`). Nothing
    this call did not move aside itself is ever deleted.
    """
    final = Path(final)
    if final.exists() and not replace:
        raise OutputExistsError(f"{final} already exists; refusing to replace it")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    os.chmod(tmp, 0o755)
    old = final.with_name(final.name + ".old")
    moved = False
    try:
        yield tmp
        if final.exists():
            if old.exists():  # a crash between our two renames left the previous snapshot here: ours
                shutil.rmtree(old)
            os.replace(final, old)
            moved = True
        os.replace(tmp, final)
        fsync_dir(final.parent)
        if moved:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def recover_dir(final: str | Path) -> Path | None:
    """The complete folder `atomic_dir` left: `final`, or its `.old` copy after a crash mid-switch."""
    final = Path(final)
    if final.is_dir():
        return final
    old = final.with_name(final.name + ".old")
    if old.is_dir():
        os.replace(old, final)
        return final
    return None


def clean_temps(folder: str | Path) -> list[Path]:
    """Remove the `.<name>.*.tmp` files and folders that writes killed mid-way left directly in `folder`.

    Only call it while holding the folder's lock: a live writer's temp file looks the same.
    """
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        if p.name.startswith(".") and p.name.endswith(".tmp"):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    return removed
