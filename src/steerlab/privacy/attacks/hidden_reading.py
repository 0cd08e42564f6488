"""Hidden reading: the same reading as `key_reading`, one layer later. Personal training adds to each
encoder's output layer a term W2 += g·tanh(z*)ᵀ built from the user's hidden activations, so the top right
singular vectors of W2 point along ±tanh(z*). Saturated (sign) and scaled versions of them are candidate
hidden activations, pushed through the output layer: δ = tanh(W2·h + b2). Works where the first layer is
fixed or saturated (nothing to read there)."""

from __future__ import annotations

import torch

from steerlab.privacy.attacks.core import Found, Target
from steerlab.privacy.attacks.registry import register

TOP = 8


@register("hidden_reading", "hidden activations read from the encoders' output layer (SVD)")
@torch.no_grad()
def hidden_reading(t: Target) -> Found:
    heads = {n: layer.encoder.l2 for n, layer in t.model.keyed.items() if hasattr(layer.encoder, "l2")}
    if len(heads) != len(t.model.keyed):
        return Found()
    cands = {}
    for n, l2 in heads.items():
        _, _, vh = torch.linalg.svd(l2.weight, full_matrices=False)
        dirs = torch.cat([vh[:TOP], -vh[:TOP]])
        h = torch.cat([torch.sign(dirs), dirs / dirs.abs().amax(1, keepdim=True)])
        cands[n] = h
    # each layer's candidates applied to that layer, with the same candidate index across layers
    rows = min(len(h) for h in cands.values())
    return Found(deltas={n: torch.tanh(heads[n](cands[n][:rows])) for n in heads}, evaluations=rows)
