"""Action-space residual RL (Policy-Decorator): the actor adds a bounded residual to the base actions.

actor output r ∈ [-1,1]^(n_exec·A), applied as base actions + scale·r on the executed prefix of the
chunk. The actor sees the observation (normalized by the policy when it can; for camera observations
the policy's frozen `rl_features`, never pixels) and the base plan it corrects. Exploration is progressive: while training, the residual is applied with probability
min(env_step / progressive_steps, 1), so early exploration stays close to the base policy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from steerlab.policies.protocol import rl_feature_dim, rl_features
from steerlab.rl.steering.base import MethodConfig, SteeringMethod, register


@dataclass
class ActionResidualConfig(MethodConfig):
    residual_scale: float = 0.05
    """Bound of the residual added to each executed base action (env units)."""
    progressive_steps: int = 20_000
    """The residual is applied with probability min(env_step / T, 1) while training."""


@register
class ActionResidual(SteeringMethod):
    name = "action-residual"
    level = "action"
    Config = ActionResidualConfig

    def __init__(self, policy, cfg=None, stats=None):
        super().__init__(policy, cfg, stats)
        self.scale = self.cfg.residual_scale
        self.action_dim = int(policy.action_dim)
        self.horizon = int(policy.horizon)
        self.policy_obs_dim = rl_feature_dim(policy)  # obs_dim for a state policy
        self.obs_dim = self.policy_obs_dim + self.n_exec * self.action_dim  # obs + the base actions it corrects
        self.act_dim = self.n_exec * self.action_dim
        self._noise_level = getattr(policy, "noise_shape", None) is not None

    def features(self, obs, train, gen=None, noise=None):
        # the residual policy sees the base plan; sample it here (with the noise the chunk will use)
        if noise is None and self._noise_level:
            noise = self._noise(obs, gen)
        base_chunk = self.policy.sample_chunk(obs, noise)
        return torch.cat([rl_features(self.policy, obs), base_chunk[:, : self.n_exec].flatten(1)], dim=-1)

    def chunk(self, obs, feats, action, noise):
        base_exec = feats[:, self.policy_obs_dim:].reshape(-1, self.n_exec, self.action_dim)
        exec_ = base_exec + self.scale * action.reshape(base_exec.shape)
        # only the executed prefix is ever used; pad with the last action to keep the (B, H, A) contract
        pad = exec_[:, -1:].expand(-1, self.horizon - self.n_exec, -1)
        return torch.cat([exec_, pad], dim=1)

    def explore(self, action, env_steps, rng: np.random.Generator):
        frac = min(env_steps / max(self.cfg.progressive_steps, 1), 1.0)
        # one draw per decision row; masked residuals are stored as zero: that is what ran
        keep = torch.as_tensor(rng.random(action.shape[0]) <= frac, dtype=action.dtype)
        return action * keep[:, None]
