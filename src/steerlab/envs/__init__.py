"""Environments. Importing the package picks MuJoCo's offscreen GL backend first (envs/gl.py)."""

from steerlab.envs.gl import ensure_gl_backend

ensure_gl_backend()
