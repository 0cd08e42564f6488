"""The sampler-mode rule (issue 26): in which mode of the frozen sampler a steering method trains and deploys.

A method that keeps the base's sampler (zprl, action-residual, embedding-residual) inherits its noise: sampled
(ε ~ N(0, I), scale 1) or integrated from ε = 0 (scale 0). The rule, fixed before any RL run and the same for every
such method and task: evaluate the *base* both ways on the same episodes; train and deploy at ε = 0 when that mode
is at least as good as sampled, else sampled. "Good" is the success rate; where no episode succeeded in either
mode (an env without a success signal, or a base that never reaches it) it is the mean episode return.
Methods that choose ε themselves (dsrl, dsrl-na, zprl-noise) keep the base's sampler only in their warm-up: for
them `auto` is scale 1, as before, and nothing is evaluated.

`steerlab finetune --sampler-noise-scale auto` (the CLI's default) applies it on `--mode-episodes` episodes per
mode, seeded from the 'mode' split (envs/seeds.py: disjoint from the curve's and the final evaluation's seeds);
the decision is recorded in config.json / result.json and a resume reuses it (never re-decides).
"""

from __future__ import annotations

import numpy as np
import torch

AUTO = "auto"


def mode_score(res: dict) -> tuple[float | None, float | None]:
    """(success rate or None, mean return or None) of an evaluation result (`eval.rollout.evaluate`'s dict, or
    any dict with 'success' and either 'return_mean' or 'per_episode' records carrying 'return'). Success is
    None where the env reports none (a reward-only env)."""
    ret = res.get("return_mean")
    if ret is None and res.get("per_episode"):
        ret = float(np.mean([e["return"] for e in res["per_episode"]]))
    success = res.get("success")
    return (None if success is None else float(success)), (None if ret is None else float(ret))


def choose_sampler_mode(eps0_res: dict, sampled_res: dict) -> float:
    """The rule: 0.0 (train and deploy from ε = 0) when the base's ε = 0 mode is at least as good as sampled,
    else 1.0. Success decides; where neither mode succeeded once, mean return decides (ties: ε = 0)."""
    (s0, r0), (s1, r1) = mode_score(eps0_res), mode_score(sampled_res)
    if (s0 is None or s1 is None or (s0 == 0.0 and s1 == 0.0)) and r0 is not None and r1 is not None:
        return 0.0 if r0 >= r1 else 1.0  # no success signal (or none in either mode): return decides
    return 0.0 if (s0 or 0.0) >= (s1 or 0.0) else 1.0


def measure_modes(policy, env_spec, episodes: int, seed: int) -> tuple[dict, dict]:
    """The base on `episodes` 'mode'-split episodes of run seed `seed`, from ε = 0 and sampled (the same episodes:
    initial states and noise draws). Draws nothing from any training stream, nor from the global torch RNG."""
    from steerlab.eval.metrics import summarize_episodes
    from steerlab.eval.rollout import rollout_episodes

    out = []
    with torch.random.fork_rng(devices=[]):
        for scale in (0.0, 1.0):
            eps = rollout_episodes(policy, env_spec, episodes, seed=seed, n_envs=1, asynchronous=False, progress=False,
                                   split="mode", noise_scale=scale)
            res = {**summarize_episodes(eps), "per_episode": eps}
            out.append({**res, "return_mean": mode_score(res)[1]})
    return out[0], out[1]


def decide(tuner, recorded: dict | None) -> dict:
    """The run's sampler mode record: reused from the run's config.json when it holds one (a resume never
    re-decides), else fixed (an explicit scale), not measured (a method that chooses ε itself, or a policy without
    sampler noise), or measured now by the rule."""
    cfg = tuner.cfg
    if recorded is not None and recorded.get("sampler_mode"):
        return recorded["sampler_mode"]
    if cfg.sampler_noise_scale != AUTO:
        return {"rule": "fixed", "chosen": float(cfg.sampler_noise_scale)}
    skip = None
    if not tuner.adapter.keeps_sampler:
        skip = f"{cfg.method} chooses the sampler noise itself (the base's sampler only in warm-up)"
    elif tuner.noise_shape is None:
        skip = "the policy samples its own actions (no sampler noise to set)"
    if skip:
        return {"rule": AUTO, "eps0": None, "sampled": None, "episodes": 0, "chosen": 1.0, "reason": skip}
    eps0, sampled = measure_modes(tuner.base, tuner.env_spec, cfg.mode_episodes, cfg.seed)
    (s0, r0), (s1, r1) = mode_score(eps0), mode_score(sampled)
    return {"rule": AUTO, "eps0": s0, "sampled": s1, "eps0_return": r0, "sampled_return": r1,
            "episodes": cfg.mode_episodes, "split": "mode", "chosen": choose_sampler_mode(eps0, sampled)}


def trained_mode(scale: float) -> str | None:
    """result.json's name of the final evaluation that ran in the trained mode (None: neither 0 nor 1)."""
    return {0.0: "eps0", 1.0: "sampled"}.get(float(scale))
