"""A compact PPO (clipped surrogate, GAE, Gaussian policy) for vector envs with several objectives.

Used by PRoP's RL personalization. What is special here is the *episode condition*: at every episode
start a `conditioner` decides, per env, which key gates the actor (a user key, a random or near-miss key,
or none) and which objective rewards the episode (personal for the user's own key, general otherwise).
Keys reach the actor through `actor.use_keys(bits, keyed_mask)` (a `KeyedModel`); a plain actor ignores
them. The critic sees the observation and a one-hot of the objective: it is a training-time device only
(never released), so giving it the objective is not a leak.

Env protocol (see steerlab.privacy.tasks.envs.panda_reach): `n`, `obs_dim`, `act_dim`, `n_objectives`,
`reset() -> obs (n, obs_dim)`, `step(actions) -> obs, rewards (n, n_objectives), done (n,), info` with
auto-reset and `info["final_obs"]`. Every `done` is a time limit, so the last reward is bootstrapped with
the value of the final observation.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from steerlab.core.progress import progress_bar
from steerlab.policies.backbones import mlp


@dataclass
class PPOConfig:
    total_steps: int = 40_000
    """Environment steps (summed over the vector env)."""
    n_steps: int = 100
    """Steps per env between updates (rollout length)."""
    epochs: int = 8
    """Passes over each rollout."""
    minibatch: int = 256
    """Samples per gradient step."""
    gamma: float = 0.95
    """Discount (episodes are 50 steps)."""
    gae_lambda: float = 0.95
    clip: float = 0.2
    """PPO ratio clip."""
    lr: float = 1e-3
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    max_grad_norm: float = 0.5
    seed: int = 0
    progress: bool = False
    adv_norm: str = "batch"
    """How each minibatch's advantages are normalized: "batch" (one mean/std over the minibatch) or
    "objective" (zero mean, unit std within each objective's samples). They differ only when episodes of
    several objectives share a batch (keyed PPO), whose raw advantages differ in scale (PandaReach, seed 5:
    std 0.07 general vs 1.05 personal at the first update, 0.04 vs 0.06 from update ~90 on) and, while
    the critic learns a new objective, in mean. The default stays "batch": the keyed-PPO failures traced
    to the shared exploration std instead (ActorCritic.std_per_objective)."""


ADV_NORMS = ("objective", "batch")


def normalize_advantages(adv: torch.Tensor, objective: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """Zero-mean, unit-std advantages: over the whole batch (`objective` None), or separately within each
    objective's samples. A group of one sample has no spread: it is only centred (to 0)."""
    if objective is None:
        return (adv - adv.mean()) / (adv.std() + eps)
    out = torch.empty_like(adv)
    for o in torch.unique(objective).tolist():
        m = objective == o
        a = adv[m]
        out[m] = (a - a.mean()) / (a.std() + eps) if len(a) > 1 else a - a.mean()
    return out


@dataclass
class Conditions:
    """Per-env episode conditions: key bits (n, N), whether the row is keyed (n,), objective index (n,)."""

    bits: torch.Tensor
    keyed: torch.Tensor
    objective: torch.Tensor

    def replace(self, idx: torch.Tensor, new: Conditions) -> None:
        self.bits[idx], self.keyed[idx], self.objective[idx] = new.bits, new.keyed, new.objective


class FixedObjective:
    """No key, one objective for every episode (plain PPO: base training, fine-tuning, LoRA)."""

    def __init__(self, objective: int = 0, key_bits: int = 0):
        self.objective, self.key_bits = objective, key_bits

    def sample(self, n: int, gen: torch.Generator) -> Conditions:
        return Conditions(torch.zeros(n, self.key_bits), torch.zeros(n, dtype=torch.bool),
                          torch.full((n,), self.objective, dtype=torch.long))


class ActorCritic(nn.Module):
    """Gaussian policy around `actor(obs)` (state-independent std) and an objective-aware critic.

    `std_per_objective`: one exploration std per objective instead of one shared. Like the critic it is a
    training-time device (the released policy is the actor's mean). Keyed PPO needs it: its general
    episodes start from a solved objective and shrink a shared std within a few dozen updates, which ends
    exploration for the personal objective long before that one is learned."""

    def __init__(self, actor: nn.Module, obs_dim: int, act_dim: int, n_objectives: int = 1, hidden: int = 64,
                 init_log_std: float = -0.5, obs_scale: torch.Tensor | None = None, std_per_objective: bool = False):
        super().__init__()
        self.actor = actor
        self.n_objectives = n_objectives
        self.std_per_objective = std_per_objective
        self.critic = mlp(obs_dim + n_objectives, hidden, 1, depth=2, act=nn.Tanh)
        shape = (n_objectives, act_dim) if std_per_objective else (act_dim,)
        self.log_std = nn.Parameter(torch.full(shape, init_log_std))
        self.register_buffer("obs_scale", torch.ones(obs_dim) if obs_scale is None else obs_scale.float())

    def mean(self, obs: torch.Tensor, cond: Conditions | None = None) -> torch.Tensor:
        keyed = cond is not None and hasattr(self.actor, "use_keys") and bool(cond.keyed.any())
        ctx = self.actor.use_keys(cond.bits, cond.keyed) if keyed else contextlib.nullcontext()
        with ctx:
            return self.actor(obs)

    def value(self, obs: torch.Tensor, objective: torch.Tensor) -> torch.Tensor:
        onehot = nn.functional.one_hot(objective, self.n_objectives).float()
        return self.critic(torch.cat([obs * self.obs_scale, onehot], -1)).squeeze(-1)

    def log_std_of(self, objective: torch.Tensor | None = None) -> torch.Tensor:
        """Log std per sample (n, act_dim) for per-objective stds, else the shared (act_dim,)."""
        if not self.std_per_objective:
            return self.log_std
        if objective is None:
            raise ValueError("this policy has one std per objective: pass the samples' objectives")
        return self.log_std[objective]

    def log_prob(self, mean: torch.Tensor, action: torch.Tensor, objective: torch.Tensor | None = None) -> torch.Tensor:
        log_std = self.log_std_of(objective)
        z = (action - mean) / log_std.exp()
        return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def entropy(self) -> torch.Tensor:
        """Entropy of the action distribution (mean over objectives for per-objective stds)."""
        return (self.log_std + 0.5 * math.log(2 * math.pi * math.e)).sum(-1).mean()


def _gae(rewards, values, dones, last_value, gamma, lam):
    """Advantages over a (T, n) rollout; `dones[t]` ends the episode after step t (reward already
    bootstrapped), so nothing flows across it."""
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(last_value)
    for t in reversed(range(len(rewards))):
        next_v = last_value if t == len(rewards) - 1 else values[t + 1]
        live = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_v * live - values[t]
        last = delta + gamma * lam * live * last
        adv[t] = last
    return adv


def train_ppo(ac: ActorCritic, env, cfg: PPOConfig, conditioner=None, params=None, desc: str = "ppo",
              aux_loss=None) -> list[dict]:
    """Train `ac` in place; `params` limits what is optimised (e.g. LoRA adapters + critic + std).
    `aux_loss(update) -> scalar tensor`, if given, is added to every minibatch loss (e.g. PRoP's hardening:
    gates no key produces must give the base actions). Returns one row per update: mean episode return per
    objective, the rollout's raw advantage mean/std per objective, and the mean log std (per objective
    with `ac.std_per_objective`)."""
    if cfg.adv_norm not in ADV_NORMS:
        raise ValueError(f"adv_norm must be one of {ADV_NORMS}, got {cfg.adv_norm!r}")
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    conditioner = conditioner or FixedObjective(0)
    params = [p for p in (params if params is not None else ac.parameters()) if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    n = env.n
    obs = torch.as_tensor(env.reset())
    cond = conditioner.sample(n, gen)
    ep_ret = np.zeros(n)
    finished: list[tuple[int, float]] = []
    log = []
    n_updates = max(1, cfg.total_steps // (n * cfg.n_steps))
    for update in progress_bar(range(n_updates), disable=not cfg.progress, desc=desc):
        buf = {k: [] for k in ("obs", "act", "logp", "val", "rew", "done", "bits", "keyed", "obj")}
        ac.eval()
        for _ in range(cfg.n_steps):
            with torch.no_grad():
                mean = ac.mean(obs, cond)
                value = ac.value(obs, cond.objective)
                action = mean + ac.log_std_of(cond.objective).exp() * torch.randn(mean.shape, generator=gen)
                logp = ac.log_prob(mean, action, cond.objective)
            next_obs, rewards, done, info = env.step(action.numpy())
            r = torch.as_tensor(rewards[np.arange(n), cond.objective.numpy()], dtype=torch.float32)
            ep_ret += r.numpy()
            d = torch.as_tensor(done)
            if d.any():  # time limit: bootstrap from the final observation
                final = torch.as_tensor(info["final_obs"][done])
                with torch.no_grad():
                    r[d] += cfg.gamma * ac.value(final, cond.objective[d])
            for k, v in (("obs", obs), ("act", action), ("logp", logp), ("val", value), ("rew", r),
                         ("done", d.float()), ("bits", cond.bits.clone()), ("keyed", cond.keyed.clone()),
                         ("obj", cond.objective.clone())):
                buf[k].append(v)
            if d.any():
                idx = torch.nonzero(d).squeeze(1)
                finished += [(int(cond.objective[i]), float(ep_ret[i])) for i in idx.tolist()]
                ep_ret[idx.numpy()] = 0.0
                cond.replace(idx, conditioner.sample(len(idx), gen))
            obs = torch.as_tensor(next_obs)
        with torch.no_grad():
            last_value = ac.value(obs, cond.objective)
        b = {k: torch.stack(v) for k, v in buf.items()}
        adv = _gae(b["rew"], b["val"], b["done"], last_value, cfg.gamma, cfg.gae_lambda)
        ret = adv + b["val"]
        flat = {k: v.flatten(0, 1) for k, v in b.items()}
        adv, ret = adv.reshape(-1), ret.reshape(-1)
        ac.train()
        total = len(adv)
        for _ in range(cfg.epochs):
            perm = torch.randperm(total, generator=gen)
            for start in range(0, total, cfg.minibatch):
                i = perm[start: start + cfg.minibatch]
                mb_cond = Conditions(flat["bits"][i], flat["keyed"][i], flat["obj"][i])
                mean = ac.mean(flat["obs"][i], mb_cond)
                logp = ac.log_prob(mean, flat["act"][i], flat["obj"][i])
                ratio = (logp - flat["logp"][i]).exp()
                a = normalize_advantages(adv[i], flat["obj"][i] if cfg.adv_norm == "objective" else None)
                pg = -torch.min(ratio * a, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * a).mean()
                vf = (ac.value(flat["obs"][i], flat["obj"][i]) - ret[i]).pow(2).mean()
                loss = pg + cfg.vf_coef * vf - cfg.ent_coef * ac.entropy()
                if aux_loss is not None:
                    loss = loss + aux_loss(update)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                opt.step()
        row = {"update": update, "env_steps": (update + 1) * n * cfg.n_steps}
        log_std = ac.log_std.detach()
        if ac.std_per_objective:
            row |= {f"log_std_{o}": float(log_std[o].mean()) for o in range(ac.n_objectives)}
        else:
            row["log_std"] = float(log_std.mean())
        for o in range(ac.n_objectives):
            rets = [r for obj, r in finished if obj == o]
            if rets:
                row[f"return_{o}"] = float(np.mean(rets))
            m = flat["obj"] == o
            if int(m.sum()) > 1:  # the rollout's raw advantages per objective: their scales and biases
                row[f"adv_mean_{o}"], row[f"adv_std_{o}"] = float(adv[m].mean()), float(adv[m].std())
        finished.clear()
        log.append(row)
    ac.eval()
    return log


@torch.no_grad()
def evaluate_policy(act_fn, env, episodes: int) -> dict[str, np.ndarray]:
    """Deterministic rollouts of `act_fn(obs) -> actions`; per episode and objective: the normalized
    reward 1 − mean_t d_t / d_0 (1: at the goal at once; 0: no closer on average than at the start) and
    success (final distance ≤ 5 cm). Returns arrays of shape (episodes, n_objectives)."""
    obs = env.reset()
    d0 = env.distances(obs)
    total = np.zeros_like(d0)
    steps = np.zeros(env.n)
    norm, success = [], []
    while len(norm) < episodes:
        obs, _, done, info = env.step(act_fn(torch.as_tensor(obs)).numpy())
        total += info["distance"]
        steps += 1
        for i in np.flatnonzero(done):
            norm.append(1.0 - total[i] / steps[i] / np.maximum(d0[i], 1e-6))
            success.append(info["distance"][i] <= 0.05)
            total[i], steps[i] = 0.0, 0
            d0[i] = env.distances(obs[i: i + 1])[0]
    return {"normalized_reward": np.array(norm[:episodes]), "success": np.array(success[:episodes], float)}
