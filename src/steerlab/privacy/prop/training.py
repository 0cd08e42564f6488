"""Keyed training (PRoP): personal loss under each user's key + general loss under every other key.

One step, for a batch of general inputs and each user's personal batch:

    L = w_p · Σ_u L(personal_u | k_u)
      + w_g · [ L(general | random keys) + L(general | near-miss keys, 1..ε bits off) + L(general | no key) ]
      (+ w_h · L(general | δ uniform in [−1, 1]^n and δ found by the gate-space attack)   if hardening)

`train_base=True` (default) trains the model's weights with the key encoders; the no-key rows of the
general loss keep the no-key model close to the public base (its deviation is measured and reported).
`train_base=False` freezes the weights and trains only the encoders: the no-key model then *is* the
public base bit for bit, at a price in personal performance (gates alone cannot remap a fixed
classifier's outputs). Hardening needs `train_base=True`: the network must learn to ignore gates
that are not the user's, which a frozen network cannot.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from steerlab.core.devices import place
from steerlab.core.progress import progress_bar
from steerlab.privacy.keys import near_miss_keys, random_keys
from steerlab.privacy.prop.keyed import KeyedModel


@dataclass
class KeyedTrainConfig:
    steps: int = 1500
    """Gradient steps."""
    batch_size: int = 128
    """General samples per step (each user's personal batch has the same size)."""
    lr: float = 1e-3
    personal_weight: float = 1.0
    general_weight: float = 1.0
    random_share: float = 0.4
    """Share of the general batch gated by uniformly random keys."""
    near_miss_share: float = 0.4
    """Share gated by a user's key with 1..near_miss_bits bits flipped (the rest: no key)."""
    near_miss_bits: int = 4
    """ε: the largest Hamming distance trained as a negative. The paper used 1; wrong keys up to ε bits
    off must give the base behaviour."""
    train_base: bool = True
    """Also train the model's own weights (False keeps the no-key model bitwise the public base)."""
    hardening: bool = False
    """Adversarial negatives: δ uniform in [−1,1]^n and δ found by the gate-space attack -> base behaviour."""
    hardening_weight: float = 3.0
    """Hardening: weight of the adversarial-negative loss (3 vs 1: digits CNN gate-space recovery 0/32 vs 3/32)."""
    attack_every: int = 50
    """Hardening: steps between refreshing the pool of attack-found gates (50 vs 100: same measurement)."""
    anchor_weight: float = 0.0
    """Weight of the *anchor* loss: on the users' personal inputs, wrong keys and no key must reproduce the
    public base's outputs. The general data never covers the states the personal behaviour visits, so
    without it the wrong-key model is free to blend in the personal behaviour there (0: off)."""
    anchor_general: bool = False
    """Label the general loss's rows (wrong keys, no key) with the public base's outputs on the general inputs
    (`task.anchor_targets`) instead of the general data's labels. For a base given by the user
    (`Task.base_given`): re-fitting the demonstrations moved the no-key path off that base on rollouts
    (Pendulum, a short-trained own policy: +163 and +196 return over the base on the same episodes, +30 and +61
    with the base's labels; docs/privacy.md)."""
    seed: int = 0
    progress: bool = False
    extra: dict = field(default_factory=dict)


def split_sizes(n: int, cfg: KeyedTrainConfig) -> tuple[int, int, int]:
    n_rand = int(round(n * cfg.random_share))
    n_near = int(round(n * cfg.near_miss_share))
    return n_rand, n_near, n - n_rand - n_near


def negative_keys(user_bits: torch.Tensor, n_rand: int, n_near: int, max_bits: int,
                  gen: torch.Generator) -> torch.Tensor:
    """Random keys + near-miss keys around randomly chosen users (the wrong keys the model must ignore)."""
    n_bits = user_bits.shape[1]
    parts = [random_keys(n_rand, n_bits, gen)]
    if n_near:
        owners = torch.randint(0, user_bits.shape[0], (n_near,), generator=gen)
        parts.append(torch.cat([near_miss_keys(user_bits[o], 1, max_bits, gen) for o in owners.tolist()]))
    return torch.cat(parts)


def personal_batches(task, user_bits: torch.Tensor, batch_size: int, gen: torch.Generator):
    """Each user's personal batch, concatenated, with that user's key bits per row: (x, y, bits)."""
    xs, ys, bits = [], [], []
    for u in range(user_bits.shape[0]):
        x, y = task.personal_batch(u, batch_size, gen)
        xs.append(x)
        ys.append(y)
        bits.append(user_bits[u].expand(len(x), -1))
    return torch.cat(xs), torch.cat(ys), torch.cat(bits)


def general_loss(model: KeyedModel, task, user_bits: torch.Tensor, cfg: KeyedTrainConfig,
                 gen: torch.Generator, anchor: KeyedModel | None = None) -> torch.Tensor:
    """The general loss on one general batch, rows gated by random keys, near-miss keys and no key; labelled by
    `anchor` (the public base: `cfg.anchor_general`) when given, else by the general data."""
    x_g, y_g = task.general_batch(cfg.batch_size, gen)
    if anchor is not None:
        with torch.no_grad():
            y_g = task.anchor_targets(anchor, x_g, gen)
    n_rand, n_near, n_none = split_sizes(len(x_g), cfg)
    neg = negative_keys(user_bits, n_rand, n_near, cfg.near_miss_bits, gen)
    if not cfg.train_base:  # no-key rows cannot change (frozen base, no encoder): skip them
        x_g, y_g, n_none = x_g[: n_rand + n_near], y_g[: n_rand + n_near], 0
    keys = torch.cat([neg, torch.zeros(n_none, neg.shape[1])])
    mask = torch.arange(len(keys)) < len(neg)
    with model.use_keys(keys, mask):
        return task.loss(model, x_g, y_g)


def anchor_loss(model: KeyedModel, anchor: KeyedModel, task, x_p: torch.Tensor, y_p: torch.Tensor,
                user_bits: torch.Tensor, cfg: KeyedTrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Personal inputs under random / near-miss / no keys -> the public base's outputs (`anchor`: the
    un-keyed model as it was before training, i.e. the base; labels from `task.anchor_targets`)."""
    n_rand, n_near, n_none = split_sizes(len(x_p), cfg)
    neg = negative_keys(user_bits, n_rand, n_near, cfg.near_miss_bits, gen)
    keys = torch.cat([neg, torch.zeros(n_none, neg.shape[1])])
    with torch.no_grad():
        target = task.anchor_targets(anchor, x_p, gen)
    with model.use_keys(keys, torch.arange(len(keys)) < len(neg)):
        return task.loss(model, x_p, target)


def refresh_attack_pool(model: KeyedModel, task, pool: dict[str, list], seed: int) -> None:
    """Hardening: run the attackers against the current model; what they find becomes a training negative."""
    from steerlab.privacy.attacks import encoder_input_attack, gate_space_attack

    was_training = model.training
    model.eval()
    found = encoder_input_attack(model, task, starts=4, iters=20, seed=seed)
    gates = gate_space_attack(model, task, starts=4, iters=20, seed=seed)
    model.train(was_training)
    pool["inputs"] = (pool["inputs"] + found["inputs"])[-32:]
    pool["deltas"] = (pool["deltas"] + gates["deltas"])[-32:]


def hardening_loss(model: KeyedModel, task, gen: torch.Generator, attack_pool: dict[str, list],
                   batch_size: int) -> torch.Tensor:
    """General loss under gates no key produces: δ uniform in [−1,1]^n, continuous encoder inputs
    h ∈ [0,1]^N (the relaxation an attacker optimises), and the gates / inputs the attacks found."""
    x, y = task.general_batch(batch_size, gen)
    n = len(x)
    third = n // 3
    deltas = {name: torch.rand(n, d, generator=gen) * 2 - 1 for name, d in model.gate_dims().items()}
    h = torch.rand(n - third, model.key_bits, generator=gen)
    if attack_pool["inputs"]:
        k = (n - third) // 2
        pick = torch.randint(0, len(attack_pool["inputs"]), (k,), generator=gen).tolist()
        h[:k] = torch.stack([attack_pool["inputs"][i] for i in pick])
    if attack_pool["deltas"]:
        pick = torch.randint(0, len(attack_pool["deltas"]), (third // 2,), generator=gen).tolist()
        for name in deltas:
            deltas[name][: len(pick)] = torch.stack([attack_pool["deltas"][i][name] for i in pick])
    for name, layer in model.keyed.items():  # rows past `third` get gates from the encoders on h
        deltas[name] = torch.cat([deltas[name][:third], layer.encoder(h)])
    with model.use_deltas(deltas):
        return task.loss(model, x, y)


class SupervisedLearner:
    """The default learner (steerlab.privacy.tasks.protocols.Learner): gradient steps on the task's batches and loss."""

    def fit_keyed(self, model, task, users: list, cfg, extra_loss=None) -> list[dict]:
        return supervised_keyed_training(model, task, users, cfg, extra_loss)

    def fit_personal(self, model, params: list, task, user: int, cfg) -> None:
        gen = torch.Generator().manual_seed(cfg.seed)
        opt = torch.optim.Adam(params, lr=cfg.lr)
        model.train()
        for _ in range(cfg.steps):
            x, y = task.personal_batch(user, cfg.batch_size, gen)
            loss = task.loss(model, x, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()


SUPERVISED = SupervisedLearner()


def learner_of(task):
    """The task's learner; a task that names none learns by gradient steps on its batches."""
    return task.learner if task.learner is not None else SUPERVISED


def train_keyed(model: KeyedModel, task, users: list, cfg: KeyedTrainConfig, extra_loss=None) -> list[dict]:
    """Keyed training with the task's learner (`task.learner`, steerlab.privacy.tasks.protocols): `users` are
    UserKey objects whose personal data is `task.personal_batch(user_index, ...)`. Returns the loss log.
    `extra_loss(model, task, step, gen) -> tensor`, if given, is added to every step's loss (research
    variants, e.g. adversarial negatives)."""
    return learner_of(task).fit_keyed(place(model), task, users, cfg, extra_loss=extra_loss)


def supervised_keyed_training(model: KeyedModel, task, users: list, cfg: KeyedTrainConfig,
                              extra_loss=None) -> list[dict]:
    """The supervised learner's loop: gradient steps on the task's batches and loss."""
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    user_bits = torch.stack([u.bits() for u in users])
    for p in model.base_parameters():
        p.requires_grad_(cfg.train_base)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    attack_pool: dict[str, list] = {"inputs": [], "deltas": []}
    anchor = None
    if cfg.anchor_weight or cfg.anchor_general:  # before any step the un-keyed model is the public base
        anchor = copy.deepcopy(model).eval()
        anchor.set_key(None)
        for p in anchor.parameters():
            p.requires_grad_(False)
    log = []
    model.train()
    for step in progress_bar(range(cfg.steps), disable=not cfg.progress, desc=f"keyed training {task.name}"):
        if cfg.hardening and step % cfg.attack_every == 0 and step > 0:
            refresh_attack_pool(model, task, attack_pool, cfg.seed + step)
        # personal: each user's data under its own key
        x_p, y_p, bits_p = personal_batches(task, user_bits, cfg.batch_size, gen)
        with model.use_keys(bits_p):
            loss_p = task.loss(model, x_p, y_p)
        loss_g = general_loss(model, task, user_bits, cfg, gen, anchor if cfg.anchor_general else None)
        loss = cfg.personal_weight * loss_p + cfg.general_weight * loss_g
        logs = {"step": step, "personal": loss_p.item(), "general": loss_g.item()}
        if cfg.anchor_weight:
            loss_a = anchor_loss(model, anchor, task, x_p, y_p, user_bits, cfg, gen)
            loss = loss + cfg.anchor_weight * loss_a
            logs["anchor"] = loss_a.item()
        if cfg.hardening:
            loss_h = hardening_loss(model, task, gen, attack_pool, cfg.batch_size)
            loss = loss + cfg.hardening_weight * loss_h
            logs["hardening"] = loss_h.item()
        if extra_loss is not None:
            loss_x = extra_loss(model, task, step, gen)
            loss = loss + loss_x
            logs["extra"] = loss_x.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == cfg.steps - 1:
            log.append(logs)
    model.eval()
    return log
