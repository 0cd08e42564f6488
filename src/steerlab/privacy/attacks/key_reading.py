"""Key reading: every personal training step adds to an encoder's first layer a term W += g·(2k̃ − 1)ᵀ built
from the expanded key k̃, so the top right singular vectors of that layer point along ±(2k̃ − 1). Their
signs (and signs of sums of pairs) are candidate expanded keys, fed to the encoders directly. Reads
`l1` (PRoP's encoders) or `proj` (the key-MLP's linear key term)."""

from __future__ import annotations

import itertools

import torch

from steerlab.privacy.attacks.core import Found, Target
from steerlab.privacy.attacks.registry import register

TOP = 8  # singular vectors read per layer
PAIRS = 4  # signed pairwise sums among the top few


def first_layer(encoder: torch.nn.Module) -> torch.Tensor | None:
    for name in ("l1", "proj"):
        layer = getattr(encoder, name, None)
        if isinstance(layer, torch.nn.Linear):
            return layer.weight.detach()
    return None


def candidate_bits(weight: torch.Tensor) -> torch.Tensor:
    _, _, vh = torch.linalg.svd(weight, full_matrices=False)
    dirs = list(vh[:TOP])
    dirs += [d for a, b in itertools.combinations(vh[:PAIRS], 2) for d in (a + b, a - b)]  # negations below
    dirs = torch.stack(dirs)
    return (torch.cat([dirs, -dirs]) > 0).float()


@register("key_reading", "expanded-key bits read from the encoders' first layer (SVD)")
def key_reading(t: Target) -> Found:
    weights = [w for w in (first_layer(layer.encoder) for layer in t.model.keyed.values()) if w is not None]
    if not weights:
        return Found()
    bits = torch.unique(torch.cat([candidate_bits(w) for w in weights]), dim=0)
    with torch.no_grad():
        return Found(deltas=t.encoder_gates(bits), evaluations=len(bits))
