"""Plug-in variational information bottleneck on a policy's observation embedding (ZPRL).

e ──enc──► (μ, log σ²) ──reparameterize──► z ──dec──► ê

The VIB sees `e.detach()` and its flow loss runs through a *detached* copy of the action generator,
so adding it never changes the imitation policy: it only learns a compact latent that the frozen
generator can decode. It can therefore be trained jointly or after the fact on a frozen policy.
"""

from __future__ import annotations

import torch
from torch import nn

from steerlab.policies.backbones import mlp


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) summed over latent dims: ½ Σ (μ² + σ² − log σ² − 1)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0).sum(-1)


class VIB(nn.Module):
    def __init__(self, embed_dim: int, latent_dim: int = 8, hidden: int = 256, depth: int = 3,
                 stochastic: bool = True):
        super().__init__()
        self.latent_dim = latent_dim
        self.stochastic = stochastic  # False: a deterministic autoencoder (ablation)
        self.encoder = mlp(embed_dim, hidden, 2 * latent_dim, depth=depth)
        self.decoder = mlp(latent_dim, hidden, embed_dim, depth=depth)

    def posterior(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(e).chunk(2, dim=-1)
        return mu, logvar.clamp(-10.0, 4.0)

    def sample(self, mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None):
        if not self.stochastic:
            return mu
        # drawn where the generator lives, then moved: a CPU generator serves a model on any device
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype,
                          device=generator.device if generator is not None else mu.device).to(mu.device)
        return mu + eps * (0.5 * logvar).exp()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)
