"""ZPRL vs action-residual vs DSRL on the eight Meta-World tasks (methods × tasks × seeds, on Ray).

    steerlab bench finetune --quick          # 2 tasks × 3 methods × 1 seed × 15k env steps (< 40 min, 2 cores)
    steerlab bench finetune                  # 8 tasks × 3 methods × 3 seeds × 50k env steps (hours; resumes)
    steerlab bench finetune --address ray://head:10001   # use an existing Ray cluster
    steerlab bench finetune --table          # print the README table from benchmarks/results/finetune.json

Every run writes benchmarks/runs/finetune/<task>__<method>__seed<k>/ (config.json, metrics.jsonl and a
result.json once finished; these small files are committed). Finished runs are skipped, so an
interrupted sweep resumes, and the tables are rebuilt from whatever runs are recorded, saying how many
seeds each cell has. Reward: dense (Meta-World shaped / 10 + success bonus), see steerlab.train.finetune.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from steerlab.bench.common import RESULTS, RUNS, load_cell, markdown_table, stderr
from steerlab.bench.suite import HEADLINE_NOTE, base_row, headline_table, method_row, run_outcome
from steerlab.core.checkpoint import atomic_write_json
from steerlab.envs.metaworld_env import BENCHMARK_TASKS
from steerlab.train.finetune.config import ABSENT_MEANS, PRESETS

METHODS = ["zprl", "action-residual", "dsrl"]
# SAC for the CPU benchmark: the CLI's default preset 'bench' (hidden 128 instead of the library's 256;
# one update costs 6.3 ms at hidden 128 vs 13.8 ms at 256 on one core and was >50% of the loop's time);
# every method gets the same networks, and `steerlab finetune` without --preset reproduces the tables.
BENCH_SAC = PRESETS["bench"]
RUN_ROOT = RUNS / "finetune"
QUICK_ROOT = RUNS / "finetune_quick"  # --quick runs live apart: a 15k-step run is not a truncated 50k one


def run_dir(cell: dict, root: Path = RUN_ROOT) -> Path:
    return root / f"{cell['task']}__{cell['name']}__seed{cell['seed']}"


def cell_dir(cell: dict) -> Path:
    """The cell's run folder ("out", rewritten to the worker's temp dir when shipped through Ray)."""
    return Path(cell["out"]) if "out" in cell else run_dir(cell, Path(cell["root"]))


def is_done(cell: dict) -> bool:
    res = load_cell(cell_dir(cell) / "result.json")
    # "final_eval_success": the benchmark's fields are in (finetune's own result.json comes first)
    return res is not None and res.get("env_steps", 0) >= cell["env_steps"] and "final_eval_success" in res


def build_base(cell: dict) -> dict:
    import torch

    from steerlab.bench.pretrain import base_checkpoint

    torch.set_num_threads(1)
    out = Path(cell["out"]) if "out" in cell else None
    return {"task": cell["task"], "ckpt": str(base_checkpoint(cell["task"], progress=False, out=out))}


def base_done(cell: dict) -> bool:
    from steerlab.bench.pretrain import base_checkpoint_path

    p = base_checkpoint_path(cell["task"])
    return (p / "config.json").is_file() and (p / "model.safetensors").is_file()


def summarize_run(rows: list[dict], env_steps: int, base_success: float) -> dict:
    """The run's curve (AUC etc.: `steerlab.train.results.curve_summary`, the one definition) and the first
    evaluation step at which success reached the base's + 0.2."""
    from steerlab.train.results import curve_summary

    s = curve_summary(rows)
    reach = [step for step, v in zip(s["curve_steps"], s["curve"]) if v >= base_success + 0.2 and step > 0]
    return {"auc": s["auc"], "final_success": s["curve"][-1], "curve_steps": s["curve_steps"], "curve": s["curve"],
            "steps_to_base_plus_20": float(reach[0]) if reach else None, "explore_jerk": s["explore_jerk"]}


def claim(out: Path):
    """Hold a run folder for this process (a `core.outdir.FolderLock` named `.claim`, beside the lock `finetune`
    itself takes), so two sweeps started side by side (e.g. `--no-ray` on each core) never run the same cell;
    None when another live process holds it (the OS drops a dead process's lock)."""
    from steerlab.core.errors import LockedError
    from steerlab.core.outdir import FolderLock

    try:
        return FolderLock(out, name=".claim").acquire()
    except LockedError:
        return None


def finetune_cell(cell: dict) -> dict:
    """One run (a Ray task): `finetune` (which writes result.json with the final evaluation sampled and from
    ε = 0 on `final_episodes` episodes, AUC and dip), then the benchmark's own fields added to it."""
    import torch

    from steerlab.core.logger import read_metrics
    from steerlab.rl.sac import SACConfig
    from steerlab.train.finetune import FinetuneConfig, finetune

    torch.set_num_threads(1)
    out = cell_dir(cell)
    if is_done(cell) or (lock := claim(out)) is None:
        return {"skipped": str(out)}
    try:
        cfg = FinetuneConfig(base=cell["base"], method=cell["method"], env=cell["task"], env_steps=cell["env_steps"],
                             seed=cell["seed"], out=str(out), eval_every=cell["eval_every"],
                             eval_episodes=cell["eval_episodes"], warmup_decisions=cell["warmup"],
                             checkpoint_every=cell["eval_every"] * 2, tensorboard=False, shift=cell.get("shift"),
                             final_episodes=cell["final_episodes"], max_steps=cell.get("max_steps"),
                             n_envs=cell.get("n_envs", 1), device=cell.get("device", "auto"),
                             # the benchmarks compare what each method learned: no release gate (a cell may ask)
                             release_gate_episodes=cell.get("release_gate_episodes", 0),
                             sampler_noise_scale=cell.get("sampler_noise_scale", ABSENT_MEANS["sampler_noise_scale"]),
                             sac=SACConfig(**{**BENCH_SAC, **cell.get("sac", {})}), steering=dict(cell.get("steering", {})))
        t0 = time.perf_counter()
        finetune(cfg, progress=False)
        wall = time.perf_counter() - t0
        rows = read_metrics(out)
        lib = load_cell(out / "result.json")
        origin = cell.get("shipped_from", {})  # shipped through Ray: record the driver's paths, not the worker's
        result = {**lib, "name": cell["name"], "base": origin.get("base", cell["base"]),
                  "wall_seconds": wall, "train_env_steps_per_s": cell["env_steps"] / wall,
                  **summarize_run(rows, cell["env_steps"], rows[0]["eval_success"]),
                  # the names the tables read (recorded runs before result.json came from `finetune` use them)
                  "base_success_step0": lib["start_success"], "final_eval_success": lib["final_sampled"],
                  "final_eval_ci95": lib["final_sampled_ci95"], "final_eval_episodes": lib["final_episodes"],
                  "eval_jerk": lib["final_sampled_jerk"], "final_zero_noise_success": lib["final_eps0"],
                  "final_zero_noise_ci95": lib["final_eps0_ci95"]}
        atomic_write_json(out / "result.json", result)
        return result
    finally:
        lock.release()


def zero_noise_final(policy, task: str, episodes: int, seed: int, max_steps: int | None = None) -> dict:
    """The final steered policy sampled from ε = 0, beside the ε = 0 base row of the pretrain benchmark
    (for dsrl the actor picks ε, so this equals its ordinary evaluation)."""
    from steerlab.eval.rollout import evaluate

    res = evaluate(policy, task, episodes, seed=seed, n_envs=1, asynchronous=False, progress=False, noise_scale=0.0,
                   max_steps=max_steps)
    return {"final_zero_noise_success": res["success"], "final_zero_noise_ci95": res["ci95"]}


def backfill_zero_noise(root: Path) -> None:
    """Add the ε = 0 evaluation to finished runs recorded before it existed (while their policy is on disk)."""
    from steerlab.core.checkpoint import load_policy

    for path in sorted(root.glob("*/result.json")):
        res = load_cell(path)
        if res and "final_zero_noise_success" not in res and (path.parent / "policy" / "config.json").is_file():
            res.update(zero_noise_final(load_policy(path.parent / "policy"), res["task"], res.get("final_eval_episodes", 50),
                                        res["seed"]))
            atomic_write_json(path, res)


def sim_steps_per_s(task: str, steps: int = 2000) -> float:
    from steerlab.envs.metaworld_env import make_env

    env = make_env(task, seed=0, max_steps=200)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    t0 = time.perf_counter()
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
        if term or trunc:
            env.reset()
    return steps / (time.perf_counter() - t0)


def run_dip(run_dir: Path, result: dict) -> float | None:
    """The run's dip (`steerlab.train.results`); recomputed from its metrics for runs recorded before
    `finetune` wrote it (warm-up env steps = warm-up decisions × the base's executed steps per chunk)."""
    from steerlab.core.logger import read_metrics
    from steerlab.train.results import curve_summary

    if result.get("dip") is not None:
        return result["dip"]
    cfg = load_cell(run_dir / "config.json")
    if not cfg or not (run_dir / "metrics.jsonl").is_file():
        return None
    warmup = cfg["finetune"]["warmup_decisions"] * cfg["base_config"]["n_action_steps"]
    return curve_summary(read_metrics(run_dir), warmup_env_steps=warmup)["dip"]


def aggregate(root: Path = RUN_ROOT, base_rows: dict | None = None) -> dict:
    """finetune.json from every recorded run (mean over the seeds each cell has). The base rows come from
    `base_rows` ({task: {success, zero_noise_success, eval_jerk}}), default the pretrain benchmark's."""
    pre = {"tasks": base_rows} if base_rows is not None else load_cell(RESULTS / "pretrain.json") or {"tasks": {}}
    runs = []
    for p in sorted(root.glob("*/result.json")):
        if (r := load_cell(p)) is not None:
            runs.append({**r, "dip": run_dip(p.parent, r)})
    tasks: dict[str, dict] = {}
    curves: dict[str, dict] = {}
    for r in runs:
        tasks.setdefault(r["task"], {}).setdefault(r["method"], []).append(r)
    out_tasks = {}
    for task, by_method in tasks.items():
        out_tasks[task] = {}
        base_s = pre["tasks"].get(task, {}).get("success",
                                                float(np.mean([r["base_success_step0"] for rs in by_method.values() for r in rs])))
        base_jerk = pre["tasks"].get(task, {}).get("eval_jerk", float("nan"))
        out_tasks[task]["base"] = {"auc": base_s, "final_success": base_s, "explore_jerk": base_jerk,
                                   "eval_jerk": base_jerk, "seeds": 0}
        if "zero_noise_success" in pre["tasks"].get(task, {}):
            out_tasks[task]["base"]["final_zero_noise_success"] = pre["tasks"][task]["zero_noise_success"]
        base = None
        if task in pre["tasks"]:  # both modes and the best one, with intervals (steerlab.bench.suite)
            p = pre["tasks"][task]
            base = base_row(p["success"], p.get("zero_noise_success"), p.get("episodes", 50))
            out_tasks[task]["base"].update(base)
        for method, rs in by_method.items():
            reach = [r["steps_to_base_plus_20"] for r in rs]
            out_tasks[task][method] = {
                "auc": float(np.mean([r["auc"] for r in rs])),
                "auc_stderr": stderr([r["auc"] for r in rs]),
                "final_success": float(np.mean([r["final_eval_success"] for r in rs])),
                "final_stderr": stderr([r["final_eval_success"] for r in rs]),
                "explore_jerk": float(np.mean([r["explore_jerk"] for r in rs])),
                "eval_jerk": float(np.mean([r["eval_jerk"] for r in rs])),
                # runs recorded before the ε = 0 evaluation existed lack it: average those that have it
                **({"final_zero_noise_success": float(np.mean(zero)), "zero_noise_seeds": len(zero)}
                   if (zero := [r["final_zero_noise_success"] for r in rs if "final_zero_noise_success" in r]) else {}),
                "steps_to_base_plus_20": (float(np.mean(reach)) if all(x is not None for x in reach) else None),
                "reached_base_plus_20": sum(x is not None for x in reach),
                "seeds": len(rs), "env_steps": rs[0]["env_steps"],
                "train_env_steps_per_s": float(np.mean([r["train_env_steps_per_s"] for r in rs])),
                # final sampled / ε = 0, best mode vs the base's best mode with 95% intervals, dip
                **method_row([run_outcome(r) for r in rs], base),
            }
            curves.setdefault(task, {})[method] = [{"steps": r["curve_steps"], "success": r["curve"]} for r in rs]
    env_steps = max((r["env_steps"] for r in runs), default=0)
    seeds = max((len({r["seed"] for r in rs}) for t in tasks.values() for rs in t.values()), default=0)
    walls = [r["wall_seconds"] for r in runs]
    return {"env_steps": env_steps, "seeds": seeds, "tasks": out_tasks, "curves": curves, "runs": len(runs),
            "run_wall_seconds": {"total": float(np.sum(walls)), "mean": float(np.mean(walls)) if walls else None},
            "throughput": {"train_env_steps_per_s": float(np.mean([r["train_env_steps_per_s"] for r in runs])) if runs else None}}


def table(results: dict) -> str:
    methods = [*METHODS, "embedding-residual"]
    headline = any("final_best" in m for t in results["tasks"].values() for k, m in t.items() if k != "base")
    out = ""
    if headline:  # the comparison against the best base (issue 13, item 2), then the details
        out = (headline_table(results["tasks"], methods, planned_seeds=results.get("planned_seeds"))
               + "\n\n" + HEADLINE_NOTE + "\n\n")
        header = ["task", "method", "seeds", "steps to base+0.2", "explore mean jerk ×1e3", "eval mean jerk ×1e3"]
    else:  # a results file from before the headline columns existed
        header = ["task", "method", "seeds", "AUC", "final success", "final success from ε = 0", "steps to base+0.2",
                  "explore mean jerk ×1e3", "eval mean jerk ×1e3"]
    rows = []
    for task, by_method in results["tasks"].items():
        for method in ["base", *methods]:
            if method not in by_method:
                continue
            m = by_method[method]
            auc = f"{m['auc']:.2f}" + (f" ± {m['auc_stderr']:.2f}" if m.get("seeds", 0) > 1 else "")
            fin = f"{m['final_success']:.2f}" + (f" ± {m['final_stderr']:.2f}" if m.get("seeds", 0) > 1 else "")
            reach = m.get("steps_to_base_plus_20")
            n_reach = m.get("reached_base_plus_20", 0)
            reach_s = ("—" if method == "base" else f"{reach / 1000:.0f}k" if reach else
                       f"{n_reach}/{m['seeds']} seeds reached it" if n_reach else "not reached")
            zero = f"{m['final_zero_noise_success']:.2f}" if "final_zero_noise_success" in m else "—"
            if m.get("zero_noise_seeds", m["seeds"]) < m["seeds"]:  # only steered runs count their seeds
                zero += f" ({m['zero_noise_seeds']} of {m['seeds']} seeds)"
            seeds = str(m.get("seeds", "")) if method != "base" else "—"
            jerks = [f"{1e3 * m['explore_jerk']:.2f}", f"{1e3 * m['eval_jerk']:.2f}"]
            rows.append([task, method, seeds, reach_s, *jerks] if headline else
                        [task, method, seeds, auc, fin, zero, reach_s, *jerks])
    out += markdown_table(header, rows)
    t = results.get("throughput", {})
    if t.get("sim_steps_per_s") and t.get("train_env_steps_per_s"):
        out += (f"\n\nThroughput (one core per run): full training loop {t['train_env_steps_per_s']:.0f} env steps/s "
                f"vs bare simulator {t['sim_steps_per_s']:.0f} steps/s (ratio {t['train_env_steps_per_s'] / t['sim_steps_per_s']:.2f}).")
    w = results.get("run_wall_seconds")
    if w and w.get("mean"):
        out += (f"\n\nWall time: {results['runs']} recorded runs took {w['total'] / 3600:.1f} hours of training "
                f"({w['mean'] / 60:.0f} min per run, one thread each, final evaluations excluded; several runs "
                f"shared the machine's cores, so a run alone on a core is faster).")
    out += (f"\n\nBudget: {results['env_steps']} env steps per run, up to {results['seeds']} seeds per cell; "
            "'base' is the pretrained policy (50 evaluation episodes). AUC is the mean evaluation success "
            "over the run (area under the success-vs-steps curve / steps); final success uses the first 50 "
            "evaluation episodes (the curve's are the first 20 of them). "
            "'From ε = 0' samples every chunk from zero initial noise (deterministic) on the same 50 episodes; "
            "over the seeds whose run recorded it (runs that finished before that column existed lack it).")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="steerlab bench finetune", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tasks", nargs="+", default=None)
    ap.add_argument("--methods", nargs="+", default=METHODS)
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--env-steps", type=int, default=None)
    ap.add_argument("--address", default=None, help="Ray cluster address (default: start a local one)")
    ap.add_argument("--num-cpus", type=int, default=None, help="local Ray CPUs (default: all cores)")
    ap.add_argument("--no-ray", action="store_true", help="run cells one by one in this process")
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--collect", action="store_true",
                    help="run no new cells: rebuild the results JSON, table and plot from the recorded runs")
    args = ap.parse_args(argv)
    results_file = RESULTS / ("finetune_quick.json" if args.quick else "finetune.json")
    if args.table:
        print(table(load_cell(results_file)))
        return 0
    tasks = args.tasks or (BENCHMARK_TASKS[:2] if args.quick else BENCHMARK_TASKS)
    seeds = args.seeds or (1 if args.quick else 3)
    env_steps = args.env_steps or (15_000 if args.quick else 50_000)
    eval_every = 2_500 if args.quick else 5_000
    from steerlab.bench.pretrain import base_checkpoint_path
    from steerlab.bench.sweep import Shipping, run_grid

    root = QUICK_ROOT if args.quick else RUN_ROOT
    if not args.collect:
        run_grid([{"task": t, "out": str(base_checkpoint_path(t))} for t in tasks], build_base, base_done,
                 use_ray=not args.no_ray, address=args.address, num_cpus=args.num_cpus, desc="base policies",
                 ship=Shipping(output="out", keep=("*",), last=("config.json", "model.safetensors")))
        cells = [{"task": t, "method": m, "name": m, "seed": s, "env_steps": env_steps, "eval_every": eval_every,
                  "eval_episodes": 20, "final_episodes": 50, "warmup": 1_000 if args.quick else 2_000,
                  "root": str(root), "base": str(base_checkpoint_path(t))}
                 for s in range(seeds) for t in tasks for m in args.methods]
        for c in cells:
            c["out"] = str(run_dir(c, root))
        # through Ray the base checkpoint travels in the object store and the run's small files come back,
        # so workers on other machines need neither the driver's files nor a shared filesystem
        run_grid(cells, finetune_cell, is_done, use_ray=not args.no_ray, address=args.address, num_cpus=args.num_cpus,
                 desc="finetune runs", ship=Shipping(inputs=("base",), output="out"))
    backfill_zero_noise(root)
    results = aggregate(root)
    results["planned_seeds"] = seeds
    tasks = sorted(results["tasks"]) or tasks
    recorded = (load_cell(results_file) or {}).get("throughput", {}).get("sim_steps_per_s")
    # --collect only re-aggregates runs: it keeps the recorded simulator speed (a re-measurement on a busy
    # machine would change the throughput line without any new run)
    results["throughput"]["sim_steps_per_s"] = (recorded if args.collect and recorded else
                                                float(np.mean([sim_steps_per_s(t) for t in tasks])))
    atomic_write_json(results_file, results)
    from steerlab.bench.plots import plot_finetune

    plot_finetune(results, RESULTS / ("finetune_quick_curves.png" if args.quick else "finetune_curves.png"))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
