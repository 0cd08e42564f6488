"""Sample efficiency with N envs vs one: does `--n-envs 8` buy its speed with a worse learning curve?

    steerlab bench vector_efficiency            # push-wall-v3 + box-close-v3, zprl, N ∈ {1, 8}: vector_efficiency.json
    steerlab bench vector_efficiency --quick    # push-wall-v3, a 1k-step smoke run (minutes; *_quick.json)
    steerlab bench vector_efficiency --table    # print the README table from the recorded results

For each task, method and seed it runs the finetune loop with N = 1 env and with N envs stepped together
(synchronous, one process), at the same update-to-data ratio (updates per stored decision), the same
warm-up (in decisions, over all envs), the same env-step budget and the same evaluation schedule, so the
two curves differ only in how the experience was collected: with N envs the policy that collects is up to
N episodes staler, and the replay holds N episodes' worth of correlated transitions at a time. Each run
records its curve (deterministic evaluation episodes vs env steps), AUC, final success (the curve's last
point) and wall time, split into training and evaluation, and the training env steps per second.

Runs live in benchmarks/runs/vector_efficiency/<task>__n<N>__seed<k>/ (config.json, metrics.jsonl and a
result.json once finished; only these small files are committed). Finished runs are skipped and an
interrupted one resumes from its last snapshot, so rerunning the script continues where it stopped. Base
policies are the finetune benchmark's (`steerlab bench pretrain`, rebuilt deterministically if absent).
Run one job at a time: the wall-clock rates are only comparable when the runs share the machine alike.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from steerlab.bench.common import RESULTS, RUNS, load_cell, markdown_table, stderr
from steerlab.bench.finetune import BENCH_SAC, claim, summarize_run
from steerlab.core.checkpoint import atomic_write_json

TASKS = ["push-wall-v3", "box-close-v3"]
RUN_ROOT = RUNS / "vector_efficiency"
QUICK_ROOT = RUNS / "vector_efficiency_quick"
# the full-mode budget, sized to what one shared core finishes in well under an hour per task (see README)
FULL = {"env_steps": 10_000, "eval_every": 2_500, "eval_episodes": 20, "warmup": 1_000}
QUICK = {"env_steps": 1_000, "eval_every": 500, "eval_episodes": 5, "warmup": 100}


def run_dir(cell: dict) -> Path:
    return Path(cell["root"]) / f"{cell['task']}__n{cell['n_envs']}__seed{cell['seed']}"


def is_done(cell: dict) -> bool:
    res = load_cell(run_dir(cell) / "result.json")
    return res is not None and res.get("env_steps", 0) >= cell["env_steps"]


def run_cell(cell: dict) -> dict | None:
    """One finetune run; the time spent in its periodic evaluations is measured apart from training."""
    import torch

    from steerlab.core.logger import read_metrics
    from steerlab.rl.sac import SACConfig
    from steerlab.train.finetune import FinetuneConfig, Finetuner, finetune

    torch.set_num_threads(1)
    out = run_dir(cell)
    if is_done(cell) or (lock := claim(out)) is None:
        return None
    try:
        resumed = (out / "config.json").is_file()
        cfg = FinetuneConfig(base=cell["base"], method=cell["method"], env=cell["task"], env_steps=cell["env_steps"],
                             seed=cell["seed"], out=str(out), eval_every=cell["eval_every"],
                             eval_episodes=cell["eval_episodes"], warmup_decisions=cell["warmup"],
                             checkpoint_every=cell["eval_every"] * 2, tensorboard=False, sac=SACConfig(**BENCH_SAC),
                             n_envs=cell["n_envs"], async_envs=False, utd=cell["utd"], final_episodes=0, release_gate_episodes=0, sampler_noise_scale=1.0)
        eval_seconds = [0.0]
        evaluate = Finetuner.evaluate

        def timed_evaluate(self):
            t = time.perf_counter()
            try:
                return evaluate(self)
            finally:
                eval_seconds[0] += time.perf_counter() - t

        Finetuner.evaluate = timed_evaluate  # this process only; restored below
        try:
            t0, c0 = time.perf_counter(), time.process_time()
            finetune(cfg, progress=True)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        finally:
            Finetuner.evaluate = evaluate
        rows = read_metrics(out)
        train_wall = wall - eval_seconds[0]
        result = {"task": cell["task"], "method": cell["method"], "seed": cell["seed"], "n_envs": cell["n_envs"],
                  "async_envs": False, "utd": cell["utd"], "env_steps": cell["env_steps"], "eval_every": cell["eval_every"],
                  "eval_episodes": cell["eval_episodes"], "warmup_decisions": cell["warmup"],
                  "wall_seconds": wall, "cpu_seconds": cpu, "eval_wall_seconds": eval_seconds[0],
                  # one env finishes its last episode past the budget: the rate counts the steps actually taken
                  "train_wall_seconds": train_wall, "train_env_steps_per_s": rows[-1]["step"] / train_wall,
                  # a resumed run's times cover only its last part: its rates are not comparable, say so
                  "resumed": resumed, "load_average": os.getloadavg()[0],
                  **summarize_run(rows, cell["env_steps"], rows[0]["eval_success"]),
                  "base_success_step0": rows[0]["eval_success"]}
        atomic_write_json(out / "result.json", result)
        return result
    finally:
        lock.release()


def aggregate(root: Path, budget: dict) -> dict:
    """vector_efficiency.json from every recorded run: per task and N, the mean over seeds."""
    runs = [r for r in (load_cell(p) for p in sorted(root.glob("*/result.json"))) if r]
    tasks: dict[str, dict] = {}
    for r in runs:
        tasks.setdefault(r["task"], {}).setdefault(str(r["n_envs"]), []).append(r)
    out: dict[str, dict] = {}
    for task, by_n in tasks.items():
        out[task] = {}
        for n, rs in sorted(by_n.items(), key=lambda kv: int(kv[0])):
            rs = sorted(rs, key=lambda r: r["seed"])
            timed = [r for r in rs if not r.get("resumed")]
            out[task][n] = {
                "seeds": [r["seed"] for r in rs], "env_steps": rs[0]["env_steps"], "utd": rs[0]["utd"],
                "auc": float(np.mean([r["auc"] for r in rs])), "auc_stderr": stderr([r["auc"] for r in rs]),
                "final_success": float(np.mean([r["final_success"] for r in rs])),
                "final_stderr": stderr([r["final_success"] for r in rs]),
                "base_success": float(np.mean([r["base_success_step0"] for r in rs])),
                # from the steps actually taken (the curve's last point), also for runs recorded before that fix
                "train_env_steps_per_s": float(np.mean([r["curve_steps"][-1] / r["train_wall_seconds"] for r in timed]))
                if timed else None,
                "wall_seconds": float(np.mean([r["wall_seconds"] for r in timed])) if timed else None,
                "train_wall_seconds": float(np.mean([r["train_wall_seconds"] for r in timed])) if timed else None,
                "load_average": float(np.mean([r["load_average"] for r in timed])) if timed else None,
                "curves": [{"seed": r["seed"], "steps": r["curve_steps"], "success": r["curve"]} for r in rs],
            }
    return {"method": runs[0]["method"] if runs else "zprl", "budget": budget, "tasks": out, "runs": len(runs),
            "cpus": os.cpu_count()}


def table(results: dict) -> str:
    b = results["budget"]
    header = ["task", "envs (sync)", "seeds", "AUC", "final success", "step-0 success",
              "train env steps / wall-s", "run wall time (min)"]
    rows = []
    for task, by_n in results["tasks"].items():
        for n, m in by_n.items():
            se = len(m["seeds"]) > 1
            rate = f"{m['train_env_steps_per_s']:.1f}" if m["train_env_steps_per_s"] else "—"
            wall = f"{m['wall_seconds'] / 60:.1f}" if m["wall_seconds"] else "—"
            rows.append([task, n, ",".join(map(str, m["seeds"])),
                         f"{m['auc']:.2f}" + (f" ± {m['auc_stderr']:.2f}" if se else ""),
                         f"{m['final_success']:.2f}" + (f" ± {m['final_stderr']:.2f}" if se else ""),
                         f"{m['base_success']:.2f}", rate, wall])
    if not rows:
        return "_No finished runs recorded yet: run `steerlab bench vector_efficiency`._"
    out = markdown_table(header, rows)
    out += (f"\n\nBudget: {results['method']}, {b['env_steps']} env steps per run, UTD {b['utd']} (SAC updates per "
            f"stored decision), warm-up {b['warmup']} decisions, evaluation every {b['eval_every']} env steps on "
            f"{b['eval_episodes']} episodes (the curve; AUC = its area / steps, final success = its last point). "
            f"Seeds as listed; with one seed a difference of one or two evaluation episodes (0.05-0.10) is noise. "
            f"Rates are wall clock on a {results['cpus']}-core machine shared with other jobs (one run at a time, one "
            "torch thread), evaluations excluded; they are for comparing the rows, `throughput.py` measures speed "
            "properly.")
    missing = [f"{t} N={n}" for t in b["tasks"] for n in b["n_envs"] if str(n) not in results["tasks"].get(t, {})]
    if missing:
        out += f" Not yet run (rerun the script to add them): {', '.join(missing)}."
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="steerlab bench vector_efficiency", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="push-wall-v3, 1k env steps, 5 eval episodes (smoke run)")
    ap.add_argument("--tasks", nargs="+", default=None)
    ap.add_argument("--n-envs", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--method", default="zprl")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--utd", type=float, default=1.0)
    ap.add_argument("--env-steps", type=int, default=None)
    ap.add_argument("--table", action="store_true", help="print the table from the recorded results")
    ap.add_argument("--collect", action="store_true", help="run nothing: rebuild the JSON, table and plot")
    args = ap.parse_args(argv)
    results_file = RESULTS / ("vector_efficiency_quick.json" if args.quick else "vector_efficiency.json")
    if args.table:
        print(table(load_cell(results_file)))
        return 0
    import torch

    from steerlab.bench.pretrain import base_checkpoint

    torch.set_num_threads(1)
    preset = dict(QUICK if args.quick else FULL)
    if args.env_steps:
        preset["env_steps"] = args.env_steps
    tasks = args.tasks or (TASKS[:1] if args.quick else TASKS)
    root = QUICK_ROOT if args.quick else RUN_ROOT
    budget = {**preset, "utd": args.utd, "tasks": tasks, "n_envs": args.n_envs, "seeds": args.seeds,
              "async_envs": False, "sac": BENCH_SAC}
    if not args.collect:
        # task by task, so the first task's comparison is complete before the second task's base is built
        for task in tasks:
            for seed in args.seeds:
                for n in args.n_envs:
                    cell = {"task": task, "method": args.method, "seed": seed, "n_envs": n, "utd": args.utd,
                            "root": str(root), **preset}
                    if is_done(cell):
                        print(f"recorded: {run_dir(cell).name}")
                        continue
                    cell["base"] = str(base_checkpoint(task, progress=True))
                    res = run_cell(cell)
                    if res is None:
                        print(f"skipped (claimed by another process): {run_dir(cell).name}")
                        continue
                    print(f"{run_dir(cell).name}: AUC {res['auc']:.2f}, final {res['final_success']:.2f}, "
                          f"{res['train_env_steps_per_s']:.1f} train env steps/s")
    results = aggregate(root, budget)
    atomic_write_json(results_file, results)
    from steerlab.bench.plots import plot_vector_efficiency

    plot_vector_efficiency(results, RESULTS / ("vector_efficiency_quick.png" if args.quick else "vector_efficiency.png"))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
