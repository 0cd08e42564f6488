"""DSRL-NA: noise steering with noise aliasing (Wagenmaker et al., "Steering Your Diffusion Policy with
Latent Space Reinforcement Learning", the paper's default variant).

The actor chooses the generator's initial noise, as in `dsrl` (ε = magnitude·w, w ∈ [-1,1]^(noise size)),
but it is trained against a *distilled* noise-space critic instead of one learned by TD in noise space:

* Q^A(s, a) — the action critic — learns by TD on the *executed* actions: a = the first `n_action_steps`
  actions of the chunk the frozen generator decodes from the stored noise (n_exec·A dims, e.g. 8, instead of
  32 noise dims; many noises alias to the same executed actions, so Q^A generalises across them):
      y = r + discount·(1 − terminated)·(min_H Q^A'(s', π_base(s', w')) − α log π(w'|s')),  w' ~ π(·|s')
* Q^W(s, w) — the noise critic, the SAC's own `critic` — regresses onto Q^A(s, π_base(s, w)) (mean over
  the Q^A heads) for noises w drawn from the base's N(0, I) (clamped into the bound, like the warm-up) and
  from the actor: no bootstrapping in noise space.
* the actor maximises Q^W(s, w) − α log π(w|s) (the shared SAC step, unchanged).

The actor and both critics see the raw observation: the executed actions must be decoded exactly, and
`sample_chunk(obs, noise)` is what the noise protocol level guarantees (an embedding path may condition
the generator differently). The decode is deterministic given the noise (the flow sampler is an ODE).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from steerlab.core.errors import UserError
from steerlab.policies.protocol import observation_spec
from steerlab.rl.sac import SAC, _adam, make_critic
from steerlab.rl.steering.base import MethodConfig, SteeringMethod, register


@dataclass
class DSRLNAConfig(MethodConfig):
    noise_magnitude: float = 1.5
    """Bound of the initial noise the actor may choose (the DSRL paper's 1.5, as `dsrl`)."""
    distill_base: int = 256
    """Noises drawn from the base's N(0, I) per update for the Q^W distillation (the aliasing samples)."""
    distill_actor: int = 256
    """Noises drawn from the actor per update for the distillation (where the actor currently acts)."""

    def __post_init__(self):
        super().__post_init__()
        if not self.noise_magnitude > 0:
            raise UserError(f"noise_magnitude must be > 0, got {self.noise_magnitude!r}")
        if int(self.distill_base) < 0 or int(self.distill_actor) < 0 or int(self.distill_base) + int(self.distill_actor) < 1:
            raise UserError(f"distill_base and distill_actor must be >= 0 with a positive sum, got "
                            f"{self.distill_base!r}, {self.distill_actor!r}")


class NoiseAliasSAC(SAC):
    """The shared SAC with its critic step replaced: Q^A by TD on decoded executed actions, then the SAC's
    critic (Q^W) distilled from Q^A. Acting, the actor/α step and save/resume are the SAC's own; the extra
    networks and optimizer join its state through `_modules` / `_optimizers`."""

    def __init__(self, obs_dim: int, act_dim: int, cfg, seed: int, decode, exec_dim: int,
                 distill_base: int, distill_actor: int, noise_magnitude: float, device="cpu"):
        super().__init__(obs_dim, act_dim, cfg, device=device, seed=seed)
        self.decode, self.exec_dim = decode, int(exec_dim)
        self.distill_base, self.distill_actor = int(distill_base), int(distill_actor)
        self.noise_magnitude = float(noise_magnitude)
        with torch.random.fork_rng(devices=[]):  # own init stream, the global RNG untouched
            torch.random.default_generator.manual_seed(seed + 7919)
            self.critic_a = make_critic(cfg, obs_dim + self.exec_dim)
            self.critic_a_target = make_critic(cfg, obs_dim + self.exec_dim)
        self.critic_a_target.load_state_dict(self.critic_a.state_dict())
        self.critic_a_target.requires_grad_(False)
        self.critic_a.to(self.device)
        self.critic_a_target.to(self.device)
        self.critic_a_opt = _adam(self.critic_a.parameters(), cfg.critic_lr)

    def q_action(self, obs: torch.Tensor, executed: torch.Tensor, target: bool = False,
                 heads: torch.Tensor | None = None) -> torch.Tensor:
        net = self.critic_a_target if target else self.critic_a
        return net(torch.cat([obs, executed], -1), heads)

    @torch.no_grad()
    def distill_target(self, obs: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Q^A(s, π_base(s, w)), mean over the Q^A heads: what Q^W(s, w) regresses onto, shape (B,)."""
        return self.q_action(obs, self.decode(obs, w)).mean(0)

    def _critic_update(self, b):
        cfg = self.cfg
        # 1. Q^A: TD on the executed actions of the stored noise; the next action is the base's decode of w' ~ π
        with torch.no_grad():
            executed = self.decode(b["obs"], b["action"])
            next_w, next_logp = self.actor.sample(b["next_obs"], self.gen)
            q_next = self.q_action(b["next_obs"], self.decode(b["next_obs"], next_w), target=True,
                                   heads=self.draw_heads())
            y = b["reward"] + b["discount"] * (1.0 - b["terminated"]) * (q_next.min(0).values - self.alpha * next_logp)
        q_a = self.q_action(b["obs"], executed)
        loss_a = (q_a - y).pow(2).mean(1).sum()
        self._step(self.critic_a_opt, loss_a, self.critic_a.parameters())

        # 2. Q^W: distil Q^A through the frozen generator, on base noises (aliasing) and actor noises
        parts_obs, parts_w = [], []
        n = b["obs"].shape[0]
        if self.distill_base:
            idx = torch.randint(n, (self.distill_base,), generator=self.gen, device=self.device)
            eps = torch.randn((self.distill_base, self.act_dim), generator=self.gen, device=self.device)
            parts_obs.append(b["obs"][idx])
            parts_w.append((eps / self.noise_magnitude).clamp(-1.0, 1.0))
        if self.distill_actor:
            idx = torch.randint(n, (self.distill_actor,), generator=self.gen, device=self.device)
            with torch.no_grad():
                parts_w.append(self.actor.sample(b["obs"][idx], self.gen)[0])
            parts_obs.append(b["obs"][idx])
        obs_d, w_d = torch.cat(parts_obs), torch.cat(parts_w)
        target = self.distill_target(obs_d, w_d)
        q_w = self.critic(self.critic_input(obs_d, w_d))
        loss_w = (q_w - target).pow(2).mean(1).sum()
        self._step(self.critic_opt, loss_w, self.critic.parameters())
        return {"critic_loss": loss_a.item() / cfg.num_critics, "q_mean": q_a.detach().mean().item(),
                "target_mean": y.mean().item(), "distill_loss": loss_w.item() / cfg.num_critics,
                "q_noise_mean": q_w.detach().mean().item()}

    @torch.no_grad()
    def _target_update(self):
        # Q^W has no TD target (it is distilled); its target copy is kept only so the SAC state stays the SAC's
        super()._target_update()
        torch._foreach_lerp_(list(self.critic_a_target.parameters()), list(self.critic_a.parameters()), self.cfg.tau)

    def _optimizers(self):
        return (*super()._optimizers(), ("critic_a_opt", self.critic_a_opt))

    def _modules(self):
        return (*super()._modules(), ("critic_a", self.critic_a), ("critic_a_target", self.critic_a_target))


@register
class DSRLNA(SteeringMethod):
    name = "dsrl-na"
    level = "noise"
    Config = DSRLNAConfig
    # The same start as dsrl (the base's own noise distribution, entropy target 0 as in the DSRL paper's
    # configs, 1,000 critic-only decisions): the two methods differ only in how the noise critic is learned.
    sac_start = {"actor_init_zero_mean": True, "actor_init_std": 0.8, "target_entropy": 0.0}
    default_critic_warmup = 1_000
    keeps_sampler = False  # the actor chooses ε

    def __init__(self, policy, cfg=None, stats=None):
        super().__init__(policy, cfg, stats)
        if observation_spec(policy).has_images:
            # its learner re-runs the policy on replayed observations: with cameras that means storing frames
            raise UserError("dsrl-na replays raw observations through the policy and does not take camera "
                            "policies; use dsrl (it sees the frozen embedding)")
        self.scale = self.cfg.noise_magnitude
        self.noise_shape = tuple(policy.noise_shape)
        self.obs_dim = int(policy.obs_dim)
        self.act_dim = math.prod(self.noise_shape)
        self.exec_dim = self.n_exec * int(policy.action_dim)

    def features(self, obs, train, gen=None, noise=None):
        return obs

    def chunk(self, obs, feats, action, noise):
        return self.policy.sample_chunk(obs, self.scale * action.reshape(-1, *self.noise_shape))

    def warmup_action(self, batch, noise):
        return (noise.reshape(batch, -1) / self.scale).clamp(-1.0, 1.0).numpy()

    @torch.no_grad()
    def executed(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The executed actions (B, n_exec·A) of actor outputs `action` at observations `obs`."""
        return self.chunk(obs, obs, action, None)[:, : self.n_exec].reshape(obs.shape[0], -1)

    def make_learner(self, sac_cfg, seed, device="cpu"):
        return NoiseAliasSAC(self.obs_dim, self.act_dim, sac_cfg, seed, self.executed, self.exec_dim,
                             self.cfg.distill_base, self.cfg.distill_actor, self.scale, device=device)
