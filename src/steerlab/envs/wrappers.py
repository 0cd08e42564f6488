"""Small env wrappers the training loop composes with the registry's envs."""

from __future__ import annotations

from typing import Any

import gymnasium as gym


class KeepInfo(gym.Wrapper):
    """Pass on only the `info` keys a consumer reads.

    A vector env merges every key of every env's `info` into batched arrays at every step (and an async one
    pickles them through a pipe first); Meta-World reports a dozen keys of which the training loop reads two.
    Observations, rewards and flags are untouched; a kept key the env does not report is simply absent.
    """

    def __init__(self, env: gym.Env, keys: tuple[str, ...]):
        super().__init__(env)
        self.keys = tuple(keys)

    def _keep(self, info: dict) -> dict:
        return {k: info[k] for k in self.keys if k in info}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        return obs, self._keep(info)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, self._keep(info)
