"""Soft Actor-Critic, written once for every steering method (CleanRL-style: read it top to bottom).

1. `SACConfig` (rl/sac_config.py): every knob, with its default and the reason for it.
2. The networks (rl/networks.py): a tanh-squashed Gaussian actor, and a critic *ensemble* computed as
   one batched module, one `torch.baddbmm` per layer.
3. `SAC`: acting (numpy in, numpy out), one update (critic → actor → α → target), save/resume.

Conventions every steering method relies on:

* A transition is (obs, action, reward, next_obs, discount, terminated). `discount` is stored per
  transition (γ^k for a chunk of k executed environment steps), and `terminated` is set only by a true
  termination (success or failure), never by a time limit, so truncated transitions bootstrap:

      y = r + discount · (1 − terminated) · (min_{h ∈ H} Q'_h(s', ã') − α log π(ã'|s')),   ã' ~ π(·|s')

  where H is a random subset of `critic_pair` of the `num_critics` target heads, drawn afresh every
  update (REDQ; with 2 of 2 heads this is the clipped double-Q of SAC).
* The actor outputs a ∈ [−1, 1]^act_dim. What the critic values is `critic_action_fn(obs, a)`, a
  differentiable map (identity by default). ZPRL's critic values the applied latent z + λ·a, where z
  is a slice of the observation features. The same map is used for the target, for the critic loss
  (on the stored actor outputs) and for the actor loss, so the actor gets gradients through it.
* Every random draw (exploration noise, reparameterized samples, REDQ head subsets) comes from the
  SAC's own `torch.Generator`, saved with the rest of its state: a resumed run repeats an
  uninterrupted one exactly. Building a SAC does not touch the global torch RNG.
* Save/resume writes safetensors + JSON only (never pickle): `state_dict()` is a flat dict of tensors
  (networks, log α, every optimizer's moments and step counts, the generator state) plus a small
  JSON-able dict (update counter, config, optimizer hyper-parameters).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from steerlab.core.checkpoint import (
    CheckpointError,
    atomic_save_tensors,
    atomic_write_json,
    load_state_strict,
    load_tensors,
    optimizer_from_tensors,
    optimizer_to_tensors,
    read_json,
)
from steerlab.rl.networks import Actor, CriticEnsemble, EnsembleLinear, tanh_gaussian_log_prob  # noqa: F401
from steerlab.rl.sac_config import SACConfig  # noqa: F401

CriticActionFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
BATCH_KEYS = ("obs", "action", "reward", "next_obs", "discount", "terminated")
STATE_FORMAT = 1


# ====================================================================== 1. configuration (rl/sac_config.py)
# ====================================================================== 2. networks (rl/networks.py)
def make_critic(cfg: SACConfig, in_dim: int) -> CriticEnsemble:
    """The critic ensemble `cfg` describes (width, depth, LayerNorm, heads) on inputs of `in_dim`."""
    return CriticEnsemble(cfg.num_critics, in_dim, cfg.critic_hidden or cfg.hidden, cfg.critic_layer_norm,
                          cfg.critic_layers)


def _identity_action(obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    return action


def _adam(params, lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel where this torch has it (≈ 1–2 ms less per CPU update at hidden 256)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(params, lr=lr)


# ====================================================================== 3. the agent
class SAC:
    def __init__(self, obs_dim: int, act_dim: int, cfg: SACConfig | None = None, device: str | torch.device = "cpu",
                 seed: int = 0, critic_action_fn: CriticActionFn | None = None, critic_action_dim: int | None = None):
        """`critic_action_fn(obs, a)` maps actor outputs (B, act_dim) to what the critic values (B, d);
        d is `critic_action_dim`, or found by calling the function on zeros."""
        self.cfg = cfg = cfg or SACConfig()
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.device = torch.device(device)
        self.critic_action_fn = critic_action_fn or _identity_action
        if critic_action_dim is None:
            critic_action_dim = self._probe_critic_action_dim()
        self.critic_action_dim = int(critic_action_dim)
        critic_in = self.obs_dim + self.critic_action_dim

        with torch.random.fork_rng(devices=[]):  # initialise from `seed`, leave the global RNG alone
            torch.random.default_generator.manual_seed(seed)
            self.actor = Actor(obs_dim, act_dim, cfg.hidden, cfg.log_std_min, cfg.log_std_max, cfg.actor_layer_norm)
            self.actor.init_start(cfg.actor_init_zero_mean, cfg.actor_init_std)
            self.critic = make_critic(cfg, critic_in)
            self.critic_target = make_critic(cfg, critic_in)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        for m in (self.actor, self.critic, self.critic_target):
            m.to(self.device)
        self.log_alpha = torch.tensor(math.log(cfg.init_temperature), device=self.device, requires_grad=True)
        self.target_entropy = (cfg.target_entropy if cfg.target_entropy is not None
                               else -cfg.target_entropy_scale * self.act_dim)

        self.actor_opt = _adam(self.actor.parameters(), cfg.actor_lr)
        self.critic_opt = _adam(self.critic.parameters(), cfg.critic_lr)
        self.alpha_opt = _adam([self.log_alpha], cfg.alpha_lr)
        self.gen = torch.Generator(device=self.device).manual_seed(seed)  # every random draw of the SAC
        self.updates = 0  # critic updates done so far (drives the actor and target intervals)
        self.actor_updates = 0  # actor updates done so far (drives the tether's fade)
        # the actor dimensions the tether pulls toward 0; None: all of them. A steering method whose action joins
        # parts with different starts (zprl-noise: latent residual + noise) sets it in its `make_learner`.
        self.tether_dims: torch.Tensor | None = None
        self._actor_logs = {"actor_loss": float("nan"), "alpha_loss": float("nan"), "entropy": float("nan")}

    def _probe_critic_action_dim(self) -> int:
        with torch.no_grad():
            out = self.critic_action_fn(torch.zeros(2, self.obs_dim, device=self.device),
                                        torch.zeros(2, self.act_dim, device=self.device))
        if not torch.is_tensor(out) or out.ndim != 2 or out.shape[0] != 2:
            shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
            raise ValueError(f"critic_action_fn(obs (2, {self.obs_dim}), action (2, {self.act_dim})) must return "
                             f"a (2, d) tensor, got {shape}")
        return int(out.shape[1])

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp().detach()

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, obs: np.ndarray | torch.Tensor, deterministic: bool = False) -> np.ndarray:
        """(B, obs_dim) observations → (B, act_dim) actions in [−1, 1] (a sample, or tanh(mean)).

        A tensor (the loop's features) is used as is, a numpy array converted; either is checked with one
        shape test and one finiteness test over the batch."""
        x = obs if torch.is_tensor(obs) else torch.as_tensor(np.asarray(obs))
        if x.ndim != 2 or x.shape[1] != self.obs_dim:
            raise ValueError(f"SAC.act: observation must have shape (batch, {self.obs_dim}), got {tuple(x.shape)}")
        x = x.to(self.device, torch.float32)
        if not bool(torch.isfinite(x).all()):
            raise ValueError("SAC.act: observation contains NaN or inf")
        a = self.actor.deterministic(x) if deterministic else self.actor.sample_action(x, self.gen)
        return a.cpu().numpy()

    def critic_input(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """What every critic head sees: [obs, critic_action_fn(obs, action)]."""
        return torch.cat([obs, self.critic_action_fn(obs, action)], dim=-1)

    # ------------------------------------------------------------------ learning
    def draw_heads(self) -> torch.Tensor | None:
        """The REDQ subset of target heads for one update; None when it is all of them (no draw)."""
        if self.cfg.critic_pair == self.cfg.num_critics:
            return None
        perm = torch.randperm(self.cfg.num_critics, generator=self.gen, device=self.device)
        return perm[: self.cfg.critic_pair]

    @torch.no_grad()
    def critic_target_value(self, batch: dict[str, torch.Tensor], heads: torch.Tensor | None = None) -> torch.Tensor:
        """y = r + discount·(1 − terminated)·(min over `heads` of Q'(s', ã') − α log π(ã'|s')), shape (B,).

        `heads`: target heads to take the min over; None draws `critic_pair` of them at random.
        """
        if heads is None:
            heads = self.draw_heads()
        next_a, next_logp = self.actor.sample(batch["next_obs"], self.gen)
        q_next = self.critic_target(self.critic_input(batch["next_obs"], next_a), heads)  # (|heads|, B)
        v_next = q_next.min(0).values - self.alpha * next_logp
        return batch["reward"] + batch["discount"] * (1.0 - batch["terminated"]) * v_next

    def _step(self, opt: torch.optim.Optimizer, loss: torch.Tensor, params: Iterable[torch.Tensor]) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip is not None:
            nn.utils.clip_grad_norm_(list(params), self.cfg.grad_clip)
        opt.step()

    def _check_batch(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        missing = [k for k in BATCH_KEYS if k not in batch]
        if missing:
            raise ValueError(f"SAC.update: batch lacks {missing}")
        b = {k: batch[k].to(self.device, torch.float32) for k in BATCH_KEYS}
        n = b["obs"].shape[0]
        expected = {"obs": (n, self.obs_dim), "next_obs": (n, self.obs_dim), "action": (n, self.act_dim),
                    "reward": (n,), "discount": (n,), "terminated": (n,)}
        for k, shape in expected.items():  # a (B, 1) reward would silently broadcast to (B, B)
            if tuple(b[k].shape) != shape:
                raise ValueError(f"SAC.update: batch[{k!r}] has shape {tuple(b[k].shape)}, expected {shape}")
        return b

    def update(self, batch: dict[str, torch.Tensor], update_actor: bool = True) -> dict[str, float]:
        """One critic update; the actor and α every `actor_update_interval`, the target every
        `target_update_interval` updates. `batch`: float tensors obs (B, obs_dim), action (B, act_dim),
        reward/discount/terminated (B,), next_obs (B, obs_dim), e.g. `ReplayBuffer.sample`.

        Returns floats: critic_loss (mean over heads of each head's MSE), q_mean, target_mean, alpha,
        and the latest actor_loss, alpha_loss, entropy (NaN before the first actor update).
        `update_actor=False`: critic (and target) only, e.g. while the critic learns the actor's start."""
        cfg = self.cfg
        b = self._check_batch(batch)
        logs = self._critic_update(b)
        if update_actor and self.updates % cfg.actor_update_interval == 0:
            self._actor_update(b)
        self.updates += 1
        if self.updates % cfg.target_update_interval == 0:
            self._target_update()
        return {**logs, "alpha": self.alpha.item(), **self._actor_logs}

    # The three steps of `update`, separate so that a learner built on this SAC (a steering method's
    # `make_learner`, e.g. dsrl-na's two critics) replaces one step and keeps the others.
    def _critic_update(self, b: dict[str, torch.Tensor]) -> dict[str, float]:
        """1. critic: every head regresses on the same target y; returns critic_loss, q_mean, target_mean."""
        y = self.critic_target_value(b)
        q = self.critic(self.critic_input(b["obs"], b["action"]))  # (num_critics, B), stored actor outputs
        critic_loss = (q - y).pow(2).mean(1).sum()  # sum over heads of each head's MSE
        self._step(self.critic_opt, critic_loss, self.critic.parameters())
        return {"critic_loss": critic_loss.item() / self.cfg.num_critics, "q_mean": q.detach().mean().item(),
                "target_mean": y.mean().item()}

    def _actor_update(self, b: dict[str, torch.Tensor]) -> None:
        """2. actor: maximise Q(s, ã) − α log π(ã|s), ã ~ π(·|s), through critic_action_fn, critic held fixed;
        3. temperature: α rises when the entropy (−log π) is below target, falls when above."""
        a, logp, mean = self.actor.sample_with_mean(b["obs"], self.gen)
        q_pi = self.critic(self.critic_input(b["obs"], a), frozen=True)
        q_pi = q_pi.mean(0) if self.cfg.actor_q == "mean" else q_pi.min(0).values
        actor_loss = (self.alpha * logp - q_pi).mean()
        tether = self.tether_weight()
        if tether > 0:  # pull the mean action toward the base (a = 0), in units of the value's scale
            pulled = torch.tanh(mean) if self.tether_dims is None else torch.tanh(mean[:, self.tether_dims])
            actor_loss = actor_loss + tether * q_pi.detach().abs().mean() * pulled.pow(2).mean()
        self._step(self.actor_opt, actor_loss, self.actor.parameters())
        self.actor_updates += 1

        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        self._step(self.alpha_opt, alpha_loss, [self.log_alpha])
        self._actor_logs = {"actor_loss": actor_loss.item(), "alpha_loss": alpha_loss.item(),
                            "entropy": -logp.detach().mean().item()}

    def tether_weight(self) -> float:
        """β of the current actor update: `actor_tether`, faded linearly over `actor_tether_updates`."""
        cfg = self.cfg
        if cfg.actor_tether_updates > 0:
            return cfg.actor_tether * max(0.0, 1.0 - self.actor_updates / cfg.actor_tether_updates)
        return cfg.actor_tether

    @torch.no_grad()
    def _target_update(self) -> None:
        """4. target critics: polyak average (every target_update_interval updates)."""
        torch._foreach_lerp_(list(self.critic_target.parameters()), list(self.critic.parameters()), self.cfg.tau)

    def update_many(self, replay, n: int | None = None, update_actor: bool = True) -> dict[str, float]:
        """`n` updates (default `cfg.utd`) on fresh batches of `cfg.batch_size` from `replay`; mean logs."""
        n = self.cfg.utd if n is None else int(n)
        logs = [self.update(replay.sample(self.cfg.batch_size), update_actor) for _ in range(n)]
        return {k: float(np.mean([x[k] for x in logs])) for k in logs[0]} if logs else {}

    # ------------------------------------------------------------------ save / resume (no pickle)
    def _optimizers(self) -> tuple[tuple[str, torch.optim.Optimizer], ...]:
        return (("actor_opt", self.actor_opt), ("critic_opt", self.critic_opt), ("alpha_opt", self.alpha_opt))

    def _modules(self) -> tuple[tuple[str, nn.Module], ...]:
        return (("actor", self.actor), ("critic", self.critic), ("critic_target", self.critic_target))

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict]:
        """(flat tensors, JSON-able metadata): everything needed to continue training exactly."""
        tensors: dict[str, torch.Tensor] = {}
        for name, module in self._modules():
            tensors |= {f"{name}.{k}": v for k, v in module.state_dict().items()}
        tensors["log_alpha"] = self.log_alpha.detach().clone()
        tensors["rng.sac"] = self.gen.get_state()  # uint8 tensor: exact, and small next to the weights
        meta = {"format": STATE_FORMAT, "updates": self.updates, "actor_updates": self.actor_updates, "obs_dim": self.obs_dim, "act_dim": self.act_dim,
                "critic_action_dim": self.critic_action_dim, "config": asdict(self.cfg),
                "actor_logs": {k: None if math.isnan(v) else v for k, v in self._actor_logs.items()}}
        for name, opt in self._optimizers():
            t, m = optimizer_to_tensors(opt, name)
            tensors |= t
            meta[name] = m
        return tensors, meta

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        saved = (meta.get("obs_dim"), meta.get("act_dim"), meta.get("critic_action_dim", self.critic_action_dim))
        if saved != (self.obs_dim, self.act_dim, self.critic_action_dim):
            raise CheckpointError(f"saved SAC has (obs_dim, act_dim, critic_action_dim) {saved}, this one "
                                  f"{(self.obs_dim, self.act_dim, self.critic_action_dim)}")
        for key in ("log_alpha", "rng.sac"):
            if key not in tensors:
                raise CheckpointError(f"SAC state lacks {key!r}")
        for name, module in self._modules():
            prefix = name + "."
            load_state_strict(module, {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)},
                              f"SAC {name}")
        with torch.no_grad():
            self.log_alpha.copy_(tensors["log_alpha"])
        self.gen.set_state(tensors["rng.sac"])
        for name, opt in self._optimizers():
            optimizer_from_tensors(opt, name, tensors, meta[name])
        self.updates = int(meta["updates"])
        # states saved before the counter existed: only the fade reads it, and those runs had no tether
        self.actor_updates = int(meta.get("actor_updates", 0))
        for k, v in meta.get("actor_logs", {}).items():  # JSON has no NaN: "not yet computed" is stored as null
            self._actor_logs[k] = float("nan") if v is None else float(v)

    def save(self, folder: str | Path, tag: dict | None = None) -> None:
        """`folder/sac.safetensors` then `folder/sac.json`, each written to a temp file and renamed.
        `tag` (e.g. the env step of a training-state snapshot) is stored in sac.json beside the state."""
        tensors, meta = self.state_dict()
        atomic_save_tensors(Path(folder) / "sac.safetensors", tensors)
        atomic_write_json(Path(folder) / "sac.json", {**meta, "tag": tag or {}})

    def load(self, folder: str | Path) -> dict:
        """Restore the state `save` wrote; returns the `tag` it was saved with."""
        meta = read_json(Path(folder) / "sac.json")
        self.load_state_dict(load_tensors(Path(folder) / "sac.safetensors"), meta)
        return meta.get("tag", {})
