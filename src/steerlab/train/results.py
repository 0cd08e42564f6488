"""A finished online-RL run's `result.json`: what `steerlab finetune` and the benchmarks report.

Return (the env's own reward summed over an episode) is reported for every env; success only for an env that
reports it (else null, with the reason in `nulls`; docs/results.md).

* auc_return: the time-average of the evaluation-return curve over the budget: trapezoid area under
  (env step, mean evaluation return) divided by the last evaluation's env step, in the env's return units
  (a policy that held return R throughout scores R; compare it with `start_return`, the base's own score).
* auc (success): the same for evaluation success, in [0, 1].
* dip: lowest evaluation success (return, where the env has no success) after the warm-up minus the first
  evaluation (step 0, before any update): how far the policy fell below where it started (0 when it never did).
* final success and return on the first `final_episodes` episodes of the evaluation split (the curve's
  evaluations use the first `eval_episodes` of the same split: not fresh episodes), sampled (the policy as trained) and
  from ε = 0 (every chunk integrated from zero noise); success with Wilson 95% intervals, return with Student-t
  95% intervals over episodes. `final_best_mode` is the better of the two by success, or by return where the
  env has no success signal (a deployment can pick its sampler); `final_best` / `final_best_return` its score.
* released / release: which policy policy/ holds ("steered", or "base" when the release gate found the steered one
  below the base on its own paired episodes) and the gate's record (train/finetune/gate.py); the final numbers
  above measure the released policy.
* regressed: the last curve evaluation against the first (the base's own score; same episodes, seeds and
  sampler), on success where the env reports it, else on return: `verdict` is "regressed" when the final score
  is below the base's by more than the noise margin m = 1.96·√(SE_base² + SE_final²) (the 95% normal interval of
  the difference of two independent means), "improved" when above it by more, else "within noise".
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from steerlab.core.io import atomic_write_json
from steerlab.core.logger import read_metrics

NO_SUCCESS = "this env never reported success (no success key in its info): see the return fields"


def _finite(xs) -> np.ndarray:
    xs = np.asarray(xs, float)
    return xs[np.isfinite(xs)]


def success_se(p: float, n: int) -> float:
    """Standard error of a success rate, from the Agresti-Coull centre (k + 2)/(n + 4): not 0 at 0/n or n/n."""
    pt = (p * n + 2) / (n + 4)
    return math.sqrt(pt * (1 - pt) / (n + 4))


def regression_verdict(metric: str, base: float, base_se: float, final: float, final_se: float) -> dict:
    """Whether `final` is below `base` beyond noise: margin m = 1.96·√(SE_base² + SE_final²)."""
    margin = 1.959964 * math.sqrt(base_se**2 + final_se**2)
    verdict = ("regressed" if final < base - margin else "improved" if final > base + margin else "within noise")
    return {"metric": metric, "base": base, "final": final, "margin": margin, "verdict": verdict}


def _num(row: dict, key: str) -> float:
    v = row.get(key)
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else math.nan


def row_verdict(base: dict | None, last: dict | None) -> dict | None:
    """`regression_verdict` between two learning-curve rows (metrics.jsonl), on success where both report it,
    else on return; None when a row or both metrics are missing."""
    if not base or not last:
        return None
    b, f = _num(base, "eval_success"), _num(last, "eval_success")
    if math.isfinite(b) and math.isfinite(f):
        n_b, n_f = (int(n) if math.isfinite(n) and n > 0 else 1
                    for n in (_num(base, "eval_episodes"), _num(last, "eval_episodes")))
        return regression_verdict("success", b, success_se(b, n_b), f, success_se(f, n_f))
    b, f = _num(base, "eval_return"), _num(last, "eval_return")
    if not (math.isfinite(b) and math.isfinite(f)):
        return None
    se_b, se_f = _num(base, "eval_return_se"), _num(last, "eval_return_se")
    if not (math.isfinite(se_b) and math.isfinite(se_f)):  # single-episode evaluations: no noise estimate
        return {"metric": "return", "base": b, "final": f, "margin": None,
                "verdict": "undetermined (one episode per evaluation: no noise estimate)"}
    return regression_verdict("return", b, se_b, f, se_f)


def curve_summary(rows: list[dict], warmup_env_steps: int = 0) -> dict:
    """AUC (of success and of return), dip, the curves and the regression verdict from metrics rows (the
    evaluation rows carry `eval_length`; older runs' rows `eval_success` only)."""
    evals = [r for r in rows if "eval_length" in r or "eval_success" in r]
    if not evals:
        raise ValueError("no evaluation rows in the run's metrics")
    steps = np.array([r["step"] for r in evals], float)
    succ = np.array([r.get("eval_success", np.nan) for r in evals], float)
    rets = np.array([r.get("eval_return", np.nan) for r in evals], float)

    def auc(ys):
        return float(np.trapezoid(ys, steps) / max(steps[-1], 1)) if len(steps) > 1 else float(ys[0])

    has_success = bool(np.isfinite(succ).all())
    has_return = bool(np.isfinite(rets).all())
    curve = succ if has_success else rets
    after = curve[steps > warmup_env_steps]
    out = {"auc": auc(succ) if has_success else None, "start_success": float(succ[0]) if has_success else None,
           "auc_return": auc(rets) if has_return else None, "start_return": float(rets[0]) if has_return else None,
           "dip": float(min(after.min() - curve[0], 0.0)) if len(after) and np.isfinite(curve).all() else 0.0,
           "dip_metric": "success" if has_success else "return",
           "lowest_after_warmup": float(after.min()) if len(after) and np.isfinite(after).all() else None,
           "curve_steps": steps.tolist(), "curve": succ.tolist() if has_success else None,
           "curve_return": rets.tolist() if has_return else None,
           "explore_jerk": float(np.mean(_finite([r.get("explore_jerk", np.nan) for r in rows]))) if len(
               _finite([r.get("explore_jerk", np.nan) for r in rows])) else None,
           "regressed": row_verdict(evals[0], evals[-1]) if len(evals) > 1 else None}
    nulls = {}
    if not has_success:
        nulls.update(auc=NO_SUCCESS, start_success=NO_SUCCESS, curve=NO_SUCCESS)
    if not has_return:
        nulls.update(auc_return="the run's metrics predate return logging", curve_return="no return in the metrics",
                     start_return="no return in the metrics")
    if out["explore_jerk"] is None:
        nulls["explore_jerk"] = "not measured (no end-effector position, or no training episode)"
    if out["regressed"] is None:
        nulls["regressed"] = "one evaluation only: nothing to compare with the base"
    if out["lowest_after_warmup"] is None:
        nulls["lowest_after_warmup"] = "no evaluation after the warm-up"
    return {**out, "nulls": nulls}


def final_evaluation(policy, env, episodes: int, seed: int) -> dict:
    """The final policy on the first `episodes` evaluation-split episodes of `env` (an EnvSpec, its shift
    included), sampled and from ε = 0 (the same episodes): success (None where the env reports none), return, jerk, intervals."""
    from steerlab.eval.rollout import evaluate

    out, nulls = {}, {}
    for key, scale in (("sampled", 1.0), ("eps0", 0.0)):
        res = evaluate(policy, env, episodes, seed=seed, n_envs=1, asynchronous=False, progress=False,
                       noise_scale=scale)
        out[f"final_{key}"] = res["success"]
        out[f"final_{key}_ci95"] = res["ci95"]
        out[f"final_{key}_jerk"] = res["smoothness"]["jerk"]
        out[f"final_{key}_return"] = res["return_mean"]
        out[f"final_{key}_return_ci95"] = res["return_ci95"]
        out[f"final_{key}_return_se"] = res["return_se"]
        renamed = {"success": f"final_{key}", "ci95": f"final_{key}_ci95", "smoothness.jerk": f"final_{key}_jerk",
                   "return_ci95": f"final_{key}_return_ci95", "return_se": f"final_{key}_return_se"}
        nulls.update({renamed[k]: why for k, why in res["nulls"].items() if k in renamed})
    if out["final_sampled"] is not None:  # best mode by success where the env reports it, else by return
        mode = "sampled" if out["final_sampled"] >= out["final_eps0"] else "eps0"
        out["final_best_by"] = "success"
    else:
        mode = "sampled" if out["final_sampled_return"] >= out["final_eps0_return"] else "eps0"
        out["final_best_by"] = "return"
        nulls["final_best"] = NO_SUCCESS
    out["final_best_mode"] = mode
    out["final_best"] = out[f"final_{mode}"]
    out["final_best_return"] = out[f"final_{mode}_return"]
    out["final_episodes"] = episodes
    out["nulls"] = nulls
    return out


def write_run_result(out: str | Path, cfg, env, final_episodes: int, warmup_env_steps: int,
                     extra: dict | None = None, extra_nulls: dict | None = None) -> dict:
    """Compute and write `out/result.json` for a finished run of FinetuneConfig `cfg` on EnvSpec `env`."""
    from steerlab.core.checkpoint import load_policy

    out = Path(out)
    rows = read_metrics(out)
    summary = curve_summary(rows, warmup_env_steps=warmup_env_steps)
    nulls = summary.pop("nulls")
    result = {"task": env.id, "env": env.to_dict(), "method": cfg.method, "seed": cfg.seed,
              "env_steps": cfg.env_steps, "shift": env.shift, "reward": cfg.reward, **summary}
    if final_episodes > 0:
        final = final_evaluation(load_policy(out / "policy"), env, final_episodes, cfg.seed)
        nulls.update(final.pop("nulls"))
        result.update(final)
    result.update(extra or {})
    result["nulls"] = {**nulls, **(extra_nulls or {})}
    atomic_write_json(out / "result.json", result)
    return result
