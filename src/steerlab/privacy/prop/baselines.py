"""Baselines for private personalization, sharing PRoP's tasks, key sampling and evaluation.

* `key_mlp`  the key concatenated to the input of a linear layer (the paper's key-MLP; for the CNN
             the first fully connected layer): `KeyedModel(mode="concat", key_hash=False)`, trained with
             exactly PRoP's keyed loss. Raw key bits, as in the paper.
* `cvae`     encoder-based personalization (the paper's CVAE): a latent z enters a hidden layer
             additively; while training z ~ q(z | x, y) with KL to a key-conditioned prior N(μ(k), I);
             at inference z = μ(k). No key: z = 0.
* `finetune` a per-user copy of the base fine-tuned on that user's data only: the non-private reference
             (anyone who rolls it out sees the personal behaviour).
* `lora`     a rank-4 LoRA adapter per user on PRoP's layers, base frozen; the adapter itself is the
             secret, so without it the model is exactly the base (the practical alternative; the price
             is a per-user weight file to protect and ship instead of a 16-byte key).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from steerlab.core.devices import place
from steerlab.policies.backbones import mlp
from steerlab.privacy.keys import random_keys
from steerlab.privacy.prop.keyed import replace_module
from steerlab.privacy.prop.training import (
    KeyedTrainConfig,
    learner_of,
    negative_keys,
    personal_batches,
    split_sizes,
)


def fit_personal(model: nn.Module, params, task, user: int, cfg: KeyedTrainConfig) -> nn.Module:
    """Train `params` on one user's objective only, no keys involved (`task.learner`: gradient steps on the
    personal data, or PPO on the personal reward for RL tasks)."""
    params = list(params)
    learner_of(task).fit_personal(place(model), params, task, user, cfg)  # placing keeps the parameters' identity
    return model.eval()


# ----------------------------------------------------------------------------- finetune
def train_finetune(base: nn.Module, task, user: int, cfg: KeyedTrainConfig) -> nn.Module:
    model = copy.deepcopy(base)
    return fit_personal(model, model.parameters(), task, user, cfg)


# ----------------------------------------------------------------------------- LoRA
class LoRALinear(nn.Module):
    def __init__(self, linear: nn.Linear, rank: int = 4, alpha: float = 8.0):
        super().__init__()
        self.linear = linear
        self.a = nn.Parameter(torch.randn(rank, linear.in_features) / linear.in_features**0.5)
        self.b = nn.Parameter(torch.zeros(linear.out_features, rank))
        self.scale = alpha / rank
        self.enabled = True

    def forward(self, x):
        y = self.linear(x)
        return y + self.scale * F.linear(F.linear(x, self.a), self.b) if self.enabled else y


def add_lora(model: nn.Module, layers: list[str], rank: int = 4) -> dict[str, LoRALinear]:
    return {name: replace_module(model, name, lambda lin: LoRALinear(lin, rank)) for name in layers}


def train_lora(base: nn.Module, task, user: int, cfg: KeyedTrainConfig, rank: int = 4):
    model = copy.deepcopy(base)
    for p in model.parameters():
        p.requires_grad_(False)
    adapters = add_lora(model, task.layers, rank)
    fit_personal(model, [p for a in adapters.values() for p in (a.a, a.b)], task, user, cfg)
    return model, adapters


def set_lora(adapters: dict[str, LoRALinear], enabled: bool) -> None:
    for a in adapters.values():
        a.enabled = enabled


LORA_ATTACK_SCALES = (1.0, 2.0, 4.0, 8.0)


@torch.no_grad()
def attack_lora_release(model: nn.Module, adapters: dict[str, LoRALinear], base: nn.Module, task,
                        base_personal: float, correct_personal: float, scales=LORA_ATTACK_SCALES) -> dict:
    """What an attacker gets from a `lora` adapter released in the clear, in `run_attacks`' report format.

    There is no key to search: the adapter is in the file. The attempts are the base with the adapter
    applied at each of `scales` (1 = the personal model itself; larger ones amplify it, as the weight
    amplification attack does for keyed models); each is scored with the personal data like any attack's
    attempt (halfway rule), so the result is measured, not assumed."""
    from steerlab.privacy.attacks.report import (
        BEHAVIOUR_PROBE,
        CLUSTER_RADIUS,
        NON_BASE,
        recovered,
        recovery_threshold,
    )
    from steerlab.privacy.tasks.base import scores

    xb = task.test_general()[0][:BEHAVIOUR_PROBE]
    logits = getattr(task, "output_kind", "regression") == "logits"
    base_out = task.predict(base, xb)
    scale_var = base_out.var(0, unbiased=False).mean().clamp_min(1e-8)

    def distance(a, b):  # as attacks.report.behaviour_distance
        return float((a.argmax(-1) != b.argmax(-1)).float().mean()) if logits else float((a - b).pow(2).mean() / scale_var)

    personal, outs = [], []
    saved = {n: a.scale for n, a in adapters.items()}
    try:
        set_lora(adapters, True)
        for s in scales:
            for n, a in adapters.items():
                a.scale = saved[n] * s
            outs.append(task.predict(model, xb))
            personal.append(scores(task, lambda x: task.predict(model, x), users=1)["personal"])
    finally:
        for n, a in adapters.items():
            a.scale = saved[n]
        set_lora(adapters, False)
    rec = [recovered(p, base_personal, correct_personal) for p in personal]
    leaders: list[torch.Tensor] = []
    for o in outs:  # distinct non-base behaviours (leader clustering, as attacks.report.cluster)
        if distance(o, base_out) >= NON_BASE and all(distance(o, ld) > CLUSTER_RADIUS for ld in leaders):
            leaders.append(o)
    block = {"attempts": len(scales), "recovered": int(sum(rec)), "best_of_n": float(any(rec)),
             "share": float(sum(rec) / len(scales)), "best_personal": float(max(personal)),
             "non_base": int(sum(distance(o, base_out) >= NON_BASE for o in outs)),
             "distinct_behaviours": len(leaders), "largest_is_personal": bool(rec[0] and leaders),
             "evaluations": len(scales)}
    return {"overall": block, "by_attack": {"adapter_application": {**block, "uses_key": False}},
            "threshold": recovery_threshold(base_personal, correct_personal), "base_personal": base_personal,
            "correct_personal": correct_personal, "personal_per_scale": dict(zip(map(str, scales), personal)),
            "budget": {"restarts": len(scales)}}


# ----------------------------------------------------------------------------- CVAE
class LatentInjection(nn.Module):
    """A linear layer plus W_z·z for the latent currently set (none: the plain layer)."""

    def __init__(self, linear: nn.Linear, latent_dim: int):
        super().__init__()
        self.linear = linear
        self.proj = nn.Linear(latent_dim, linear.out_features, bias=False)
        self.z: torch.Tensor | None = None

    def forward(self, x):
        y = self.linear(x)
        if self.z is None:
            return y
        z = self.z.reshape(self.z.shape[0], *([1] * (y.ndim - 2)), self.z.shape[-1]) if y.ndim > 2 else self.z
        return y + self.proj(z)


class CVAEPersonalizer(nn.Module):
    def __init__(self, base: nn.Module, layer: str, in_dim: int, target_dim: int, key_bits: int = 128,
                 latent_dim: int = 8, hidden: int = 64):
        super().__init__()
        self.model = copy.deepcopy(base)
        self.inject = replace_module(self.model, layer, lambda lin: LatentInjection(lin, latent_dim))
        self.posterior = mlp(in_dim + target_dim, hidden, 2 * latent_dim, depth=2)
        self.prior = mlp(key_bits, hidden, latent_dim, depth=1)
        self.target_dim = target_dim

    def prior_mean(self, bits: torch.Tensor) -> torch.Tensor:
        return self.prior(2.0 * bits - 1.0)

    def run(self, x: torch.Tensor, bits: torch.Tensor | None, predict=None):
        self.inject.z = None if bits is None else self.prior_mean(bits.expand(len(x), -1) if bits.ndim == 1 else bits)
        try:
            return predict(self.model, x) if predict else self.model(x)
        finally:
            self.inject.z = None


def _target_repr(task, y: torch.Tensor) -> torch.Tensor:
    return F.one_hot(y, 10).float() if y.dtype == torch.long else y.flatten(1)


def train_cvae(base: nn.Module, task, users: list, cfg: KeyedTrainConfig, beta: float = 0.1) -> CVAEPersonalizer:
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    x0, y0 = task.general_batch(2, gen)
    in_dim = x0[0].numel()
    model = CVAEPersonalizer(base, task.cvae_layer, in_dim, _target_repr(task, y0).shape[1])
    user_bits = torch.stack([u.bits() for u in users])
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    model.train()
    for _ in range(cfg.steps):
        x_p, y_p, bits_p = personal_batches(task, user_bits, cfg.batch_size, gen)
        x_g, y_g = task.general_batch(cfg.batch_size, gen)
        n_rand, n_near, n_none = split_sizes(len(x_g), cfg)
        neg = negative_keys(user_bits, n_rand, n_near, cfg.near_miss_bits, gen)
        x = torch.cat([x_p, x_g])
        y = torch.cat([y_p, y_g])
        k = torch.cat([bits_p, neg, random_keys(n_none, user_bits.shape[1], gen)])
        keyed = torch.arange(len(x)) < len(x) - n_none
        mu, logvar = model.posterior(torch.cat([x.flatten(1), _target_repr(task, y)], -1)).chunk(2, -1)
        z = mu + torch.randn(mu.shape, generator=gen) * (0.5 * logvar).exp()
        prior = model.prior_mean(k)
        kl = 0.5 * ((mu - prior).pow(2) + logvar.exp() - logvar - 1).sum(-1)
        model.inject.z = torch.where(keyed[:, None], z, torch.zeros_like(z))  # no-key rows: z = 0
        recon = task.loss(model.model, x, y)
        model.inject.z = None
        loss = recon + beta * (kl * keyed).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()
