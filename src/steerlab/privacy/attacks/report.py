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


@torch.no_grad()
def evaluate_found(t: Target, found: Found) -> dict:
    """Per attempt: personal score (held-out personal data of user 0) and behaviour on public inputs."""
    from steerlab.privacy.protocols import HeldOutScorer
    from steerlab.privacy.task import scores

    task, model = t.task, t.model
    model.set_key(None)
    xb = task.test_general()[0][:BEHAVIOUR_PROBE]
    personal, behaviour = [], []
    if found.deltas:
        if not isinstance(task.scorer, HeldOutScorer):  # scored by rollouts: one candidate at a time
            behaviour.append(_behaviour(t, t.outputs_chunked(found.deltas, xb)))
            for i in range(len(found)):
                with model.use_deltas({n: d[i] for n, d in found.deltas.items()}):
                    personal.append(scores(task, lambda x: task.predict(model, x), users=1)["personal"])
        else:
            xp, yp = task.test_personal(0)
            out = t.outputs_chunked(found.deltas, xp)
            personal += [task.score(o, yp) for o in out]
            same = len(xp) >= len(xb) and torch.equal(xp[:len(xb)], xb)  # personal test inputs = public ones
            behaviour.append(_behaviour(t, out[:, :len(xb)] if same else t.outputs_chunked(found.deltas, xb)))
    for m in found.models:
        behaviour.append(_behaviour(t, task.predict(m, xb))[None])
        personal.append(scores(task, lambda x, m=m: task.predict(m, x), users=1)["personal"])
    base_b = _behaviour(t, task.predict(t.base, xb))
    scale = task.predict(t.base, xb).var(0, unbiased=False).mean().clamp_min(1e-8)
    behaviour = torch.cat(behaviour) if behaviour else torch.empty(0, *base_b.shape)
    return {"personal": np.asarray(personal, float), "behaviour": behaviour,
            "distance_to_base": behaviour_distance(t, behaviour, base_b, scale).numpy() if len(behaviour) else np.zeros(0),
            "scale": scale}


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
        return {"attempts": n, "recovered": int((mask & rec).sum()), "best_of_n": float((mask & rec).any()),
                "share": float((mask & rec).sum() / n) if n else 0.0,
                "best_personal": float(personal[mask].max()) if n else float("nan"),
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
