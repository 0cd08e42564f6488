"""ZPRL under the sampler-mode rule against tuned DSRL on Meta-World tasks outside the shift suite (issue 26).

Issue 26 asks that the start discipline and the sampler-mode rule hold on tasks nothing was tuned on ("the rule must
not be per task"). The suite's eight tasks were seen while the start was fixed; this check draws tasks that were
not, by a rule fixed before any of its runs:

* candidates: every Meta-World v3 task outside the suite and the sanity tasks, in the order of one permutation
  drawn with seed DRAW_SEED; families alternate by position (coverage, actuation, coverage, ...);
* each candidate is calibrated exactly as the suite was (steerlab.bench.shift_calibrate: the family's grid,
  mildest first, up to the first value whose base best mode over 50 episodes is <= 0.60; default demo noise,
  the suite's per-task demo noise scales are not carried over);
* a candidate is kept when its chosen shift leaves the base between FLOOR and 0.60 at its best mode (a steering
  method reweights what the base already does: a base that never succeeds gives it nothing to steer, one that
  the grid cannot bring to 0.60 leaves little to gain); the first PER_FAMILY kept of each family are the check;
* on each: the base row, ZPRL at the suite's pick in the rule's mode (from the calibration's 50 episodes each
  way) and DSRL at the suite's pick, 3 seeds, the grid's budget and evaluation sizes, seed-major.

One variant rides along, decided before any of its runs and reported whatever it shows: ZPRL with a tether of
β = TETHER on its actor's mean (`SACConfig.actor_tether`, DSRL's restoring force). The held-out runs showed ZPRL's
one unseen-task failure, a dip at the first evaluation after warm-up on bin-picking while the evaluation return
rose; β = 0.1 is the value the start diagnosis measured on push-wall (docs/zprl.md: it holds λ·|Δz| near the
paper's 0.1·RMS(z), where β = 1 froze the actor), not a value tried on these tasks. It runs on every held-out
task, so its cost where ZPRL did not dip is measured too. These tasks were seen when the variant was chosen:
its rows are a measurement of the variant on them, not a held-out validation of it. (Measured: it left the dip
in place and lowered the AUC; not adopted, docs/zprl.md.)

A second draw (`--draw 2`, fixed before any of its runs, after the first draw's results and the variant's choice)
is the variant's held-out validation: the same permutation walked on, the next PER_FAMILY kept per family (ranks 3
and 4), calibrated by the same rule. On it the tethered ZPRL, DSRL and the untethered ZPRL run seed by seed, so a
budget cut short still leaves every method on the same seeds. (The order was first "the variant and DSRL at every
seed, then ZPRL"; it changed before any draw-2 run, once the variant's first seed on draw 1 showed it did not
remove bin-picking's dip: the untethered ZPRL is issue 26's own comparison and should not wait for the rest.)

Runs are claimed (several processes may share the work) and resume; the calibration is recorded cell by cell in
tuning.json "holdout_calibration". Results: benchmarks/results/finetune_shift_holdout.json and a table in
docs/results/finetune_shift.md.

    steerlab bench shift_holdout --stage calibrate [--family coverage|actuation]
    steerlab bench shift_holdout [--seeds N]          # calibrate if needed, then the runs
    steerlab bench shift_holdout --collect            # rebuild the JSON from the recorded runs
    steerlab bench shift_holdout --draw 2             # the second draw: the tethered variant held out
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from steerlab.bench import finetune as ft
from steerlab.bench.common import RESULTS, RUNS, load_cell
from steerlab.bench.finetune_shift import (
    TUNING,
    Plan,
    base_cell_done,
    base_of,
    evaluate_base,
    make_cell,
    picked_settings,
)
from steerlab.bench.shift_calibrate import FAMILY_ORDER, GRIDS, THRESHOLD, base_for, walk
from steerlab.bench.shift_rule import auc, best, first_eval, num, rows_for, targets
from steerlab.bench.suite import _pm
from steerlab.core.io import atomic_write_json
from steerlab.envs.metaworld_env import BENCHMARK_TASKS, SANITY_TASKS
from steerlab.train.finetune.config import ABSENT_MEANS
from steerlab.train.finetune.mode import choose_sampler_mode

DRAW_SEED = 26
PER_FAMILY = 2
FLOOR = 0.10
EPISODES = 50
METHODS = ("zprl", "dsrl")
TETHER = 0.1
TETHERED = "zprl-tether"  # the variant's run name: same method, steering and mode as "zprl", plus the tether
KEY = "holdout_calibration"
ROOT = RUNS / "finetune_shift_holdout"
RESULTS_FILE = RESULTS / "finetune_shift_holdout.json"


def results_file(draw: int) -> Path:
    return RESULTS_FILE if draw == 1 else RESULTS / f"finetune_shift_holdout_draw{draw}.json"


def candidates(tasks: list[str]) -> list[tuple[str, str]]:
    """(task, family) in draw order: the tasks outside the suite and the sanity tasks, permuted with DRAW_SEED."""
    pool = sorted(set(tasks) - set(BENCHMARK_TASKS) - set(SANITY_TASKS))
    order = np.random.default_rng(DRAW_SEED).permutation(len(pool))
    return [(pool[j], FAMILY_ORDER[i % 2]) for i, j in enumerate(order)]


def kept(choice: dict) -> bool:
    return choice["reached"] and max(choice["sampled"], choice["eps0"]) >= FLOOR


def load_record() -> dict:
    rec = (load_cell(TUNING) or {}).get(KEY) or {}
    rec.update({"rule": (f"candidates: Meta-World v3 tasks outside the suite and the sanity tasks, permuted with seed "
                         f"{DRAW_SEED}, families alternating by position; each calibrated as the suite "
                         f"(shift_calibration's grid and threshold {THRESHOLD:.2f}, {EPISODES} episodes, seed 0); "
                         f"kept when the chosen shift leaves the base's best mode in [{FLOOR:.2f}, {THRESHOLD:.2f}]; "
                         f"the first {PER_FAMILY} kept per family; fixed before any of its runs. Draw d >= 2 (fixed before "
                         f"its runs): the next {PER_FAMILY} kept per family, ranks {PER_FAMILY}(d-1)+1 to {PER_FAMILY}d"),
                "draw_seed": DRAW_SEED, "floor": FLOOR, "threshold": THRESHOLD, "episodes": EPISODES,
                "per_family": PER_FAMILY, "grid": GRIDS})
    rec.setdefault("cells", {})
    rec.setdefault("chosen", {})
    return rec


def save_record(rec: dict) -> None:
    """Merge `rec` into tuning.json under a lock: the two families may be calibrated by two processes at once."""
    import fcntl

    RUNS.mkdir(parents=True, exist_ok=True)
    with open(RUNS / ".holdout_calibration.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        tuning = load_cell(TUNING) or {}  # re-read: the other process may have written its cells meanwhile
        theirs = tuning.get(KEY) or {}
        tuning[KEY] = {**rec, "cells": {**theirs.get("cells", {}), **rec["cells"]},
                       "chosen": {**theirs.get("chosen", {}), **rec["chosen"]}}
        atomic_write_json(TUNING, tuning)


def walk_order(pool: list[tuple[str, str]], family: str, chosen: dict, draw: int = 1):
    """The family's candidates in draw order, up to its (PER_FAMILY · draw)-th kept one; the walk ends after the
    first one not decided yet (a caller deciding it before asking for the next one goes on)."""
    n = 0
    for task, fam in pool:
        if fam != family:
            continue
        if n >= PER_FAMILY * draw:
            return
        yield task
        if task not in chosen:
            return
        n += chosen[task]["kept"]


def calibrate(pool: list[tuple[str, str]], families: list[str], draw: int = 1) -> None:
    """Walk the candidates of `families` in draw order until PER_FAMILY · draw of each are kept."""
    import torch

    torch.set_num_threads(1)
    rec = load_record()
    for family in families:
        for task in walk_order(pool, family, rec["chosen"], draw):
            if task not in rec["chosen"]:
                choice = {**walk(rec, task, family, GRIDS, EPISODES, False, save_record), "family": family}
                rec["chosen"][task] = {**choice, "kept": kept(choice)}
                save_record(rec)
            c = rec["chosen"][task]
            print(f"{task} ({family}): {c['shift']} sampled {c['sampled']:.2f} ε=0 {c['eps0']:.2f} -> "
                  f"{'kept' if c['kept'] else 'not kept'}", flush=True)


def selected(pool: list[tuple[str, str]], rec: dict, draw: int = 1) -> tuple[list[str], bool]:
    """The draw's kept tasks decided so far (kept ranks PER_FAMILY·(draw-1)+1 to PER_FAMILY·draw of each family, in
    draw order) and whether all of the walk up to them is decided."""
    out, decided = [], True
    for family in FAMILY_ORDER:
        walked = list(walk_order(pool, family, rec["chosen"], draw))
        kept_ = [t for t in walked if rec["chosen"].get(t, {}).get("kept")]
        out += kept_[PER_FAMILY * (draw - 1):]
        decided &= all(t in rec["chosen"] for t in walked)
    return out, decided


def rule_scale(c: dict) -> float:
    """The sampler-mode rule on the calibration's chosen cell: ZPRL's sampler noise scale on the task."""
    return choose_sampler_mode({"success": c["eps0"]}, {"success": c["sampled"]})


def run_cells(plan: Plan, tasks: list[str], rec: dict, seeds: int, draw: int = 1) -> list[dict]:
    """Draw 1: the check (ZPRL, DSRL) at every seed, then the tethered variant. Later draws: the variant, DSRL and
    ZPRL seed by seed. Seed-major within each pass."""
    settings = picked_settings(plan.sweep_key, METHODS)

    def cell(t: str, name: str, s: int) -> dict:
        c = rec["chosen"][t]
        method = "dsrl" if name == "dsrl" else "zprl"
        scale = rule_scale(c) if method == "zprl" else ABSENT_MEANS["sampler_noise_scale"]
        out = make_cell(plan, t, method, name, s, c["shift"], str(base_for(t, c["family"], c["shift"], False)),
                        settings[method], ROOT, sampler_noise_scale=scale)
        if name == TETHERED:
            out["sac"] = {**out["sac"], "actor_tether": TETHER}
        return out

    passes = [("zprl", "dsrl"), (TETHERED,)] if draw == 1 else [(TETHERED, "dsrl", "zprl")]
    return [cell(t, name, s) for names in passes for s in range(seeds) for t in tasks for name in names]


def base_cell(plan: Plan, task: str, c: dict) -> dict:
    return {"task": task, "name": "base", "seed": 0, "shift": c["shift"],
            "base": str(base_for(task, c["family"], c["shift"], False)), "final_episodes": plan.final_episodes,
            "max_steps": plan.max_steps, "out": str(ft.run_dir({"task": task, "name": "base", "seed": 0}, ROOT / "base"))}


def first_evals_equal(task: str, name: str, twin: str) -> dict:
    """Whether run `name`'s first evaluation scores as run `twin`'s at every seed where both have one."""
    pairs = []
    for d in sorted(ROOT.glob(f"{task}__{name}__seed*")):
        mine, theirs = first_eval(d), first_eval(ROOT / d.name.replace(f"__{name}__", f"__{twin}__"))
        if mine and theirs:
            pairs.append(mine["success"] == theirs["success"])
    return {"seeds_compared": len(pairs), "success_equal": all(pairs) if pairs else None}


def same_start(task: str) -> dict:
    """Where ZPRL runs from ε = 0 its first evaluation is the frozen base's ε = 0 mode, as DSRL's is (its actor's
    mean noise starts at 0): at each seed the two must then score alike on the same episodes, the like-for-like
    start issue 26 asks for."""
    return first_evals_equal(task, "zprl", "dsrl")


def tether_start(task: str) -> dict:
    """The tethered run starts where the untethered one did: at each seed the first evaluation (the frozen base in
    the same mode, Δz = 0, the same episodes) must score alike. Unequal success means the base was rebuilt
    differently from the one the check's runs used, and the rows are then not comparable."""
    return first_evals_equal(task, TETHERED, "zprl")


def all_seeds(rows: dict, keys: tuple[str, ...], seeds: int) -> bool:
    """Every task of a full draw (PER_FAMILY per family) has every planned seed of each row in `keys`."""
    return len(rows) == len(FAMILY_ORDER) * PER_FAMILY and all(
        r[k] and r[k]["seeds"] >= seeds for r in rows.values() for k in keys)


def collect(plan: Plan, tasks: list[str], rec: dict, seeds: int, pool: list[tuple[str, str]], draw: int = 1) -> dict:
    rows = {}
    for t in tasks:
        c = rec["chosen"][t]
        b = load_cell(ROOT / "base" / f"{t}__base__seed0" / "result.json")
        base = base_of(b) if b else None
        mode = "eps0" if rule_scale(c) == 0.0 else "sampled"
        rows[t] = {"family": c["family"], "shift": c["shift"], "rule_mode": mode, "base": base,
                   "zprl_rule": rows_for(ROOT, t, "zprl", base), "dsrl_grid": rows_for(ROOT, t, "dsrl", base),
                   "start_check": same_start(t) if mode == "eps0" else {"success_equal": None},
                   "zprl_tether": rows_for(ROOT, t, TETHERED, base), "tether_start_check": tether_start(t)}
    walked = {t for family in FAMILY_ORDER for t in walk_order(pool, family, rec["chosen"], draw)}
    counts = targets(rows, seeds)
    counts.pop("met"), counts.pop("base_reproduced"), counts.pop("base_not_reproduced")
    tether = targets(rows, seeds, key="zprl_tether", ruled=True)
    for r in rows.values():  # the variant against the untethered ZPRL on the same tasks and seeds
        r["tether_vs_zprl"] = None if not (r["zprl_tether"] and r["zprl_rule"]) else {
            k: round(r["zprl_tether"][k] - r["zprl_rule"][k], 4) for k in ("auc", "final_best", "dip")}
    tether.pop("met"), tether.pop("base_reproduced"), tether.pop("base_not_reproduced"), tether.pop("start_mismatch")
    tether["start_unlike_zprl"] = sorted(t for t, r in rows.items() if r["tether_start_check"]["success_equal"] is False)
    tether["complete"] = all_seeds(rows, ("zprl_tether",), seeds)
    complete = all_seeds(rows, ("zprl_rule", "dsrl_grid"), seeds)
    return {"draw": draw,
            "what": "issue 26's counts on held-out tasks (drawn and calibrated by the rule in tuning.json "
                    f"'{KEY}'): ZPRL at the suite's pick in the rule's mode and DSRL at the suite's pick, both from "
                    "the calibrated base; rows as in finetune_shift_rule.json",
            "env_steps": plan.env_steps, "planned_seeds": seeds, "complete": complete,
            # a list, in draw order (a JSON object's keys come back sorted from the results file)
            "candidates_walked": [{"task": t, **{k: rec["chosen"][t][k] for k in ("family", "shift", "sampled", "eps0",
                                                                                   "reached", "kept")}}
                                  for t, _ in pool if t in rec["chosen"] and t in walked],
            "tasks": rows, "counts": counts, "settings": picked_settings(plan.sweep_key, METHODS),
            "tether": {"beta": TETHER, "what": f"ZPRL as zprl_rule plus actor_tether = {TETHER}, counted against DSRL "
                                              "as zprl_rule is; chosen before its runs, on tasks seen before it",
                       "counts": tether}}


def _start(sc: dict) -> str:
    return "–" if sc["success_equal"] is None else (f"yes ({sc['seeds_compared']})" if sc["success_equal"] else "**no**")


def _vs(r: dict | None) -> str:
    return "–" if not r else _pm(r["best_vs_base"], r["best_vs_base_ci95"], signed=True)


def table(res: dict) -> str:
    from steerlab.bench.common import markdown_table

    rows = [[t, r["family"], r["shift"], "ε = 0" if r["rule_mode"] == "eps0" else "sampled",
             "–" if not r["base"] else f"{r['base']['final_best']:.2f}", auc(r["zprl_rule"]), auc(r["dsrl_grid"]),
             best(r["zprl_rule"]), best(r["dsrl_grid"]), _vs(r["zprl_rule"]), _vs(r["dsrl_grid"]),
             num(r["zprl_rule"], "dip", True), num(r["dsrl_grid"], "dip", True), _start(r["start_check"])]
            for t, r in res["tasks"].items()]
    head = markdown_table(["task", "family", "shift", "rule's mode", "base best", "AUC zprl (rule) (seeds)",
                           "AUC dsrl (seeds)", "best zprl", "best dsrl", "zprl − base best [95%]",
                           "dsrl − base best [95%]", "dip zprl", "dip dsrl", "first eval = dsrl's (ε = 0)"], rows)
    c, n = res["counts"], res["counts"]["tasks"]
    walked = ", ".join(f"{t} ({v['family']}, {v['shift']}: best {max(v['sampled'], v['eps0']):.2f}"
                       f"{'' if v['kept'] else ', not kept'})" for v in res["candidates_walked"] for t in [v["task"]])
    state = "" if res["complete"] else " (partial: not every task has every planned seed yet)"
    return (f"{head}\n\nCounts over the {n} held-out task{'s' if n != 1 else ''}{state}: ZPRL's AUC ≥ DSRL's on "
            f"{c['auc_ge_dsrl']}/{n}; final best mode ≥ DSRL's on {c['final_best_ge_dsrl']}/{n}; above the base's best "
            f"on {c['above_base']}/{n}, interval clear of 0 on {c['above_base_interval_clear']}; dip no deeper than "
            f"DSRL's on {c['dip_ge_dsrl']}/{n}, below −0.10 on: {', '.join(c['dip_below_-0.10']) or 'none'}; best mode "
            f"= the rule's mode on {c['best_is_deployed']}/{n}; ZPRL's first evaluation unequal to DSRL's (both from ε = 0) "
            f"on: {', '.join(c['start_mismatch']) or 'none'}. The suite's bars, scaled: 3/4 for 6/8. "
            f"{res['env_steps']:,} env steps per run. Candidates walked, in draw order: {walked}.")


def tether_table(res: dict) -> str:
    """The tethered variant beside the check's ZPRL and DSRL, task by task, and its counts against DSRL."""
    from steerlab.bench.common import markdown_table

    if "tether" not in res:
        return "_No tethered runs recorded yet: run `steerlab bench shift_holdout`._"

    def three(r, f):
        return " / ".join(f(r[k]) for k in ("zprl_rule", "zprl_tether", "dsrl_grid"))

    rows = [[t, three(r, auc), three(r, best), _vs(r["zprl_tether"]), three(r, lambda x: num(x, "dip", True)),
             _start(r["tether_start_check"])] for t, r in res["tasks"].items()]
    head = markdown_table(["task", f"AUC zprl / β = {res['tether']['beta']} / dsrl (seeds)", "best zprl / β / dsrl",
                           "β − base best [95%]", "dip zprl / β / dsrl", "first eval = zprl's"], rows)
    c = res["tether"]["counts"]
    n = c["tasks"]
    if not n:
        return head
    state = "" if c["complete"] else " (partial: not every task has every planned seed yet)"
    return (f"{head}\n\nThe tethered ZPRL over the {n} held-out task{'s' if n != 1 else ''}{state}: AUC ≥ DSRL's on "
            f"{c['auc_ge_dsrl']}/{n}; final best mode ≥ DSRL's on {c['final_best_ge_dsrl']}/{n}; above the base's best "
            f"on {c['above_base']}/{n}, interval clear of 0 on {c['above_base_interval_clear']}; dip no deeper than "
            f"DSRL's on {c['dip_ge_dsrl']}/{n}, below −0.10 on: {', '.join(c['dip_below_-0.10']) or 'none'}; best mode "
            f"= the rule's mode on {c['best_is_deployed']}/{n}; first evaluation unequal to the untethered run's on: "
            f"{', '.join(c['start_unlike_zprl']) or 'none'}.")


def draw_tables(res: dict) -> str:
    """A later draw: the check's table (ZPRL under the rule against DSRL, the walk so far), then the variant's."""
    return f"{table(res)}\n\n{tether_table(res)}"


def main(argv: list[str] | None = None) -> int:
    import torch

    from steerlab.envs.metaworld_env import available_tasks

    ap = argparse.ArgumentParser(prog="steerlab bench shift_holdout", description=__doc__.splitlines()[0])
    ap.add_argument("--stage", choices=["calibrate", "runs"], default="runs", help="run the stages up to this one")
    ap.add_argument("--family", choices=FAMILY_ORDER, default=None, help="calibrate this family only")
    ap.add_argument("--no-calibrate", action="store_true", help="run the tasks kept so far, calibrate nothing")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per method and task (runs are seed-major)")
    ap.add_argument("--collect", action="store_true", help="run nothing: rebuild the JSON")
    ap.add_argument("--draw", type=int, default=1, help="1: the check; 2, ...: a later draw of held-out tasks, the "
                                                          "tethered variant's validation")
    ap.add_argument("--table", action="store_true")
    args = ap.parse_args(argv)
    if args.draw < 1:
        raise SystemExit(f"--draw must be >= 1, got {args.draw}")
    show = table if args.draw == 1 else draw_tables
    if args.table:
        res = load_cell(results_file(args.draw))
        if res is None:
            raise SystemExit(f"no results for draw {args.draw} yet: run `steerlab bench shift_holdout --draw {args.draw}`")
        print(show(res))
        return 0
    torch.set_num_threads(1)
    plan = Plan(False)
    pool = candidates(available_tasks())
    if not (args.collect or args.no_calibrate):
        calibrate(pool, [args.family] if args.family else list(FAMILY_ORDER), args.draw)
    rec = load_record()  # both families' choices, whichever process calibrated them
    tasks, decided = selected(pool, rec, args.draw)
    if not tasks:
        raise SystemExit("no held-out task is decided yet: run `steerlab bench shift_holdout --stage calibrate`")
    if not decided:
        print(f"the calibration has not decided every held-out task yet: running those kept so far ({', '.join(tasks)})")
    if args.stage == "runs" and not args.collect:
        for t in tasks:
            cell = base_cell(plan, t, rec["chosen"][t])
            if not base_cell_done(cell) and (lock := ft.claim(Path(cell["out"]))) is not None:
                try:  # claimed like a run, so processes started side by side evaluate each base once
                    evaluate_base(cell)
                finally:
                    lock.release()
        todo = run_cells(plan, tasks, rec, args.seeds, args.draw)
        for i, cell in enumerate(todo):
            res = ft.finetune_cell(cell)  # skipped when finished or running in another process
            what = "skipped" if "skipped" in res else f"auc {res['auc']:.2f}"
            print(f"[{i + 1}/{len(todo)}] {cell['task']} {cell['name']} seed {cell['seed']}: {what}", flush=True)
    res = collect(plan, tasks, rec, args.seeds, pool, args.draw)
    atomic_write_json(results_file(args.draw), res)
    print(show(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
