"""panda-gym `PandaReach-v3` for private personalization: one general and one personal objective.

General objective: the task's own goal g. Personal objective (the paper's): the goal mirrored in x and
y, g' = (−g_x, −g_y, g_z) — the goal range is centred on x = y = 0, so g' is always a reachable goal.
The observation holds the end effector's position and velocity and the *general* goal only: the
personal goal is never observed, so a policy can only learn it from the user's key.

`PandaReachVec` steps `n` simulators in lockstep and returns both objectives' dense rewards
(−distance), so one rollout serves any mix of general and personal episodes. Episodes last
`max_steps` = 50 steps (panda-gym's limit) and never end early: panda-gym would terminate on reaching the
*general* goal, which is wrong for personal episodes, so we drive the robot and the simulator directly.
Every episode is reset with a seed drawn from the vector env's own generator (panda-gym re-seeds from OS
entropy when reset without one), so a run is reproducible.
"""

from __future__ import annotations

import numpy as np

MIRROR = np.array([-1.0, -1.0, 1.0], np.float32)
OBS_DIM, ACT_DIM, N_OBJECTIVES = 9, 3, 2
GENERAL, PERSONAL = 0, 1


def mirror_goal(goal: np.ndarray) -> np.ndarray:
    """The personal goal: the general goal mirrored in x and y."""
    return goal * MIRROR


class PandaReachVec:
    """`n_envs` PandaReach-v3 simulators (end-effector control) stepped together.

    `reset() -> obs (n, 9)`; `step(actions (n, 3)) -> obs, rewards (n, 2), done (n,), info` with
    rewards[:, 0] the general and rewards[:, 1] the personal dense reward. Finished episodes are reset
    automatically; `info["final_obs"]` holds their last observation (for value bootstrapping) and
    `info["distance"]` the pre-reset distances (n, 2) to the general and personal goals.
    """

    obs_dim, act_dim, n_objectives = OBS_DIM, ACT_DIM, N_OBJECTIVES

    def __init__(self, n_envs: int, seed: int = 0, max_steps: int = 50):
        import gymnasium as gym
        import panda_gym  # noqa: F401  (registers the envs)

        self.envs = [gym.make("PandaReach-v3").unwrapped for _ in range(n_envs)]
        self.n, self.max_steps = n_envs, max_steps
        self.rng = np.random.default_rng(seed)
        self.t = np.zeros(n_envs, np.int64)
        self.goal = np.zeros((n_envs, 3), np.float32)

    def seed(self, seed: int) -> None:
        """Restart the episode-seed stream (the next `reset()` replays the same episodes)."""
        self.rng = np.random.default_rng(seed)

    def _obs(self, i: int) -> np.ndarray:
        o = self.envs[i]._get_obs()
        return np.concatenate([o["observation"], self.goal[i]]).astype(np.float32)

    def _reset_one(self, i: int) -> np.ndarray:
        self.envs[i].reset(seed=int(self.rng.integers(2**31)))
        self.goal[i] = self.envs[i].task.get_goal()
        self.t[i] = 0
        return self._obs(i)

    def reset(self) -> np.ndarray:
        return np.stack([self._reset_one(i) for i in range(self.n)])

    def distances(self, obs: np.ndarray) -> np.ndarray:
        """(n, 2): end-effector distance to the general and to the personal goal."""
        ee, goal = obs[:, :3], obs[:, 6:9]
        return np.stack([np.linalg.norm(ee - goal, axis=1), np.linalg.norm(ee - mirror_goal(goal), axis=1)], 1)

    def step(self, actions: np.ndarray):
        actions = np.clip(np.asarray(actions, np.float32), -1.0, 1.0)
        obs = np.empty((self.n, OBS_DIM), np.float32)
        for i, env in enumerate(self.envs):
            env.robot.set_action(actions[i])
            env.sim.step()
            obs[i] = self._obs(i)
        self.t += 1
        dist = self.distances(obs)
        done = self.t >= self.max_steps
        final = obs.copy()
        for i in np.flatnonzero(done):
            obs[i] = self._reset_one(i)
        return obs, -dist, done, {"final_obs": final, "distance": dist}

    def close(self) -> None:
        for env in self.envs:
            env.close()


class PointReachVec:
    """A pure-numpy stand-in with PandaReachVec's interface (tests, quick smoke runs): a point moved by
    0.05·action per step towards a goal in the same box, personal goal mirrored in x and y."""

    obs_dim, act_dim, n_objectives = OBS_DIM, ACT_DIM, N_OBJECTIVES

    def __init__(self, n_envs: int, seed: int = 0, max_steps: int = 50):
        self.n, self.max_steps = n_envs, max_steps
        self.rng = np.random.default_rng(seed)
        self.t = np.zeros(n_envs, np.int64)
        self.pos = np.zeros((n_envs, 3), np.float32)
        self.vel = np.zeros((n_envs, 3), np.float32)
        self.goal = np.zeros((n_envs, 3), np.float32)

    seed = PandaReachVec.seed

    def _reset_one(self, i: int) -> None:
        self.pos[i] = (0.0, 0.0, 0.15)
        self.vel[i] = 0.0
        self.goal[i] = self.rng.uniform((-0.15, -0.15, 0.0), (0.15, 0.15, 0.3))
        self.t[i] = 0

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.pos, self.vel, self.goal], 1).astype(np.float32)

    def reset(self) -> np.ndarray:
        for i in range(self.n):
            self._reset_one(i)
        return self._obs()

    distances = PandaReachVec.distances

    def step(self, actions: np.ndarray):
        actions = np.clip(np.asarray(actions, np.float32), -1.0, 1.0)
        self.vel = 0.05 * actions
        self.pos = self.pos + self.vel
        self.t += 1
        obs = self._obs()
        dist = self.distances(obs)
        done = self.t >= self.max_steps
        final = obs.copy()
        for i in np.flatnonzero(done):
            self._reset_one(i)
        return self._obs(), -dist, done, {"final_obs": final, "distance": dist}

    def close(self) -> None:
        pass
