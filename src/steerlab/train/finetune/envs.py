"""The training envs of an online-RL run: vectorized, terminating on success, stepped while SAC updates run."""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np

from steerlab.core.errors import UserError
from steerlab.core.observations import STATE_KEY, image_key
from steerlab.envs.cameras import vector_context
from steerlab.envs.registry import EnvSpec, make_env
from steerlab.envs.wrappers import KeepInfo
from steerlab.policies.protocol import observation_spec


def train_env(spec: EnvSpec, seed: int, reward: str) -> gym.Env:
    """One training env: terminates on success, and reports only the `info` keys the loop reads."""
    keep = ("is_success", "success_reported") + ((spec.position_key,) if spec.position_key else ())
    return KeepInfo(make_env(spec, seed=seed, terminate_on_success=True, reward=reward), keep)


def make_train_envs(spec: EnvSpec, cfg) -> gym.vector.VectorEnv:
    """`cfg.n_envs` training envs (env i seeded cfg.seed + i), in this process or in subprocesses."""
    fns = [functools.partial(train_env, spec, cfg.seed + i, cfg.reward) for i in range(cfg.n_envs)]
    # copy=False: the loop copies each step's observations into its own array at once
    if cfg.async_envs and cfg.n_envs > 1:
        return gym.vector.AsyncVectorEnv(fns, copy=False, context=vector_context(spec),
                                         autoreset_mode=gym.vector.AutoresetMode.DISABLED)
    return gym.vector.SyncVectorEnv(fns, copy=False, autoreset_mode=gym.vector.AutoresetMode.DISABLED)


def step_overlapped(envs: gym.vector.VectorEnv, actions: np.ndarray, work):
    """Step `envs`, running `work()` while subprocess envs simulate (before the step for in-process envs).
    Either way `work` sees the same data, so the numbers do not depend on `--async-envs`."""
    if hasattr(envs, "step_async"):
        envs.step_async(actions)
        work()
        return envs.step_wait()
    work()
    return envs.step(actions)


def obs_buffer(space: gym.Space, n: int):
    """The loop's own copy of `n` envs' observations: an array, or a dict of arrays for camera envs
    (uint8 frames stay uint8: they are converted once per decision, at the policy boundary)."""
    if isinstance(space, gym.spaces.Dict):
        return {k: np.zeros((n, *s.shape), s.dtype) for k, s in space.spaces.items()}
    return np.zeros((n, *space.shape), np.float32)


def set_obs_rows(buf, rows, obs) -> None:
    """buf[rows] = obs[rows] (rows: a mask, indices or `slice(None)`), per key for dict observations."""
    if isinstance(buf, dict):
        for k, v in buf.items():
            v[rows] = obs[k][rows]
    else:
        buf[rows] = obs[rows]


def check_env_fits(envs, policy, spec: EnvSpec) -> None:
    """The env's observations (state, and each camera's frame) and actions must be the policy's (one-line
    error otherwise)."""
    want = observation_spec(policy)
    space, act_shape = envs.single_observation_space, tuple(envs.single_action_space.shape)
    if not isinstance(space, gym.spaces.Dict):
        obs_shape = tuple(space.shape)
        if want.has_images:
            raise UserError(f"{spec.id} gives flat observations {obs_shape}, but the policy sees cameras: "
                            f"{want.describe()} (a Meta-World task gets them from the policy; another env must "
                            f"return that dict)")
        if obs_shape != (want.state_dim,) or act_shape != (int(policy.action_dim),):
            raise UserError(f"{spec.id} has observations {obs_shape} and actions {act_shape}, but the policy "
                            f"expects ({want.state_dim},) and ({policy.action_dim},)")
        return
    if act_shape != (int(policy.action_dim),):
        raise UserError(f"{spec.id} has actions {act_shape}, but the policy expects ({policy.action_dim},)")
    h, w = want.image_size
    expected = {STATE_KEY: (want.state_dim,), **{image_key(c): (h, w, 3) for c in want.cameras}}
    for key, shape in expected.items():
        got = space.spaces.get(key)
        if got is None or tuple(got.shape) != shape:
            raise UserError(f"{spec.id}: observation {key!r} is {None if got is None else tuple(got.shape)}, but the "
                            f"policy expects {shape} ({want.describe()})")


def episode_record(info: dict, i: int, ret: float, length: int, path: list, pos_key: str | None) -> dict:
    """A finished training episode of env `i`: success (None where the env reports none), return, length, and
    the end-effector path's jerk where the env exposes a position."""
    from steerlab.eval.metrics import smoothness
    from steerlab.eval.rollout import success_reported

    jerk = smoothness(np.asarray(path))["jerk"] if pos_key else float("nan")
    return {"success": bool(info["is_success"][i]) if success_reported(info, i) else None, "return": float(ret),
            "length": int(length), "jerk": jerk}
