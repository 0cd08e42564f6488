"""A finished online-RL run's `result.json`: what `steerlab finetune` and the benchmarks report.

* AUC: area under the evaluation-success-vs-env-steps curve / env steps (trapezoid, in [0, 1]).
* dip: lowest evaluation success after the warm-up minus the first evaluation (step 0, before any update):
  how far the policy fell below where it started (0 when it never did).
* final success on `final_episodes` fresh evaluation episodes, sampled (the policy as trained) and from
  ε = 0 (every chunk integrated from zero noise), with Wilson 95% intervals; `final_best` is the better
  of the two (a deployment can pick its sampler).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from steerlab.core.io import atomic_write_json
from steerlab.core.logger import read_metrics


def curve_summary(rows: list[dict], warmup_env_steps: int = 0) -> dict:
    """AUC, dip and the curve from metrics rows (the ones carrying `eval_success`)."""
    steps = np.array([r["step"] for r in rows if "eval_success" in r], float)
    succ = np.array([r["eval_success"] for r in rows if "eval_success" in r], float)
    if len(steps) == 0:
        raise ValueError("no evaluation rows in the run's metrics")
    auc = float(np.trapezoid(succ, steps) / max(steps[-1], 1)) if len(steps) > 1 else float(succ[0])
    after = succ[steps > warmup_env_steps]
    dip = float(min(after.min() - succ[0], 0.0)) if len(after) else 0.0
    explore = [r["explore_jerk"] for r in rows if np.isfinite(r.get("explore_jerk", np.nan))]
    return {"auc": auc, "dip": dip, "start_success": float(succ[0]),
            "lowest_after_warmup": float(after.min()) if len(after) else None,
            "curve_steps": steps.tolist(), "curve": succ.tolist(),
            "explore_jerk": float(np.mean(explore)) if explore else float("nan")}


def final_evaluation(policy, env, episodes: int, seed: int) -> dict:
    """The final policy on `episodes` fresh episodes of `env` (an EnvSpec, its shift included), sampled and
    from ε = 0 (the same episodes)."""
    from steerlab.eval.rollout import evaluate

    out = {}
    for key, scale in (("sampled", 1.0), ("eps0", 0.0)):
        res = evaluate(policy, env, episodes, seed=seed, n_envs=1, asynchronous=False, progress=False,
                       noise_scale=scale)
        out[f"final_{key}"] = res["success"]
        out[f"final_{key}_ci95"] = res["ci95"]
        out[f"final_{key}_jerk"] = res["smoothness"]["jerk"]
    out["final_best"] = max(out["final_sampled"], out["final_eps0"])
    out["final_episodes"] = episodes
    return out


def write_run_result(out: str | Path, cfg, env, final_episodes: int, warmup_env_steps: int,
                     extra: dict | None = None) -> dict:
    """Compute and write `out/result.json` for a finished run of FinetuneConfig `cfg` on EnvSpec `env`."""
    from steerlab.core.checkpoint import load_policy

    out = Path(out)
    rows = read_metrics(out)
    summary = curve_summary(rows, warmup_env_steps=warmup_env_steps)
    result = {"task": env.id, "env": env.to_dict(), "method": cfg.method, "seed": cfg.seed,
              "env_steps": cfg.env_steps, "shift": env.shift, "reward": cfg.reward, **summary}
    if final_episodes > 0:
        result.update(final_evaluation(load_policy(out / "policy"), env, final_episodes, cfg.seed))
    result.update(extra or {})
    atomic_write_json(out / "result.json", result)
    return result
