"""Gate space: ignore the key encoders and optimise δ ∈ [−1, 1]^n directly (projected Adam ascent on the
divergence from the base), from many random starts; the diverse variant also pushes the starts apart
(so they do not all fall into the same most-divergent behaviour), as trigger reverse-engineering does
when it looks for every backdoor rather than the strongest."""

from __future__ import annotations

import torch

from steerlab.privacy.attacks.core import Found, Target
from steerlab.privacy.attacks.registry import register


def _gate_ascent(t: Target, salt: int, diversity: float) -> Found:
    names, dims = list(t.model.gate_dims()), list(t.model.gate_dims().values())
    gen = t.generator(salt)
    init = [torch.rand(t.budget.restarts, d, generator=gen) * 2 - 1 for d in dims]
    leaves = t.ascend(init, lambda ls: dict(zip(names, ls)), project=lambda ls: [x.clamp_(-1.0, 1.0) for x in ls],
                      diversity=diversity)
    return Found(deltas=dict(zip(names, leaves)), evaluations=t.budget.restarts * t.budget.iters)


@register("gate_space", "Adam ascent directly on the gates δ in [-1, 1]^n")
def gate_space(t: Target) -> Found:
    return _gate_ascent(t, 3, 0.0)


@register("gate_space_diverse", "gate-space ascent with a repulsion between starts")
def gate_space_diverse(t: Target) -> Found:
    return _gate_ascent(t, 4, t.budget.diversity_weight)
