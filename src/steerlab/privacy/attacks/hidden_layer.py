"""Hidden layer: optimise each key encoder's hidden pre-activations z directly, δ = tanh(W2·tanh(z) + b2).

Everything before the encoder's hidden layer (key expansion, first layer, its sharpness) is bypassed, so
hardening that only saturates the first layer gives this attacker nothing, while δ still lies on the
encoders' output range, where the user's δ lies. Needs encoders with a hidden layer (`l2`)."""

from __future__ import annotations

import torch

from steerlab.privacy.attacks.core import Found, Target
from steerlab.privacy.attacks.registry import register


def _heads(t: Target):
    return {n: layer.encoder.l2 for n, layer in t.model.keyed.items() if hasattr(layer.encoder, "l2")}


@register("hidden_layer", "Adam ascent on the key encoders' hidden activations")
def hidden_layer(t: Target) -> Found:
    heads = _heads(t)
    if len(heads) != len(t.model.keyed):  # e.g. the key-MLP baseline: a linear key term, no hidden layer
        return Found()
    names = list(heads)
    gen = t.generator(6)
    init = [torch.randn(t.budget.restarts, heads[n].in_features, generator=gen) * 2 for n in names]

    def to_deltas(leaves):
        return {n: torch.tanh(heads[n](torch.tanh(z))) for n, z in zip(names, leaves)}

    leaves = t.ascend(init, to_deltas)
    with torch.no_grad():
        return Found(deltas=to_deltas(leaves), evaluations=t.budget.restarts * t.budget.iters)
