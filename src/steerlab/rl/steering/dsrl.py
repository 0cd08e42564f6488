"""DSRL: the actor chooses the generator's initial noise (steering in the diffusion/flow noise space).

actor output w ∈ [-1,1]^(noise size), the generator integrated from ε = magnitude·w. The actor sees
the policy's embedding when the policy exposes one (its own features), else the raw observation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from steerlab.policies.protocol import supports
from steerlab.rl.steering.base import MethodConfig, SteeringMethod, register


@dataclass
class DSRLConfig(MethodConfig):
    noise_magnitude: float = 1.5
    """Bound of the initial noise the actor may choose."""


@register
class DSRL(SteeringMethod):
    name = "dsrl"
    level = "noise"
    Config = DSRLConfig

    def __init__(self, policy, cfg=None, stats=None):
        super().__init__(policy, cfg, stats)
        self.scale = self.cfg.noise_magnitude
        self.noise_shape = tuple(policy.noise_shape)
        self.sees_embedding = supports(policy, "embedding")
        self.obs_dim = int(policy.embed_dim) if self.sees_embedding else int(policy.obs_dim)
        self.act_dim = math.prod(self.noise_shape)

    def features(self, obs, train, gen=None, noise=None):
        return self.policy.embed(obs) if self.sees_embedding else obs

    def chunk(self, obs, feats, action, noise):
        return self.policy.sample_chunk(obs, self.scale * action.reshape(-1, *self.noise_shape))

    def warmup_action(self, batch, noise):
        # the base policy's own Gaussian noise, expressed in the actor's bounded action space
        return (noise.reshape(batch, -1) / self.scale).clamp(-1.0, 1.0).numpy()
