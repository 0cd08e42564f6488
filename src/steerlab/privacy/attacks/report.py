"""Score the attacks' attempts the way an attacker would use them: best of N, share, distinct behaviours.

* An attempt *recovers* the personal behaviour when its personal score on held-out personal data gets at
  least halfway from the base's personal score to the correct key's (`recovered`). Only the evaluator
  can check this (it needs the personal data); the attacks never see it.
* best_of_n: did any attempt recover? An attacker needs one attempt that works.
* share: the fraction of attempts that recovered.
* distinct_behaviours: the attacker's precision problem. Attempts whose behaviour on public inputs is far
  from the base's (`NON_BASE`) are clustered (leader clustering in order of divergence, radius
  `CLUSTER_RADIUS`); the attacker, who cannot check the personal data, faces that many candidates. One
  distinct behaviour that recovers = the attacker knows the personal behaviour without any personal data.

Behaviour distance on public inputs: the share of differing predicted labels (classifiers); the mean
squared difference over the base outputs' variance (regressors, policies).
"""

from __future__ import annotations

import numpy as np
import torch

from steerlab.privacy.attacks.core import Found, Target

NON_BASE = 0.25
"""Distance from the base's behaviour above which an attempt counts as a non-base behaviour."""
CLUSTER_RADIUS = 0.25
"""Attempts within this distance of a cluster's leader show the same behaviour."""
BEHAVIOUR_PROBE = 256


def recovery_threshold(base_personal: float, correct_personal: float) -> float:
    return base_personal + 0.5 * (correct_personal - base_personal)


def recovered(personal: float, base_personal: float, correct_personal: float) -> bool:
    return correct_personal > base_personal and personal >= recovery_threshold(base_personal, correct_personal)


def _behaviour(t: Target, out: torch.Tensor) -> torch.Tensor:
    return out.argmax(-1) if t.kind == "logits" else out


def behaviour_distance(t: Target, a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Distance between behaviours a (C, P, ...) and b (P, ...) or (C, P, ...); per candidate."""
    if t.kind == "logits":
        return (a != b).float().flatten(1).mean(1)
    return (a - b).pow(2).flatten(1).mean(1) / scale


def _rollout_scored(t: Target) -> bool:
    from steerlab.privacy.tasks.protocols import HeldOutScorer

    return not isinstance(t.task.scorer, HeldOutScorer)


@torch.no_grad()
def evaluate_found(t: Target, found: Found) -> dict:
    """Per attempt: personal score (held-out personal data of user 0) and behaviour on public inputs.

    Rollout-scored tasks with `budget.rollout_verify` set: personal scores are left NaN here and filled in
    for the most promising attempts by `verify_by_rollouts`; each attempt gets a `proxy` instead: how far
    its outputs on public inputs moved from the base's to the correct key's (1 − MSE(attempt, key) /
    MSE(base, key); ≥ 0.5 is the halfway rule in action space)."""
    from steerlab.privacy.tasks.base import scores

    task, model = t.task, t.model
    model.set_key(None)
    xb = task.test_general()[0][:BEHAVIOUR_PROBE]
    rollouts = _rollout_scored(t)
    deferred = rollouts and t.budget.rollout_verify is not None
    personal, behaviour, raw = [], [], []
    if found.deltas:
        if rollouts:
            out = t.outputs_chunked(found.deltas, xb)
            behaviour.append(_behaviour(t, out))
            raw.append(out)
            for i in range(len(found)):
                if deferred:
                    personal.append(float("nan"))
                    continue
                with model.use_deltas({n: d[i] for n, d in found.deltas.items()}):
                    personal.append(scores(task, lambda x: task.predict(model, x), users=1)["personal"])
        else:
            xp, yp = task.test_personal(0)
            out = t.outputs_chunked(found.deltas, xp)
            personal += [task.score(o, yp) for o in out]
            same = len(xp) >= len(xb) and torch.equal(xp[:len(xb)], xb)  # personal test inputs = public ones
            behaviour.append(_behaviour(t, out[:, :len(xb)] if same else t.outputs_chunked(found.deltas, xb)))
    for m in found.models:
        out = task.predict(m, xb)
        behaviour.append(_behaviour(t, out)[None])
        raw.append(out[None])
        personal.append(float("nan") if deferred else scores(task, lambda x, m=m: task.predict(m, x), users=1)["personal"])
    base_out = task.predict(t.base, xb)
    base_b = _behaviour(t, base_out)
    scale = base_out.var(0, unbiased=False).mean().clamp_min(1e-8)
    behaviour = torch.cat(behaviour) if behaviour else torch.empty(0, *base_b.shape)
    result = {"personal": np.asarray(personal, float), "behaviour": behaviour,
              "distance_to_base": behaviour_distance(t, behaviour, base_b, scale).numpy() if len(behaviour) else np.zeros(0),
              "scale": scale}
    if deferred:
        result["proxy"] = _action_proxy(t, torch.cat(raw) if raw else torch.empty(0, *base_out.shape), base_out, xb)
    return result


def _action_proxy(t: Target, out: torch.Tensor, base_out: torch.Tensor, xb: torch.Tensor) -> np.ndarray:
    """1 − MSE(attempt, correct key) / MSE(base, correct key) on public inputs, per attempt (evaluator only)."""
    if t.user_bits is None or not len(out):
        return np.full(len(out), np.nan)
    t.model.set_key(t.user_bits)
    try:
        key_out = t.task.predict(t.model, xb)
    finally:
        t.model.set_key(None)
    gap = (base_out - key_out).pow(2).mean().clamp_min(1e-12)
    return (1 - (out - key_out).pow(2).flatten(1).mean(1) / gap).numpy()


ROLLOUT_PER_ATTACK = 1
"""Rollout-scored tasks: the best attempts of each attack (by the proxy) verified by rollouts, besides the
best `AttackBudget.rollout_verify` overall."""


@torch.no_grad()
def verify_by_rollouts(t: Target, results: dict[str, tuple[Found, dict]], uses_key: set[str]) -> None:
    """Fill in rollout personal scores (in place) for the attempts the proxy ranks highest: the best
    `rollout_verify` of the pooled attacks and the best `ROLLOUT_PER_ATTACK` of every attack."""
    from steerlab.privacy.tasks.base import scores

    ranked = [(float(r["proxy"][i]), n, i) for n, (f, r) in results.items() if "proxy" in r for i in range(len(f))]
    ranked = [x for x in ranked if np.isfinite(x[0])]
    ranked.sort(key=lambda x: -x[0])
    chosen = {(n, i) for _, n, i in [x for x in ranked if x[1] not in uses_key][:t.budget.rollout_verify]}
    for name in results:
        chosen |= {(n, i) for _, n, i in [x for x in ranked if x[1] == name][:ROLLOUT_PER_ATTACK]}
    model, task = t.model, t.task
    model.set_key(None)
    for name, i in sorted(chosen):
        found, r = results[name]
        n_deltas = len(next(iter(found.deltas.values()))) if found.deltas else 0
        if i < n_deltas:
            with model.use_deltas({k: d[i] for k, d in found.deltas.items()}):
                r["personal"][i] = scores(task, lambda x: task.predict(model, x), users=1)["personal"]
        else:
            m = found.models[i - n_deltas]
            r["personal"][i] = scores(task, lambda x, m=m: task.predict(m, x), users=1)["personal"]


def cluster(t: Target, behaviour: torch.Tensor, order: np.ndarray, scale: torch.Tensor) -> np.ndarray:
    """Leader clustering of behaviours visited in `order`; returns a cluster id per row (−1 if not visited)."""
    ids = np.full(len(behaviour), -1)
    leaders: list[torch.Tensor] = []
    for i in order:
        if leaders:
            d = behaviour_distance(t, torch.stack(leaders), behaviour[i], scale)
            j = int(d.argmin())
            if float(d[j]) <= CLUSTER_RADIUS:
                ids[i] = j
                continue
        ids[i] = len(leaders)
        leaders.append(behaviour[i])
    return ids


def summarise(t: Target, results: dict[str, tuple[Found, dict]], uses_key: set[str], base_personal: float,
              correct_personal: float) -> dict:
    """The report: per attack and overall (attacks that use the key are reported but not pooled)."""
    names = [n for n in results if len(results[n][0])]
    behaviour = torch.cat([results[n][1]["behaviour"] for n in names]) if names else torch.empty(0)
    dist = np.concatenate([results[n][1]["distance_to_base"] for n in names]) if names else np.zeros(0)
    owner = np.concatenate([[n] * len(results[n][0]) for n in names]) if names else np.zeros(0, str)
    personal = np.concatenate([results[n][1]["personal"] for n in names]) if names else np.zeros(0)
    proxy = (np.concatenate([results[n][1]["proxy"] for n in names])
             if names and all("proxy" in results[n][1] for n in names) else None)
    rec = np.array([recovered(p, base_personal, correct_personal) for p in personal], bool)
    non_base = dist >= NON_BASE
    scale = next(iter(results.values()))[1]["scale"] if results else torch.tensor(1.0)
    order = [i for i in np.argsort(-dist, kind="stable") if non_base[i]]
    ids = cluster(t, behaviour, np.asarray(order, int), scale) if len(order) else np.full(len(dist), -1)

    def block(mask: np.ndarray) -> dict:
        n = int(mask.sum())
        found_ids = ids[mask & non_base]
        sizes = np.bincount(found_ids) if len(found_ids) else np.zeros(0, int)
        personal_ids = set(ids[mask & rec & non_base].tolist())
        scored = mask & np.isfinite(personal)
        extra = {} if proxy is None else {  # rollout-scored: which attempts were verified, and the proxy's view
            "verified": int(scored.sum()), "proxy_share": float((proxy[mask] >= 0.5).sum() / n) if n else 0.0}
        return {"attempts": n, "recovered": int((mask & rec).sum()), "best_of_n": float((mask & rec).any()),
                "share": float((mask & rec).sum() / n) if n else 0.0,
                "best_personal": float(personal[scored].max()) if scored.any() else float("nan"), **extra,
                "non_base": int((mask & non_base).sum()), "distinct_behaviours": len(set(found_ids.tolist())),
                "personal_behaviours": len(personal_ids),
                "largest_is_personal": bool(len(sizes) and int(sizes.argmax()) in personal_ids)}

    by_attack = {}
    for n in results:
        mask = owner == n
        by_attack[n] = {**block(mask), "evaluations": results[n][0].evaluations, "uses_key": n in uses_key}
    pooled = ~np.isin(owner, list(uses_key))
    overall = block(pooled)
    overall["evaluations"] = int(sum(results[n][0].evaluations for n in results if n not in uses_key))
    return {"overall": overall, "by_attack": by_attack, "threshold": recovery_threshold(base_personal, correct_personal),
            "base_personal": base_personal, "correct_personal": correct_personal,
            "non_base_distance": NON_BASE, "cluster_radius": CLUSTER_RADIUS}
