"""Deployment shifts: named, deterministic changes between the demonstrations and the deployment.

A shift is a parameter of the environment factory, never a code fork. Its name says everything
(`parse_shift(name)` rebuilds it), so recording the name in a dataset, checkpoint or result is enough
to reproduce it. Families are registered by prefix (`register_shift_family`); two ship here:

* ``actuation:...``  a calibration error at deployment: the commanded action is mapped to
  ``gain · a + offset`` before the robot executes it (the env's own clipping still applies), an error
  the demonstrations never had.
    - ``actuation:offset-x+0.10``  constant offset +0.10 on action axis x (axes x y z g = 0 1 2 3,
      or a number for other action spaces)
    - ``actuation:gain-0.5``       every action axis except a 4-d Meta-World-style gripper scaled by 0.5
    - ``actuation:gain-y-0.5``     one axis scaled
* ``coverage:...``   demonstrations only from a restricted region of initial object/goal positions;
  deployment over the full range (the env is unchanged; `collect` skips demo seeds outside the region).
    - ``coverage:low-0.70``  the demos' initial states are the 30% of the task's range on its low side,
      i.e. u = the mean of the randomized coordinates, each normalized to [0, 1] over the task's own
      range, lies below the 0.30-quantile of u under the uniform initial-state distribution
    - ``coverage:high-0.70`` ... the 30% on the high side (u above its 0.70-quantile)
  "Randomized" = a coordinate whose range is at least `MIN_RANGE` (1 cm in Meta-World). The region is
  defined on the task's own ranges, never per task, and one scalar u keeps the acceptance rate equal to
  the kept share whatever the number of coordinates (a box corner per coordinate would shrink as
  keep^d). The magnitude is the *excluded* share of initial states.

Coverage needs an env that exposes its initial object/goal positions and their ranges: either a method
``initial_positions() -> (values, low, high)`` on the unwrapped env (any family can add one) or
Meta-World's ``_last_rand_vec`` / ``_random_reset_space``.

Shifts involve no randomness, so they need no seed: the same name gives the same environment.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from steerlab.core.errors import UserError
from steerlab.core.registry import Registry

MIN_RANGE = 0.01
"""Initial-state coordinates whose range is narrower than this are not 'randomized' (coverage ignores them)."""
AXES = {"x": 0, "y": 1, "z": 2, "g": 3}


@dataclass(frozen=True)
class Shift:
    name: str
    """Canonical name, e.g. 'actuation:offset-x+0.10'; `parse_shift(name)` rebuilds this object."""
    family: str
    """'actuation' | 'coverage' | any registered family."""
    magnitude: float
    """The calibrated size (offset, 1 − gain, or the excluded share of each range)."""
    params: dict = field(default_factory=dict, compare=False)
    """Family-specific parameters (axis, offset, gain, side, keep)."""

    def wrap_env(self, env: gym.Env) -> gym.Env:
        """The deployment environment under this shift (identity for coverage: deployment is the full range)."""
        if self.family == "actuation":
            return ActuationShift(env, self)
        return env

    def accepts(self, env: gym.Env) -> bool:
        """Whether the env's current initial state (just after reset) lies in the demonstration region."""
        if self.family != "coverage":
            return True
        values, low, high = initial_positions(env)
        span = high - low
        free = span >= MIN_RANGE
        if not free.any():
            raise UserError(f"shift {self.name}: this env randomizes no initial position by >= {MIN_RANGE}")
        u = float(np.mean((values[free] - low[free]) / span[free]))  # each coordinate normalized to [0, 1]
        q = uniform_mean_quantile(self.params["keep"], int(free.sum()))
        # the mean of d uniforms is symmetric about 1/2: the high side's region mirrors the low side's
        return u <= q if self.params["side"] == "low" else u >= 1.0 - q

    def to_dict(self) -> dict:
        return {"name": self.name, "family": self.family, "magnitude": self.magnitude, **self.params}


class ActuationShift(gym.ActionWrapper):
    """a ↦ gain · a + offset per action axis, applied before the wrapped env (which clips as usual)."""

    def __init__(self, env: gym.Env, shift: Shift):
        super().__init__(env)
        dim = int(np.prod(env.action_space.shape))
        axis = shift.params["axis"]
        if axis is not None and axis >= dim:
            raise UserError(f"shift {shift.name!r}: action axis {axis} does not exist (action has {dim} dims)")
        self.shift = shift
        self.gain = np.ones(dim, np.float32)
        self.offset = np.zeros(dim, np.float32)
        axes = [axis] if axis is not None else list(range(dim - 1 if dim == 4 else dim))  # spare the gripper
        if shift.params["kind"] == "offset":
            self.offset[axes] = shift.params["value"]
        else:
            self.gain[axes] = shift.params["value"]

    def action(self, action):
        return (self.gain * np.asarray(action, np.float32) + self.offset).astype(np.float32)


def initial_positions(env: gym.Env) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, low, high) of the env's initial object/goal positions for the current episode."""
    raw = env.unwrapped
    if callable(getattr(raw, "initial_positions", None)):
        values, low, high = raw.initial_positions()
    elif hasattr(raw, "_last_rand_vec") and hasattr(raw, "_random_reset_space"):  # Meta-World
        values, low, high = raw._last_rand_vec, raw._random_reset_space.low, raw._random_reset_space.high
    else:
        raise UserError(f"{type(raw).__name__} exposes no initial object/goal positions; coverage shifts need "
                        "an env with an initial_positions() -> (values, low, high) method (or Meta-World)")
    return tuple(np.asarray(x, np.float64).ravel() for x in (values, low, high))


def uniform_mean_quantile(p: float, d: int) -> float:
    """The p-quantile of the mean of d independent U(0, 1) variables (Irwin–Hall CDF, inverted by bisection)."""

    def cdf(x: float) -> float:  # P(mean <= x) = P(sum <= d·x)
        s = d * x
        return sum((-1) ** k * math.comb(d, k) * (s - k) ** d for k in range(int(math.floor(s)) + 1)) / math.factorial(d)

    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return 0.5 * (lo + hi)


# ------------------------------------------------------------------ registry of families
SHIFT_FAMILIES = Registry("shift family", group="steerlab.shift_families")
"""prefix -> (parse(family, argument) -> Shift, the valid argument forms); a pip package adds one through the
entry-point group (such a tuple)."""


def register_shift_family(family: str, parse: Callable[[str, str], Shift], forms: str) -> None:
    """`parse(family, argument)` builds the Shift for 'family:argument'; `forms` lists valid arguments."""
    SHIFT_FAMILIES.add(family, (parse, forms))


def _valid_forms() -> str:
    return "; ".join(f"{fam}:{forms}" for fam, (_, forms) in SHIFT_FAMILIES.items())


def _axis(token: str | None) -> int | None:
    if token is None:
        return None
    return AXES[token] if token in AXES else int(token)


_ACTUATION = re.compile(r"^(offset)-(x|y|z|g|\d+)([+-]\d*\.?\d+)$|^(gain)(?:-(x|y|z|g|\d+))?-(\d*\.?\d+)$")


def _parse_actuation(family: str, arg: str) -> Shift:
    m = _ACTUATION.match(arg)
    if not m:
        raise UserError(f"unknown actuation shift {arg!r}; valid forms: {SHIFT_FAMILIES[family][1]}")
    if m.group(1):
        axis, value = _axis(m.group(2)), float(m.group(3))
        name = f"actuation:offset-{m.group(2)}{value:+.2f}"
        return Shift(name, family, abs(value), {"kind": "offset", "axis": axis, "value": value})
    axis_tok, value = m.group(5), float(m.group(6))
    if value <= 0:
        raise UserError(f"actuation gain must be > 0, got {value}")
    name = f"actuation:gain-{axis_tok + '-' if axis_tok else ''}{value:.2f}"
    return Shift(name, family, abs(1.0 - value), {"kind": "gain", "axis": _axis(axis_tok), "value": value})


_COVERAGE = re.compile(r"^(low|high)-(\d*\.?\d+)$")


def _parse_coverage(family: str, arg: str) -> Shift:
    m = _COVERAGE.match(arg)
    if not m:
        raise UserError(f"unknown coverage shift {arg!r}; valid forms: {SHIFT_FAMILIES[family][1]}")
    excluded = float(m.group(2))
    if not 0.0 < excluded < 1.0:
        raise UserError(f"coverage: the excluded share of each range must be in (0, 1), got {excluded}")
    return Shift(f"coverage:{m.group(1)}-{excluded:.2f}", family, excluded,
                 {"side": m.group(1), "keep": 1.0 - excluded})


register_shift_family("actuation", _parse_actuation, "offset-<x|y|z|g|axis><+/-value> | gain[-<axis>]-<value>")
register_shift_family("coverage", _parse_coverage, "low-<excluded share> | high-<excluded share>")


def parse_shift(name: str | None) -> Shift | None:
    """The Shift called `name` (None / '' / 'none' → None); a one-line UserError for unknown names."""
    if name is None or name in ("", "none"):
        return None
    if isinstance(name, Shift):
        return name
    family, sep, arg = str(name).partition(":")
    if not sep or SHIFT_FAMILIES.get(family) is None:
        raise UserError(f"unknown shift {name!r}; valid forms: {_valid_forms()}")
    return SHIFT_FAMILIES[family][0](family, arg)


def shift_name(name: str | None) -> str | None:
    """Canonical name (for recording in datasets, checkpoints and results); None for no shift."""
    shift = parse_shift(name)
    return shift.name if shift else None


def apply_shift(env: gym.Env, name: str | None) -> gym.Env:
    """The deployment env under shift `name` (unchanged for None and for coverage shifts)."""
    shift = parse_shift(name)
    return shift.wrap_env(env) if shift else env
