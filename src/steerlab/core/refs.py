"""A user's code by reference: `package.module:callable` (a policy or environment factory).

The one place steerlab imports user code named on a command line. The current directory is importable
for that import only (as `python -c` would make it), so `steerlab evaluate my_policy:make_policy` works
from the folder holding my_policy.py without PYTHONPATH; sys.path is never edited (a finder for the current
folder sits on sys.meta_path during that import only).
Failures are one line that names the reference and the fix.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import os
import re
import sys
from pathlib import Path

from steerlab.core.errors import UserError

_NAME = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
REF_PATTERN = re.compile(rf"({_NAME}):({_NAME})")


def is_ref(spec) -> bool:
    """'package.module:callable' (dotted identifiers on both sides) that is not an existing path.

    Gymnasium ids such as 'panda_gym:PandaPush-v3' are not references (the '-' is no identifier)."""
    return bool(REF_PATTERN.fullmatch(str(spec))) and not Path(str(spec)).exists()


class _CurrentFolder(importlib.abc.MetaPathFinder):
    """Finds top-level modules in one folder (the current directory): installed on `sys.meta_path`, last, for the
    duration of one user import, so the user's module and the siblings it imports load from where steerlab was run
    (as `python -c` would), without editing `sys.path` and without shadowing anything installed."""

    def __init__(self, folder: str):
        self.folder = folder

    def find_spec(self, name, path=None, target=None):
        if path is not None:  # a submodule: its package's own __path__ finds it
            return None
        return importlib.machinery.PathFinder.find_spec(name, [self.folder])


def _import(module_name: str, ref: str, what: str):
    finder = _CurrentFolder(os.getcwd())
    sys.meta_path.append(finder)
    importlib.invalidate_caches()  # a module written since the last import (a test, a notebook) is found
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        missing = err.name or module_name
        if module_name == missing or module_name.startswith(missing + "."):
            path = missing.replace(".", "/")
            raise UserError(f"cannot import {missing!r} for {what} {ref!r}: run from the folder holding {path}.py "
                            f"(or {path}/), or pip install it") from err
        raise UserError(f"{what} {ref!r}: importing {module_name!r} needs {missing!r}, which is not installed "
                        f"(pip install it)") from err
    except Exception as err:  # noqa: BLE001 - the user's module failed while importing: name it, keep one line
        raise UserError(f"{what} {ref!r}: importing {module_name!r} raised {type(err).__name__}: "
                        f"{' '.join(str(err).split())}") from err
    finally:
        sys.meta_path.remove(finder)


def resolve_ref(ref: str, what: str = "factory"):
    """The callable named by 'package.module:attr' (one-line error when it cannot be imported or found)."""
    match = REF_PATTERN.fullmatch(str(ref))
    if not match:
        raise UserError(f"expected a {what} as 'package.module:callable', got {ref!r}")
    module_name, attr = match.groups()
    fn = _import(module_name, ref, what)
    for part in attr.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise UserError(f"{what} {ref!r}: module {module_name!r} has no attribute {attr!r} (check the name "
                            f"after the ':')")
    if not callable(fn):
        raise UserError(f"{what} {ref!r} is a {type(fn).__name__}, not a callable")
    return fn


def call_ref(ref: str, what: str = "factory", **kwargs):
    """Call the factory `ref` with `kwargs`; its exceptions become one line naming it."""
    fn = resolve_ref(ref, what)
    try:
        return fn(**kwargs)
    except Exception as err:  # noqa: BLE001 - the user's factory failed: say which, keep its message
        raise UserError(f"{what} {ref!r} raised {type(err).__name__}: {' '.join(str(err).split())}") from err
