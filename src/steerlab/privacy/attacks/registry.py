"""The attack registry: a new attack is one module with a `@register(...)` function, imported in __init__."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from steerlab.core.registry import Registry
from steerlab.privacy.attacks.core import Found, Target


@dataclass(frozen=True)
class AttackSpec:
    name: str
    run: Callable[[Target], Found]
    description: str
    uses_key: bool = False
    """A robustness check that starts from the user's key (near-miss keys). Reported, but not part of the
    attacker's overall result: the attacker has no key."""


ATTACKS = Registry("attack", group="steerlab.attacks")
"""name -> AttackSpec; a pip package adds one through the entry-point group (an AttackSpec)."""


def register(name: str, description: str, uses_key: bool = False):
    def wrap(fn: Callable[[Target], Found]) -> Callable[[Target], Found]:
        if name in ATTACKS:
            raise ValueError(f"attack {name!r} is registered twice")
        ATTACKS.add(name, AttackSpec(name, fn, description, uses_key))
        return fn

    return wrap
