"""ZPRL + noise: one actor steers both the VIB latent (as zprl) and the sampler's initial noise (as dsrl).

actor output [Δz, w] ∈ [-1,1]^(latent_dim + noise size): the generator is conditioned on dec(z + λ·Δz) and
integrated from ε = magnitude·w. The hypothesis it tests (issue 26, not assumed): the latent moves *what* the
policy does, the noise *which* of its modes it picks. The critic values (e, z, z + λΔz, w): the applied latent
and the chosen noise.

Where it starts (start='base'), each part as the method it comes from:
* Δz: zero mean, pre-tanh std 0.2 (zprl's LATENT_START), no tether;
* w: zero mean (ε = 0, the base's deterministic mode), pre-tanh std `noise_init_std` 0.8 (dsrl's start: the
  base's own noise spread within the bound), tethered toward ε = 0 with dsrl's β = 1 (the tether acts on the
  noise dimensions only);
* entropy target: zprl's −1/2 nat per latent dimension plus dsrl's 0 per noise dimension;
* 1,000 critic-only decisions after the warm-up (both methods' default). The warm-up itself runs the base as
  dsrl's does: Δz = 0 and the base's own Gaussian noise.
So an untrained actor acting deterministically is the base integrated from ε = 0. The frozen sampler's noise
never reaches the chunk (the actor chooses ε): the sampler-mode rule does not apply (`keeps_sampler` False).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from steerlab.core.errors import UserError
from steerlab.rl.steering.base import register
from steerlab.rl.steering.dsrl import DSRL
from steerlab.rl.steering.zprl import LATENT_START, ZPRL, ZPRLConfig


@dataclass
class ZPRLNoiseConfig(ZPRLConfig):
    noise_magnitude: float = 1.5
    """Bound of the initial noise the actor may choose (dsrl's 1.5)."""
    noise_init_std: float = DSRL.sac_start["actor_init_std"]
    """Pre-tanh std of the noise part of the actor at start='base' (dsrl's start); the latent part takes the
    SAC's `actor_init_std` (zprl's 0.2)."""

    def __post_init__(self):
        super().__post_init__()
        if not self.noise_magnitude > 0 or not self.noise_init_std > 0:
            raise UserError(f"noise_magnitude and noise_init_std must be > 0, got {self.noise_magnitude!r}, "
                            f"{self.noise_init_std!r}")


@register
class ZPRLNoise(ZPRL):
    name = "zprl-noise"
    Config = ZPRLNoiseConfig
    keeps_sampler = False  # the actor chooses ε

    def __init__(self, policy, cfg=None, stats=None):
        super().__init__(policy, cfg, stats)
        self.latent_dim = self.vib.latent_dim
        self.noise_shape = tuple(policy.noise_shape)
        self.noise_dim = math.prod(self.noise_shape)
        self.magnitude = float(self.cfg.noise_magnitude)
        self.act_dim = self.latent_dim + self.noise_dim
        # per instance: the entropy target depends on the latent's size (−1/2 nat per latent dim, 0 per noise dim)
        self.sac_start = {**LATENT_START, "target_entropy": -0.5 * self.latent_dim,
                          "actor_tether": DSRL.sac_start["actor_tether"]}

    def _split(self, action):
        return action[:, : self.latent_dim], action[:, self.latent_dim:]

    def applied_latent(self, feats, action):
        return feats[:, self.embed_dim:] + self.scale * self._split(action)[0]

    def critic_action(self, feats, action):
        return torch.cat([self.applied_latent(feats, action), self._split(action)[1]], dim=-1)

    def chunk(self, obs, feats, action, noise):
        eps = self.magnitude * self._split(action)[1].reshape(-1, *self.noise_shape)
        return self.policy.chunk_from_embedding(self.vib.decode(self.applied_latent(feats, action)), eps)

    def warmup_action(self, batch, noise):
        # the base: Δz = 0 and its own Gaussian noise, expressed in the bounded noise action (as dsrl)
        w = (noise.reshape(batch, -1) / self.magnitude).clamp(-1.0, 1.0)
        return torch.cat([torch.zeros(batch, self.latent_dim), w], dim=-1).numpy()

    def make_learner(self, sac_cfg, seed, device="cpu"):
        sac = super().make_learner(sac_cfg, seed, device)
        if self.cfg.start == "base":
            # the noise part's own start: dsrl's exploration std, and the tether on the noise dimensions only
            actor = sac.actor
            x = 2 * (math.log(self.cfg.noise_init_std) - actor.log_std_min) / (actor.log_std_max - actor.log_std_min) - 1
            with torch.no_grad():
                actor.log_std.weight[self.latent_dim:].zero_()
                actor.log_std.bias[self.latent_dim:].fill_(math.atanh(x))
            sac.tether_dims = torch.arange(self.latent_dim, self.act_dim, device=sac.device)
        return sac
