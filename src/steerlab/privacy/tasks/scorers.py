"""Scorers that run a policy in its environment (see steerlab.privacy.tasks.protocols for the protocol).

`EnvSuccessScorer` rolls a `run(obs) -> actions` function out in a Meta-World task: the general score
is the task's success rate, user u's personal score the success rate of reaching the goal moved by the
user's offset (the observation keeps the task's own goal, so only the key can tell the policy).
"""

from __future__ import annotations

import numpy as np
import torch


class RunAsChunkPolicy:
    """Adapts `run(obs) -> actions (B, A)` to the rollout's chunk-policy protocol (one action per plan)."""

    n_action_steps = 1

    def __init__(self, run, action_dim: int = 4):
        self.run = run
        self.chunk_shape = (1, action_dim)

    @torch.no_grad()
    def predict_chunk(self, obs, *, noise=None):
        return self.run(torch.as_tensor(np.asarray(obs, np.float32))).numpy()[:, None, :]


class EnvSuccessScorer:
    """Success rates of deterministic rollouts on fixed evaluation seeds (the same episodes for every policy)."""

    def __init__(self, env_task: str, goal_offsets: list, episodes: int = 10, max_steps: int = 100, seed: int = 0,
                 action_dim: int = 4):
        self.env_task, self.goal_offsets = env_task, [None if o is None else np.asarray(o, np.float32)
                                                      for o in goal_offsets]
        self.episodes, self.max_steps, self.seed, self.action_dim = episodes, max_steps, seed, action_dim

    def _success(self, run, goal_offset) -> float:
        from steerlab.eval.rollout import rollout_episodes

        eps = rollout_episodes(RunAsChunkPolicy(run, self.action_dim), self.env_task, self.episodes, seed=self.seed,
                               n_envs=1, max_steps=self.max_steps, asynchronous=False, progress=False,
                               goal_offset=goal_offset)
        return float(np.mean([e["success"] for e in eps]))

    def general_score(self, task, run) -> float:
        return self._success(run, None)

    def personal_score(self, task, run, user: int) -> float:
        return self._success(run, self.goal_offsets[user])

    def scores(self, task, run, users: int | None = None) -> dict[str, float]:
        personal = [self.personal_score(task, run, u) for u in range(users or len(self.goal_offsets))]
        return {"general": self.general_score(task, run), "personal": float(np.mean(personal))}
