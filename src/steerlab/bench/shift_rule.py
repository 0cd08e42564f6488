"""ZPRL under the sampler-mode rule on the shift suite (issue 26, item 2, in pieces that resume).

The shift suite's recorded ZPRL runs (finetune_shift.json) trained and were evaluated with the base's sampled mode,
while DSRL's curve starts at ε = 0, the better mode on 7 of the 8 bases. The rule (tuning.json "sampler_mode_rule",
fixed from the calibration's base-only evaluations before any RL run) picks each task's mode. The full re-run is
≈ 9 core-hours; this runs it cell by cell, seed-major (every task at seed 0 before any at seed 1), in its own folder
(runs/finetune_shift_rule, so the recorded grid is never touched), with the grid's picked ZPRL setting, budget and
evaluation sizes, and sets each task's result beside the grid's recorded DSRL and sampled-mode ZPRL runs.
Several processes may run at once (each run is claimed). Tasks without a base checkpoint on this machine are
built first (deterministic: the same recipe and seed the suite used).

    steerlab bench shift_rule [--tasks T ...] [--seeds N]     # -> benchmarks/results/finetune_shift_rule.json
"""

from __future__ import annotations

import argparse

import numpy as np

from steerlab.bench import finetune as ft
from steerlab.bench.common import RESULTS, RUNS, load_cell
from steerlab.bench.finetune_shift import BENCHMARK_TASKS, TUNING, Plan, build_bases, make_cell, shifts_for
from steerlab.bench.sampler_rule import grid_modes
from steerlab.core.io import atomic_write_json

ROOT = RUNS / "finetune_shift_rule"
METHODS = ("zprl", "action-residual")  # the grid's methods that keep the frozen sampler (DSRL picks its own noise)


def cells(plan: Plan, tasks: list[str], seeds: int, bases: dict, shifts: dict, modes: dict,
          methods: list[str]) -> list[dict]:
    picked = (load_cell(TUNING) or {}).get(plan.sweep_key, {}).get("picked", {})
    missing = [m for m in methods if m not in picked]
    if missing:
        raise SystemExit(f"tuning.json has no picked setting for {', '.join(missing)}: run `steerlab bench "
                         f"finetune_shift --stage sweep`")
    return [make_cell(plan, t, m, m, s, shifts[t], bases[t], picked[m]["setting"], ROOT, sampler_noise_scale=modes[t])
            for s in range(seeds) for m in methods for t in tasks]


def summary(results: list[dict]) -> dict | None:
    if not results:
        return None
    mode = lambda r: "eps0" if r.get("final_trained_mode") == "eps0" else "sampled"  # noqa: E731
    return {"seeds": len(results), "auc": float(np.mean([r["auc"] for r in results])),
            "final_trained": float(np.mean([r[f"final_{mode(r)}"] for r in results])),
            "final_best": float(np.mean([max(r["final_sampled"], r["final_eps0"]) for r in results])),
            "dip": float(np.mean([r["dip"] for r in results])),
            "per_seed_auc": [round(r["auc"], 4) for r in results]}


def collect(plan: Plan, tasks: list[str], modes: dict) -> dict:
    def runs(root, t, m):
        return [r for r in (load_cell(p) for p in sorted(root.glob(f"{t}__{m}__seed*/result.json"))) if r]

    rows = {}
    for t in sorted(tasks):
        rows[t] = {"rule_mode": "eps0" if modes[t] == 0.0 else "sampled",
                   **{f"{m}_rule": summary(runs(ROOT, t, m)) for m in METHODS},
                   **{f"{m}_sampled_grid": summary(runs(plan.grid_root, t, m)) for m in METHODS},
                   "dsrl_grid": summary(runs(plan.grid_root, t, "dsrl"))}
    done = {t: r for t, r in rows.items() if r["zprl_rule"] and r["dsrl_grid"]}
    return {"what": "ZPRL and action-residual trained and evaluated in the rule's sampler mode "
                    "(runs/finetune_shift_rule), beside the shift grid's recorded DSRL and sampled-mode runs (means over the seeds each has); auc: "
                    "evaluation success over the budget; final_trained: final success in the mode trained in; "
                    "final_best: the better mode; dip: lowest evaluation after warm-up minus the first",
            "env_steps": plan.env_steps, "tasks": rows,
            "tasks_compared": len(done),
            "auc_at_least_dsrl": sum(r["zprl_rule"]["auc"] >= r["dsrl_grid"]["auc"] for r in done.values()),
            "final_best_at_least_dsrl": sum(r["zprl_rule"]["final_best"] >= r["dsrl_grid"]["final_best"]
                                            for r in done.values())}


def main(argv: list[str] | None = None) -> int:
    import torch

    ap = argparse.ArgumentParser(prog="steerlab bench shift_rule", description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=None, help="default: every task of the suite")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--collect", action="store_true", help="run nothing: rebuild the JSON")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    plan = Plan(False)
    tasks = args.tasks or sorted(BENCHMARK_TASKS)
    unknown = sorted(set(tasks) - set(BENCHMARK_TASKS))
    if unknown:
        raise SystemExit(f"not benchmark tasks: {', '.join(unknown)}")
    shifts = shifts_for(tasks, False)
    modes = grid_modes(tasks, False)
    if not args.collect:
        bases = build_bases(tasks, shifts, False)
        todo = cells(plan, tasks, args.seeds, bases, shifts, modes, args.methods)
        for i, cell in enumerate(todo):
            res = ft.finetune_cell(cell)  # skipped when finished or running in another process
            what = "skipped" if "skipped" in res else f"auc {res['auc']:.2f}"
            mode = "eps0" if modes[cell["task"]] == 0 else "sampled"
            print(f"[{i + 1}/{len(todo)}] {cell['task']} {cell['method']} ({mode}) seed {cell['seed']}: {what}",
                  flush=True)
    out = collect(plan, tasks, modes)
    atomic_write_json(RESULTS / "finetune_shift_rule.json", out)
    print(f"-> {RESULTS / 'finetune_shift_rule.json'}")
    return 0


def table(results: dict) -> str:
    from steerlab.bench.common import markdown_table

    def cell(s, key):
        return "–" if not s else f"{s[key]:.2f}" + (f" ({s['seeds']})" if key == "auc" else "")

    rows = []
    for t, r in results["tasks"].items():
        z, d = r["zprl_rule"], r["dsrl_grid"]
        rows.append([t, r["rule_mode"], cell(z, "auc"), cell(r["zprl_sampled_grid"], "auc"),
                     cell(r.get("action-residual_rule"), "auc"), cell(r.get("action-residual_sampled_grid"), "auc"),
                     cell(d, "auc"), cell(z, "final_best"), cell(r["zprl_sampled_grid"], "final_best"),
                     cell(d, "final_best"), cell(z, "dip"), cell(d, "dip")])
    head = markdown_table(["task", "rule's mode", "AUC zprl (rule) (seeds)", "AUC zprl (sampled, grid)",
                           "AUC action-residual (rule)", "AUC action-residual (sampled, grid)", "AUC dsrl (grid)",
                           "best zprl (rule)", "best zprl (sampled)", "best dsrl", "dip zprl (rule)", "dip dsrl"],
                          rows)
    return (f"{head}\n\nTasks with ZPRL under the rule so far: {results['tasks_compared']}; its AUC ≥ DSRL's on "
            f"{results['auc_at_least_dsrl']}, its final best mode ≥ DSRL's on {results['final_best_at_least_dsrl']} "
            f"({results['env_steps']:,} env steps per run; partial until every task has 3 seeds).")

if __name__ == "__main__":
    raise SystemExit(main())
