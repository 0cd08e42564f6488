"""The training envs of an online-RL run: vectorized, terminating on success, stepped while SAC updates run."""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np

from steerlab.core.errors import UserError
from steerlab.envs.registry import EnvSpec, make_env
from steerlab.envs.wrappers import KeepInfo


def train_env(spec: EnvSpec, seed: int, reward: str) -> gym.Env:
    """One training env: terminates on success, and reports only the `info` keys the loop reads."""
    keep = ("is_success", "success_reported") + ((spec.position_key,) if spec.position_key else ())
    return KeepInfo(make_env(spec, seed=seed, terminate_on_success=True, reward=reward), keep)


def make_train_envs(spec: EnvSpec, cfg) -> gym.vector.VectorEnv:
    """`cfg.n_envs` training envs (env i seeded cfg.seed + i), in this process or in subprocesses."""
    fns = [functools.partial(train_env, spec, cfg.seed + i, cfg.reward) for i in range(cfg.n_envs)]
    cls = gym.vector.AsyncVectorEnv if cfg.async_envs and cfg.n_envs > 1 else gym.vector.SyncVectorEnv
    # copy=False: the loop copies each step's observations into its own array at once
    return cls(fns, copy=False, autoreset_mode=gym.vector.AutoresetMode.DISABLED)


def step_overlapped(envs: gym.vector.VectorEnv, actions: np.ndarray, work):
    """Step `envs`, running `work()` while subprocess envs simulate (before the step for in-process envs).
    Either way `work` sees the same data, so the numbers do not depend on `--async-envs`."""
    if hasattr(envs, "step_async"):
        envs.step_async(actions)
        work()
        return envs.step_wait()
    work()
    return envs.step(actions)


def check_env_fits(envs, policy, spec: EnvSpec) -> None:
    """The env's observation and action shapes must be the policy's (one-line error otherwise)."""
    obs_shape, act_shape = tuple(envs.single_observation_space.shape), tuple(envs.single_action_space.shape)
    if obs_shape != (int(policy.obs_dim),) or act_shape != (int(policy.action_dim),):
        raise UserError(f"{spec.id} has observations {obs_shape} and actions {act_shape}, but the policy expects "
                        f"({policy.obs_dim},) and ({policy.action_dim},)")
