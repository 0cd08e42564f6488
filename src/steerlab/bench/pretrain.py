"""Base policies for the eight benchmark tasks (+ two clean-demo sanity rows).

For each task: collect 50 `mixed` demos, pretrain the flow policy with its plug-in VIB, evaluate on 50
episodes (Wilson 95% interval). Sanity: the same recipe on 50 `expert` demos of push-v3 and reach-v3.
Also measures action-selection latency (batch 1, one thread).

    steerlab bench pretrain            # full: 8 tasks + 2 sanity rows, 50 demos, 50 eval episodes
    steerlab bench pretrain --quick    # 2 tasks + sanity, 20 eval episodes (minutes)
    steerlab bench pretrain --table    # print the README table from the recorded results

Each (task, quality) cell is written to benchmarks/results/pretrain_runs/<task>__<quality>.json as it
finishes and skipped on the next run, so an interrupted benchmark resumes. Checkpoints land in
benchmarks/runs/pretrain/ (not committed; the finetune benchmark rebuilds them deterministically).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from steerlab.bench.calibration import TASK_NOISE_SCALE
from steerlab.bench.common import RESULTS, RUNS, load_cell, markdown_table
from steerlab.core.checkpoint import atomic_write_json
from steerlab.envs.metaworld_env import BENCHMARK_TASKS, SANITY_TASKS

CELLS = RESULTS / "pretrain_runs"


def _shift_tag(shift: str | None) -> str:
    return f"__{shift.replace(':', '_')}" if shift else ""


def base_checkpoint_path(task: str, quality: str = "mixed", seed: int = 0, shift: str | None = None) -> Path:
    return RUNS / "pretrain" / f"{task}__{quality}{_shift_tag(shift)}__seed{seed}"


def base_checkpoint(task: str, quality: str = "mixed", episodes: int = 50, steps: int = 2000, seed: int = 0,
                    progress: bool = True, shift: str | None = None, out: Path | None = None) -> Path:
    """Collect + pretrain (or reuse) the benchmark base policy for `task`; returns its folder.

    `shift`: demonstrations collected under it (a coverage shift restricts their initial states);
    everything else is the same recipe. `out`: write the checkpoint there instead (a Ray worker's temp
    dir; the dataset then goes beside it)."""
    from steerlab.data.collect import collect_demos, preset_dict
    from steerlab.data.dataset import write_dataset
    from steerlab.train.pretrain import PretrainConfig, pretrain

    ckpt = Path(out) if out else base_checkpoint_path(task, quality, seed, shift)
    if (ckpt / "config.json").is_file() and (ckpt / "model.safetensors").is_file():
        return ckpt
    ds = (ckpt.parent / "datasets" if out else RUNS / "datasets") / f"{task}__{quality}__n{episodes}{_shift_tag(shift)}__seed{seed}"
    if not (ds / "meta" / "info.json").is_file():
        eps = collect_demos(task, episodes, quality, seed, progress=progress, shift=shift,
                            noise_scale=TASK_NOISE_SCALE.get(task, 1.0))
        write_dataset(ds, eps, task, extra_info={"quality": quality, "preset": preset_dict(quality), "seed": seed,
                                                 "max_steps": 200, "env": "metaworld",
                                                 **({"shift": shift} if shift else {})})
    return pretrain(PretrainConfig(dataset=str(ds), out=str(ckpt), steps=steps, seed=seed), progress=progress)


def decisions_per_second(ckpt: Path, n: int = 500) -> float:
    from steerlab.core.checkpoint import load_policy

    torch.set_num_threads(1)
    policy = load_policy(ckpt)
    obs = np.zeros((1, policy.config.obs_dim), np.float32)
    for _ in range(20):
        policy.predict_chunk(obs)
    t0 = time.perf_counter()
    for _ in range(n):
        policy.predict_chunk(obs)
    return n / (time.perf_counter() - t0)


def run_cell(task: str, quality: str, eval_episodes: int, seed: int) -> dict:
    from steerlab.core.checkpoint import load_policy, read_json
    from steerlab.eval.rollout import evaluate

    t0 = time.perf_counter()
    ckpt = base_checkpoint(task, quality, seed=seed)
    meta = read_json(ckpt / "config.json")
    res = evaluate(load_policy(ckpt), task, eval_episodes, seed=seed, n_envs=2)
    return {"task": task, "quality": quality, "seed": seed, "success": res["success"], "ci95": res["ci95"],
            "episodes": res["episodes"], "length_mean": res["length_mean"], "smoothness": res["smoothness"],
            "pretrain_seconds": meta["pretrain"]["seconds"], "cell_seconds": time.perf_counter() - t0,
            "latent_mu_rms": meta.get("latent_stats", {}).get("mu_rms"),
            **(zero_noise_eval(ckpt, task, eval_episodes, seed) if quality == "mixed" else {})}


def zero_noise_eval(ckpt: Path, task: str, eval_episodes: int, seed: int) -> dict:
    """The same policy sampled from ε = 0 (deterministic): how much of the gap to the expert is sampling
    noise rather than a wrong mean. Same episodes (initial states) as the stochastic evaluation."""
    from steerlab.core.checkpoint import load_policy
    from steerlab.eval.rollout import evaluate

    res = evaluate(load_policy(ckpt), task, eval_episodes, seed=seed, n_envs=2, noise_scale=0.0)
    return {"zero_noise_success": res["success"], "zero_noise_ci95": res["ci95"],
            "zero_noise_jerk": res["smoothness"]["jerk"]}


def collect_results() -> dict:
    cells = {p.stem: load_cell(p) for p in sorted(CELLS.glob("*.json"))}
    tasks = {c["task"]: {"success": c["success"], "ci95": c["ci95"], "episodes": c["episodes"],
                         "length_mean": c["length_mean"], "eval_jerk": c["smoothness"]["jerk"],
                         **({"zero_noise_success": c["zero_noise_success"], "zero_noise_ci95": c["zero_noise_ci95"]}
                            if "zero_noise_success" in c else {})}
             for c in cells.values() if c and c["quality"] == "mixed"}
    sanity = {c["task"]: c["success"] for c in cells.values() if c and c["quality"] == "expert"}
    pre = {c["task"]: c["pretrain_seconds"] for c in cells.values() if c and c["quality"] == "mixed"}
    return {"tasks": tasks, "sanity": sanity, "pretrain_seconds": pre}


def table(results: dict) -> str:
    def zero(r: dict) -> str:
        if "zero_noise_success" not in r:
            return "—"
        lo, hi = r["zero_noise_ci95"]
        return f"{r['zero_noise_success']:.2f} [{lo:.2f}, {hi:.2f}]"

    rows = [[t, f"{r['success']:.2f}", f"[{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}]", zero(r), str(r["episodes"]),
             f"{results['pretrain_seconds'].get(t, float('nan')):.0f}"]
            for t, r in results["tasks"].items()]
    rows += [[f"{t} (clean expert demos, sanity)", f"{s:.2f}", "", "", "", ""] for t, s in results["sanity"].items()]
    out = markdown_table(["task (50 mixed demos)", "base success", "95% CI", "success from ε = 0 [95% CI]",
                          "eval episodes", "pretrain s"], rows)
    if "decisions_per_s" in results:
        out += f"\n\nAction selection (batch 1, one CPU thread): {results['decisions_per_s']:.0f} decisions/s."
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="steerlab bench pretrain", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--table", action="store_true", help="print the markdown table and exit")
    ap.add_argument("--tasks", nargs="+", default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.table:
        print(table(load_cell(RESULTS / "pretrain.json")))
        return 0
    torch.set_num_threads(1)
    tasks = args.tasks or (BENCHMARK_TASKS[:2] if args.quick else BENCHMARK_TASKS)
    eval_episodes = 20 if args.quick else 50
    cells = [(t, "mixed") for t in tasks] + [(t, "expert") for t in SANITY_TASKS]
    CELLS.mkdir(parents=True, exist_ok=True)
    for i, (task, quality) in enumerate(cells):
        path = CELLS / f"{task}__{quality}.json"
        done = load_cell(path)
        if done and done["episodes"] >= eval_episodes:
            if quality == "mixed" and "zero_noise_success" not in done:  # cells recorded before this column
                done.update(zero_noise_eval(base_checkpoint(task, quality, seed=args.seed), task, eval_episodes, args.seed))
                atomic_write_json(path, done)
            print(f"[{i + 1}/{len(cells)}] {task} ({quality}): recorded, skipping")
            continue
        cell = run_cell(task, quality, eval_episodes, args.seed)
        atomic_write_json(path, cell)
        print(f"[{i + 1}/{len(cells)}] {task} ({quality}): success {cell['success']:.2f} "
              f"[{cell['ci95'][0]:.2f}, {cell['ci95'][1]:.2f}] in {cell['cell_seconds']:.0f} s", flush=True)
    results = collect_results()
    results["decisions_per_s"] = decisions_per_second(base_checkpoint(tasks[0], seed=args.seed, progress=False))
    results["eval_protocol"] = ("50 mixed demos per task, 2000 pretraining steps, seed "
                                f"{args.seed}; evaluation on held-out seeds, horizon 200, success at any step")
    atomic_write_json(RESULTS / "pretrain.json", results)
    from steerlab.bench.plots import plot_pretrain

    plot_pretrain(results, RESULTS / "pretrain.png")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
