"""One registry mechanism for every kind of plug-in: steering methods, env and shift families, policy types,
personalization methods and tasks, attacks.

A kind's base module creates its `Registry` and its built-ins register themselves with the registry's decorator
(`@METHODS.register("name")`), so a new one is one module plus that line. A pip-installed package adds its own
without editing steerlab through the kind's entry-point group (pyproject.toml of that package):

    [project.entry-points."steerlab.steering_methods"]
    my-method = "my_pkg.steering:MyMethod"

Entry points are read the first time a name is not found, so importing steerlab never imports plug-ins. Core
names no upper layer: even steerlab's own checkpoint loaders are found through the entry-point group
`steerlab.policy_types` (declared in steerlab's pyproject.toml), not through a table of module paths here.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from typing import Any

from steerlab.core.errors import UserError


class Registry(dict):
    """name -> registered object (a dict: `name in reg`, `reg[name]`, `list(reg)` work as usual)."""

    def __init__(self, kind: str, group: str):
        super().__init__()
        self.kind, self.group = kind, group
        self._entry_points_read = False

    def add(self, name: str, obj: Any) -> Any:
        if not name:
            raise ValueError(f"a {self.kind} needs a name")
        if name in self and self[name] is not obj:
            raise ValueError(f"{self.kind} {name!r} is already registered ({self[name]!r})")
        self[name] = obj
        return obj

    def register(self, name: str) -> Callable[[Any], Any]:
        """Decorator: `@REG.register("name")` on a class or function."""
        return lambda obj: self.add(name, obj)

    def read_entry_points(self) -> None:
        """Add the objects installed packages declare in this kind's entry-point group (once)."""
        if self._entry_points_read:
            return
        self._entry_points_read = True
        for ep in metadata.entry_points(group=self.group):
            if ep.name in self:
                continue  # a built-in (or an earlier registration) wins over a same-named entry point
            try:
                self[ep.name] = ep.load()
            except Exception as err:  # noqa: BLE001 - a broken plug-in must name itself, not crash the lookup
                raise UserError(f"{self.kind} {ep.name!r} from entry point {ep.value!r} cannot be loaded "
                                f"({type(err).__name__}: {err}); reinstall or remove the package that declares "
                                f"it") from err

    def get(self, name: str, default: Any = None) -> Any:  # noqa: D102 - dict.get, entry points included
        if name not in self:
            self.read_entry_points()
        return super().get(name, default)

    def lookup(self, name: str) -> Any:
        """The object registered as `name`; an unknown name is one line listing the known ones."""
        if name not in self:
            self.read_entry_points()
        if name not in self:
            raise UserError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self.names())}")
        return self[name]

    def names(self) -> list[str]:
        self.read_entry_points()
        return list(self)
