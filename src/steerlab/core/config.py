"""Checks for dataclass configs read from users or from disk: known keys, right types, positive counts.

A config that comes from JSON (a checkpoint's config.json, `--sac-json`) is checked before it is used,
so `"hidden": "256"` or a misspelt key is one line naming the field, not a traceback deep in torch.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from typing import Any

from steerlab.core.errors import UserError


def field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def check_keys(cls, d: dict, where: str) -> None:
    """Refuse keys that are not fields of `cls`, listing the valid ones."""
    if not isinstance(d, dict):
        raise UserError(f"{where} must be a JSON object, got {type(d).__name__}")
    unknown = sorted(set(d) - set(field_names(cls)))
    if unknown:
        raise UserError(f"unknown {where} key(s) {', '.join(unknown)}; valid keys: {', '.join(field_names(cls))}")


def _matches(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, t) for t in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:  # JSON has no separate bool/int/float: refuse true for an int, 256.0 for an int
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin in (dict,) or tp is dict:
        return isinstance(value, dict)
    if origin in (list, tuple) or tp in (list, tuple):
        return isinstance(value, (list, tuple))
    if dataclasses.is_dataclass(tp):
        return isinstance(value, tp)
    return True  # a type this checker does not know: leave it to the class


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def check_types(obj, where: str | None = None) -> None:
    """Raise a one-line error naming the first field of dataclass `obj` whose value has the wrong type
    (or a float field holding NaN/inf)."""
    hints = typing.get_type_hints(type(obj))
    where = where or type(obj).__name__
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        tp = hints.get(f.name, Any)
        if not _matches(value, tp):
            raise UserError(f"{where}.{f.name} must be {_type_name(tp)}, got {value!r} ({type(value).__name__})")
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{where}.{f.name} must be finite, got {value!r}")


def build(cls, d: dict, where: str):
    """`cls(**d)` with unknown keys, wrong types and the class's own checks all as one-line errors."""
    check_keys(cls, d, where)
    try:
        obj = cls(**d)
    except UserError:
        raise
    except (TypeError, ValueError) as err:
        raise UserError(f"{where}: {err}") from err
    check_types(obj, where)
    return obj


def check_scale(name: str, value: float) -> None:
    """Scales (noise multipliers) are finite numbers >= 0; the message names the flag or field."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise UserError(f"{name} must be a finite number >= 0, got {value}")


def check_count(name: str, value: int, minimum: int = 1) -> None:
    """Counts (steps, episodes, envs) are integers >= minimum; the message names the flag."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        rule = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise UserError(f"{name} must be {rule}, got {value!r}")
