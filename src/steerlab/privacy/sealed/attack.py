"""What an attacker of a sealed release gets: key search through the loader and weight reading."""

from __future__ import annotations

import copy

import torch

from steerlab.privacy.sealed.blobs import SealedRelease


@torch.no_grad()
def attack_release(release: SealedRelease, task, user_bits: torch.Tensor, score_personal, base_personal: float,
                   correct_personal: float, n_random: int = 256, near_bits: tuple[int, ...] = (1, 2, 4, 8, 16),
                   n_near: int = 16, alphas: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0), seed: int = 0) -> dict:
    """The attacks that apply to a sealed release, in the `attacks` block's format.

    The release exposes the base's weights and opaque blobs; there are no key encoders or gates to
    optimise. Key search tries `n_random` random keys and `n_near` keys at each distance in `near_bits`
    from the user's (the evaluator's knowledge, a stronger attacker than any real one) through the
    loader; weight reading amplifies the released weights' difference from the public base. Each
    attempt's outputs on probe inputs are compared with the base's: an attempt whose outputs are the
    base's bit for bit *is* the base behaviour (deterministic policy), so only the others are scored
    with `score_personal(run)` (rollouts for Meta-World) — here none are, but it is measured, not assumed.
    """
    from steerlab.privacy.attacks import recovered
    from steerlab.privacy.keys import flip_bits, random_keys

    gen = torch.Generator().manual_seed(seed)
    probe, _ = task.general_batch(256, torch.Generator().manual_seed(seed + 1))
    base_out = task.predict(release.base, probe)
    behaviours: list[torch.Tensor] = []

    def attempt(model) -> bool:
        out = task.predict(model, probe)
        if torch.equal(out, base_out):
            return False
        if not any(torch.allclose(out, b, atol=1e-4) for b in behaviours):
            behaviours.append(out)
        return recovered(score_personal(lambda x: task.predict(model, x)), base_personal, correct_personal)

    by_attack = {}
    keys = list(random_keys(n_random, len(user_bits), gen)) + [flip_bits(user_bits, d, gen) for d in near_bits
                                                               for _ in range(n_near)]
    hits = []
    for bits in keys:
        release.set_key(bits)
        hits.append(attempt(release))
    release.set_key(None)
    by_attack["key_search"] = {"best_of_n": float(any(hits)), "share": float(sum(hits) / len(hits)),
                               "attempts": len(hits)}
    released = dict(release.model.named_parameters())
    weight_hits = []
    for a in alphas:
        probe_model = copy.deepcopy(release.base)
        for name, p in probe_model.named_parameters():
            p.copy_(p + a * (released[name] - p))
        weight_hits.append(attempt(probe_model))
    by_attack["weight_reading"] = {"best_of_n": float(any(weight_hits)), "share": float(sum(weight_hits) / len(alphas)),
                                   "attempts": len(alphas)}
    every = hits + weight_hits
    return {"budget": len(every), "best_of_n": float(any(every)), "share": float(sum(every) / len(every)),
            "distinct_behaviours": float(len(behaviours)), "by_attack": by_attack}
