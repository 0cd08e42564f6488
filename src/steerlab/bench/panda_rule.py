"""panda-gym at the shift grid's budget, every method under the sampler-mode rule (issue 26, item 5).

The 10k-step panda runs (panda_finetune.json, one env per run, 2 seeds) showed no method above the base. This
asks whether that was the budget or the method: PandaPush-v3 and PandaPickAndPlace-v3 with the Meta-World shift
grid's run recipe (50k env steps, 8 envs, evaluation every 5k on 20 episodes, 50 final episodes per mode, the
grid's warm-up) and its tuned settings (tuning.json "sweep" picks, chosen on the Meta-World tuning tasks: nothing
here is tuned on panda), the bases of `steerlab bench panda` (built here if missing, from the recorded recipe and
seed), horizon 50 (panda-gym's).

Sampler-mode rule (the same one as `steerlab finetune --sampler-noise-scale auto` and the shift grid's): the
methods that keep the frozen sampler (zprl, action-residual) train and deploy at ε = 0 when the base's ε = 0
success is at least as good as its sampled success on the panda calibration's evaluation episodes (seed 100, 50
each way: no reported number uses them), else sampled. DSRL picks its own noise (scale 1).

Runs are seed-major (every task and method at seed 0 before any at seed 1), so a sweep cut short still compares
every method; several processes may run at once (each run is claimed).

    steerlab bench panda_rule [--seeds N] [--methods M ...] [--tasks T ...]   # -> results/panda_rule.json
    steerlab bench panda_rule --collect                                          # rebuild the JSON and plot
    steerlab bench panda_rule --check-bases                                      # re-evaluate the bases only
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from steerlab.bench import finetune as ft
from steerlab.bench.common import RESULTS, RUNS, load_cell
from steerlab.bench.finetune_shift import Plan, make_cell, picked_settings
from steerlab.bench.panda import (
    CALIBRATION_FILE,
    CELLS,
    EVAL_EPISODES,
    MAX_STEPS,
    base_checkpoint,
    base_rows,
    checkpoint_path,
    chosen_scale,
    evaluate_both,
)
from steerlab.bench.suite import _pm
from steerlab.core.io import atomic_write_json
from steerlab.envs.panda_tasks import TASKS
from steerlab.train.finetune.mode import choose_sampler_mode

ROOT = RUNS / "panda_rule"
RESULTS_FILE = RESULTS / "panda_rule.json"
PLOT = RESULTS / "panda_rule_curves.png"
SHORT_FILE = RESULTS / "panda_finetune.json"  # the 10k-step, one-env runs
METHODS = ("zprl", "action-residual", "dsrl")
KEEPS_SAMPLER = ("zprl", "action-residual")
SEEDS = 3


def plan() -> Plan:
    """The shift grid's full-budget sizes, at panda-gym's horizon."""
    p = Plan(False)
    p.max_steps = MAX_STEPS
    return p


def rule_modes(tasks: list[str]) -> dict[str, dict]:
    """Per task: the calibration's numbers for the chosen demo-noise scale and the sampler scale the rule picks."""
    cal = (load_cell(CALIBRATION_FILE) or {}).get("tasks", {})
    out = {}
    for t in tasks:
        point = cal.get(t, {}).get("points", {}).get(f"{chosen_scale(t):g}")
        if point is None:
            raise SystemExit(f"{t}: no calibration point recorded; run `steerlab bench panda calibrate` first")
        out[t] = {"eps0": point["eps0"]["success"], "sampled": point["sampled"]["success"],
                  "episodes": cal[t]["eval_episodes"], "seed": cal[t]["eval_seed"],
                  "chosen": choose_sampler_mode(point["eps0"], point["sampled"])}
    return out


def cells(p: Plan, tasks: list[str], seeds: int, methods: list[str], bases: dict, modes: dict) -> list[dict]:
    settings = picked_settings(p.sweep_key, methods)  # the grid's picks (Meta-World tuning tasks)
    return [make_cell(p, t, m, m, s, None, bases[t], settings[m], ROOT,
                      sampler_noise_scale=modes[t]["chosen"] if m in KEEPS_SAMPLER else 1.0)
            for s in range(seeds) for t in tasks for m in methods]


def recorded_base(task: str) -> dict | None:
    return load_cell(CELLS / f"base__{task}__mixed.json")


def base_check(task: str) -> dict:
    """`steerlab bench panda base`'s evaluation (50 episodes per mode, seed 0) repeated on this machine's base:
    equal success means the runs start from the base the panda tables report."""
    path = ROOT / "base_check" / task / "result.json"
    here = load_cell(path)
    if here is None:
        ev = evaluate_both(checkpoint_path(task, "mixed", chosen_scale(task)), task, EVAL_EPISODES, 0)
        here = {"task": task, "sampled": ev["sampled"]["success"], "eps0": ev["eps0"]["success"],
                "episodes": EVAL_EPISODES, "seed": 0}
        atomic_write_json(path, here)
    return here


def compare_base(task: str) -> dict | None:
    rec, here = recorded_base(task), load_cell(ROOT / "base_check" / task / "result.json")
    if not rec or not here:
        return None
    return {"recorded": {"sampled": rec["sampled"]["success"], "eps0": rec["eps0"]["success"]},
            "here": {"sampled": here["sampled"], "eps0": here["eps0"]},
            "success_equal": (rec["sampled"]["success"], rec["eps0"]["success"]) == (here["sampled"], here["eps0"])}


def targets(tasks: dict, planned_seeds: int) -> dict:
    """Issue 26's panda target: ZPRL's best mode above the base's best on >= 1 of 2 tasks with the interval
    clear of 0 (decided once both tasks have every planned seed); and, to answer 'budget or method', how each
    method's best mode and AUC stand against the base and against each other."""
    z = {t: r["zprl"] for t, r in tasks.items() if "zprl" in r}
    out = {"tasks": len(z),
           "zprl_above_base": sorted(t for t in z if z[t].get("best_vs_base", 0) > 0),
           "zprl_above_base_interval_clear": sorted(t for t in z if z[t].get("best_vs_base_ci95", [0])[0] > 0),
           "any_method_interval_clear": sorted(t for t, r in tasks.items()
                                               if any(m in r and r[m].get("best_vs_base_ci95", [0])[0] > 0
                                                      for m in METHODS)),
           "zprl_auc_ge_dsrl": sorted(t for t in z if "dsrl" in tasks[t] and z[t]["auc"] >= tasks[t]["dsrl"]["auc"]),
           "zprl_auc_ge_action_residual": sorted(t for t in z if "action-residual" in tasks[t]
                                                 and z[t]["auc"] >= tasks[t]["action-residual"]["auc"])}
    complete = len(z) == len(TASKS) and all(z[t]["seeds"] >= planned_seeds for t in z)
    out["met"] = {"best": len(out["zprl_above_base_interval_clear"]) >= 1} if complete else None
    return out


def collect(tasks: list[str], seeds: int, modes: dict) -> dict:
    res = ft.aggregate(ROOT, base_rows=base_rows(tasks))
    short = load_cell(SHORT_FILE) or {"tasks": {}}
    for t in list(res["tasks"]):
        res["tasks"][t]["rule"] = modes.get(t)
        # paired: each run's first evaluation (the frozen base) and its last, on the same episodes of its seed
        res["tasks"][t]["paired"] = {m: {"start": float(np.mean([c["success"][0] for c in cs])),
                                         "last": float(np.mean([c["success"][-1] for c in cs])), "seeds": len(cs)}
                                     for m, cs in res["curves"].get(t, {}).items()}
        res["tasks"][t]["base_check"] = compare_base(t)
        # the 10k-step, one-env runs of panda_finetune.json beside them (budget or method?)
        res["tasks"][t]["short_budget"] = {m: {k: r.get(k) for k in ("auc", "final_best", "best_mode", "best_vs_base",
                                                                     "best_vs_base_ci95", "seeds")}
                                           for m, r in short["tasks"].get(t, {}).items() if m != "base"}
    res.update({"kind": "finetune", "planned_seeds": seeds, "eval_episodes": plan().eval_episodes,
                "short_budget_env_steps": short.get("env_steps"), "targets": targets(res["tasks"], seeds),
                "what": "panda-gym at the shift grid's run recipe (50k env steps, 8 envs) with its tuned settings; "
                        "zprl and action-residual in the sampler mode the rule picks ('rule'), dsrl at scale 1; "
                        "base rows: `steerlab bench panda base` (50 episodes per mode, seed 0); base_check: that "
                        "evaluation repeated on this machine's base; short_budget: panda_finetune.json's runs"})
    return res


def table(results: dict) -> str:
    out = ft.table(results)
    t = results.get("targets") or {}
    verdict = ("not decided yet (runs missing)" if t.get("met") is None
               else "met" if t["met"]["best"] else "missed")
    out += ("\n\nSampler-mode rule (on the panda calibration's evaluation episodes): "
            + "; ".join(f"{task} (seed {r['rule']['seed']}, {r['rule']['episodes']} episodes) ε = 0 "
                        f"{r['rule']['eps0']:.2f} vs sampled {r['rule']['sampled']:.2f} → "
                        f"{'ε = 0' if r['rule']['chosen'] == 0.0 else 'sampled'}"
                        for task, r in sorted(results["tasks"].items()) if r.get("rule")) + ".")
    checks = {task: r["base_check"] for task, r in results["tasks"].items() if r.get("base_check")}
    if checks:
        out += (" Base check (the panda base evaluation repeated on this machine's base): "
                + "; ".join(f"{task} {'reproduced' if c['success_equal'] else 'NOT reproduced'} "
                            f"({c['here']['sampled']:.2f} / {c['here']['eps0']:.2f} vs recorded "
                            f"{c['recorded']['sampled']:.2f} / {c['recorded']['eps0']:.2f})"
                            for task, c in sorted(checks.items())) + ".")
    paired = [f"{task} {m} {p['start']:.2f} → {p['last']:.2f}" for task, r in sorted(results["tasks"].items())
              for m, p in r.get("paired", {}).items()]
    if paired:
        out += ("\n\nPaired, the same episodes (each seed's first evaluation, the frozen base, against its last one: "
                f"{results.get('eval_episodes', 20)} episodes per seed, mean over seeds): " + "; ".join(paired) + ".")
    short = results.get("short_budget_env_steps")
    lines = []
    for task, r in sorted(results["tasks"].items()):
        for m in METHODS:
            s, long_ = r.get("short_budget", {}).get(m), r.get(m)
            if s and long_ and s.get("best_vs_base") is not None:
                lines.append(f"{task} {m} {_pm(s['best_vs_base'], s.get('best_vs_base_ci95'), signed=True)} → "
                             f"{_pm(long_['best_vs_base'], long_['best_vs_base_ci95'], signed=True)}")
    if lines and short:
        out += (f"\n\nBest mode − base best at {short // 1000}k steps (one env, panda_finetune.json) → at "
                f"{results['env_steps'] // 1000}k (this table): " + "; ".join(lines) + ".")
    out += (f"\n\nIssue 26's panda target (ZPRL's best mode above the base's best on ≥ 1 of 2 tasks, interval clear "
            f"of 0): {verdict}; ZPRL above the base on {len(t.get('zprl_above_base', []))} of {t.get('tasks', 0)} "
            f"tasks, interval clear on {len(t.get('zprl_above_base_interval_clear', []))}; any method with its "
            f"interval clear: {', '.join(t.get('any_method_interval_clear', [])) or 'none'}.")
    return out


def main(argv: list[str] | None = None) -> int:
    import torch

    ap = argparse.ArgumentParser(prog="steerlab bench panda_rule", description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--seeds", type=int, default=SEEDS)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--collect", action="store_true", help="run nothing: rebuild the JSON and the plot")
    ap.add_argument("--check-bases", action="store_true",
                    help="run no RL: repeat the panda base evaluation on this machine's bases (built if missing)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    modes = rule_modes(list(TASKS))  # the table reports every task's rule; runs use those of --tasks
    if not args.collect:
        from steerlab.bench.sweep import run_grid

        bases = {t: str(base_checkpoint(t, "mixed", chosen_scale(t), progress=False)) for t in args.tasks}
        for t in args.tasks:
            base_check(t)
        if not args.check_bases:
            run_grid(cells(plan(), args.tasks, args.seeds, args.methods, bases, modes), ft.finetune_cell,
                     ft.is_done, use_ray=False, desc="panda runs under the rule")
    results = collect(list(TASKS), args.seeds, modes)
    atomic_write_json(RESULTS_FILE, results)
    if results["runs"]:
        from steerlab.bench.plots import plot_finetune

        plot_finetune(results, PLOT)
    print(table(results))
    print(f"-> {RESULTS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
