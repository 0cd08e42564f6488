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
    steerlab bench shift_rule --sweep-combined               # zprl-noise's own sweep (tuning.json "sweep_zprl_noise")
    steerlab bench shift_rule --methods zprl-noise-tuned     # zprl-noise at that sweep's pick, on the grid
"""

from __future__ import annotations

import argparse

from steerlab.bench import finetune as ft
from steerlab.bench import shift_combined as zn
from steerlab.bench.common import RESULTS, RUNS, load_cell
from steerlab.bench.finetune_shift import (
    BENCHMARK_TASKS,
    TUNING,
    Plan,
    base_of,
    build_bases,
    make_cell,
    picked_settings,
    shifts_for,
    tuning_tasks,
)
from steerlab.bench.sampler_rule import grid_modes
from steerlab.bench.suite import _pm, method_row, run_outcome
from steerlab.core.io import atomic_write_json

ROOT = RUNS / "finetune_shift_rule"
METHODS = ("zprl", "action-residual")  # the grid's methods that keep the frozen sampler (DSRL picks its own noise)
TOL = 1e-9
def cells(plan: Plan, tasks: list[str], seeds: int, bases: dict, shifts: dict, modes: dict,
          methods: list[str]) -> list[dict]:
    needs = ({m for m in methods if m not in (zn.COMBINED, zn.COMBINED_TUNED)}
             | (set(zn.COMBINED_PARTS) if zn.COMBINED in methods else set()))
    settings = picked_settings(plan.sweep_key, needs)
    if zn.COMBINED_TUNED in methods:
        settings[zn.COMBINED_TUNED] = picked_settings(zn.COMBINED_SWEEP_KEY, [zn.COMBINED],
                                                   "steerlab bench shift_rule --sweep-combined")[zn.COMBINED]

    def cell(t, m, s):
        if m in (zn.COMBINED, zn.COMBINED_TUNED):
            setting = zn.combined_setting(settings) if m == zn.COMBINED else settings[m]
            return make_cell(plan, t, zn.COMBINED, m, s, shifts[t], bases[t], setting, ROOT, sampler_noise_scale=1.0)
        return make_cell(plan, t, m, m, s, shifts[t], bases[t], settings[m], ROOT, sampler_noise_scale=modes[t])

    return [cell(t, m, s) for s in range(seeds) for m in methods for t in tasks]


def first_eval(run_dir) -> dict | None:
    """The step-0 evaluation of a run: success and mean length, the frozen base's numbers."""
    from steerlab.train.finetune.callbacks import first_eval_row

    row = first_eval_row(run_dir)
    return None if row is None else {"success": row["eval_success"], "length": row["eval_length"]}


def start_check(plan: Plan, task: str, mode: str) -> dict:
    """Whether the rule's runs start from the grid's base. A run's first evaluation is the frozen base's, so its
    success must equal that of the grid run that started in the same sampler mode at the same seed (same
    episodes): DSRL's (its actor starts at ε = 0) when the rule picked ε = 0, else the grid's sampled ZPRL. Mean
    episode length is reported beside it, not required equal: the library's float numerics moved at the 1e-9
    level since the grid ran, which shifts a contact-rich episode's end by a few steps on the same checkpoint
    (the base digests differ for the same reason: they hash the config file too). A base rebuilt here that
    drifted from the grid's shows up as unequal success."""
    twin = "dsrl" if mode == "eps0" else "zprl"
    pairs = []
    for d in sorted(ROOT.glob(f"{task}__zprl__seed*")):
        mine, theirs = first_eval(d), first_eval(plan.grid_root / d.name.replace("__zprl__", f"__{twin}__"))
        if mine and theirs:
            pairs.append((mine["success"] == theirs["success"], abs(mine["length"] - theirs["length"])))
    return {"against": twin, "seeds_compared": len(pairs),
            "success_equal": all(e for e, _ in pairs) if pairs else None,
            "max_length_diff": max((d for _, d in pairs), default=None)}


def rows_for(root, task: str, method: str, base: dict | None) -> dict | None:
    rs = [r for r in (load_cell(p) for p in sorted(root.glob(f"{task}__{method}__seed*/result.json"))) if r]
    if not rs:
        return None
    row = method_row([run_outcome(r) for r in rs], base)
    row["per_seed_auc"] = [round(r["auc"], 4) for r in rs]
    return row


def targets(tasks: dict, planned_seeds: int, key: str = "zprl_rule", ruled: bool | None = None) -> dict:
    """Issue 26's targets over the tasks with ZPRL (rule), DSRL and the base recorded. `met` is decided only once
    all eight tasks have every planned seed of ZPRL under the rule (before that it is None). `key` names the
    method's row: the targets count for ZPRL "or the latent+noise method"; the latter chooses ε itself, so its
    deployed-mode count is None (the rule does not apply to it). `ruled` says whether the row ran in the rule's
    mode (None: only "zprl_rule" did).

    * auc / final: ZPRL's AUC, and its final best mode, >= tuned DSRL's on >= 6/8;
    * best: ZPRL's best mode above the base's best on >= 6/8, the interval clear of 0 on >= 4;
    * dip: no deeper than DSRL's on >= 6/8 and >= -0.10 on every task;
    * deployed: ZPRL's best mode is the mode it was trained and deployed in on >= 7/8."""
    done = {t: r for t, r in tasks.items() if r.get(key) and r["dsrl_grid"] and r["base"]}
    z = {t: r[key] for t, r in done.items()}
    ruled = key == "zprl_rule" if ruled is None else ruled
    d = {t: r["dsrl_grid"] for t, r in done.items()}
    out = {"tasks": len(done),
           "auc_ge_dsrl": sum(z[t]["auc"] >= d[t]["auc"] for t in done),
           "final_best_ge_dsrl": sum(z[t]["final_best"] >= d[t]["final_best"] for t in done),
           "above_base": sum(z[t]["best_vs_base"] > 0 for t in done),
           "above_base_interval_clear": sum(z[t]["best_vs_base_ci95"][0] > 0 for t in done),
           # dips are differences of success rates over 20 episodes (multiples of 0.05): compared to within rounding
           "dip_ge_dsrl": sum(z[t]["dip"] >= d[t]["dip"] - TOL for t in done),
           "dip_below_-0.10": sorted(t for t in done if z[t]["dip"] < -0.10 - TOL),
           "best_is_deployed": sum(z[t]["best_mode"] == done[t]["rule_mode"] for t in done) if ruled else None,
           "start_mismatch": sorted(t for t, r in done.items() if r["start_check"]["success_equal"] is False),
           "base_reproduced": sorted(t for t, r in done.items() if (r.get("base_check") or {}).get("success_equal")),
           "base_not_reproduced": sorted(t for t, r in done.items()
                                         if (r.get("base_check") or {}).get("success_equal") is False)}
    complete = len(done) == len(BENCHMARK_TASKS) and all(z[t]["seeds"] >= planned_seeds for t in done)
    out["met"] = {"auc": out["auc_ge_dsrl"] >= 6, "final": out["final_best_ge_dsrl"] >= 6,
                  "best": out["above_base"] >= 6 and out["above_base_interval_clear"] >= 4,
                  "dip": out["dip_ge_dsrl"] >= 6 and not out["dip_below_-0.10"],
                  "deployed": out["best_is_deployed"] >= 7 if ruled else None} if complete else None
    return out


def base_check_cell(plan: Plan, task: str, shift: str, base: str) -> dict:
    """The grid's stage-1 base evaluation (50 episodes each mode, seed 0) of this machine's base, in its own
    folder: it must reproduce the grid's recorded base row if the base is the grid's."""
    return {"task": task, "name": "base", "seed": 0, "shift": shift, "base": base,
            "final_episodes": plan.final_episodes, "max_steps": plan.max_steps,
            "out": str(ft.run_dir({"task": task, "name": "base", "seed": 0}, ROOT / "base_check"))}


def base_check(plan: Plan, task: str) -> dict | None:
    """The base row recorded by the grid against this machine's re-evaluation (None until it has run)."""
    name = f"{task}__base__seed0/result.json"
    grid, here = load_cell(plan.base_root / name), load_cell(ROOT / "base_check" / name)
    if not grid or not here:
        return None
    keys = ("final_sampled", "final_eps0", "final_sampled_jerk", "final_eps0_jerk")
    return {"grid": {k: grid[k] for k in keys}, "here": {k: here[k] for k in keys},
            "success_equal": all(grid[k] == here[k] for k in keys[:2]),
            "jerk_rel_diff": max(abs(here[k] / grid[k] - 1) for k in keys[2:])}


def collect(plan: Plan, tasks: list[str], modes: dict) -> dict:
    rows = {}
    for t in sorted(tasks):
        b = load_cell(plan.base_root / f"{t}__base__seed0" / "result.json")
        base = base_of(b) if b else None
        mode = "eps0" if modes[t] == 0.0 else "sampled"
        rows[t] = {"rule_mode": mode, "base": base,
                   **{f"{m}_rule": rows_for(ROOT, t, m, base) for m in METHODS},
                   **{f"{m}_sampled_grid": rows_for(plan.grid_root, t, m, base) for m in METHODS},
                   "dsrl_grid": rows_for(plan.grid_root, t, "dsrl", base),
                   zn.COMBINED: rows_for(ROOT, t, zn.COMBINED, base),
                   zn.COMBINED_TUNED: rows_for(ROOT, t, zn.COMBINED_TUNED, base),
                   "start_check": start_check(plan, t, mode), "base_check": base_check(plan, t)}
    return {"what": "ZPRL and action-residual trained and evaluated in the rule's sampler mode, and zprl-noise at its "
                    "parts' picks and at its own sweep's pick (zprl-noise-tuned) "
                    "(runs/finetune_shift_rule), beside the shift grid's recorded DSRL and sampled-mode runs and its "
                    "base rows; rows as in finetune_shift.json (auc: mean evaluation success over the budget; "
                    "final_best: the mode with the higher mean over seeds, best_vs_base against the base's best mode "
                    "with its 95% interval; dip: lowest evaluation after warm-up minus the first, mean over seeds); "
                    "start_check: the rule's first evaluations against the grid's (same base: equal success); "
                    "base_check: the grid's base evaluation (50 episodes per mode, seed 0) repeated on this machine's "
                    "base (--check-bases)",
            "env_steps": plan.env_steps, "planned_seeds": plan.seeds, "tasks": rows,
            "targets": targets(rows, plan.seeds),
            "targets_zprl_noise_tuned": targets(rows, plan.seeds, zn.COMBINED_TUNED),  # "or the latent+noise method"
            "combined_sweep": (load_cell(TUNING) or {}).get(zn.COMBINED_SWEEP_KEY)}


def main(argv: list[str] | None = None) -> int:
    import torch

    ap = argparse.ArgumentParser(prog="steerlab bench shift_rule", description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=None, help="default: every task of the suite")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=[*METHODS, zn.COMBINED, zn.COMBINED_TUNED])
    ap.add_argument("--collect", action="store_true", help="run nothing: rebuild the JSON")
    ap.add_argument("--sweep-combined", action="store_true",
                    help="run zprl-noise's own sweep on the tuning tasks (seed 0) and record its pick")
    ap.add_argument("--check-bases", action="store_true",
                    help="run no RL: repeat the grid's base evaluation on this machine's bases (built if missing)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    plan = Plan(False)
    tasks = args.tasks or sorted(BENCHMARK_TASKS)
    unknown = sorted(set(tasks) - set(BENCHMARK_TASKS))
    if unknown:
        raise SystemExit(f"not benchmark tasks: {', '.join(unknown)}")
    shifts = shifts_for(tasks, False)
    modes = grid_modes(tasks, False)
    # the sweep builds only its tuning tasks' bases; --collect builds none
    bases = None if args.collect or args.sweep_combined else build_bases(tasks, shifts, False)
    if args.sweep_combined:
        tuning = tuning_tasks(sorted(BENCHMARK_TASKS))
        tuning_shifts = shifts_for(tuning, False)
        todo = zn.combined_sweep_cells(zn.combined_sweep_plan(), tuning, build_bases(tuning, tuning_shifts, False),
                                    tuning_shifts)
        for i, cell in enumerate(todo):
            res = ft.finetune_cell(cell)
            what = "skipped" if "skipped" in res else f"auc {res['auc']:.2f}"
            print(f"[{i + 1}/{len(todo)}] sweep {cell['task']} {cell['name']}: {what}", flush=True)
    elif args.check_bases:
        from steerlab.bench.finetune_shift import base_cell_done, evaluate_base

        for t in tasks:
            cell = base_check_cell(plan, t, shifts[t], bases[t])
            if not base_cell_done(cell):
                evaluate_base(cell)
            print(f"base check {t}: {base_check(plan, t)}", flush=True)
    elif not args.collect:
        todo = cells(plan, tasks, args.seeds, bases, shifts, modes, args.methods)
        for i, cell in enumerate(todo):
            res = ft.finetune_cell(cell)  # skipped when finished or running in another process
            what = "skipped" if "skipped" in res else f"auc {res['auc']:.2f}"
            mode = "own noise" if cell["method"] == zn.COMBINED else "eps0" if modes[cell["task"]] == 0 else "sampled"
            print(f"[{i + 1}/{len(todo)}] {cell['task']} {cell['method']} ({mode}) seed {cell['seed']}: {what}",
                  flush=True)
    if args.sweep_combined or (args.collect and zn.COMBINED_SWEEP_ROOT.is_dir()):
        zn.record_combined_sweep(plan)
    out = collect(plan, tasks, modes)
    atomic_write_json(RESULTS / "finetune_shift_rule.json", out)
    print(f"-> {RESULTS / 'finetune_shift_rule.json'}")
    return 0


# table cells of a method row (rows_for); "–" where the row is not recorded yet
def auc(r: dict | None) -> str:
    return "–" if not r else f"{r['auc']:.2f} ({r['seeds']})"


def best(r: dict | None) -> str:
    return "–" if not r else f"{r['final_best']:.2f} ({'ε = 0' if r['best_mode'] == 'eps0' else 'sampled'})"


def num(r: dict | None, key: str, signed: bool = False) -> str:
    return "–" if not r or r.get(key) is None else (f"{r[key]:+.2f}" if signed else f"{r[key]:.2f}")


def table(results: dict) -> str:
    from steerlab.bench.common import markdown_table

    rows = []
    for t, r in results["tasks"].items():
        z, d, b = r["zprl_rule"], r["dsrl_grid"], r["base"]
        vs = "–" if not z or "best_vs_base" not in z else _pm(z["best_vs_base"], z["best_vs_base_ci95"], signed=True)
        sc = r["start_check"]
        same = "–" if sc["success_equal"] is None else (
            f"yes ({sc['seeds_compared']}; length ±{sc['max_length_diff']:.2f})" if sc["success_equal"] else "**no**")
        bc = r.get("base_check")
        row = "–" if not bc else (f"yes (jerk ±{100 * bc['jerk_rel_diff']:.1f}%)" if bc["success_equal"] else "**no**")
        rows.append([t, "ε = 0" if r["rule_mode"] == "eps0" else "sampled", auc(z), auc(r["zprl_sampled_grid"]),
                     auc(d), auc(r.get("action-residual_rule")), auc(r.get("action-residual_sampled_grid")),
                     num(b, "final_best"), best(z), best(d), vs, num(z, "dip", True), num(d, "dip", True), same, row])
    head = markdown_table(["task", "rule's mode", "AUC zprl (rule) (seeds)", "AUC zprl (sampled, grid)",
                           "AUC dsrl (grid)", "AUC action-residual (rule)", "AUC action-residual (sampled, grid)",
                           "base best", "best zprl (rule)", "best dsrl", "zprl − base best [95%]",
                           "dip zprl (rule)", "dip dsrl", "first eval = grid's", "base row reproduced"], rows)
    text = f"{head}\n\n{targets_text(results['targets'], results['env_steps'])}"
    combined = [[t, auc(r.get(zn.COMBINED)), best(r.get(zn.COMBINED)), num(r.get(zn.COMBINED), "dip", True),
                 auc(r.get(zn.COMBINED_TUNED)), best(r.get(zn.COMBINED_TUNED)), num(r.get(zn.COMBINED_TUNED), "dip", True),
                 auc(r["zprl_rule"]), best(r["zprl_rule"]), auc(r["dsrl_grid"]), best(r["dsrl_grid"]),
                 num(r["dsrl_grid"], "dip", True)]
                for t, r in results["tasks"].items() if r.get(zn.COMBINED) or r.get(zn.COMBINED_TUNED)]
    if combined:
        text += ("\n\nLatent + noise steering (`zprl-noise`; ε chosen by its actor), at its parts' picks (ZPRL's λ and "
                 "DSRL's noise bound) and at its own sweep's pick (`zprl-noise-tuned`), beside ZPRL under the rule and "
                 "tuned DSRL:\n\n"
                 + markdown_table(["task", "AUC zprl-noise, parts' picks (seeds)", "best", "dip",
                                   "AUC zprl-noise, own pick (seeds)", "best", "dip", "AUC zprl (rule)",
                                   "best zprl (rule)", "AUC dsrl (grid)", "best dsrl", "dip dsrl"], combined))
        tuned = results.get("targets_zprl_noise_tuned")
        if tuned and tuned["tasks"]:
            text += "\n\n" + combined_targets_text(tuned)
    sweep = results.get("combined_sweep")
    if sweep:
        text += "\n\n" + zn.combined_sweep_text(sweep, results["tasks"])
    return text


def _target_counts(t: dict, head: str, auc_subject: str):
    """The targets shared by ZPRL and zprl-noise (AUC, final, best, dip), after `head`, and the met/missed marker."""
    n, met = t["tasks"], t["met"]
    mark = (lambda k: " — met" if met[k] else " — **missed**") if met else (lambda k: "")
    deep = ", ".join(t["dip_below_-0.10"]) or "none"
    return (head.format(n=n, s="s" if n > 1 else "")
            + ("" if met else " (partial: decided once all 8 tasks have every seed)") + ": "
            f"{auc_subject}AUC ≥ tuned DSRL's on {t['auc_ge_dsrl']}/{n} (≥ 6/8){mark('auc')}; final best mode ≥ DSRL's on "
            f"{t['final_best_ge_dsrl']}/{n} (≥ 6/8){mark('final')}; above the base's best on {t['above_base']}/{n}, "
            f"interval clear of 0 on {t['above_base_interval_clear']} (≥ 6/8, ≥ 4){mark('best')}; dip no deeper than "
            f"DSRL's on {t['dip_ge_dsrl']}/{n} (≥ 6/8), below −0.10 on: {deep} (none allowed){mark('dip')}"), mark


def combined_targets_text(t: dict) -> str:
    """The same targets counted for zprl-noise at its own sweep's pick (the issue's "or the latent+noise method")."""
    head = "The same targets for zprl-noise at its own pick, over the {n} task{s} with its runs"
    return _target_counts(t, head, "")[0] + "."


def targets_text(t: dict, env_steps: int) -> str:
    n = t["tasks"]
    if not n:
        return "No task has ZPRL under the rule yet."
    text, mark = _target_counts(t, "Targets (issue 26) over the {n} task{s} with ZPRL under the rule", "ZPRL's ")
    return (f"{text}; best mode = the deployed (rule's) mode on {t['best_is_deployed']}/{n} (≥ 7/8){mark('deployed')}. "
            f"First evaluation's success unequal to the grid's at some seed: {', '.join(t['start_mismatch']) or 'none'}; "
            f"the grid's base row (100 episodes) reproduced on this machine's base: {len(t['base_reproduced'])}/{n} "
            f"tasks, not reproduced: {', '.join(t['base_not_reproduced']) or 'none'}. {env_steps:,} env steps per run.")


if __name__ == "__main__":
    raise SystemExit(main())
