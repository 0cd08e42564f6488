"""Calibrate the deployment-shift suite on the base policies alone, before any RL run (issue 13, item 1).

The rule, fixed before seeing any result:

* families: the eight `BENCHMARK_TASKS` in alphabetical order alternate coverage, actuation,
  coverage, actuation, ...;
* magnitude: walk the family's fixed grid (`GRIDS`, mildest first) and stop at the first value that
  brings the base's *best* evaluation mode, max(sampled, ε = 0) over 50 evaluation episodes (seed 0,
  the pretrain benchmark's episodes), to <= 0.60. If no grid value does, the strongest one is used and
  the record says so (`reached: false`);
* actuation tasks evaluate the benchmark's mixed-demo base (steerlab.bench.pretrain) under the shift;
  coverage tasks pretrain a base on demos restricted to the shift's region (same recipe otherwise: 50
  `mixed` demos, 2000 steps, seed 0) and evaluate it over the full range.

Everything lands in benchmarks/results/tuning.json under "shift_calibration" (grid, every evaluated
cell with sampled / ε = 0 success and 95% intervals, the chosen value per task). Recorded cells are
skipped, so an interrupted run resumes. `--quick` (2 tasks, 10 episodes, 2 grid values, 300 pretraining
steps on 10 demos) writes "shift_calibration_quick" and never touches the real record.

    steerlab bench shift_calibrate            # the real calibration (tens of minutes on one core)
    steerlab bench shift_calibrate --quick    # a smoke test of the pipeline (minutes)
    steerlab bench shift_calibrate --table    # print the calibration table
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from steerlab.bench.calibration import TASK_NOISE_SCALE
from steerlab.bench.common import RESULTS, load_cell, markdown_table
from steerlab.core.io import atomic_write_json
from steerlab.envs.metaworld_env import BENCHMARK_TASKS

TUNING = RESULTS / "tuning.json"
THRESHOLD = 0.60
FAMILY_ORDER = ("coverage", "actuation")
# Fixed grids, mildest first. Actuation: a constant +x offset on the commanded action (Meta-World's x is
# the hand's lateral axis; a constant offset is a calibration error closed-loop control cannot average
# out, a gain mostly is compensated — quickstart push-wall: gain 0.5 left 0.77 at ε = 0). Coverage: the
# excluded share of initial states, demos from the low side of the task's ranges (steerlab.envs.shifts).
GRIDS = {
    "actuation": ["actuation:offset-x+0.05", "actuation:offset-x+0.10", "actuation:offset-x+0.15",
                  "actuation:offset-x+0.20", "actuation:offset-x+0.30", "actuation:offset-x+0.50"],
    "coverage": ["coverage:low-0.50", "coverage:low-0.70", "coverage:low-0.80", "coverage:low-0.90"],
}


def assign_families(tasks: list[str]) -> dict[str, str]:
    """Alphabetical order, alternating coverage, actuation, ... (assigned before any RL run)."""
    return {t: FAMILY_ORDER[i % 2] for i, t in enumerate(sorted(tasks))}


def base_for(task: str, family: str, shift: str, quick: bool) -> Path:
    """Actuation: the benchmark's mixed-demo base. Coverage: the same recipe on demos from the shift's region."""
    from steerlab.bench.pretrain import base_checkpoint

    demo_shift = shift if family == "coverage" else None
    if quick:
        return _quick_base(task, demo_shift)
    return base_checkpoint(task, seed=0, progress=False, shift=demo_shift)


def _quick_base(task: str, demo_shift: str | None) -> Path:
    from steerlab.bench.common import RUNS
    from steerlab.data.collect import collect_demos, preset_dict
    from steerlab.data.dataset import write_dataset
    from steerlab.train.pretrain import PretrainConfig, pretrain

    tag = f"__{demo_shift.replace(':', '_')}" if demo_shift else ""
    ckpt = RUNS / "pretrain_quick" / f"{task}{tag}"
    if (ckpt / "model.safetensors").is_file():
        return ckpt
    ds = RUNS / "datasets_quick" / f"{task}{tag}"
    if not (ds / "meta" / "info.json").is_file():
        eps = collect_demos(task, 10, "mixed", 0, progress=False, shift=demo_shift,
                            noise_scale=TASK_NOISE_SCALE.get(task, 1.0))
        write_dataset(ds, eps, task, extra_info={"quality": "mixed", "preset": preset_dict("mixed"), "seed": 0,
                                                 "max_steps": 200, "env": "metaworld",
                                                 **({"shift": demo_shift} if demo_shift else {})})
    return pretrain(PretrainConfig(dataset=str(ds), out=str(ckpt), steps=300, seed=0), progress=False)


def evaluate_cell(task: str, family: str, shift: str, episodes: int, quick: bool) -> dict:
    from steerlab.core.checkpoint import load_policy
    from steerlab.eval.rollout import evaluate

    t0 = time.perf_counter()
    ckpt = base_for(task, family, shift, quick)
    policy = load_policy(ckpt)
    deploy = shift if family == "actuation" else None  # coverage: deployment over the full range, no wrapper
    modes = {}
    for mode, scale in (("sampled", 1.0), ("eps0", 0.0)):
        res = evaluate(policy, task, episodes, seed=0, n_envs=1, asynchronous=False, progress=False,
                       noise_scale=scale, shift=deploy)
        modes[mode] = {"success": res["success"], "ci95": res["ci95"]}
    best = max(modes["sampled"]["success"], modes["eps0"]["success"])
    return {"task": task, "family": family, "shift": shift, "episodes": episodes,
            "sampled": modes["sampled"]["success"], "sampled_ci95": modes["sampled"]["ci95"],
            "eps0": modes["eps0"]["success"], "eps0_ci95": modes["eps0"]["ci95"], "best": best,
            "base": ckpt.name, "seconds": time.perf_counter() - t0}


def record_key(quick: bool) -> str:
    return "shift_calibration_quick" if quick else "shift_calibration"


def load_record(quick: bool, tasks: list[str], episodes: int, grids: dict) -> dict:
    tuning = load_cell(TUNING) or {}
    rec = tuning.get(record_key(quick)) or {}
    rec.update({"rule": (f"families alternate {' / '.join(FAMILY_ORDER)} over the tasks in alphabetical order; "
                         f"magnitude = the first grid value (mildest first) whose base best mode max(sampled, ε = 0) "
                         f"over {episodes} evaluation episodes (seed 0) is <= {THRESHOLD:.2f}; coverage bases are "
                         "pretrained on the restricted demos (50 mixed demos, 2000 steps, seed 0), actuation tasks "
                         "use the mixed-demo base; fixed before any RL run"),
                "threshold": THRESHOLD, "episodes": episodes, "grid": grids,
                "families": assign_families(tasks)})
    rec.setdefault("cells", {})
    rec.setdefault("chosen", {})
    return rec


def save_record(rec: dict, quick: bool) -> None:
    tuning = load_cell(TUNING) or {}  # re-read: other sweeps may have written their own keys meanwhile
    tuning[record_key(quick)] = rec
    atomic_write_json(TUNING, tuning)


def walk(rec: dict, task: str, family: str, grids: dict, episodes: int, quick: bool, save) -> dict:
    """The rule for one task: evaluate the family's grid values, mildest first (recorded cells are reused), up to
    the first whose base best mode is <= THRESHOLD; returns the choice (`reached: false`: the strongest value).
    `save(rec)` commits the record after every evaluated cell."""
    for shift in grids[family]:
        key = f"{task}|{shift}"
        cell = rec["cells"].get(key)
        if cell is None or cell.get("episodes") != episodes:
            cell = evaluate_cell(task, family, shift, episodes, quick)
            rec["cells"][key] = cell
            save(rec)  # every cell is committed as it lands
            print(f"{task} {shift}: sampled {cell['sampled']:.2f} ε=0 {cell['eps0']:.2f} "
                  f"({cell['seconds']:.0f} s)", flush=True)
        if cell["best"] <= THRESHOLD:
            return {"shift": shift, "reached": True, "sampled": cell["sampled"], "eps0": cell["eps0"]}
    last = rec["cells"][f"{task}|{grids[family][-1]}"]
    return {"shift": grids[family][-1], "reached": False, "sampled": last["sampled"], "eps0": last["eps0"]}


def calibrate(tasks: list[str], quick: bool) -> dict:
    import torch

    torch.set_num_threads(1)
    episodes = 10 if quick else 50
    grids = {f: g[:2] for f, g in GRIDS.items()} if quick else GRIDS
    rec = load_record(quick, BENCHMARK_TASKS, episodes, grids)
    for task in tasks:
        rec["chosen"][task] = walk(rec, task, rec["families"][task], grids, episodes, quick,
                                   lambda r: save_record(r, quick))
        save_record(rec, quick)
    return rec


def table(rec: dict) -> str:
    rows = []
    for _key, c in sorted(rec.get("cells", {}).items()):
        chosen = rec.get("chosen", {}).get(c["task"], {}).get("shift") == c["shift"]
        rows.append([c["task"], c["family"], c["shift"], f"{c['sampled']:.2f}", f"{c['eps0']:.2f}",
                     "**chosen**" if chosen else ""])
    return markdown_table(["task", "family", "shift", "base sampled", "base ε = 0", ""], rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="steerlab bench shift_calibrate", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tasks", nargs="+", default=None, help="subset (families still follow the full list)")
    ap.add_argument("--table", action="store_true")
    args = ap.parse_args(argv)
    if args.table:
        print(table((load_cell(TUNING) or {}).get(record_key(args.quick), {})))
        return 0
    tasks = args.tasks or (sorted(BENCHMARK_TASKS)[:2] if args.quick else sorted(BENCHMARK_TASKS))
    unknown = sorted(set(tasks) - set(BENCHMARK_TASKS))
    if unknown:
        raise SystemExit(f"not benchmark tasks: {', '.join(unknown)}")
    rec = calibrate(tasks, args.quick)
    print(table(rec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
