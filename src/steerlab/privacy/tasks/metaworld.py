"""Personalized imitation on Meta-World: a user teaches a different goal with ≤ 20 demonstrations.

General behaviour: reach-v3 as Meta-World defines it (50 clean expert demos train the public base).
User u's preference: reach the goal shifted by 8 cm in direction 2πu/8 in the table plane, shown by 20
expert demos aimed at the shifted goal; the observation keeps the task's own goal, so nothing but the
key can tell the policy about the preference. Scores are rollout success rates on held-out seeds:
`general` = the task's success, `personal` = the hand gets within 5 cm of the user's goal.

Two policy types: an MLP behaviour-cloning policy and our flow-matching policy (its observation
encoder is keyed). Both act deterministically in evaluation (the flow sampler starts from zero noise).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from steerlab.data.collect import collect_demos
from steerlab.policies.backbones import mlp
from steerlab.policies.normalize import Normalizer
from steerlab.privacy.sealed.blobs import policy_of
from steerlab.privacy.tasks.base import Task, sampled_chunks
from steerlab.privacy.tasks.scorers import EnvSuccessScorer

OFFSET = 0.08


def user_offset(u: int) -> np.ndarray:
    th = 2 * math.pi * u / 8
    return np.array([OFFSET * math.cos(th), OFFSET * math.sin(th), 0.0], np.float32)


class NormalizedMLP(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256):
        super().__init__()
        self.obs_norm = Normalizer(obs_dim)
        self.net = mlp(obs_dim, hidden, act_dim, depth=2, act=nn.ReLU)

    def forward(self, obs):
        return self.net(self.obs_norm.normalize(obs))


def _frames(episodes, horizon: int | None):
    obs = np.concatenate([e.observations for e in episodes])
    if horizon is None:
        return torch.as_tensor(obs), torch.as_tensor(np.concatenate([e.actions for e in episodes]))
    chunks = []
    for e in episodes:
        idx = np.minimum(np.arange(len(e.actions))[:, None] + np.arange(horizon)[None], len(e.actions) - 1)
        chunks.append(e.actions[idx])
    return torch.as_tensor(obs), torch.as_tensor(np.concatenate(chunks))


class MetaWorldPreferenceTask(Task):
    task_id = "reach-v3"
    base_steps = 2000

    def __init__(self, policy: str = "mlp", n_users: int = 1, personal_demos: int = 20, general_demos: int = 50,
                 eval_episodes: int = 10, seed: int = 0):
        if policy not in ("mlp", "flow"):
            raise ValueError(f"policy must be 'mlp' or 'flow', got {policy!r}")
        self.policy, self.n_users, self.eval_episodes = policy, n_users, eval_episodes
        self.name = f"metaworld_{self.task_id.removesuffix('-v3')}_{policy}"
        self.horizon = 8 if policy == "flow" else None
        self.layers = ["net.2"] if policy == "mlp" else ["encoder.2"]
        self.concat_layer = "net.0" if policy == "mlp" else "encoder.0"
        self.cvae_layer = self.layers[0]
        self.scorer = EnvSuccessScorer(self.task_id, [user_offset(u) for u in range(n_users)], eval_episodes)
        self.general = _frames(collect_demos(self.task_id, general_demos, "expert", seed, progress=False), self.horizon)
        self.personal = [_frames(collect_demos(self.task_id, personal_demos, "expert", seed + u, progress=False,
                                               goal_offset=user_offset(u), split="train"), self.horizon) for u in range(n_users)]

    # ------------------------------------------------------------------ model
    def make_model(self) -> nn.Module:
        obs, act = self.general
        if self.policy == "mlp":
            model = NormalizedMLP(obs.shape[1], act.shape[1])
            model.obs_norm.fit(obs.mean(0), obs.std(0))
            return model
        from steerlab.policies.flow_matching import FlowMatchingPolicy, FlowPolicyConfig

        model = FlowMatchingPolicy(FlowPolicyConfig(use_vib=False, env={"suite": "metaworld", "task": self.task_id,
                                                                        "max_steps": 200}))
        model.obs_norm.fit(obs.mean(0), obs.std(0))
        flat = act.reshape(-1, act.shape[-1])
        model.action_norm.fit(flat.mean(0), flat.std(0))
        return model

    @staticmethod
    def _inner(model):
        return policy_of(model)

    # ------------------------------------------------------------------ data and loss
    def _sample(self, data, n, gen):
        idx = torch.randint(0, len(data[0]), (n,), generator=gen)
        return data[0][idx], data[1][idx]

    def general_batch(self, n, gen):
        return self._sample(self.general, n, gen)

    def personal_batch(self, user, n, gen):
        return self._sample(self.personal[user], n, gen)

    def test_general(self):
        """Demonstration frames (used to compare raw outputs, e.g. no key vs the public base)."""
        return self.general[0][:512], self.general[1][:512]

    def loss(self, model, x, y):
        if self.policy == "mlp":
            return F.mse_loss(model(x), y)
        return self._inner(model).compute_loss(x, y, train_vib=False)[0]

    def anchor_targets(self, anchor, x, gen):
        return self.predict(anchor, x) if self.policy == "mlp" else sampled_chunks(self._inner(anchor), x, gen)

    def predict(self, model, x):
        """Deterministic actions: the MLP's output, or the flow's first action from zero noise."""
        if self.policy == "mlp":
            return model(x)
        inner = self._inner(model)
        cond = inner.condition(inner.embed(x))
        chunk = inner.unnormalize_actions(inner.generate(cond, torch.zeros(len(x), *inner.chunk_shape)))
        return chunk[:, 0]
