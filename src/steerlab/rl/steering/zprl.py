"""ZPRL: the actor shifts the VIB latent z of the observation embedding; the frozen generator decodes it.

actor output Δz ∈ [-1,1]^latent_dim, applied as z + λ·Δz, decoded by the VIB into ê, and the generator
conditioned on ê. The critic values the applied latent (a quantity with the same meaning for every
state), which is what makes the bottleneck a good action space (docs/zprl.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from steerlab.rl.steering.base import MethodConfig, SteeringMethod, register


@dataclass
class ZPRLConfig(MethodConfig):
    latent_scale: float | None = None
    """λ. None: latent_rms_ratio × RMS of the base latent μ measured on the demonstration data."""
    latent_rms_ratio: float = 0.3
    """λ / RMS(μ) when latent_scale is None. A saturated residual moves z by 0.3·RMS(z); a typical one
    (|Δz| ≈ 1/3) by ≈ 0.1·RMS(z), zprl.md's rule of thumb. The CPU probe found 0.3–0.5 worked."""
    latent_sample: bool = True
    """The actor sees a posterior sample z ~ q(z|e) while training (μ when acting deterministically)."""


# Latent residuals start as the base: Δz = 0 exactly, exploration std 0.2 in pre-tanh units (a typical
# applied residual λ·0.2 ≈ 0.06·RMS(z)), and the critic learns 1,000 decisions of that exploration
# before the actor moves. The random initial mean (|Δz| ≈ 0.1–0.5) otherwise steered every state off
# the base from the first evaluation on (issue 13, item 5; docs/zprl.md, "The start of online RL").
LATENT_START = {"actor_init_zero_mean": True, "actor_init_std": 0.2}


@register
class ZPRL(SteeringMethod):
    name = "zprl"
    level = "latent"
    Config = ZPRLConfig
    scale_field = "latent_scale"
    sac_start = LATENT_START
    default_critic_warmup = 1_000

    def __init__(self, policy, cfg=None, stats=None):
        super().__init__(policy, cfg, stats)
        c = self.cfg
        self.scale = c.latent_scale if c.latent_scale is not None else (
            c.latent_rms_ratio * self._stat("mu_rms", "--latent-scale"))
        self.vib = policy.vib
        self.embed_dim = int(policy.embed_dim)
        self.obs_dim, self.act_dim = self.embed_dim + self.vib.latent_dim, self.vib.latent_dim

    def features(self, obs, train, gen=None, noise=None):
        e = self.policy.embed(obs)
        mu, logvar = self.vib.posterior(e)
        z = self.vib.sample(mu, logvar, gen) if (train and self.cfg.latent_sample) else mu
        return torch.cat([e, z], dim=-1)

    def applied_latent(self, feats, action):
        return feats[:, self.embed_dim:] + self.scale * action

    def critic_action(self, feats, action):
        return self.applied_latent(feats, action)

    def chunk(self, obs, feats, action, noise):
        return self.policy.chunk_from_embedding(self.vib.decode(self.applied_latent(feats, action)), noise)
