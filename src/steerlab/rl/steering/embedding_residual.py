"""Embedding residual (ablation of ZPRL without the bottleneck): the actor shifts e directly.

actor output Δe ∈ [-1,1]^embed_dim, the generator conditioned on e + λ_e·Δe.
"""

from __future__ import annotations

from dataclasses import dataclass

from steerlab.rl.steering.base import MethodConfig, SteeringMethod, register
from steerlab.rl.steering.zprl import LATENT_START


@dataclass
class EmbeddingResidualConfig(MethodConfig):
    embedding_scale: float | None = None
    """λ_e. None: latent_rms_ratio × RMS of e on the demonstration data."""
    latent_rms_ratio: float = 0.3
    """λ_e / RMS(e) when embedding_scale is None (the same rule as ZPRL's λ)."""


@register
class EmbeddingResidual(SteeringMethod):
    name = "embedding-residual"
    sac_start = LATENT_START  # the ablation of ZPRL's bottleneck starts like ZPRL
    default_critic_warmup = 1_000
    level = "embedding"
    Config = EmbeddingResidualConfig
    scale_field = "embedding_scale"

    def __init__(self, policy, cfg=None, stats=None):
        super().__init__(policy, cfg, stats)
        c = self.cfg
        self.scale = c.embedding_scale if c.embedding_scale is not None else (
            c.latent_rms_ratio * self._stat("e_rms", "embedding_scale in --steering-json"))
        self.obs_dim = self.act_dim = int(policy.embed_dim)

    def features(self, obs, train, gen=None, noise=None):
        return self.policy.embed(obs)

    def chunk(self, obs, feats, action, noise):
        return self.policy.chunk_from_embedding(feats + self.scale * action, noise)
