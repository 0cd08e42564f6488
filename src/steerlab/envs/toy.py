"""`steerlab/PointReach-v0`: a tiny registered Gymnasium env for tests and docs (no simulator needed).

A point in the plane moves by 0.1·action per step towards a goal; observation [position (2), goal (2)],
action in [-1, 1]², reward −distance, `info["is_success"]` when within 0.05 of the goal (at this step),
`info["ee_pos"]` the point's position (so smoothness metrics apply). Episodes are a pure function of the
reset seed.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

ENV_ID = "steerlab/PointReach-v0"


class PointReach(gym.Env):
    metadata = {"render_modes": [], "position_key": "ee_pos"}

    def __init__(self, render_mode: str | None = None, step_size: float = 0.1, tolerance: float = 0.05):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.step_size, self.tolerance = float(step_size), float(tolerance)
        self.pos = np.zeros(2, np.float32)
        self.goal = np.zeros(2, np.float32)

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.pos, self.goal]).astype(np.float32)

    def _info(self) -> dict:
        dist = float(np.linalg.norm(self.pos - self.goal))
        return {"is_success": dist <= self.tolerance, "ee_pos": self.pos.copy(), "distance": dist}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        self.goal = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        return self._obs(), self._info()

    def step(self, action):
        a = np.clip(np.asarray(action, np.float32), -1.0, 1.0)
        self.pos = (self.pos + self.step_size * a).astype(np.float32)
        info = self._info()
        return self._obs(), -info["distance"], False, False, info


def expert_action(obs: np.ndarray) -> np.ndarray:
    """The scripted expert: head straight for the goal."""
    obs = np.asarray(obs, np.float32)
    return np.clip((obs[..., 2:] - obs[..., :2]) / 0.1, -1.0, 1.0)


if ENV_ID not in gym.envs.registry:
    gym.register(ENV_ID, entry_point=PointReach, max_episode_steps=50)
