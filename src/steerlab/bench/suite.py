"""Per-method summaries and the headline table shared by the online-RL benchmarks (the mixed-demo suite,
steerlab.bench.finetune, and the deployment-shift suite, steerlab.bench.finetune_shift).

Every method is compared with the *best* base (issue 13, item 2): final success sampled and from ε = 0,
each method's best mode (the mode with the higher mean over its seeds) against the base's best mode, with
95% intervals over seeds and episodes (`steerlab.eval.metrics.success_draws`: seeds resampled, each
seed's success rate drawn from its episodes' Jeffreys posterior), and the dip (lowest evaluation after
the warm-up minus the start, `steerlab.train.results.curve_summary`).
"""

from __future__ import annotations

import math

import numpy as np

from steerlab.bench.common import markdown_table
from steerlab.eval.metrics import draws_interval, success_draws

MODES = ("sampled", "eps0")
MODE_LABEL = {"sampled": "sampled", "eps0": "ε = 0"}
BOOT_DRAWS = 10_000
# fixed draw seeds (the intervals are deterministic); the base's and a method's draws are independent
BASE_DRAW_SEED, METHOD_DRAW_SEED = 0, 1


def run_outcome(r: dict) -> dict:
    """The fields the tables read from one run's result.json, whichever generation wrote it (runs recorded
    before `steerlab finetune` wrote its own result.json name them final_eval_success / final_zero_noise_success)."""
    return {"seed": r.get("seed"), "episodes": int(r.get("final_episodes", r.get("final_eval_episodes", 50))),
            "sampled": r.get("final_sampled", r.get("final_eval_success")),
            "eps0": r.get("final_eps0", r.get("final_zero_noise_success")),
            "auc": r["auc"], "dip": r.get("dip"), "start": r.get("start_success"),
            "explore_jerk": r.get("explore_jerk", float("nan")),
            "wall_s": r.get("wall_seconds")}


def _counts(outcomes: list[dict], mode: str) -> tuple[list[int], list[int]]:
    have = [o for o in outcomes if o.get(mode) is not None]
    return [round(o[mode] * o["episodes"]) for o in have], [o["episodes"] for o in have]


def _best_mode(means: dict) -> str:
    # ties go to 'sampled' (the policy as trained)
    return max((m for m in MODES if m in means), key=lambda m: (means[m], m == "sampled"))


def base_row(sampled: float, eps0: float | None, episodes: int, **extra) -> dict:
    """The base's row: both modes (one evaluation of `episodes` episodes each), its best mode and interval."""
    row = {"final_sampled": float(sampled), "final_eps0": None if eps0 is None else float(eps0), "episodes": int(episodes)}
    means = {m: row[f"final_{m}"] for m in MODES if row[f"final_{m}"] is not None}
    for m in means:
        row[f"{m}_ci95"] = _interval(success_draws([round(means[m] * episodes)], [episodes], BOOT_DRAWS,
                                                   BASE_DRAW_SEED), means[m])
    row["best_mode"] = _best_mode(means)
    row["final_best"] = means[row["best_mode"]]
    row["final_best_ci95"] = row[f"{row['best_mode']}_ci95"]
    row.update(extra)
    return row


def _interval(draws: np.ndarray, estimate: float) -> list[float]:
    # the percentile interval stretched to contain its estimate: at 0/n (n/n) the Jeffreys draws lie just
    # above 0 (below 1), and the convention is a bound of exactly 0 (1) there
    lo, hi = draws_interval(draws)
    return [min(lo, estimate), max(hi, estimate)]


def _base_draws(base: dict) -> np.ndarray:
    n = base["episodes"]
    return success_draws([round(base["final_best"] * n)], [n], BOOT_DRAWS, BASE_DRAW_SEED)


def method_row(outcomes: list[dict], base: dict | None) -> dict:
    """Mean over seeds of one method's runs (`run_outcome` dicts), its best mode with the 95% interval over
    seeds and episodes, and that mode against the base's best mode (difference and its interval)."""
    if not outcomes:
        raise ValueError("method_row needs at least one run")
    means, counts = {}, {}
    for m in MODES:
        k, n = _counts(outcomes, m)
        if n:
            counts[m] = (k, n)
            means[m] = float(np.mean([a / b for a, b in zip(k, n)]))
    best = _best_mode(means)
    draws = success_draws(*counts[best], BOOT_DRAWS, METHOD_DRAW_SEED)
    aucs = [o["auc"] for o in outcomes]
    dips = [o["dip"] for o in outcomes if o.get("dip") is not None]
    walls = [o["wall_s"] for o in outcomes if o.get("wall_s") is not None]
    starts = [o["start"] for o in outcomes if o.get("start") is not None]
    jerks = [o["explore_jerk"] for o in outcomes if o.get("explore_jerk") is not None and math.isfinite(o["explore_jerk"])]
    row = {"auc": float(np.mean(aucs)),
           "auc_stderr": float(np.std(aucs, ddof=1) / np.sqrt(len(aucs))) if len(aucs) > 1 else 0.0,
           "final_sampled": means.get("sampled"), "final_eps0": means.get("eps0"),
           "final_best": means[best], "final_best_ci95": _interval(draws, means[best]), "best_mode": best,
           "explore_jerk": float(np.mean(jerks)) if jerks else float("nan"),
           "dip": float(np.mean(dips)) if dips else None, "dip_worst": float(min(dips)) if dips else None,
           "wall_s": float(np.mean(walls)) if walls else None,
           "start": float(np.mean(starts)) if starts else None,
           "seeds": len(outcomes), "eps0_seeds": len(counts.get("eps0", ([], []))[1])}
    if base is not None:
        row["best_vs_base"] = means[best] - base["final_best"]
        row["best_vs_base_ci95"] = _interval(draws - _base_draws(base), row["best_vs_base"])
    return row


def _pm(x: float | None, ci: list | None = None, signed: bool = False) -> str:
    if x is None:
        return "—"
    fmt = "{:+.2f}" if signed else "{:.2f}"
    s = fmt.format(x)
    return s + (f" [{fmt.format(ci[0])}, {fmt.format(ci[1])}]" if ci else "")


def headline_table(tasks: dict, methods: list[str], planned_seeds: int | None = None,
                   shifts: dict | None = None) -> str:
    """One row per (task, method): final success sampled and from ε = 0, the best mode [95%], best mode −
    the base's best mode [95%], the dip, AUC and the number of seeds recorded (of `planned_seeds`)."""
    header = ["task", *(["shift"] if shifts else []), "method", "seeds", "final sampled", "final ε = 0",
              "best mode [95%]", "best − base best [95%]", "dip", "AUC"]
    rows = []
    for task, by_method in tasks.items():
        lead = [task, *([shifts.get(task, "—")] if shifts else [])]
        b = by_method.get("base")
        if b:
            rows.append([*lead, "base", "—", _pm(b["final_sampled"], b.get("sampled_ci95")),
                         _pm(b.get("final_eps0"), b.get("eps0_ci95")),
                         f"{_pm(b['final_best'], b['final_best_ci95'])} ({MODE_LABEL[b['best_mode']]})", "—", "—",
                         _pm(b.get("auc"))])
        for method in methods:
            m = by_method.get(method)
            if not m:
                continue
            seeds = f"{m['seeds']}/{planned_seeds}" if planned_seeds else str(m["seeds"])
            eps0 = _pm(m["final_eps0"])
            if m["final_eps0"] is not None and m["eps0_seeds"] < m["seeds"]:
                eps0 += f" ({m['eps0_seeds']} of {m['seeds']} seeds)"
            auc = _pm(m["auc"]) + (f" ± {m['auc_stderr']:.2f}" if m["seeds"] > 1 else "")
            mode = MODE_LABEL[m["best_mode"]]
            if m["best_mode"] == "eps0" and m["eps0_seeds"] < m["seeds"]:  # say when the best mode rests on fewer seeds
                mode += f", {m['eps0_seeds']} seed{'s' if m['eps0_seeds'] > 1 else ''}"
            rows.append([*lead, method, seeds, _pm(m["final_sampled"]), eps0,
                         f"{_pm(m['final_best'], m['final_best_ci95'])} ({mode})",
                         _pm(m.get("best_vs_base"), m.get("best_vs_base_ci95"), signed=True),
                         _pm(m.get("dip"), signed=True), auc])
    return markdown_table(header, rows)


HEADLINE_NOTE = ("Final success: the final policy on the first 50 evaluation episodes per seed in the full budgets (the curve's evaluations use the first 20 of them: not fresh), sampled (as trained) "
                 "and integrated from ε = 0; mean over the seeds recorded. Best mode: the mode with the higher mean; "
                 "its 95% interval is over seeds and episodes (seeds resampled, each seed's rate drawn from its "
                 "episodes' Jeffreys posterior, 10,000 draws), and 'best − base best' compares it with the base's "
                 "best mode the same way. Dip: lowest evaluation after the warm-up minus the first evaluation "
                 "(mean over seeds; 0 = never fell below its start). AUC: mean evaluation success over the run.")
