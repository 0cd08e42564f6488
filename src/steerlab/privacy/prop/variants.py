"""Research variants of the keyed model: can an unsealed PRoP model resist the attack suite?

Issue 12, part 3. Each variant is one registered builder that wraps a public base and trains it for the
users; the benchmark (steerlab.bench.privacy) runs the attack suite on each and reports best-of-N.

    prop           the default: HKDF-expanded key, trainable 128 → 64 → n encoders, input gating, anchor
                   loss (wrong keys held at the base on personal inputs; steerlab.privacy.methods)
    prop_hardened  `--harden`: first layer 8× steeper, uniform / relaxed / attack-found gates → base
    prop_unanchored, prop_hardened_unanchored   the two above with v1's loss (no anchor)
    prop_fixed     no trainable first layer on the key: a fixed pseudo-random projection (HKDF-seeded,
                   public), so personal training cannot write the expanded key into the weights
    prop_adv       prop_hardened + adversarial negatives from the hidden-layer and evolutionary attacks,
                   refreshed against the current model during training, and near misses of the expanded
                   key (the encoders' own input space) mapped to the base behaviour
    prop_fixed_adv prop_fixed + prop_adv's training
    prop_decoy     decoy behaviours: 4 throwaway keys (discarded after training) each taught another
                   plausible personal behaviour, so an attacker finds several and cannot tell which is real
    prop_wide      wider δ space: every nn.Linear layer keyed, encoders 256 wide

The research variants below prop_hardened build on v1's loss (no anchor): they were measured before the
anchor became PRoP's default, and the anchor targets drift on personal states, not these attacks.
None of these is a released mode (only `prop`, `--harden` and sealed releases are); they exist to be
measured.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from torch import nn

from steerlab.privacy.keys import UserKey
from steerlab.privacy.prop.keyed import KeyedModel
from steerlab.privacy.prop.training import KeyedTrainConfig, train_keyed

FIXED_INFO = b"steerlab/prop/fixed-first-layer/v1"
DECOYS = 4


def fixed_projection(rows: int, cols: int, label: str) -> torch.Tensor:
    """A public pseudo-random Gaussian matrix (rows, cols)/√cols from HKDF-SHA256 of `label`: anyone can
    regenerate it, it carries no key, and training never changes it."""
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=FIXED_INFO).derive(label.encode())
    rng = np.random.default_rng(np.frombuffer(seed, np.uint32))
    return torch.as_tensor(rng.standard_normal((rows, cols)) / np.sqrt(cols), dtype=torch.float32)


def fix_first_layers(model: KeyedModel, hidden_scale: float = 2.0) -> None:
    """Replace every encoder's first layer by a frozen public projection (no bias). `hidden_scale` keeps
    the tanh units in their informative range (expanded keys are ±1 vectors: rows have norm ≈ 1)."""
    for name, layer in model.keyed.items():
        l1 = layer.encoder.l1
        l1.weight.data.copy_(hidden_scale * fixed_projection(l1.out_features, l1.in_features, name))
        l1.bias.data.zero_()
        l1.weight.requires_grad_(False)
        l1.bias.requires_grad_(False)


def adversarial_negatives(user_inputs: torch.Tensor, restarts: int = 16, iters: int = 20, evo_runs: int = 4,
                          every: int = 50, weight: float = 3.0, batch_size: int = 128, max_flips: int = 32) -> Callable:
    """`train_keyed` extra loss: the general loss under (a) gates the hidden-layer and evolutionary attacks
    find against the current model (refreshed every `every` steps, a pool of the last 64 rows) and (b) the
    users' encoder inputs (expanded keys) with 1..`max_flips` bits flipped: the neighbourhood an
    evolutionary search walks through, which key-space near misses (random after HKDF) never train."""
    from steerlab.privacy.attacks import AttackBudget, Target
    from steerlab.privacy.attacks.evolution import evolution
    from steerlab.privacy.attacks.hidden_layer import hidden_layer
    from steerlab.privacy.keys import near_miss_keys

    pool: dict[str, torch.Tensor] = {}

    def loss(model: KeyedModel, task, step: int, gen: torch.Generator) -> torch.Tensor:
        if step % every == 0:
            budget = AttackBudget(restarts=restarts, iters=iters, evo_runs=evo_runs, evo_population=8,
                                  evo_generations=8, probe=32)
            t = Target(model, model, task, budget, seed=step)  # no-key model = its own reference
            for found in (hidden_layer(t), evolution(t)):
                for n, d in found.deltas.items():
                    pool[n] = torch.cat([pool.get(n, d[:0]), d.detach()])[-64:]
        x, y = task.general_batch(batch_size, gen)
        half = len(x) // 2
        pick = torch.randint(0, len(next(iter(pool.values()))), (half,), generator=gen)
        owners = torch.randint(0, len(user_inputs), (len(x) - half,), generator=gen).tolist()
        near = torch.cat([near_miss_keys(user_inputs[o], 1, max_flips, gen) for o in owners])
        deltas = {n: torch.cat([pool[n][pick], layer.encoder(near)]) for n, layer in model.keyed.items()}
        with model.use_deltas(deltas):
            return weight * task.loss(model, x, y)

    return loss


@dataclass(frozen=True)
class Variant:
    name: str
    sharpness: float = 1.0
    hardening: bool = False
    fixed_first_layer: bool = False
    adversarial: bool = False
    decoys: int = 0
    wide: bool = False
    anchored: bool = False
    """Train with PRoP's anchor loss (steerlab.privacy.methods.ANCHOR_WEIGHT)."""
    description: str = ""


VARIANTS = {v.name: v for v in (
    Variant("prop", anchored=True, description="default PRoP"),
    Variant("prop_hardened", sharpness=8.0, hardening=True, anchored=True, description="--harden"),
    Variant("prop_unanchored", description="PRoP with v1's loss (no anchor)"),
    Variant("prop_hardened_unanchored", sharpness=8.0, hardening=True, description="--harden, v1's loss"),
    Variant("prop_fixed", fixed_first_layer=True, description="fixed pseudo-random first layer on the key"),
    Variant("prop_adv", sharpness=8.0, hardening=True, adversarial=True,
            description="hardened + hidden-layer / evolutionary adversarial negatives"),
    Variant("prop_fixed_adv", sharpness=8.0, hardening=True, fixed_first_layer=True, adversarial=True,
            description="fixed first layer + hardened + adversarial negatives"),
    Variant("prop_decoy", decoys=DECOYS, description=f"{DECOYS} decoy keys with decoy behaviours"),
    Variant("prop_wide", wide=True, description="every linear layer keyed, 256-wide encoders"),
)}


def linear_layers(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def build_variant(name: str, task_factory: Callable[[int], object], base: nn.Module, user: UserKey,
                  cfg: KeyedTrainConfig) -> KeyedModel:
    """Train variant `name` of PRoP for one user on `base`. `task_factory(n_users)` makes the task (decoys
    need more personal behaviours than users); the user is user 0."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose one of {', '.join(VARIANTS)}")
    v = VARIANTS[name]
    task = task_factory(1 + v.decoys)
    layers = linear_layers(base) if v.wide else task.layers
    model = KeyedModel(copy.deepcopy(base), layers, sharpness=v.sharpness, encoder_hidden=256 if v.wide else 64)
    if v.fixed_first_layer:
        fix_first_layers(model)
    users = [user]
    if v.decoys:  # throwaway keys: drawn from the run's seed here; a release would draw them from `secrets`
        rng = np.random.default_rng(7_000 + cfg.seed)
        users += [UserKey(rng.bytes(len(user.raw))) for _ in range(v.decoys)]
    inputs = torch.stack([model._check_bits(u.bits()) for u in users])  # what the encoders see (expanded keys)
    extra = adversarial_negatives(inputs) if v.adversarial else None
    from steerlab.privacy.methods import ANCHOR_WEIGHT

    cfg = replace(cfg, hardening=v.hardening, anchor_weight=ANCHOR_WEIGHT if v.anchored else 0.0)
    train_keyed(model, task, users, cfg, extra_loss=extra)
    return model


__all__ = ["VARIANTS", "Variant", "adversarial_negatives", "build_variant", "fix_first_layers", "fixed_projection"]
