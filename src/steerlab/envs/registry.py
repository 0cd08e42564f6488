"""Environment families behind one factory: Meta-World, any registered Gymnasium id, or `module:factory`.

    spec = resolve_env("Pendulum-v1")            # or "push-wall-v3", or "my_pkg.envs:make_env"
    env = make_env(spec, seed=0, terminate_on_success=True)

Every env steerlab builds speaks one small contract, whatever its family:

* a fixed horizon: `truncated` at `spec.max_steps` steps (RL bootstraps through it);
* `info["is_success"]`: success at *any* step so far, read from the env's own `info[spec.success_key]`
  (default `is_success`, the Gymnasium-Robotics convention; an env that never reports it never succeeds);
  with `terminate_on_success` the episode ends (terminated) at the first success;
  `info["success_reported"]`: whether the env's own info has carried `spec.success_key` at all this episode
  (an env that never does, e.g. Pendulum, has no success signal: evaluations report its success as null with
  a reason, not 0; an env family without this key, Meta-World and panda-gym, always reports success);
* `info[spec.position_key]`: the end-effector position when the env exposes one (Meta-World: `hand_pos`;
  a registered Gymnasium env may declare its key as `metadata["position_key"]`), used for smoothness
  metrics; `position_key=None` skips them;
* a flat float32 `Box` observation (Dict observations are flattened) and a `Box` action space whose shape
  is the policy's action shape; actions are clipped to it;
* reward 'dense' (the env's own; Meta-World's shaped reward / 10) or 'sparse' (1 on success, else 0);
* `spec.shift`: a named deployment shift (`steerlab.envs.shifts`) applied around the env.

`EnvSpec` is plain JSON (`to_dict`) and is recorded in checkpoints and results. A new family is one
`EnvFamily` subclass + `register_family` (the three below are the examples; `panda_tasks.PandaFamily` a fourth).
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

import steerlab.envs.toy  # noqa: F401  (registers steerlab/PointReach-v0, the tests' and docs' tiny env)
from steerlab.core.errors import UserError
from steerlab.core.observations import IMAGE_PREFIX, STATE_KEY
from steerlab.core.refs import call_ref, is_ref, resolve_ref
from steerlab.core.registry import Registry
from steerlab.envs.panda_tasks import PandaFamily

DEFAULT_MAX_STEPS = 200


@dataclass
class EnvSpec:
    family: str
    """'metaworld' | 'gym' | 'factory' | any registered family."""
    id: str
    """Meta-World task name, Gymnasium id ('Pendulum-v1', 'panda_gym:PandaPush-v3'), or 'module:factory'."""
    max_steps: int = DEFAULT_MAX_STEPS
    """Episode horizon (truncation)."""
    success_key: str = "is_success"
    """`info` key whose truth means success at this step."""
    position_key: str | None = None
    """`info` key holding the end-effector position (smoothness metrics); None: none exposed."""
    shift: str | None = None
    """Named deployment shift (steerlab.envs.shifts), or None."""
    kwargs: dict = field(default_factory=dict)
    """Keyword arguments for the family's constructor (gym.make / the factory / Meta-World options)."""

    @property
    def task(self) -> str:
        """The id, under the name older code and checkpoints use."""
        return self.id

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> EnvSpec:
        """Also reads the v1 form {'suite': 'metaworld', 'task': ..., 'max_steps': ...}."""
        d = dict(d)
        if "family" not in d:
            if not d.get("task"):
                raise UserError("the environment spec names no environment; pass --env")
            return resolve_env(d["task"], max_steps=d.get("max_steps"))
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


# ---------------------------------------------------------------------- the common wrapper
class TaskEnv(gym.Wrapper):
    """Horizon, success-at-any-step, termination on success, reward type, action clipping (see module doc)."""

    def __init__(self, env: gym.Env, spec: EnvSpec, terminate_on_success: bool, reward: str):
        if reward not in ("dense", "sparse"):
            raise UserError(f"reward must be 'dense' or 'sparse', got {reward!r}")
        # a Dict with LeRobot's camera names stays a dict (docs/protocol.md); any other Dict is flattened
        self.cameras = is_camera_space(env.observation_space)
        if isinstance(env.observation_space, gym.spaces.Dict) and not self.cameras:
            env = gym.wrappers.FlattenObservation(env)
        super().__init__(env)
        if not isinstance(env.action_space, gym.spaces.Box):
            raise UserError(f"{spec.id}: steerlab needs a continuous (Box) action space, got {env.action_space}")
        if self.cameras:
            self.observation_space = camera_space(env.observation_space, spec.id)
        elif not isinstance(env.observation_space, gym.spaces.Box) or len(env.observation_space.shape) != 1:
            raise UserError(f"{spec.id}: steerlab needs a flat Box observation, got {env.observation_space}")
        else:
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, env.observation_space.shape, np.float32)
        self.spec_ = spec
        self.terminate_on_success, self.reward_type = terminate_on_success, reward
        self.action_space = gym.spaces.Box(env.action_space.low.astype(np.float32),
                                           env.action_space.high.astype(np.float32), dtype=np.float32)
        self._t, self._ever, self._reported = 0, False, False

    def _check_position(self, info: dict) -> None:
        key = self.spec_.position_key
        if key is not None and key not in info:
            raise UserError(f"{self.spec_.id}: info has no position key {key!r} (pass position_key=None to "
                            f"skip smoothness); keys: {sorted(info)}")

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._t, self._ever = 0, False
        self._reported = self.spec_.success_key in info
        info = dict(info, success=False, is_success=False, success_reported=self._reported)
        self._check_position(info)
        return self._obs(obs), info

    def _obs(self, obs):
        if self.cameras:  # the state as float32, the frames as the uint8 HWC they must be
            return {k: np.asarray(obs[k], space.dtype) for k, space in self.observation_space.spaces.items()}
        return np.asarray(obs, np.float32)

    def step(self, action):
        action = np.asarray(action, np.float32)
        if action.shape != self.action_space.shape:
            raise UserError(f"{self.spec_.id}: action must have shape {self.action_space.shape}, got {action.shape}")
        action = np.clip(action, self.action_space.low, self.action_space.high)
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._t += 1
        success = bool(np.any(info.get(self.spec_.success_key, False)))
        self._ever |= success
        self._reported |= self.spec_.success_key in info
        r = float(success) if self.reward_type == "sparse" else float(reward)
        terminated = bool(terminated) or (success and self.terminate_on_success)
        truncated = not terminated and (bool(truncated) or self._t >= self.spec_.max_steps)
        info = dict(info, success=success, is_success=self._ever, success_reported=self._reported)
        self._check_position(info)
        return self._obs(obs), r, terminated, truncated, info


def is_camera_space(space) -> bool:
    """A Dict observation space with LeRobot's names: `observation.state` and `observation.images.<camera>`."""
    return (isinstance(space, gym.spaces.Dict) and STATE_KEY in space.spaces
            and any(k.startswith(IMAGE_PREFIX) for k in space.spaces))


def camera_space(space: gym.spaces.Dict, env_id: str) -> gym.spaces.Dict:
    """The camera dict as steerlab passes it on: state float32 (D,), each camera uint8 (H, W, 3); one line
    naming the key otherwise."""
    state = space.spaces[STATE_KEY]
    if not isinstance(state, gym.spaces.Box) or len(state.shape) != 1:
        raise UserError(f"{env_id}: observation {STATE_KEY!r} must be a flat Box, got {state}")
    out = {STATE_KEY: gym.spaces.Box(-np.inf, np.inf, state.shape, np.float32)}
    for key, cam in space.spaces.items():
        if key == STATE_KEY:
            continue
        if not key.startswith(IMAGE_PREFIX):
            raise UserError(f"{env_id}: a camera observation holds {STATE_KEY!r} and {IMAGE_PREFIX}<camera> only; "
                            f"got {key!r} too")
        if not isinstance(cam, gym.spaces.Box) or len(cam.shape) != 3 or cam.shape[2] != 3 or cam.dtype != np.uint8:
            raise UserError(f"{env_id}: observation {key!r} must be a uint8 Box of shape (H, W, 3), got {cam}")
        out[key] = gym.spaces.Box(0, 255, cam.shape, np.uint8)
    return gym.spaces.Dict(out)


# ---------------------------------------------------------------------- families
class EnvFamily:
    name = ""
    default_position_key: str | None = None

    def owns(self, env_id: str) -> bool:
        """Whether this family builds `env_id` (families are asked in registration order)."""
        raise NotImplementedError

    def default_max_steps(self, env_id: str) -> int:
        return DEFAULT_MAX_STEPS

    def position_key(self, env_id: str) -> str | None:
        return self.default_position_key

    def build(self, spec: EnvSpec, seed: int, terminate_on_success: bool, reward: str,
              render_mode: str | None) -> gym.Env:
        raise NotImplementedError


class MetaWorldFamily(EnvFamily):
    """Meta-World v3 tasks (`metaworld_env.MetaWorldTask` already implements the contract)."""

    name = "metaworld"
    default_position_key = "hand_pos"

    def owns(self, env_id):
        if ":" in env_id or not env_id.endswith("-v3") or env_id[:1].isupper():
            return False  # cheap test first: importing Meta-World costs a second
        from steerlab.envs.metaworld_env import available_tasks

        return env_id in available_tasks()

    def build(self, spec, seed, terminate_on_success, reward, render_mode):
        from steerlab.envs.metaworld_env import make_env as make_metaworld

        if spec.success_key != "is_success":
            raise UserError("Meta-World reports success as 'is_success'; success_key cannot be changed")
        return make_metaworld(spec.id, seed=seed, max_steps=spec.max_steps, terminate_on_success=terminate_on_success,
                              reward=reward, render_mode=render_mode, **spec.kwargs)


class GymFamily(EnvFamily):
    """Any id in the Gymnasium registry ('Pendulum-v1'), or 'module:EnvId' (imports the module first)."""

    name = "gym"

    def _registered(self, env_id: str):
        module, _, name = env_id.rpartition(":")
        if module:
            try:
                importlib.import_module(module)
            except ImportError:
                return None
        return gym.envs.registry.get(name)

    def owns(self, env_id):
        return self._registered(env_id) is not None

    def default_max_steps(self, env_id):
        spec = self._registered(env_id)
        return int(spec.max_episode_steps) if spec is not None and spec.max_episode_steps else DEFAULT_MAX_STEPS

    def position_key(self, env_id):
        """An env class may declare its end-effector key as `metadata["position_key"]`."""
        spec = self._registered(env_id)
        try:
            creator = gym.envs.registration.load_env_creator(spec.entry_point) if isinstance(
                spec.entry_point, str) else spec.entry_point
        except (ImportError, AttributeError):
            return None
        return (getattr(creator, "metadata", None) or {}).get("position_key")

    def build(self, spec, seed, terminate_on_success, reward, render_mode):
        env = gym.make(spec.id, render_mode=render_mode, **spec.kwargs)
        return TaskEnv(env, spec, terminate_on_success, reward)


class FactoryFamily(EnvFamily):
    """'package.module:make_env': a callable returning a `gym.Env` (called with `spec.kwargs`)."""

    name = "factory"

    def owns(self, env_id):
        # by its shape: a reference that fails to import is reported as such (naming it and the fix, by
        # `default_max_steps`, which resolve_env asks next), not as an unknown environment
        return is_ref(env_id)

    def default_max_steps(self, env_id):
        resolve_ref(env_id, "env factory")
        return DEFAULT_MAX_STEPS

    def build(self, spec, seed, terminate_on_success, reward, render_mode):
        kwargs = dict(spec.kwargs, **({"render_mode": render_mode} if render_mode else {}))
        env = call_ref(spec.id, "env factory", **kwargs)
        if not isinstance(env, gym.Env):
            raise UserError(f"env factory {spec.id!r} returned {type(env).__name__}, not a gymnasium.Env")
        return TaskEnv(env, spec, terminate_on_success, reward)


FAMILIES = Registry("environment family", group="steerlab.env_families")
"""name -> EnvFamily; a pip package adds one through the entry-point group (an EnvFamily instance)."""


def register_family(family: EnvFamily) -> EnvFamily:
    return FAMILIES.add(family.name, family)


# asked in this order: panda before gym, which would also own 'PandaPush-v3' once panda_gym is imported
for _family in (MetaWorldFamily(), PandaFamily(), FactoryFamily(), GymFamily()):
    register_family(_family)


# ---------------------------------------------------------------------- the factory
def resolve_env(env: str | dict | EnvSpec, *, family: str | None = None, max_steps: int | None = None,
                success_key: str | None = None, position_key: str | None = "", shift: str | None = None,
                kwargs: dict | None = None) -> EnvSpec:
    """The EnvSpec for an env name (Meta-World task, Gymnasium id, 'module:factory'), with overrides.

    `position_key=""` means "the family's default" (None: no position key)."""
    if isinstance(env, EnvSpec | dict):
        spec = env if isinstance(env, EnvSpec) else EnvSpec.from_dict(env)
        spec = EnvSpec(**spec.to_dict())
    else:
        env = str(env)
        FAMILIES.read_entry_points()
        fam = FAMILIES.get(family) if family else next((f for f in FAMILIES.values() if f.owns(env)), None)
        if fam is None:
            raise UserError(f"unknown environment {env!r}: not a Meta-World task, a registered Gymnasium id, or an "
                            f"importable 'module:factory'" + (f" (family {family!r} unknown)" if family else "")
                            + _suggest(env))
        spec = EnvSpec(fam.name, env, fam.default_max_steps(env), position_key=fam.position_key(env))
    if max_steps is not None:
        if int(max_steps) < 1:
            raise UserError(f"max_steps must be >= 1, got {max_steps}")
        spec.max_steps = int(max_steps)
    if success_key is not None:
        spec.success_key = success_key
    if position_key != "":
        spec.position_key = position_key
    if shift is not None:
        from steerlab.envs.shifts import shift_name

        spec.shift = shift_name(shift)  # canonical (the recorded name rebuilds it); unknown names fail here
    if kwargs:
        spec.kwargs = {**spec.kwargs, **kwargs}
    return spec


def _suggest(env: str) -> str:
    import difflib

    names = list(gym.envs.registry)
    if env[:1].islower() and ":" not in env:
        from steerlab.envs.metaworld_env import available_tasks

        names += available_tasks()
    close = difflib.get_close_matches(env, names, n=3)
    return f"; did you mean {', '.join(close)}?" if close else ""


def make_env(spec: str | dict | EnvSpec, seed: int = 0, terminate_on_success: bool = False, reward: str = "dense",
             render_mode: str | None = None) -> gym.Env:
    """Build one environment of `spec` (see the module docstring for what every env guarantees)."""
    spec = resolve_env(spec)
    env = FAMILIES.lookup(spec.family).build(spec, seed, terminate_on_success, reward, render_mode)
    if spec.shift:
        try:
            from steerlab.envs.shifts import parse_shift
        except ModuleNotFoundError as err:
            raise UserError(f"shift {spec.shift!r} needs steerlab.envs.shifts, which this install lacks") from err
        env = parse_shift(spec.shift).wrap_env(env)
    return env


def checkpoint_env(meta: dict) -> dict | None:
    """The env a checkpoint's config.json records (a wrapped or steered policy: its base's, if its own is empty)."""
    cfg = meta.get("config", {})
    return cfg.get("env") or (checkpoint_env(cfg["base"]) if isinstance(cfg.get("base"), dict) else None)


def env_dims(spec: EnvSpec) -> tuple[int, tuple[int, ...]]:
    """(obs_dim, action shape) of the env, by building it once."""
    env = make_env(spec)
    try:
        return int(env.observation_space.shape[0]), tuple(env.action_space.shape)
    finally:
        env.close()
