"""The deployment-shift suite (issue 13): ZPRL vs a tuned action residual vs tuned DSRL on the eight tasks,
each under the shift its base was calibrated to (steerlab.bench.shift_calibrate, tuning.json "shift_calibration").

Three stages, each resumable (recorded runs are skipped; a run folder keeps config.json, metrics.jsonl and
result.json, the small files that are committed), all through the sweep machinery of steerlab.bench.finetune
(Ray, inputs shipped through the object store, artifacts returned to the driver):

1. base: each task's base (a coverage task's: the base pretrained on the restricted demos, the one the
   calibration measured) on 50 evaluation episodes, sampled and from ε = 0, under the deployment shift.
2. sweep: each method's main knob(s) on the two tuning tasks (the first task of each shift family in
   alphabetical order), 1 seed, the grid `SWEEP` (six settings per method: an equal tuning budget).
   The pick, by one rule fixed here: the setting with the highest mean AUC over the tuning tasks (ties: the
   earlier setting in the grid). Written to tuning.json "sweep".
3. grid: `SEEDS` seeds × 8 tasks × 3 methods × 50k env steps with the picked settings (vectorized loop,
   `N_ENVS` envs per run); the methods that keep the frozen sampler train in the sampler mode the rule fixed per
   task from the calibration (steerlab bench sampler_rule, tuning.json "sampler_mode_rule"; issue 26).
4. diagnose: `DIAGNOSIS` (the tuned ZPRL with its sampler at ε = 0) on the tuning tasks, seed 0; then
   benchmarks/results/finetune_shift.json, the README table and the plots.

    steerlab bench finetune_shift --quick            # the whole pipeline with tiny runs (minutes)
    steerlab bench finetune_shift --stage sweep      # base rows + the tuning sweep only
    steerlab bench finetune_shift                    # everything (the grid waits for a complete sweep)
    steerlab bench finetune_shift --collect          # rebuild results/tables/plots from recorded runs
    steerlab bench finetune_shift --table

The tuning tasks are also evaluation tasks (eight tasks, no spare ones); every method is tuned on the same
two with the same number of runs, so the comparison stays fair, and the table names them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from steerlab.bench import finetune as ft
from steerlab.bench.common import RESULTS, RUNS, load_cell
from steerlab.bench.sampler_rule import KEEPS_SAMPLER, grid_modes
from steerlab.bench.shift_calibrate import GRIDS, TUNING, assign_families, base_for
from steerlab.bench.shift_suite import (  # noqa: F401
    DIAGNOSIS,
    METHODS,
    N_ENVS,
    PICK_RULE,
    SAC_KNOBS,
    SEEDS,
    SWEEP,
    diagnosis_text,
    family_summary,
    leaders,
    table,
    targets,
    targets_text,
    tuning_tasks,
)
from steerlab.bench.suite import base_row, method_row, run_outcome
from steerlab.core.io import atomic_write_json
from steerlab.envs.metaworld_env import BENCHMARK_TASKS
from steerlab.train.finetune.config import ABSENT_MEANS


class Plan:
    """Sizes of a full or a --quick invocation (quick: tiny runs that exercise every stage)."""

    def __init__(self, quick: bool, env_steps: int | None = None, seeds: int | None = None):
        self.quick = quick
        self.env_steps = env_steps or (600 if quick else 50_000)
        self.seeds = seeds or (1 if quick else SEEDS)
        self.eval_every = 300 if quick else 5_000
        self.eval_episodes = 2 if quick else 20
        self.final_episodes = 4 if quick else 50
        self.warmup = 50 if quick else 2_000
        self.max_steps = 100 if quick else None
        self.n_envs = 2 if quick else N_ENVS
        self.sweep = {m: g[:2] for m, g in SWEEP.items()} if quick else SWEEP
        tag = "_quick" if quick else ""
        self.base_root = RUNS / f"finetune_shift_base{tag}"
        self.sweep_root = RUNS / f"finetune_shift_sweep{tag}"
        self.grid_root = RUNS / f"finetune_shift{tag}"
        self.diagnosis_root = RUNS / f"finetune_shift_diagnosis{tag}"
        self.results_file = RESULTS / f"finetune_shift{tag}.json"
        self.sweep_key = f"sweep{tag}"


def shifts_for(tasks: list[str], quick: bool) -> dict[str, str]:
    """The calibrated shift per task (tuning.json "shift_calibration"); --quick: each family's mildest value."""
    fam = assign_families(BENCHMARK_TASKS)
    if quick:
        return {t: GRIDS[fam[t]][0] for t in tasks}
    chosen = ((load_cell(TUNING) or {}).get("shift_calibration") or {}).get("chosen", {})
    missing = [t for t in tasks if t not in chosen]
    if missing:
        raise SystemExit(f"no calibrated shift for {', '.join(missing)}: run steerlab.bench.shift_calibrate first")
    return {t: chosen[t]["shift"] for t in tasks}


def noise_dim(base: str) -> int:
    from steerlab.core.checkpoint import load_policy

    return int(np.prod(load_policy(base).noise_shape))


def label(method: str, setting: dict) -> str:
    return method + "-" + ",".join(f"{k}={v:g}" for k, v in setting.items())


def overrides(setting: dict, base: str) -> tuple[dict, dict]:
    """(steering options, SAC fields) of a sweep setting for the run on `base`."""
    steering = {k: v for k, v in setting.items() if k not in SAC_KNOBS}
    sac = {}
    if "target_entropy_per_dim" in setting:
        sac["target_entropy"] = float(setting["target_entropy_per_dim"]) * noise_dim(base)
    return steering, sac


def make_cell(plan: Plan, task: str, method: str, name: str, seed: int, shift: str, base: str, setting: dict,
              root: Path, sampler_noise_scale: float = ABSENT_MEANS["sampler_noise_scale"]) -> dict:
    steering, sac = overrides(setting, base)
    cell = {"task": task, "method": method, "name": name, "seed": seed, "env_steps": plan.env_steps,
            "eval_every": plan.eval_every, "eval_episodes": plan.eval_episodes, "final_episodes": plan.final_episodes,
            "warmup": plan.warmup, "max_steps": plan.max_steps, "n_envs": plan.n_envs, "shift": shift,
            "root": str(root), "base": base, "steering": steering, "sac": sac, "setting": setting,
            "sampler_noise_scale": sampler_noise_scale}
    cell["out"] = str(ft.run_dir(cell, root))
    return cell


def recorded_as(cell: dict) -> bool:
    """Whether the cell's recorded run (config.json) used the cell's shift and settings."""
    cfg = (load_cell(ft.cell_dir(cell) / "config.json") or {}).get("finetune", {})
    return (cfg.get("shift") == cell["shift"]
            and {**ABSENT_MEANS, **cfg}["sampler_noise_scale"] == {**ABSENT_MEANS, **cell}["sampler_noise_scale"]
            and all(cfg.get("steering", {}).get(k) == v for k, v in cell["steering"].items())
            and all(cfg.get("sac", {}).get(k) == v for k, v in cell["sac"].items()))


def refuse_stale(cells: list[dict]) -> None:
    """A finished run recorded with another shift or setting is never counted as this cell (nor overwritten)."""
    stale = [c["out"] for c in cells if ft.is_done(c) and not recorded_as(c)]
    if stale:
        raise SystemExit(f"{len(stale)} recorded run(s) used another shift or setting than this invocation, e.g. "
                         f"{stale[0]}; move them aside (the calibration or the sweep's pick changed?)")


# ------------------------------------------------------------------ stage 1: bases and their rows
def build_bases(tasks: list[str], shifts: dict, quick: bool) -> dict[str, str]:
    """Each task's base checkpoint (built on the driver if missing: the calibration normally built it)."""
    import torch

    torch.set_num_threads(1)
    fam = assign_families(BENCHMARK_TASKS)
    return {t: str(base_for(t, fam[t], shifts[t], quick)) for t in tasks}


def base_cell_done(cell: dict) -> bool:
    res = load_cell(ft.cell_dir(cell) / "result.json")
    return res is not None and res.get("final_episodes") == cell["final_episodes"] and res.get("shift") == cell["shift"]


def evaluate_base(cell: dict) -> dict:
    """The base under the deployment shift, sampled and from ε = 0 (a Ray task; writes result.json)."""
    import torch

    from steerlab.core.checkpoint import load_policy
    from steerlab.envs.registry import resolve_env
    from steerlab.train.results import final_evaluation

    torch.set_num_threads(1)
    out = ft.cell_dir(cell)
    t0 = time.perf_counter()
    env = resolve_env(cell["task"], max_steps=cell.get("max_steps"), shift=cell["shift"])
    res = final_evaluation(load_policy(cell["base"]), env, cell["final_episodes"], seed=0)
    origin = cell.get("shipped_from", {})
    result = {"task": cell["task"], "shift": env.shift, "base": origin.get("base", cell["base"]), "seed": 0,
              **res, "wall_seconds": time.perf_counter() - t0}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "result.json", result)
    return result


# ------------------------------------------------------------------ stage 2: the sweep and its pick
def sweep_record(plan: Plan, tasks: list[str]) -> dict:
    """Every recorded sweep run's AUC per setting and the pick per method (only once its sweep is complete)."""
    runs, picked = {}, {}
    for method, grid in plan.sweep.items():
        runs[method] = {}
        for setting in grid:
            name = label(method, setting)
            aucs = {}
            for task in tasks:
                res = load_cell(ft.run_dir({"task": task, "name": name, "seed": 0}, plan.sweep_root) / "result.json")
                if res is not None and res.get("env_steps", 0) >= plan.env_steps and "final_eval_success" in res:
                    aucs[task] = res["auc"]
            runs[method][name] = {"setting": setting, "auc": aucs, "complete": len(aucs) == len(tasks),
                                  "mean_auc": float(np.mean(list(aucs.values()))) if aucs else None}
        rows = list(runs[method].values())
        if all(r["complete"] for r in rows):
            best = max(range(len(rows)), key=lambda i: (rows[i]["mean_auc"], -i))  # ties: earlier in the grid
            picked[method] = {"name": list(runs[method])[best], "setting": rows[best]["setting"],
                              "mean_auc": rows[best]["mean_auc"]}
    return {"rule": PICK_RULE, "tasks": tasks, "seed": 0, "env_steps": plan.env_steps,
            "grid": {m: [label(m, s) for s in g] for m, g in plan.sweep.items()}, "runs": runs, "picked": picked}


def picked_settings(sweep_key: str, methods, how: str = "steerlab bench finetune_shift --stage sweep"
                    ) -> dict[str, dict]:
    """The setting the sweep recorded in tuning.json under `sweep_key` picked for each of `methods`; exits naming
    the methods it has none for and `how` to run that sweep."""
    picked = (load_cell(TUNING) or {}).get(sweep_key, {}).get("picked", {})
    missing = sorted(set(methods) - set(picked))
    if missing:
        raise SystemExit(f"tuning.json has no picked setting for {', '.join(missing)}: run `{how}`")
    return {m: picked[m]["setting"] for m in methods}


def save_sweep(plan: Plan, rec: dict) -> None:
    tuning = load_cell(TUNING) or {}  # re-read: the calibration writes its own key
    tuning[plan.sweep_key] = rec
    atomic_write_json(TUNING, tuning)


# ------------------------------------------------------------------ stage 3: results
def base_of(b: dict) -> dict:
    """The base's row from its recorded evaluation (stage 1's result.json)."""
    return base_row(b["final_sampled"], b["final_eps0"], b["final_episodes"], auc=b["final_sampled"],
                    explore_jerk=b["final_sampled_jerk"], wall_s=b["wall_seconds"])


def aggregate(plan: Plan, tasks: list[str], shifts: dict) -> dict:
    """finetune_shift.json: the issue's schema (per task: base and each method with auc, final_sampled,
    final_eps0, final_best, final_best_ci95, explore_jerk) plus dip, wall_s and the comparison fields."""
    out_tasks, curves, walls, seeds_max, env_steps = {}, {}, [], 0, 0
    for task in tasks:
        b = load_cell(plan.base_root / f"{task}__base__seed0" / "result.json")
        if b is None:
            continue
        base = base_of(b)
        # the same evaluation as the calibration's cell (same base, shift, episodes and seed): it must agree
        cal = ((load_cell(TUNING) or {}).get("shift_calibration") or {}).get("cells", {}).get(f"{task}|{shifts[task]}")
        if cal and not plan.quick and cal.get("episodes") == b["final_episodes"]:
            base["matches_calibration"] = (cal["sampled"], cal["eps0"]) == (b["final_sampled"], b["final_eps0"])
        out_tasks[task] = {"base": base}
        for method in METHODS:
            rs = [r for r in (load_cell(p) for p in sorted(plan.grid_root.glob(f"{task}__{method}__seed*/result.json")))
                  if r and r.get("shift") == shifts[task]]
            if not rs:
                continue
            out_tasks[task][method] = method_row([run_outcome(r) for r in rs], base)
            curves.setdefault(task, {})[method] = [{"steps": r["curve_steps"], "success": r["curve"]} for r in rs]
            walls += [r["wall_seconds"] for r in rs]
            seeds_max = max(seeds_max, len(rs))
            env_steps = max(env_steps, *(r["env_steps"] for r in rs))
    return {"env_steps": env_steps, "seeds": seeds_max, "planned_seeds": plan.seeds, "shifts": shifts,
            "families": {t: assign_families(BENCHMARK_TASKS)[t] for t in tasks}, "tasks": out_tasks,
            "settings": (load_cell(TUNING) or {}).get(plan.sweep_key, {}).get("picked", {}),
            "tuning_tasks": tuning_tasks(BENCHMARK_TASKS), "curves": curves, "runs": len(walls),
            "wall_s": {"total": float(np.sum(walls)), "mean_per_run": float(np.mean(walls)) if walls else None},
            "n_envs": plan.n_envs, "quick": plan.quick}


def diagnosis(plan: Plan, tasks: list[str]) -> dict:
    """Per tuning task, seed 0: the DIAGNOSIS run beside the grid's runs of every method (AUC, first
    evaluation, final success sampled and from ε = 0)."""
    out = {}
    runs = {DIAGNOSIS["name"]: plan.diagnosis_root, **{m: plan.grid_root for m in METHODS}}
    for task in tasks:
        rows = {}
        for name, root in runs.items():
            r = load_cell(ft.run_dir({"task": task, "name": name, "seed": 0}, root) / "result.json")
            if r and "final_eval_success" in r:
                rows[name] = {k: r[k] for k in ("auc", "start_success", "final_sampled", "final_eps0", "dip")}
        if DIAGNOSIS["name"] in rows:
            out[task] = rows
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="steerlab bench finetune_shift", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--stage", choices=["base", "sweep", "grid", "diagnose"], default="diagnose",
                    help="run the stages up to this one (default: all)")
    ap.add_argument("--tasks", nargs="+", default=None)
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--env-steps", type=int, default=None, help="per run, sweep and grid alike")
    ap.add_argument("--address", default=None, help="Ray cluster address (default: start a local one)")
    ap.add_argument("--num-cpus", type=int, default=None, help="local Ray CPUs (default: all cores)")
    ap.add_argument("--no-ray", action="store_true", help="run cells one by one in this process")
    ap.add_argument("--collect", action="store_true", help="run nothing: rebuild results, table and plots")
    ap.add_argument("--table", action="store_true")
    args = ap.parse_args(argv)
    plan = Plan(args.quick, args.env_steps, args.seeds)
    if args.table:
        print(table(load_cell(plan.results_file)))
        return 0
    tasks = args.tasks or (tuning_tasks(BENCHMARK_TASKS) if args.quick else sorted(BENCHMARK_TASKS))
    unknown = sorted(set(tasks) - set(BENCHMARK_TASKS))
    if unknown:
        raise SystemExit(f"not benchmark tasks: {', '.join(unknown)}")
    tune = tuning_tasks(BENCHMARK_TASKS)  # fixed whatever --tasks says, so every sweep tunes on the same two
    shifts = shifts_for(sorted(set(tasks) | set(tune)), args.quick)
    if not args.collect:
        from steerlab.bench.sweep import Shipping, run_grid

        grid_kw = {"use_ray": not args.no_ray, "address": args.address, "num_cpus": args.num_cpus}
        ship = Shipping(inputs=("base",), output="out")
        bases = build_bases(sorted(shifts), shifts, args.quick)
        base_cells = [{"task": t, "name": "base", "seed": 0, "shift": shifts[t], "base": bases[t],
                       "final_episodes": plan.final_episodes, "max_steps": plan.max_steps,
                       "out": str(ft.run_dir({"task": t, "name": "base", "seed": 0}, plan.base_root))} for t in tasks]
        run_grid(base_cells, evaluate_base, base_cell_done, desc="base rows", ship=ship, **grid_kw)
        if args.stage in ("sweep", "grid"):
            cells = [make_cell(plan, t, m, label(m, s), 0, shifts[t], bases[t], s, plan.sweep_root)
                     for m, grid in plan.sweep.items() for s in grid for t in tune]
            refuse_stale(cells)
            run_grid(cells, ft.finetune_cell, ft.is_done, desc="tuning sweep", ship=ship, **grid_kw)
            save_sweep(plan, sweep_record(plan, tune))
        if args.stage in ("grid", "diagnose"):
            picked = (load_cell(TUNING) or {}).get(plan.sweep_key, {}).get("picked", {})
            if set(picked) != set(METHODS):
                raise SystemExit(f"the sweep is incomplete (picked: {sorted(picked)}); rerun to finish it")
            modes = grid_modes(tasks, args.quick, {c["task"]: load_cell(ft.cell_dir(c) / "result.json") for c in base_cells})
            cells = [make_cell(plan, t, m, m, s, shifts[t], bases[t], picked[m]["setting"], plan.grid_root,
                               sampler_noise_scale=modes[t] if m in KEEPS_SAMPLER else ABSENT_MEANS["sampler_noise_scale"])
                     for s in range(plan.seeds) for t in tasks for m in METHODS]
            refuse_stale(cells)
            run_grid(cells, ft.finetune_cell, ft.is_done, desc="shift-suite runs", ship=ship, **grid_kw)
        if args.stage == "diagnose":
            m = DIAGNOSIS["method"]
            cells = [make_cell(plan, t, m, DIAGNOSIS["name"], 0, shifts[t], bases[t], picked[m]["setting"],
                               plan.diagnosis_root, sampler_noise_scale=DIAGNOSIS["sampler_noise_scale"])
                     for t in tune]
            refuse_stale(cells)
            run_grid(cells, ft.finetune_cell, ft.is_done, desc="diagnosis runs", ship=ship, **grid_kw)
    results = aggregate(plan, tasks, {t: shifts[t] for t in tasks})
    results["targets"] = targets(results)
    results["diagnosis"] = diagnosis(plan, tune)
    atomic_write_json(plan.results_file, results)
    from steerlab.bench.plots import plot_best_vs_base, plot_finetune

    stem = plan.results_file.stem
    plot_finetune(results, RESULTS / f"{stem}_curves.png")
    plot_best_vs_base(results, RESULTS / f"{stem}_best.png")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
