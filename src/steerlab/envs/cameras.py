"""Camera observations for MuJoCo environments (Meta-World), rendered fast on a CPU by default.

Meta-World's model asks for 4096² shadow maps, reflections, a skybox and 4× multisampling, which Mesa's
software rasterizer pays for in full: ~10× the cost of the frame itself (../shared/notes/pixels-on-cpu.md:
226 → 24 ms per 84×84 frame on a loaded 2-core machine). The fast path turns those off, *before* the
renderer is created for multisampling (`model.vis.quality.offsamples` sizes the offscreen buffer). The
policy sees the same geometry, lighting and colours, without shadows and reflections.

`CameraObservation` wraps an env so each observation is LeRobot's dict: `observation.state` (the env's
float vector) and `observation.images.<camera>` uint8 (H, W, 3), rendered after every reset and step.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from steerlab.core.errors import UserError
from steerlab.core.observations import STATE_KEY, image_key
from steerlab.envs.gl import default_gl_backend, ensure_gl_backend  # noqa: F401  (re-exported)

FAST_OFF_FLAGS = ("mjRND_SHADOW", "mjRND_REFLECTION", "mjRND_SKYBOX", "mjRND_FOG", "mjRND_HAZE")


def parse_cameras(cameras: str | Sequence[str] | None) -> tuple[str, ...]:
    """'a,b' or ['a', 'b'] -> ('a', 'b'); names are letters, digits, '_' or '-' (they become feature keys)."""
    if not cameras:
        return ()
    names = [c.strip() for c in cameras.split(",")] if isinstance(cameras, str) else [str(c) for c in cameras]
    for n in names:
        if not n or not all(ch.isalnum() or ch in "_-" for ch in n):
            raise UserError(f"camera names are letters, digits, '_' or '-'; got {n!r} (e.g. --camera corner2,topview)")
    if len(set(names)) != len(names):
        raise UserError(f"cameras must be distinct, got {names}")
    return tuple(names)


def check_image_size(size) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError) as err:
        raise UserError(f"image size must be two integers H W, got {size!r}") from err
    if not (8 <= h <= 1024 and 8 <= w <= 1024):
        raise UserError(f"image size must be between 8 and 1024 pixels per side, got {h}x{w}")
    return h, w


class CameraRenderer:
    """Renders named cameras of a MuJoCo (model, data) at H×W as uint8 (H, W, 3), top row first."""

    def __init__(self, model, data, cameras: Sequence[str], size: tuple[int, int] = (84, 84), fast: bool = True,
                 rotate: Sequence[str] = ()):
        """`rotate`: cameras whose frames are turned 180° (mounted upside down in their model)."""
        ensure_gl_backend()
        self.rotate = frozenset(rotate)
        import mujoco

        self.model, self.data = model, data
        self.cameras = tuple(cameras)
        self.size = check_image_size(size)
        self.ids = []
        for name in self.cameras:
            cam = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, name)
            if cam < 0:
                have = [model.camera(i).name for i in range(model.ncam)]
                raise UserError(f"unknown camera {name!r}; this model's cameras: {', '.join(have)}")
            self.ids.append(cam)
        if fast:
            model.vis.quality.offsamples = 0  # before the renderer: it sizes the multisampled buffer
        h, w = self.size
        # the offscreen buffer must hold the frame; Meta-World's is 640×480, grow it for larger requests
        model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), w)
        model.vis.global_.offheight = max(int(model.vis.global_.offheight), h)
        try:
            self.renderer = mujoco.Renderer(model, h, w)
        except mujoco.FatalError as err:
            raise UserError(f"cannot render offscreen with MUJOCO_GL={os.environ.get('MUJOCO_GL')!r} ({err}); install "
                            f"libegl-mesa0 or libosmesa6 and set MUJOCO_GL=egl or osmesa before mujoco is imported") from err
        if fast:
            for flag in FAST_OFF_FLAGS:
                self.renderer.scene.flags[getattr(mujoco.mjtRndFlag, flag)] = 0

    def render(self) -> dict[str, np.ndarray]:
        frames = {}
        for name, cam in zip(self.cameras, self.ids):
            self.renderer.update_scene(self.data, camera=cam)
            frame = self.renderer.render()
            frames[name] = np.ascontiguousarray(frame[::-1, ::-1] if name in self.rotate else frame)
        return frames

    def close(self) -> None:
        self.renderer.close()


class CameraObservation(gym.Wrapper):
    """Observations become {'observation.state': float32 (D,), 'observation.images.<cam>': uint8 (H, W, 3)}."""

    def __init__(self, env: gym.Env, cameras: Sequence[str], size: tuple[int, int] = (84, 84), fast: bool = True,
                 rotate: Sequence[str] = ()):
        super().__init__(env)
        raw = env.unwrapped
        if not (hasattr(raw, "model") and hasattr(raw, "data")):
            raise UserError(f"cameras need a MuJoCo env (with .model and .data); {type(raw).__name__} has none")
        self.cameras = parse_cameras(cameras)
        if not self.cameras:
            raise UserError("CameraObservation needs at least one camera")
        self.camera_renderer = CameraRenderer(raw.model, raw.data, self.cameras, size, fast, rotate)
        h, w = self.camera_renderer.size
        spaces = {STATE_KEY: env.observation_space}
        spaces.update({image_key(c): gym.spaces.Box(0, 255, (h, w, 3), np.uint8) for c in self.cameras})
        self.observation_space = gym.spaces.Dict(spaces)

    def _observe(self, state) -> dict[str, np.ndarray]:
        obs = {STATE_KEY: np.asarray(state, np.float32)}
        obs.update({image_key(c): f for c, f in self.camera_renderer.render().items()})
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        state, info = self.env.reset(seed=seed, options=options)
        return self._observe(state), info

    def step(self, action):
        state, reward, terminated, truncated, info = self.env.step(action)
        return self._observe(state), reward, terminated, truncated, info

    def close(self):
        self.camera_renderer.close()
        super().close()


def env_for_policy(spec, policy):
    """`spec` (an EnvSpec) with the cameras `policy` observes, so its envs give what the policy sees.

    A Meta-World spec gets the policy's `cameras` and `image_size` as constructor options (the checkpoint
    records the task, not the cameras: they are a property of the policy). Other families must give dict
    observations themselves (their `module:factory` or Gymnasium env); `check_env_fits`/the policy's
    converter then say what is missing. A state-only policy gets `spec` unchanged."""
    obs_spec = getattr(policy, "observation_spec", None)
    if obs_spec is None or not obs_spec.has_images or spec.family != "metaworld":
        return spec
    want = {"cameras": list(obs_spec.cameras), "image_size": list(obs_spec.image_size)}
    have = {k: list(parse_cameras(v)) if k == "cameras" else [int(x) for x in v]
            for k, v in spec.kwargs.items() if k in want and v}
    clash = {k: v for k, v in have.items() if v != want[k]}
    if clash:
        raise UserError(f"the env options {clash} disagree with the policy's cameras {want}; drop them (the policy's "
                        f"cameras are used)")
    from dataclasses import replace

    return replace(spec, kwargs={**spec.kwargs, **want})


def vector_context(spec) -> str | None:
    """The multiprocessing start method for subprocess envs of `spec`: 'spawn' when they render cameras.

    gymnasium's AsyncVectorEnv builds one env in the parent to read its spaces; with cameras that creates a GL
    context (EGL/OSMesa) there, and workers forked after it hang in their own GL initialisation (measured:
    `evaluate --n-envs 2` of a camera policy never returned). Spawned workers start clean (~3 s each)."""
    return "spawn" if spec.kwargs.get("cameras") else None
