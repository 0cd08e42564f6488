"""Soft Actor-Critic, once, for every steering method (CleanRL-style: readable top to bottom).

* critic ensemble of `num_critics` heads computed as one batched module (stacked weights, one
  `torch.baddbmm` per layer): on a CPU this is several times faster than a Python loop over heads;
* REDQ-style target: min over a random subset of `critic_pair` heads (2 of 2 = clipped double Q);
* automatic entropy tuning towards `target_entropy` (default −act_dim/2);
* per-transition discount: the buffer stores γ^k for a chunk of k executed steps and a `terminated`
  flag that is set only by true terminations, so time-limit truncations bootstrap;
* `critic_action_fn(obs, a)`: what the critic values, as a differentiable function of the actor's
  output (ZPRL values the applied latent z + λΔz, with z read from the observation features).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from steerlab.train.checkpoint import (
    atomic_save_tensors,
    atomic_write_json,
    load_tensors,
    optimizer_from_tensors,
    optimizer_to_tensors,
    read_json,
)


@dataclass
class SACConfig:
    hidden: int = 256
    """Hidden width of actor and critics (two hidden layers each)."""
    actor_lr: float = 1e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    batch_size: int = 256
    tau: float = 0.005
    """Polyak factor: target ← (1 − τ)·target + τ·online."""
    target_update_interval: int = 1
    """Critic updates between target updates."""
    num_critics: int = 2
    """Critic ensemble heads."""
    critic_pair: int = 2
    """Heads the target takes its min over, drawn at random each update (REDQ)."""
    critic_layer_norm: bool = False
    """LayerNorm after each hidden critic layer (stabilises high update-to-data ratios)."""
    utd: int = 1
    """Gradient updates per environment decision."""
    grad_clip: float | None = None
    """Max global gradient norm for each network (None: no clipping)."""
    init_temperature: float = 0.01
    """Initial entropy weight α. Small: the reward per decision is O(1) and the entropy bonus must not drown it."""
    target_entropy_scale: float = 0.5
    """target_entropy = −scale · act_dim."""
    log_std_min: float = -5.0
    log_std_max: float = 2.0

    def __post_init__(self):
        if not 1 <= self.critic_pair <= self.num_critics:
            raise ValueError(f"critic_pair must be in [1, num_critics={self.num_critics}], got {self.critic_pair}")


class EnsembleLinear(nn.Module):
    """`n` independent linear layers applied to a (n, B, in) batch with one batched matmul."""

    def __init__(self, n: int, in_dim: int, out_dim: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)  # nn.Linear's default init, per head
        self.weight = nn.Parameter(torch.empty(n, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class CriticEnsemble(nn.Module):
    def __init__(self, n: int, in_dim: int, hidden: int, layer_norm: bool):
        super().__init__()
        self.n, self.hidden, self.layer_norm = n, hidden, layer_norm
        self.l1 = EnsembleLinear(n, in_dim, hidden)
        self.l2 = EnsembleLinear(n, hidden, hidden)
        self.l3 = EnsembleLinear(n, hidden, 1)

    def _act(self, h: torch.Tensor) -> torch.Tensor:
        return F.relu(F.layer_norm(h, (self.hidden,)) if self.layer_norm else h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in) -> (n, B) Q-values of every head."""
        h = x.unsqueeze(0).expand(self.n, -1, -1)
        h = self._act(self.l1(h))
        h = self._act(self.l2(h))
        return self.l3(h).squeeze(-1)


class Actor(nn.Module):
    """Tanh-squashed Gaussian policy; actions in [−1, 1]^act_dim."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, log_std_min: float, log_std_max: float):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(obs_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.mean = nn.Linear(hidden, act_dim)
        self.log_std = nn.Linear(hidden, act_dim)
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(obs)
        log_std = torch.tanh(self.log_std(h))
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (log_std + 1)
        return self.mean(h), log_std

    def sample(self, obs: torch.Tensor, generator: torch.Generator | None = None):
        """Reparameterized sample and its log-probability (with the tanh change of variables)."""
        mean, log_std = self(obs)
        std = log_std.exp()
        u = mean + std * torch.randn(mean.shape, generator=generator)
        a = torch.tanh(u)
        log_prob = (-0.5 * ((u - mean) / std).pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        # log|d tanh(u)/du| = 2 (log 2 − u − softplus(−2u)), numerically stable
        log_prob = log_prob - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)
        return a, log_prob

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self(obs)[0])


class SAC:
    def __init__(self, obs_dim: int, act_dim: int, cfg: SACConfig | None = None, device: str = "cpu", seed: int = 0,
                 critic_action_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None):
        self.cfg = cfg = cfg or SACConfig()
        self.obs_dim, self.act_dim, self.device = obs_dim, act_dim, device
        torch.manual_seed(seed)  # network initialisation
        self.gen = torch.Generator().manual_seed(seed)  # action sampling and REDQ head subsets
        self.critic_action_fn = critic_action_fn or (lambda obs, a: a)
        critic_act_dim = self.critic_action_fn(torch.zeros(1, obs_dim), torch.zeros(1, act_dim)).shape[-1]
        self.actor = Actor(obs_dim, act_dim, cfg.hidden, cfg.log_std_min, cfg.log_std_max)
        self.critic = CriticEnsemble(cfg.num_critics, obs_dim + critic_act_dim, cfg.hidden, cfg.critic_layer_norm)
        self.critic_target = CriticEnsemble(cfg.num_critics, obs_dim + critic_act_dim, cfg.hidden, cfg.critic_layer_norm)
        self.critic_target.load_state_dict(self.critic.state_dict())
        for p in self.critic_target.parameters():
            p.requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(cfg.init_temperature), requires_grad=True)
        self.target_entropy = -cfg.target_entropy_scale * act_dim
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_lr)
        self.updates = 0

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp().detach()

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        if x.ndim != 2 or x.shape[1] != self.obs_dim:
            raise ValueError(f"SAC observation must have shape (batch, {self.obs_dim}), got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("SAC observation contains NaN or inf")
        a = self.actor.deterministic(x) if deterministic else self.actor.sample(x, self.gen)[0]
        return a.numpy()

    def _q_input(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return torch.cat([obs, self.critic_action_fn(obs, action)], dim=-1)

    # ------------------------------------------------------------------ learning
    @torch.no_grad()
    def critic_target_value(self, batch: dict[str, torch.Tensor], heads: torch.Tensor | None = None) -> torch.Tensor:
        """r + discount·(1 − terminated)·(min over `critic_pair` random target heads − α log π)."""
        next_a, next_logp = self.actor.sample(batch["next_obs"], self.gen)
        q_next = self.critic_target(self._q_input(batch["next_obs"], next_a))
        if heads is None:
            heads = torch.randperm(self.cfg.num_critics, generator=self.gen)[: self.cfg.critic_pair]
        v_next = q_next[heads].min(0).values - self.alpha * next_logp
        return batch["reward"] + batch["discount"] * (1.0 - batch["terminated"]) * v_next

    def _step(self, opt: torch.optim.Optimizer, loss: torch.Tensor, params) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip is not None:
            nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        opt.step()

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        cfg = self.cfg
        target = self.critic_target_value(batch)
        q = self.critic(self._q_input(batch["obs"], batch["action"]))
        critic_loss = (q - target.unsqueeze(0)).pow(2).mean(1).sum()
        self._step(self.critic_opt, critic_loss, self.critic.parameters())

        # actor: maximise mean-over-heads Q − α log π; the critic is held fixed for this step
        for p in self.critic.parameters():
            p.requires_grad_(False)
        a, logp = self.actor.sample(batch["obs"], self.gen)
        q_pi = self.critic(self._q_input(batch["obs"], a)).mean(0)
        actor_loss = (self.alpha * logp - q_pi).mean()
        self._step(self.actor_opt, actor_loss, self.actor.parameters())
        for p in self.critic.parameters():
            p.requires_grad_(True)

        # temperature: α rises when entropy (−log π) is below target, falls when above
        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        self._step(self.alpha_opt, alpha_loss, [self.log_alpha])

        self.updates += 1
        if self.updates % cfg.target_update_interval == 0:
            with torch.no_grad():
                for t, s in zip(self.critic_target.parameters(), self.critic.parameters()):
                    t.lerp_(s, cfg.tau)
        return {"critic_loss": critic_loss.item(), "actor_loss": actor_loss.item(), "alpha": self.alpha.item(),
                "q_mean": q.detach().mean().item(), "entropy": -logp.detach().mean().item()}

    def update_many(self, replay, n: int) -> dict[str, float]:
        logs: dict[str, float] = {}
        for _ in range(n):
            logs = self.update(replay.sample(self.cfg.batch_size))
        return logs

    # ------------------------------------------------------------------ save / resume (no pickle)
    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict]:
        tensors = {f"actor.{k}": v for k, v in self.actor.state_dict().items()}
        tensors |= {f"critic.{k}": v for k, v in self.critic.state_dict().items()}
        tensors |= {f"critic_target.{k}": v for k, v in self.critic_target.state_dict().items()}
        tensors["log_alpha"] = self.log_alpha.detach().clone()
        tensors["rng.sac"] = self.gen.get_state()
        meta = {"updates": self.updates, "config": asdict(self.cfg), "obs_dim": self.obs_dim, "act_dim": self.act_dim}
        for name, opt in (("actor_opt", self.actor_opt), ("critic_opt", self.critic_opt), ("alpha_opt", self.alpha_opt)):
            t, m = optimizer_to_tensors(opt, name)
            tensors |= t
            meta[name] = m
        return tensors, meta

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        if (meta["obs_dim"], meta["act_dim"]) != (self.obs_dim, self.act_dim):
            raise ValueError(f"saved SAC has sizes {(meta['obs_dim'], meta['act_dim'])}, this one "
                             f"{(self.obs_dim, self.act_dim)}")
        for prefix, module in (("actor.", self.actor), ("critic.", self.critic), ("critic_target.", self.critic_target)):
            module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        with torch.no_grad():
            self.log_alpha.copy_(tensors["log_alpha"])
        self.gen.set_state(tensors["rng.sac"])
        for name, opt in (("actor_opt", self.actor_opt), ("critic_opt", self.critic_opt), ("alpha_opt", self.alpha_opt)):
            optimizer_from_tensors(opt, name, tensors, meta[name])
        self.updates = meta["updates"]

    def save(self, folder: str | Path) -> None:
        tensors, meta = self.state_dict()
        atomic_save_tensors(Path(folder) / "sac.safetensors", tensors)
        atomic_write_json(Path(folder) / "sac.json", meta)

    def load(self, folder: str | Path) -> None:
        self.load_state_dict(load_tensors(Path(folder) / "sac.safetensors"), read_json(Path(folder) / "sac.json"))
