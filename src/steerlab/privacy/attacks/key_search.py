"""Key search: run the model with keys, through the real key path (HKDF expansion, then the encoders)."""

from __future__ import annotations

import torch

from steerlab.privacy.attacks.core import Found, Target
from steerlab.privacy.attacks.registry import register
from steerlab.privacy.keys import flip_bits, random_keys

NEAR_DISTANCES = (1, 2, 4, 8, 16)


def _keys_found(t: Target, keys: torch.Tensor) -> Found:
    with torch.no_grad():
        gates = t.encoder_gates(t.model._check_bits(keys))  # the same expansion `set_key` applies
    return Found(deltas=gates, evaluations=len(keys))


@register("random_keys", "random keys through the real key path")
def random_key_search(t: Target) -> Found:
    return _keys_found(t, random_keys(t.budget.restarts, t.model.key_bits, t.generator(1)))


@register("near_keys", "keys 1-16 bits off the user's (robustness check, uses the key)", uses_key=True)
def near_key_search(t: Target) -> Found:
    if t.user_bits is None:
        return Found()
    gen = t.generator(2)
    keys = torch.stack([flip_bits(t.user_bits, d, gen) for d in NEAR_DISTANCES for _ in range(t.budget.near_per_distance)])
    return _keys_found(t, keys)
