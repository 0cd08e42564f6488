"""The offscreen OpenGL backend for MuJoCo rendering, chosen before mujoco is imported.

mujoco reads `MUJOCO_GL` once, when it is first imported, so steerlab sets it (unless the user did) when
`steerlab.envs` is imported, before any env module imports mujoco or Meta-World. Without a display
only OSMesa (`libosmesa6`) and EGL (`libegl-mesa0`, or the NVIDIA driver's EGL, which renders on the GPU)
work; neither needs a GPU. A library that is not installed is never picked (mujoco would fail to import).
"""

from __future__ import annotations

import ctypes.util
import os
import platform
import sys


def default_gl_backend() -> str | None:
    """OSMesa where its library is installed, else EGL where it is, else None (mujoco's own default)."""
    if platform.system() != "Linux":
        return None
    if ctypes.util.find_library("OSMesa"):
        return "osmesa"
    return "egl" if ctypes.util.find_library("EGL") else None


def ensure_gl_backend() -> str | None:
    """Set MUJOCO_GL to `default_gl_backend()` unless it is set or mujoco is already imported."""
    if "MUJOCO_GL" not in os.environ and "mujoco" not in sys.modules:
        backend = default_gl_backend()
        if backend is not None:
            os.environ["MUJOCO_GL"] = backend
    return os.environ.get("MUJOCO_GL")
