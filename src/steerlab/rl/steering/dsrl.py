"""DSRL: the actor chooses the generator's initial noise (steering in the diffusion/flow noise space).

actor output w ∈ [-1,1]^(noise size), the generator integrated from ε = magnitude·w. The actor sees
the policy's embedding when the policy exposes one (its own features), else the raw observation (for
camera observations: the policy's frozen `rl_features`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from steerlab.core.observations import is_dict_obs
from steerlab.policies.protocol import observation_spec, rl_feature_dim, rl_features, supports
from steerlab.rl.steering.base import MethodConfig, SteeringMethod, register


@dataclass
class DSRLConfig(MethodConfig):
    noise_magnitude: float = 1.5
    """Bound of the initial noise the actor may choose."""


@register
class DSRL(SteeringMethod):
    name = "dsrl"
    # Start at the base's own noise distribution: zero mean, pre-tanh std 0.8, so ε = 1.5·tanh(u) has a
    # per-dimension std ≈ 0.9 (what the base samples, N(0, 1), within the bound); entropy target 0 (the
    # DSRL paper's, cfg/robomimic/dsrl_can.yaml) instead of −dim/2 = −16 nats; the critic learns 1,000
    # decisions of that exploration before the actor moves. Tether 1.0: Adam moves the 32-d mean noise at
    # its learning rate's speed wherever a UTD-1 critic's slope points, into the bound's corners within
    # ~500 updates (success 0.85 → 0.00); the tether holds the mean near ε = 0 (the base's best mode) unless
    # the critic's slope pays for the move. docs/zprl.md ("The start of online RL") has the measurements.
    sac_start = {"actor_init_zero_mean": True, "actor_init_std": 0.8, "target_entropy": 0.0, "actor_tether": 1.0}
    default_critic_warmup = 1_000
    level = "noise"
    keeps_sampler = False  # the actor chooses ε
    Config = DSRLConfig

    def __init__(self, policy, cfg=None, stats=None):
        super().__init__(policy, cfg, stats)
        self.scale = self.cfg.noise_magnitude
        self.noise_shape = tuple(policy.noise_shape)
        self.sees_embedding = supports(policy, "embedding")
        self.obs_dim = int(policy.embed_dim) if self.sees_embedding else (
            rl_feature_dim(policy) if observation_spec(policy).has_images else int(policy.obs_dim))
        self.act_dim = math.prod(self.noise_shape)

    def features(self, obs, train, gen=None, noise=None):
        if self.sees_embedding:
            return self.policy.embed(obs)
        return rl_features(self.policy, obs) if is_dict_obs(obs) else obs

    def chunk(self, obs, feats, action, noise):
        return self.policy.sample_chunk(obs, self.scale * action.reshape(-1, *self.noise_shape))

    def warmup_action(self, batch, noise):
        # the base policy's own Gaussian noise, expressed in the actor's bounded action space
        return (noise.reshape(batch, -1) / self.scale).clamp(-1.0, 1.0).numpy()
