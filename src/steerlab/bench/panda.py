"""The second simulator end to end: panda-gym PandaPush-v3 and PandaPickAndPlace-v3 (PyBullet).

Stages (each resumable; every finished cell is a small JSON that the next invocation skips):

    steerlab bench panda experts     # scripted experts' success over 100 seeded episodes per task
    steerlab bench panda calibrate   # ONE noise scale per task, by a rule on the base alone
    steerlab bench panda base        # base rows (sampled / ε = 0, 50 episodes, 95% CIs)
    steerlab bench panda sanity      # the same recipe on clean expert demos (push)
    steerlab bench panda finetune    # zprl / action-residual / dsrl × 2 tasks × seeds (--seeds, --env-steps)
    steerlab bench panda all         # the five in order
    steerlab bench panda collect     # rebuild panda_finetune.json + curves from the runs recorded so far
    steerlab bench panda table       # print both README tables from the recorded results

Recipe, identical to the Meta-World benchmark except the horizon (panda-gym's 50 steps): 50 `mixed`
demos (held noise, per-episode std from {0.1, 0.3, 0.6} × the task's noise scale, 15% cut short),
2,000 pretraining steps of the flow policy with its plug-in VIB, evaluation on held-out seeds with
success at any step. Dense reward for RL: panda-gym's −‖object − goal‖ (+ the loop's success bonus).

Calibration rule (fixed before any RL run, never revisited): walk the grid NOISE_GRID upwards and take
the first scale whose base, in its best evaluation mode (max of sampled and ε = 0 success), is at most
CALIBRATION_CEILING. Calibration evaluates on seed CALIBRATION_SEED's evaluation episodes, which no
reported number uses (the reported base rows and all finetune evaluations use seeds 0, 1, ...).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from steerlab.bench.common import BENCH_DIR, RESULTS, RUNS, load_cell, markdown_table
from steerlab.core.checkpoint import atomic_write_json
from steerlab.envs.panda_tasks import DEFAULT_MAX_STEPS, TASKS

MAX_STEPS = DEFAULT_MAX_STEPS
DEMOS, PRETRAIN_STEPS, EVAL_EPISODES, EXPERT_EPISODES = 50, 2000, 50, 100
NOISE_GRID = (0.5, 1.0, 1.5, 2.0, 3.0)
CALIBRATION_CEILING = 0.7
CALIBRATION_SEED = 100
# clean-expert-demo sanity rows (the recipe must still imitate a good expert well); push only, as on
# Meta-World one sanity row per kind of skill is enough and a pretraining costs minutes on a shared CPU
SANITY_TASKS = ("PandaPush-v3",)
CELLS = RESULTS / "panda_runs"
FINETUNE_ROOT = RUNS / "panda_finetune"
CALIBRATION_FILE = RESULTS / "panda_calibration.json"
PRETRAIN_FILE = RESULTS / "panda_pretrain.json"
FINETUNE_FILE = RESULTS / "panda_finetune.json"


# ---------------------------------------------------------------------------------------------- experts
def expert_cell(task: str, episodes: int = EXPERT_EPISODES) -> dict:
    """The clean scripted expert on `episodes` evaluation-split episodes (seed 0), success at any step."""
    from steerlab.envs.metaworld_env import episode_seeds
    from steerlab.envs.panda_experts import expert_policy
    from steerlab.envs.panda_tasks import make_env
    from steerlab.eval.metrics import wilson_interval

    env, expert = make_env(task, max_steps=MAX_STEPS, terminate_on_success=True), expert_policy(task)
    succ, lengths = [], []
    for s in episode_seeds("eval", 0, episodes):
        obs, info = env.reset(seed=s)
        term = trunc = False
        length = 0
        while not (term or trunc):
            obs, _, term, trunc, info = env.step(expert(obs))
            length += 1
        succ.append(bool(info["is_success"]))
        lengths.append(length)
    env.close()
    k = int(np.sum(succ))
    return {"task": task, "success": k / episodes, "ci95": list(wilson_interval(k, episodes)), "episodes": episodes,
            "length_mean": float(np.mean(lengths)), "seed": 0}


# ---------------------------------------------------------------------------------------------- bases
def dataset_path(task: str, quality: str, scale: float, seed: int = 0) -> Path:
    return RUNS / "datasets" / f"{task}__{quality}__x{scale:g}__n{DEMOS}__seed{seed}"


def checkpoint_path(task: str, quality: str, scale: float, seed: int = 0) -> Path:
    return RUNS / "pretrain" / f"{task}__{quality}__x{scale:g}__seed{seed}"


def base_checkpoint(task: str, quality: str, scale: float, seed: int = 0, progress: bool = True) -> Path:
    """Collect `DEMOS` demos at noise scale `scale` and pretrain (or reuse) a base policy; its folder."""
    from steerlab.data.collect import collect_demos, preset_dict
    from steerlab.data.dataset import write_dataset
    from steerlab.train.pretrain import PretrainConfig, pretrain

    ckpt = checkpoint_path(task, quality, scale, seed)
    if (ckpt / "config.json").is_file() and (ckpt / "model.safetensors").is_file():
        return ckpt
    ds = dataset_path(task, quality, scale, seed)
    if not (ds / "meta" / "info.json").is_file():
        eps = collect_demos(task, DEMOS, quality, seed, max_steps=MAX_STEPS, progress=progress, noise_scale=scale)
        write_dataset(ds, eps, task, extra_info={"quality": quality, "preset": preset_dict(quality), "seed": seed,
                                                 "noise_scale": scale, "max_steps": MAX_STEPS, "env": "panda"})
    return pretrain(PretrainConfig(dataset=str(ds), out=str(ckpt), steps=PRETRAIN_STEPS, seed=seed), progress=progress)


def evaluate_both(ckpt: Path, task: str, episodes: int, seed: int) -> dict:
    """Sampled and ε = 0 success of a checkpoint on the same `episodes` evaluation episodes of `seed`."""
    from steerlab.core.checkpoint import load_policy
    from steerlab.eval.rollout import evaluate

    policy = load_policy(ckpt)
    out = {}
    for key, scale in (("sampled", 1.0), ("eps0", 0.0)):
        # one env, synchronous: episode i's numbers depend only on its seed, not on the env count
        res = evaluate(policy, task, episodes, seed=seed, n_envs=1, max_steps=MAX_STEPS, asynchronous=False,
                       progress=False, noise_scale=scale)
        out[key] = {"success": res["success"], "ci95": res["ci95"], "length_mean": res["length_mean"],
                    "jerk": res["smoothness"]["jerk"]}
    out["best"] = max(out["sampled"]["success"], out["eps0"]["success"])
    return out


def calibrate(task: str) -> dict:
    """The calibration rule (module docstring): first grid scale whose base's best mode <= the ceiling."""
    path = CELLS / f"calibration__{task}.json"
    rec = load_cell(path) or {"task": task, "grid": list(NOISE_GRID), "ceiling": CALIBRATION_CEILING,
                              "eval_seed": CALIBRATION_SEED, "eval_episodes": EVAL_EPISODES, "points": {}}
    for scale in NOISE_GRID:
        key = f"{scale:g}"
        if key not in rec["points"]:
            t0 = time.perf_counter()
            ckpt = base_checkpoint(task, "mixed", scale)
            rec["points"][key] = {**evaluate_both(ckpt, task, EVAL_EPISODES, CALIBRATION_SEED),
                                  "seconds": time.perf_counter() - t0}
            atomic_write_json(path, rec)
        p = rec["points"][key]
        print(f"calibrate {task} x{key}: sampled {p['sampled']['success']:.2f} ε=0 {p['eps0']['success']:.2f}",
              flush=True)
        if p["best"] <= CALIBRATION_CEILING:
            rec["chosen"] = scale
            break
    else:
        rec["chosen"] = NOISE_GRID[-1]
        rec["note"] = f"no grid scale brought the base to <= {CALIBRATION_CEILING}; the largest is used"
    atomic_write_json(path, rec)
    return rec


def chosen_scale(task: str) -> float:
    cal = load_cell(CALIBRATION_FILE)
    if not cal or task not in cal["tasks"] or "chosen" not in cal["tasks"][task]:
        raise SystemExit(f"{task}: no calibration recorded; run `steerlab bench panda calibrate` first")
    return float(cal["tasks"][task]["chosen"])


def base_cells(qualities: tuple[str, ...], seed: int = 0) -> dict:
    """Base rows on the reporting seed: 'mixed' demos at the calibrated scale; 'expert': clean demos (sanity)."""
    rows = {}
    for task in TASKS:
        for quality in (q for q in qualities if q == "mixed" or task in SANITY_TASKS):
            path = CELLS / f"base__{task}__{quality}.json"
            cell = load_cell(path)
            if cell is None:
                scale = chosen_scale(task) if quality == "mixed" else 0.0
                t0 = time.perf_counter()
                ckpt = base_checkpoint(task, quality, scale)
                cell = {"task": task, "quality": quality, "noise_scale": scale, "seed": seed,
                        "episodes": EVAL_EPISODES, **evaluate_both(ckpt, task, EVAL_EPISODES, seed),
                        "pretrain_seconds": load_cell(ckpt / "config.json")["pretrain"]["seconds"],
                        "checkpoint": str(ckpt.relative_to(BENCH_DIR.parent)), "cell_seconds": time.perf_counter() - t0}
                atomic_write_json(path, cell)
            rows[f"{task}__{quality}"] = cell
            print(f"base {task} ({quality}): sampled {cell['sampled']['success']:.2f} "
                  f"ε=0 {cell['eps0']['success']:.2f}", flush=True)
    return rows


def collect_pretrain() -> dict:
    experts = {t: load_cell(CELLS / f"expert__{t}.json") for t in TASKS}
    bases = {p.stem.removeprefix("base__"): load_cell(p) for p in sorted(CELLS.glob("base__*.json"))}
    cal = load_cell(CALIBRATION_FILE) or {"tasks": {}}
    return {"kind": "pretrain", "max_steps": MAX_STEPS, "demos": DEMOS, "pretrain_steps": PRETRAIN_STEPS,
            "experts": {t: e for t, e in experts.items() if e}, "bases": bases,
            "noise_scales": {t: c.get("chosen") for t, c in cal["tasks"].items()}}


def pretrain_table(results: dict) -> str:
    def ci(m: dict) -> str:
        return f"{m['success']:.2f} [{m['ci95'][0]:.2f}, {m['ci95'][1]:.2f}]"

    rows = []
    for task in TASKS:
        e = results["experts"].get(task)
        b = results["bases"].get(f"{task}__mixed")
        c = results["bases"].get(f"{task}__expert")
        rows.append([task, ci(e) if e else "—", f"{b['noise_scale']:g}" if b else "—",
                     ci(b["sampled"]) if b else "—", ci(b["eps0"]) if b else "—",
                     f"{ci(c['sampled'])} / {ci(c['eps0'])}" if c else "—"])
    out = markdown_table(["panda-gym task", f"scripted expert ({EXPERT_EPISODES} ep.)", "noise scale",
                          "base success sampled [95% CI]", "base success from ε = 0 [95% CI]",
                          "clean-expert-demo policy: sampled / ε = 0"], rows)
    out += (f"\n\nSame recipe as Meta-World: {results['demos']} `mixed` demos (held noise × the task's noise scale), "
            f"{results['pretrain_steps']} pretraining steps, horizon {results['max_steps']} (panda-gym's), "
            f"{EVAL_EPISODES} evaluation episodes of seed 0. Noise scale: the first of {list(NOISE_GRID)} whose base "
            f"is at most {CALIBRATION_CEILING:.0%} successful in its best mode, measured on seed "
            f"{CALIBRATION_SEED}'s episodes (`benchmarks/results/panda_calibration.json`).")
    return out


# ---------------------------------------------------------------------------------------------- finetune
def finetune_cells(seeds: int, env_steps: int, methods: list[str]) -> list[dict]:
    """Seed-major order (every task and method of seed 0 first), so a sweep cut short still compares
    all methods. action-residual's progressive exploration spans the same fraction of the run as in the
    full Meta-World benchmark (20k of 50k steps), not a fixed 20k steps a short run would never reach."""
    steering = {"action-residual": {"progressive_steps": int(0.4 * env_steps)}}
    return [{"task": t, "method": m, "name": m, "seed": s, "env_steps": env_steps, "eval_every": env_steps // 5,
             "eval_episodes": 20, "final_episodes": EVAL_EPISODES, "warmup": 500, "max_steps": MAX_STEPS,
             "root": str(FINETUNE_ROOT), "base": str(checkpoint_path(t, "mixed", chosen_scale(t))),
             "steering": steering.get(m, {})}
            for s in range(seeds) for t in TASKS for m in methods]


def base_rows(tasks=TASKS) -> dict:
    """The recorded `mixed` base rows (seed 0, 50 episodes per mode) in the form `finetune.aggregate` compares with."""
    return {t: {"success": b["sampled"]["success"], "zero_noise_success": b["eps0"]["success"],
                "eval_jerk": b["sampled"]["jerk"], "episodes": b["episodes"]}
            for t in tasks if (b := load_cell(CELLS / f"base__{t}__mixed.json"))}


def collect_finetune() -> dict:
    from steerlab.bench import finetune

    results = finetune.aggregate(FINETUNE_ROOT, base_rows=base_rows())
    results["kind"] = "finetune"
    return results


def table(results: dict) -> str:
    """The README table for either results file (make_readme calls `table`)."""
    if results.get("kind") == "pretrain":
        return pretrain_table(results)
    from steerlab.bench import finetune

    return finetune.table(results)


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="steerlab bench panda", description=__doc__.splitlines()[0])
    ap.add_argument("stage", nargs="?", default="all",
                    choices=["experts", "calibrate", "base", "sanity", "finetune", "collect", "all", "table"])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--env-steps", type=int, default=10_000,
                    help="per run; 10k = 200+ episodes of the 50-step horizon (Meta-World's 40k in episodes)")
    ap.add_argument("--methods", nargs="+", default=["zprl", "action-residual", "dsrl"])
    args = ap.parse_args(argv)
    if args.stage == "table":
        for f in (PRETRAIN_FILE, FINETUNE_FILE):
            res = load_cell(f)
            print(table(res) if res else f"_{f.name}: nothing recorded yet_", end="\n\n")
        return 0
    torch.set_num_threads(1)
    CELLS.mkdir(parents=True, exist_ok=True)
    stages = ["experts", "calibrate", "base", "sanity", "finetune"] if args.stage == "all" else [args.stage]
    if "experts" in stages:
        for task in TASKS:
            path = CELLS / f"expert__{task}.json"
            cell = load_cell(path) or expert_cell(task)
            atomic_write_json(path, cell)
            print(f"expert {task}: {cell['success']:.2f} [{cell['ci95'][0]:.2f}, {cell['ci95'][1]:.2f}]", flush=True)
    if "calibrate" in stages:
        atomic_write_json(CALIBRATION_FILE, {"rule": f"first scale of the grid whose base best mode "
                                                     f"(max of sampled, ε = 0) <= {CALIBRATION_CEILING}",
                                             "tasks": {t: calibrate(t) for t in TASKS}})
    for stage, qualities in (("base", ("mixed",)), ("sanity", ("expert",))):
        if stage in stages:
            base_cells(qualities)
            atomic_write_json(PRETRAIN_FILE, collect_pretrain())
            print(pretrain_table(load_cell(PRETRAIN_FILE)))
    if "finetune" in stages or "collect" in stages:
        from steerlab.bench import finetune
        from steerlab.bench.sweep import run_grid

        if "finetune" in stages:
            run_grid(finetune_cells(args.seeds, args.env_steps, args.methods), finetune.finetune_cell,
                     finetune.is_done, use_ray=False, desc="panda finetune runs")
        results = collect_finetune()
        atomic_write_json(FINETUNE_FILE, results)
        from steerlab.bench.plots import plot_finetune

        plot_finetune(results, RESULTS / "panda_finetune_curves.png")
        print(finetune.table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
