"""Adaptive attacks on a released keyed model: what does someone holding the weights get without the key?

Threat model (docs/privacy.md): the attacker has the released keyed model (weights, key encoders,
architecture) and the public base, can run the model with any key, encoder input or gates, has public
inputs, and has neither the key nor any personal data.

Registered attacks (one module each; a new attack = a module with `@register` imported below):

    random_keys          random keys through the real key path (HKDF, encoders)
    near_keys            keys 1-16 bits off the user's: a robustness check that uses the key, not pooled
    gate_space           Adam ascent directly on δ ∈ [−1, 1]^n
    gate_space_diverse   the same with a repulsion between starts (finds several behaviours)
    encoder_input        ascent on a relaxed encoder input in (0, 1)^N
    hidden_layer         ascent on the encoders' hidden activations, δ = tanh(W2·tanh z + b2)
    evolution            evolutionary search over binary encoder inputs
    key_reading          expanded-key bits from the top singular vectors of the encoders' first layer
    hidden_reading       hidden activations from the top singular vectors of the encoders' output layer
    weight_amplification W_base + α·(W_released − W_base) without a key

`run_attacks` scores every attempt with the evaluator's ground truth (personal data, correct-key score)
and reports best-of-N recovery, the share of attempts, and the number of distinct non-base behaviours
found (steerlab.privacy.attacks.report).
"""

from __future__ import annotations

import time

import torch

from steerlab.core.progress import progress_bar
from steerlab.privacy.attacks import (  # noqa: F401  (registration)
    encoder_input,
    evolution,
    gate_space,
    hidden_layer,
    hidden_reading,
    key_reading,
    key_search,
    weight_reading,
)
from steerlab.privacy.attacks.core import AttackBudget, Found, Target
from steerlab.privacy.attacks.registry import ATTACKS, AttackSpec, register
from steerlab.privacy.attacks.report import (
    evaluate_found,
    recovered,
    recovery_threshold,
    summarise,
    verify_by_rollouts,
)

__all__ = ["ATTACKS", "AttackBudget", "AttackSpec", "Found", "Target", "attack_summary", "encoder_input_attack",
           "gate_space_attack", "recovered", "recovery_threshold", "register", "run_attacks"]


def run_attacks(model, base, task, user_bits: torch.Tensor, correct_personal: float, base_personal: float,
                budget: AttackBudget | None = None, seed: int = 0, attacks: list[str] | None = None,
                progress: bool = False) -> dict:
    """Run the registered attacks (or `attacks`) against `model`; `user_bits` and the two scores are the
    evaluator's ground truth (only `near_keys` sees the key, and it is not pooled into `overall`)."""
    budget = budget or AttackBudget()
    names = attacks or list(ATTACKS)
    unknown = [n for n in names if n not in ATTACKS]
    if unknown:
        raise ValueError(f"unknown attack(s) {unknown}; registered: {', '.join(ATTACKS)}")
    torch.manual_seed(seed)
    target = Target(model, base, task, budget, seed=seed, user_bits=user_bits)
    results, seconds = {}, {}
    for name in progress_bar(names, desc="attacks", disable=not progress):
        t0 = time.perf_counter()
        found = ATTACKS[name].run(target)
        results[name] = (found, evaluate_found(target, found))
        seconds[name] = time.perf_counter() - t0
    uses_key = {n for n in names if ATTACKS[n].uses_key}
    if any("proxy" in r for _, r in results.values()):  # rollout-scored task: verify the most promising
        t0 = time.perf_counter()
        verify_by_rollouts(target, results, uses_key)
        seconds["rollout_verification"] = time.perf_counter() - t0
    model.set_key(None)
    report = summarise(target, results, uses_key, base_personal, correct_personal)
    for name, s in seconds.items():
        if name in report["by_attack"]:
            report["by_attack"][name]["seconds"] = s
    report["rollout_verification_seconds"] = seconds.get("rollout_verification", 0.0)
    report["budget"] = {**vars(budget)}
    report["seed"] = seed
    return report


def attack_summary(model, base, task, user_bits: torch.Tensor, correct_personal: float, base_personal: float,
                   quick: bool = False, seed: int = 0) -> dict:
    """`run_attacks` at the default budget (`quick`: AttackBudget.quick(), for smoke runs and tests)."""
    return run_attacks(model, base, task, user_bits, correct_personal, base_personal,
                       budget=AttackBudget.quick() if quick else AttackBudget(), seed=seed)


# ---------------------------------------------------------------------- attackers used inside training
def _self_target(model, task, starts: int, iters: int, seed: int, probe_size: int) -> Target:
    """The model with no key is its own reference (hardening has no separate base at hand)."""
    budget = AttackBudget(restarts=starts, iters=iters, probe=probe_size)
    return Target(model, model, task, budget, seed=seed)


def gate_space_attack(model, task, starts: int = 32, iters: int = 60, seed: int = 0, probe_size: int = 256) -> dict:
    """Gates found by gate-space ascent against the model's own no-key behaviour: {"deltas": [per start]}."""
    found = gate_space.gate_space(_self_target(model, task, starts, iters, seed, probe_size))
    return {"deltas": [{n: d[i] for n, d in found.deltas.items()} for i in range(len(found))]}


def encoder_input_attack(model, task, starts: int = 32, iters: int = 60, seed: int = 0, probe_size: int = 256) -> dict:
    """Encoder inputs found by relaxed encoder-input ascent: {"deltas": [...], "inputs": [...]}."""
    inputs = encoder_input.relaxed_inputs(_self_target(model, task, starts, iters, seed, probe_size))
    with torch.no_grad():
        gates = {n: layer.encoder(inputs) for n, layer in model.keyed.items()}
    return {"deltas": [{n: d[i] for n, d in gates.items()} for i in range(starts)], "inputs": list(inputs)}
