"""The networks of SAC (rl/sac.py): a tanh-squashed Gaussian actor and a critic *ensemble* computed as one batched
module (weights stacked as [heads, in, out], one `torch.baddbmm` per layer). On a CPU this is several times faster
than a Python loop over heads, and it makes 2 or 10 heads the same code."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def tanh_gaussian_log_prob(u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log-density of a = tanh(u), u ~ N(mean, exp(log_std)²), summed over the last dimension.

    Change of variables: log p(a) = log N(u) − Σ log(1 − tanh(u)²), and
    log(1 − tanh(u)²) = 2 (log 2 − u − softplus(−2u)) is the numerically stable form.
    """
    gauss = -0.5 * ((u - mean) / log_std.exp()).pow(2) - log_std - 0.5 * math.log(2 * math.pi)
    return (gauss - 2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)


class Actor(nn.Module):
    """obs → (mean, log_std) of a Gaussian in pre-tanh space; actions tanh(u) ∈ [−1, 1]^act_dim."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, log_std_min: float, log_std_max: float,
                 layer_norm: bool = False):
        super().__init__()
        norm = (lambda: nn.LayerNorm(hidden)) if layer_norm else (lambda: nn.Identity())
        layers = [nn.Linear(obs_dim, hidden), norm(), nn.ReLU(), nn.Linear(hidden, hidden), norm(), nn.ReLU()]
        # without LayerNorm the keys stay trunk.0 / trunk.2, as in checkpoints written before the option existed
        self.trunk = nn.Sequential(*[m for m in layers if not isinstance(m, nn.Identity)])
        self.mean = nn.Linear(hidden, act_dim)
        self.log_std = nn.Linear(hidden, act_dim)
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    @torch.no_grad()
    def init_start(self, zero_mean: bool, init_std: float | None) -> None:
        """Where the policy starts: mean action exactly 0 and/or one given std in every state."""
        if zero_mean:
            self.mean.weight.zero_()
            self.mean.bias.zero_()
        if init_std is not None:  # invert the tanh rescaling of forward() for log(init_std)
            x = 2 * (math.log(init_std) - self.log_std_min) / (self.log_std_max - self.log_std_min) - 1
            self.log_std.weight.zero_()
            self.log_std.bias.fill_(math.atanh(x))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(obs)
        log_std = torch.tanh(self.log_std(h))  # (−1, 1) → (log_std_min, log_std_max), smoothly
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (log_std + 1)
        return self.mean(h), log_std

    def _pre_tanh(self, obs: torch.Tensor, generator: torch.Generator | None):
        mean, log_std = self(obs)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + log_std.exp() * eps, mean, log_std

    def sample(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterized action a = tanh(mean + std·ε) and its log-probability (tanh-corrected)."""
        return self.sample_with_mean(obs, generator)[:2]

    def sample_with_mean(self, obs: torch.Tensor, generator: torch.Generator | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`sample(...)` plus the pre-tanh mean (the tether's loss needs it): the same draw, the same action."""
        u, mean, log_std = self._pre_tanh(obs, generator)
        return torch.tanh(u), tanh_gaussian_log_prob(u, mean, log_std), mean

    def sample_action(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """`sample(...)[0]` without the log-probability (acting needs none): the same draw, the same action."""
        return torch.tanh(self._pre_tanh(obs, generator)[0])

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self(obs)[0])


class EnsembleLinear(nn.Module):
    """`n` independent linear layers applied to an (n, B, in) batch with one batched matmul."""

    def __init__(self, n: int, in_dim: int, out_dim: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)  # nn.Linear's default init, per head
        self.weight = nn.Parameter(torch.empty(n, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, heads: torch.Tensor | None = None, frozen: bool = False) -> torch.Tensor:
        w, b = self.weight, self.bias
        if frozen:  # gradients flow to the input but not into these weights (actor loss)
            w, b = w.detach(), b.detach()
        if heads is not None:  # only these heads (a REDQ target needs 2 of 10)
            w, b = w[heads], b[heads]
        return torch.baddbmm(b, x, w)


class CriticEnsemble(nn.Module):
    """`n` Q-networks (in → hidden × `layers` → 1) evaluated together: (B, in) → (n, B). The layers are named
    l1 … l{layers + 1} (the output last), so the default two hidden layers keep the keys l1, l2, l3."""

    def __init__(self, n: int, in_dim: int, hidden: int, layer_norm: bool, layers: int = 2):
        super().__init__()
        self.n, self.hidden, self.layer_norm, self.depth = n, hidden, layer_norm, int(layers)
        for i, (a, b) in enumerate(zip([in_dim] + [hidden] * self.depth, [hidden] * self.depth + [1]), 1):
            self.add_module(f"l{i}", EnsembleLinear(n, a, b))  # created in order: the same init stream as before

    def _act(self, h: torch.Tensor) -> torch.Tensor:
        return F.relu(F.layer_norm(h, (self.hidden,)) if self.layer_norm else h)

    def forward(self, x: torch.Tensor, heads: torch.Tensor | None = None, frozen: bool = False) -> torch.Tensor:
        n = self.n if heads is None else len(heads)
        h = x.unsqueeze(0).expand(n, -1, -1)
        for i in range(1, self.depth + 1):
            h = self._act(getattr(self, f"l{i}")(h, heads, frozen))
        return getattr(self, f"l{self.depth + 1}")(h, heads, frozen).squeeze(-1)
