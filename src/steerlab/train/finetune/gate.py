"""The release gate: a finished run releases its steered policy only if it did not measure worse than the base.

Why: RL on a frozen policy can end slightly below where it started when the critic cannot value the residual the
actor learned (a near-optimal base on Pendulum: −0.3 return of −126, docs/results/reward_only.md), and a user who
deploys the run's policy would get the worse one. After training, the steered policy and the base (the frozen
policy itself, at the run's sampler scale) play the same `episodes` episodes of the 'gate' seed split (same
initial states, same sampler noise; disjoint from the curve's, the final evaluation's and the mode rule's), and
the per-episode differences decide, lexicographically: success where the env reports it, then return. A mean
difference below 0 releases the base (the checkpoint keeps the actor, marked `released: "base"`); a tie or better
releases the steered policy. Because the final evaluation runs on other episodes, result.json's final numbers
are an unbiased measure of whichever policy was released.
"""

from __future__ import annotations

import sys

import numpy as np

from steerlab.eval.metrics import mean_interval
from steerlab.eval.rollout import rollout_episodes


def paired_differences(steered: list[dict], base: list[dict]) -> dict:
    """Per-episode steered − base differences of success (None where the env reports none) and return."""
    out = {}
    reported = any(e.get("success_reported", True) for e in steered + base)
    keys = ("success", "return") if reported else ("return",)
    for key in keys:
        d = np.array([float(s[key]) - float(b[key]) for s, b in zip(steered, base, strict=True)])
        m = mean_interval(d)
        out[key] = {"steered": float(np.mean([float(s[key]) for s in steered])),
                    "base": float(np.mean([float(b[key]) for b in base])),
                    "difference": m["mean"], "difference_ci95": m["ci95"]}
    return out


def decide(diffs: dict) -> tuple[str, str]:
    """('steered' | 'base', the metric that decided): the first metric whose mean difference is not 0."""
    for key in ("success", "return"):
        if key in diffs and diffs[key]["difference"] != 0.0:
            return ("steered" if diffs[key]["difference"] > 0.0 else "base"), key
    return "steered", "tie"


def release_gate(policy, env_spec, episodes: int, seed: int) -> dict:
    """Play `policy` (a SteeredPolicy) with its steering on and off on the gate split, both at the sampler scale it
    was trained with; the record of the decision. Leaves `policy.released` at the decision."""
    noise_scale = policy.sampler_noise_scale
    runs = {}
    for released in ("steered", "base"):
        policy.released = released
        runs[released] = rollout_episodes(policy, env_spec, episodes, seed=seed, n_envs=1, asynchronous=False,
                                          progress=False, split="gate", noise_scale=noise_scale)
    diffs = paired_differences(runs["steered"], runs["base"])
    released, by = decide(diffs)
    policy.released = released
    return {"released": released, "decided_by": by, "episodes": episodes, "split": "gate",
            "noise_scale": noise_scale, **diffs}


def report(gate: dict) -> str:
    """One line for the terminal: what each scored and which was released."""
    parts = []
    for key in ("success", "return"):
        if key in gate:
            g = gate[key]
            lo, hi = g["difference_ci95"] or (float("nan"), float("nan"))
            parts.append(f"{key} {g['steered']:.3g} vs the base's {g['base']:.3g} "
                         f"(difference {g['difference']:+.3g} [{lo:+.3g}, {hi:+.3g}])")
    what = ("released the steered policy" if gate["released"] == "steered" else
            "released the BASE policy (the steered one scored below it; its actor stays in the checkpoint)")
    return f"release gate, {gate['episodes']} paired episodes: {'; '.join(parts)}: {what}"


def print_report(gate: dict) -> None:
    line = report(gate)
    if gate["released"] == "base":
        print(f"WARNING: {line}", file=sys.stderr, flush=True)
    else:
        print(line, flush=True)
