"""Adaptive attacks on a keyed model: what can someone holding the released weights learn?

The attacker's goal is to make the model show the user's personal behaviour without the user's key.
An attempt *recovers* it when its personal score on held-out data gets at least halfway from the
base model's personal score to the correct key's (`recovered`).

(a) key search:   thousands of random keys and keys 1..16 bits away from the user's.
(b) gate space:   ignore the key encoders and optimise δ ∈ [−1, 1]^n directly by projected gradient
                  ascent, from many random starts, to maximise the deviation of the outputs from the
                  base behaviour; then check whether the deviation found is the personal behaviour.
                  Variant (b'), encoder input: optimise a continuous encoder input h ∈ [0, 1]^N (the
                  hash output the key would produce) through the real encoders, so δ stays on the
                  encoders' range, where the user's δ lies.
(c) weight reading: compare released weights with the public base; amplify the difference
                  (W_base + α·(W_released − W_base)) and look at the no-key behaviour.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from steerlab.privacy.keyed import KeyedModel
from steerlab.privacy.keys import flip_bits, random_keys
from steerlab.privacy.task import Task, scores


def recovery_threshold(base_personal: float, correct_personal: float) -> float:
    return base_personal + 0.5 * (correct_personal - base_personal)


def recovered(personal: float, base_personal: float, correct_personal: float) -> bool:
    return correct_personal > base_personal and personal >= recovery_threshold(base_personal, correct_personal)


def _with_key(model: KeyedModel, task: Task, bits):
    model.set_key(bits)
    return lambda x: task.predict(model, x)


@torch.no_grad()
def key_search_attack(model: KeyedModel, task: Task, user_bits: torch.Tensor, n_random: int = 1000,
                      near_bits: tuple[int, ...] = (1, 2, 4, 8, 16), n_near: int = 50, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    personal_random = [scores(task, _with_key(model, task, k))["personal"]
                       for k in random_keys(n_random, len(user_bits), gen)]
    personal_near = {d: [scores(task, _with_key(model, task, flip_bits(user_bits, d, gen)))["personal"]
                         for _ in range(n_near)]
                     for d in near_bits}
    model.set_key(None)
    return {"random": personal_random, "near": personal_near}


def _ascend(model: KeyedModel, task: Task, starts: int, iters: int, lr: float, seed: int, probe_size: int,
            init, to_deltas, project=None) -> list:
    """Gradient ascent on the deviation ‖f(x) − f_base(x)‖² from `starts` random points of some
    parameterisation (`init(gen)` -> leaf tensors, `to_deltas(leaves)` -> gates per layer). The
    model's own parameters are frozen meanwhile. Returns the final leaves of every start."""
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    model.set_key(None)
    x, _ = task.general_batch(probe_size, gen)
    with torch.no_grad():
        base_out = task.predict(model, x).detach()
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    found = []
    try:
        for _ in range(starts):
            leaves = [t.requires_grad_(True) for t in init(gen)]
            opt = torch.optim.Adam(leaves, lr=lr)
            for _ in range(iters):
                with model.use_deltas(to_deltas(leaves)):
                    dev = (task.predict(model, x) - base_out).pow(2).mean()
                opt.zero_grad()
                (-dev).backward()
                opt.step()
                if project is not None:
                    with torch.no_grad():
                        project(leaves)
            found.append([t.detach().clone() for t in leaves])
    finally:
        for p in params:
            p.requires_grad_(True)
        model.train(was_training)
    return found


def gate_space_attack(model: KeyedModel, task: Task, starts: int = 32, iters: int = 60, lr: float = 0.1,
                      seed: int = 0, probe_size: int = 256) -> dict:
    """Projected gradient ascent over δ ∈ [−1,1]^n directly (all keyed layers at once)."""
    names, dims = list(model.gate_dims()), list(model.gate_dims().values())
    found = _ascend(model, task, starts, iters, lr, seed, probe_size,
                    init=lambda g: [torch.rand(d, generator=g) * 2 - 1 for d in dims],
                    to_deltas=lambda leaves: dict(zip(names, leaves)),
                    project=lambda leaves: [t.clamp_(-1.0, 1.0) for t in leaves])
    return {"deltas": [dict(zip(names, leaves)) for leaves in found]}


def encoder_input_attack(model: KeyedModel, task: Task, starts: int = 32, iters: int = 60, lr: float = 0.1,
                         seed: int = 0, probe_size: int = 256) -> dict:
    """Gradient ascent over a relaxed encoder input h = sigmoid(θ) pushed through the real encoders."""
    def to_deltas(leaves):
        h = torch.sigmoid(leaves[0])[None]
        return {n: layer.encoder(h)[0] for n, layer in model.keyed.items()}

    found = _ascend(model, task, starts, iters, lr, seed, probe_size,
                    init=lambda g: [torch.randn(model.key_bits, generator=g) * 2], to_deltas=to_deltas)
    with torch.no_grad():
        return {"deltas": [{n: d.clone() for n, d in to_deltas(leaves).items()} for leaves in found],
                "inputs": [torch.sigmoid(leaves[0]) for leaves in found]}


@torch.no_grad()
def score_deltas(model: KeyedModel, task: Task, deltas: list[dict]) -> list[float]:
    model.set_key(None)
    out = []
    for d in deltas:
        with model.use_deltas(d):
            out.append(scores(task, lambda x: task.predict(model, x))["personal"])
    return out


@torch.no_grad()
def weight_reading_attack(released: KeyedModel, base: torch.nn.Module, task: Task,
                          alphas: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)) -> dict:
    """Per-layer relative weight change, and the no-key personal score of amplified differences."""
    rel = dict(released.model.named_parameters())
    diffs = {}
    base_params = dict(base.named_parameters())
    for name, p in base_params.items():
        q = rel.get(name) if name in rel else rel.get(name.rsplit(".", 1)[0] + ".linear." + name.rsplit(".", 1)[1])
        if q is not None:
            diffs[name] = float((q - p).norm() / (p.norm() + 1e-12))
    amplified = {}
    for a in alphas:
        probe = copy.deepcopy(base)
        rel_state = {k.replace(".linear.", "."): v for k, v in released.model.state_dict().items() if "encoder" not in k}
        for name, p in probe.named_parameters():
            if name in rel_state:
                p.copy_(p + a * (rel_state[name] - p))
        amplified[a] = scores(task, lambda x, m=probe: task.predict(m, x))["personal"]
    return {"relative_weight_change": diffs, "amplified_personal": amplified}


def attack_summary(model: KeyedModel, base: torch.nn.Module, task: Task, user_bits: torch.Tensor,
                   correct_personal: float, base_personal: float, quick: bool = False, seed: int = 0) -> dict:
    n_random, n_near, starts = (100, 10, 8) if quick else (1000, 50, 32)
    ks = key_search_attack(model, task, user_bits, n_random=n_random, n_near=n_near, seed=seed)
    gs = gate_space_attack(model, task, starts=starts, seed=seed)
    gate_personal = score_deltas(model, task, gs["deltas"])
    enc_personal = score_deltas(model, task, encoder_input_attack(model, task, starts=starts, seed=seed)["deltas"])
    wr = weight_reading_attack(model, base, task)

    def rate(values):
        return float(np.mean([recovered(v, base_personal, correct_personal) for v in values]))

    return {"key_search_random_recovery": rate(ks["random"]),
            "key_search_near_recovery": {d: rate(v) for d, v in ks["near"].items()},
            "gate_space_recovery": rate(gate_personal), "gate_space_personal": gate_personal,
            "encoder_input_recovery": rate(enc_personal), "encoder_input_personal": enc_personal,
            "weight_reading": wr,
            "weight_reading_recovery": rate(list(wr["amplified_personal"].values())),
            "threshold": recovery_threshold(base_personal, correct_personal),
            "attempts": {"random_keys": n_random, "near_keys_per_distance": n_near, "gate_starts": starts}}
