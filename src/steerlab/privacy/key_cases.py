"""Score a personalized model under every key case; the benchmark and `steerlab attack` share this."""

from __future__ import annotations

import numpy as np
import torch

from steerlab.privacy.keys import flip_bits, random_keys
from steerlab.privacy.tasks.base import Task, scores

KEY_CASES = ("correct", "random", "near_miss_1", "no_key")
HAMMING = (0, 1, 2, 4, 8, 16)


class Personalized:
    """Uniform view of PRoP and the baselines: `runner(case_bits)` returns a predict function.

    `bits` is a key (tensor of 0/1) or None for "no key". For `finetune` the key is ignored (the model
    always behaves personally); for `lora` only the user's own key "unlocks" its adapter; for `sealed`
    (steerlab.privacy.sealed.SealedRelease) a key runs the personal policy only if it decrypts a blob.
    """

    def __init__(self, kind: str, model, user_bits: list[torch.Tensor], adapters=None, predict=None):
        self.kind, self.model, self.user_bits, self.adapters = kind, model, user_bits, adapters
        self.predict = predict or (lambda m, x: m(x))  # task.predict for models that are not plain callables
        self.log: list[dict] = []  # the training log, when the method keeps one

    def runner(self, bits: torch.Tensor | None):
        if self.kind in ("prop", "key_mlp", "sealed"):  # sealed: a key that opens no blob gives the base
            self.model.set_key(bits)
        elif self.kind == "cvae":
            return lambda x: self.model.run(x, bits, self.predict)
        elif self.kind == "lora":
            from steerlab.privacy.prop.baselines import set_lora

            set_lora(self.adapters, bits is not None and any(torch.equal(bits, u) for u in self.user_bits))
        elif self.kind != "finetune":  # finetune ignores keys: it always behaves personally
            raise ValueError(f"unknown method {self.kind!r}")
        return lambda x: self.predict(self.model, x)


@torch.no_grad()
def evaluate_key_cases(p: Personalized, task: Task, seed: int, n_keys: int = 8) -> dict:
    """Mean general/personal scores per key case (wrong keys averaged over `n_keys` draws)."""
    gen = torch.Generator().manual_seed(10_000 + seed)
    out = {}
    per_user = []
    for u, bits in enumerate(p.user_bits):
        run = p.runner(bits)
        per_user.append({"general": task.scorer.general_score(task, run),
                         "personal": task.scorer.personal_score(task, run, u)})
    out["correct"] = {k: float(np.mean([r[k] for r in per_user])) for k in ("general", "personal")}
    rand = [scores(task, p.runner(k)) for k in random_keys(n_keys, len(p.user_bits[0]), gen)]
    near = [scores(task, p.runner(flip_bits(p.user_bits[i % len(p.user_bits)], 1, gen))) for i in range(n_keys)]
    for case, rows in (("random", rand), ("near_miss_1", near)):
        out[case] = {k: float(np.mean([r[k] for r in rows])) for k in ("general", "personal")}
    out["no_key"] = scores(task, p.runner(None))
    return out


@torch.no_grad()
def leakage_curve(p: Personalized, task: Task, seed: int, n_keys: int = 4) -> dict[int, float]:
    """Personal score of keys `d` bits away from the first user's key, d in HAMMING."""
    gen = torch.Generator().manual_seed(20_000 + seed)
    curve = {}
    for d in HAMMING:
        keys = [p.user_bits[0]] if d == 0 else [flip_bits(p.user_bits[0], d, gen) for _ in range(n_keys)]
        curve[d] = float(np.mean([scores(task, p.runner(k), users=1)["personal"] for k in keys]))
    return curve


def user_study_indicators(cases: dict) -> dict[str, float]:
    """The paper's simulated user-study Score (best 3) and Privacy leakage (best 0) over three rollouts:
    the user's key, a random key and a one-bit-off key. A rollout 'shows the personal behaviour' when
    its personal score exceeds its general score."""
    personal = {c: cases[c]["personal"] > cases[c]["general"] for c in ("correct", "random", "near_miss_1")}
    score = int(personal["correct"]) + int(not personal["random"]) + int(not personal["near_miss_1"])
    leakage = int(not personal["correct"]) + int(personal["random"]) + int(personal["near_miss_1"])
    return {"score": float(score), "leakage": float(leakage)}
