"""Pixels (issue 22): ZPRL vs action-residual vs DSRL steering a policy that sees 84×84 camera frames + state.

Tasks: the shift suite's two tuning tasks (the first task of each shift family, alphabetically), each under its
calibrated deployment shift (tuning.json "shift_calibration"; --quick: each family's mildest shift). The pixel
base is the state base's recipe (mixed demos, same episodes, seed, demo shift and pretraining steps) with the
demos recorded from one camera (`CAMERA`, 84×84, the fast render path) and the small conv encoder fused with
the state. Every method runs with its default settings. SAC never sees pixels: it sees the frozen policy's
features (docs/protocol.md), and the replay stores those.

Rows per task: the pixel base (final evaluation, sampled and from ε = 0), each method (mean over seeds; the
suite's best-mode rule, steerlab.bench.suite), and `state_vs_pixels`: ZPRL on the *state* base of the same task,
shift, budget and seeds beside ZPRL on pixels. `throughput`: render ms/frame, pretraining samples/s and finetune
env steps/s, pixels vs state, one short run each on this machine (with its load average).

Runs live in benchmarks/runs/finetune_pixels{,_quick}/ (resumable: finished runs are skipped, a run in another
process is never started twice; steerlab.bench.finetune's cell machinery). Results:
benchmarks/results/finetune_pixels{,_quick}.json.

    steerlab bench finetune_pixels --quick        # minutes: tiny bases and runs, 1 seed
    steerlab bench finetune_pixels --measure      # throughput only
    steerlab bench finetune_pixels                # the suite (hours on one core; resumes)
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

from steerlab.bench import finetune as ft
from steerlab.bench.common import RESULTS, RUNS, load_cell
from steerlab.bench.finetune_shift import shifts_for, tuning_tasks
from steerlab.bench.sampler_rule import KEEPS_SAMPLER
from steerlab.bench.shift_calibrate import assign_families, base_for
from steerlab.bench.suite import base_row, method_row, run_outcome
from steerlab.core.io import atomic_write_json
from steerlab.envs.metaworld_env import BENCHMARK_TASKS

METHODS = ["zprl", "action-residual", "dsrl"]
CAMERA = "corner2"
IMAGE_SIZE = (84, 84)
STATE_ROW = "zprl-state"  # ZPRL on the state base: the state side of state_vs_pixels


class Plan:
    """Sizes of the suite or of --quick (tiny bases and runs that exercise every stage)."""

    def __init__(self, quick: bool, env_steps: int | None = None, seeds: int | None = None):
        self.quick = quick
        self.env_steps = env_steps or (1_000 if quick else 20_000)
        self.seeds = seeds or (1 if quick else 2)
        self.eval_every = 500 if quick else 5_000
        # evaluation, not training, dominates a pixel run's cost (every episode renders 200 frames): the state
        # suite's 20 curve / 50 final episodes would be ~60% of each run, so the pixel suite uses 10 / 30
        self.eval_episodes = 2 if quick else 10
        self.final_episodes = 4 if quick else 30
        self.warmup = 50 if quick else 2_000
        self.max_steps = 100 if quick else None
        self.n_envs = 1 if quick else 8
        self.demos, self.pretrain_steps = (10, 300) if quick else (50, 2_000)  # the state bases' recipes
        tag = "_quick" if quick else ""
        self.root = RUNS / f"finetune_pixels{tag}"
        self.results_file = RESULTS / f"finetune_pixels{tag}.json"


def pixel_base(task: str, demo_shift: str | None, plan: Plan) -> Path:
    """The pixel base of `task` (built once): mixed demos recorded with the camera, then pretrained."""
    import torch

    from steerlab.data.collect import collect_demos, preset_dict
    from steerlab.data.dataset import write_dataset
    from steerlab.train.pretrain import PretrainConfig, pretrain

    torch.set_num_threads(1)
    tag = f"__{demo_shift.replace(':', '_')}" if demo_shift else ""
    ckpt = plan.root / "bases" / f"{task}{tag}"
    if (ckpt / "model.safetensors").is_file():
        return ckpt
    ds = plan.root / "datasets" / f"{task}{tag}"
    if not (ds / "meta" / "info.json").is_file():
        eps = collect_demos(task, plan.demos, "mixed", 0, progress=False, shift=demo_shift, cameras=[CAMERA],
                            image_size=IMAGE_SIZE)
        write_dataset(ds, eps, task, extra_info={"quality": "mixed", "preset": preset_dict("mixed"), "seed": 0,
                                                 "max_steps": 200, "env": "metaworld", "cameras": [CAMERA],
                                                 "image_size": list(IMAGE_SIZE),
                                                 **({"shift": demo_shift} if demo_shift else {})})
    return pretrain(PretrainConfig(dataset=str(ds), out=str(ckpt), steps=plan.pretrain_steps, seed=0,
                                   policy={"vision_backbone": "small"}), progress=False)


def make_cell(plan: Plan, task: str, name: str, method: str, seed: int, shift: str, base: Path,
              scale: float) -> dict:
    cell = {"task": task, "method": method, "name": name, "seed": seed, "env_steps": plan.env_steps,
            "sampler_noise_scale": scale if method in KEEPS_SAMPLER else 1.0,
            "eval_every": plan.eval_every, "eval_episodes": plan.eval_episodes, "final_episodes": plan.final_episodes,
            "warmup": plan.warmup, "max_steps": plan.max_steps, "n_envs": plan.n_envs, "shift": shift,
            "root": str(plan.root), "base": str(base)}
    cell["out"] = str(ft.run_dir(cell, plan.root))
    return cell


def evaluate_base(plan: Plan, task: str, shift: str, base: Path, kind: str = "pixels") -> dict:
    """The pixel (or state) base under the shift, sampled and from ε = 0, on the final evaluation's episodes
    (written once to base__<task>/result.json, result_state.json for the state base)."""
    from steerlab.core.checkpoint import load_policy
    from steerlab.envs.registry import resolve_env
    from steerlab.train.results import final_evaluation

    path = plan.root / f"base__{task}" / ("result.json" if kind == "pixels" else f"result_{kind}.json")
    res = load_cell(path)
    if res is None or res.get("final_episodes") != plan.final_episodes or res.get("shift") != shift:
        env = resolve_env(task, max_steps=plan.max_steps, shift=shift)
        res = {"task": task, "shift": shift, "base": str(base),
               **final_evaluation(load_policy(base), env, plan.final_episodes, seed=0)}
        atomic_write_json(path, res)
    return res


def base_mode(plan: Plan, task: str, shift: str, base: Path, kind: str) -> dict:
    """The sampler-mode rule (issue 26) for the pixel or state base, fixed before any RL run: the base both ways
    on `final_episodes` episodes of the 'mode' split (disjoint from the final evaluation's), measured once per base
    (base__<task>/mode_<kind>.json) instead of once per run as `finetune --sampler-noise-scale auto` would."""
    from steerlab.core.checkpoint import load_policy
    from steerlab.envs.registry import resolve_env
    from steerlab.train.finetune.mode import choose_sampler_mode, measure_modes, mode_score

    path = plan.root / f"base__{task}" / f"mode_{kind}.json"
    rec = load_cell(path)
    if rec is None or rec.get("episodes") != plan.final_episodes or rec.get("shift") != shift:
        env = resolve_env(task, max_steps=plan.max_steps, shift=shift)
        eps0, sampled = measure_modes(load_policy(base), env, plan.final_episodes, seed=0)
        rec = {"task": task, "base": kind, "shift": shift, "episodes": plan.final_episodes, "split": "mode",
               "eps0": mode_score(eps0)[0], "sampled": mode_score(sampled)[0],
               "eps0_return": mode_score(eps0)[1], "sampled_return": mode_score(sampled)[1],
               "chosen": choose_sampler_mode(eps0, sampled)}
        atomic_write_json(path, strict(rec))
    return rec


# ------------------------------------------------------------------ throughput (one short run each)
def render_ms_per_frame(task: str, frames: int = 200) -> float:
    from steerlab.envs.metaworld_env import make_env

    env = make_env(task, seed=0, cameras=[CAMERA], image_size=IMAGE_SIZE)
    env.reset(seed=0)
    env.camera_renderer.render()  # the first frame builds the GL context
    t0 = time.perf_counter()
    for _ in range(frames):
        env.camera_renderer.render()
    ms = 1000 * (time.perf_counter() - t0) / frames
    env.close()
    return ms


def pretrain_samples_per_s(dataset: Path, steps: int = 30, batch: int = 64) -> float:
    from steerlab.core.checkpoint import read_json
    from steerlab.train.pretrain import PretrainConfig, pretrain

    with tempfile.TemporaryDirectory() as tmp:
        out = pretrain(PretrainConfig(dataset=str(dataset), out=str(Path(tmp) / "p"), steps=steps, batch_size=batch,
                                      policy={"vision_backbone": "small"}), progress=False)
        return steps * batch / read_json(out / "config.json")["pretrain"]["seconds"]


def finetune_steps_per_s(base: Path, task: str, env_steps: int = 400) -> float:
    """zprl, one env, 50 warm-up decisions then SAC updates (UTD 1): the loop as the suite runs it. The sampler
    mode is fixed and there is no final evaluation: the default rule's 100 base episodes and the final 100 would
    otherwise be most of what is timed (they were, once: 0.9 env steps/s)."""
    from steerlab.rl.sac import SACConfig
    from steerlab.train.finetune import FinetuneConfig, finetune

    with tempfile.TemporaryDirectory() as tmp:
        cfg = FinetuneConfig(base=str(base), method="zprl", env=task, env_steps=env_steps, out=str(Path(tmp) / "r"),
                             warmup_decisions=50, eval_every=10 * env_steps, eval_episodes=1, tensorboard=False,
                             checkpoint_every=10 * env_steps, sac=SACConfig(**ft.BENCH_SAC),
                             sampler_noise_scale=1.0, final_episodes=0, release_gate_episodes=0)
        t0 = time.perf_counter()
        finetune(cfg, progress=False)
        return env_steps / (time.perf_counter() - t0)


def measure(plan: Plan, task: str, pixel: Path, state: Path) -> dict:
    """Pixels vs state on this machine, one short run each (the load average says how busy it was)."""
    import torch

    from steerlab.core.checkpoint import read_json

    torch.set_num_threads(1)
    load = os.getloadavg()
    datasets = {k: Path(read_json(p / "config.json")["pretrain"]["dataset"]) for k, p in (("pixels", pixel),
                                                                                         ("state", state))}
    out = {"task": task, "load_average_1m_before": round(load[0], 2), "cpu_count": os.cpu_count(),
           "render_ms_per_frame": render_ms_per_frame(task)}
    for kind, base in (("pixels", pixel), ("state", state)):
        out[kind] = {"pretrain_samples_per_s": pretrain_samples_per_s(datasets[kind]),
                     "finetune_env_steps_per_s": finetune_steps_per_s(base, task)}
    out["ratios_state_over_pixels"] = {k: out["state"][k] / out["pixels"][k] for k in out["state"]}
    out["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    return out


def strict(obj):
    """NaN/inf -> None, so the results file is strict JSON (a missing measurement reads as null)."""
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# ------------------------------------------------------------------ the suite
def aggregate(plan: Plan, tasks: list[str], shifts: dict, bases: dict, throughput: dict | None) -> dict:
    rows, svp, done_runs, planned = {}, {}, 0, 0
    for task in tasks:
        b = evaluate_base(plan, task, shifts[task], bases[task]["pixels"])
        base = base_row(b["final_sampled"], b["final_eps0"], plan.final_episodes)
        rows[task] = {"shift": shifts[task], "base": base,  # + the rule's base-only numbers and choice per base
                      "sampler_mode": {k: base_mode(plan, task, shifts[task], bases[task][k], k) for k in ("pixels", "state")}}
        # ZPRL on state is compared with its own (state) base on the same final episodes, not with the pixel base
        sb = evaluate_base(plan, task, shifts[task], bases[task]["state"], kind="state")
        state_base = base_row(sb["final_sampled"], sb["final_eps0"], plan.final_episodes)
        for name in (*METHODS, STATE_ROW):
            mine = [c for c in cells(plan, task, shifts[task], bases[task]) if c["name"] == name]
            done = [load_cell(Path(c["out"]) / "result.json") for c in mine if ft.is_done(c)]
            done_runs, planned = done_runs + len(done), planned + len(mine)
            if done:
                row = method_row([run_outcome(r) for r in done], state_base if name == STATE_ROW else base)
                if name == STATE_ROW:
                    svp[task] = {"state": row, "state_base": state_base, "budget_env_steps": plan.env_steps}
                else:
                    rows[task][name] = row
        if task in svp and "zprl" in rows[task]:
            svp[task]["pixels"] = rows[task]["zprl"]
    return {"obs": "pixels", "image_size": list(IMAGE_SIZE), "camera": CAMERA, "state_in_observation": True,
            "seeds": plan.seeds, "runs_done": done_runs, "runs_planned": planned,
            "complete": done_runs == planned, "env_steps": plan.env_steps, "n_envs": plan.n_envs, "quick": plan.quick,
            "render_ms_per_frame": (throughput or {}).get("render_ms_per_frame"), "throughput": throughput,
            "methods": METHODS, "settings": "each method's defaults (no pixel-specific tuning)",
            "tasks": rows, "state_vs_pixels": svp}


def cells(plan: Plan, task: str, shift: str, bases: dict) -> list[dict]:
    """The runs of `task`: each method on the pixel base, ZPRL on the state base; the methods that keep the frozen
    sampler train in the mode the rule chose for that base (bases["modes"])."""
    modes = bases["modes"]
    out = [make_cell(plan, task, m, m, s, shift, bases["pixels"], modes["pixels"])
           for s in range(plan.seeds) for m in METHODS]
    out += [make_cell(plan, task, STATE_ROW, "zprl", s, shift, bases["state"], modes["state"])
            for s in range(plan.seeds)]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="steerlab bench finetune_pixels", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny bases and runs (minutes)")
    ap.add_argument("--env-steps", type=int, default=None)
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--measure", action="store_true", help="only the throughput measurement (pixels vs state)")
    ap.add_argument("--collect", action="store_true", help="only rebuild the JSON from recorded runs")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    plan = Plan(args.quick, args.env_steps, args.seeds)
    tasks = tuning_tasks(BENCHMARK_TASKS)
    shifts = shifts_for(tasks, args.quick)
    fam = assign_families(BENCHMARK_TASKS)
    bases = {}
    for t in tasks:
        demo_shift = shifts[t] if fam[t] == "coverage" else None
        bases[t] = {"pixels": pixel_base(t, demo_shift, plan), "state": base_for(t, fam[t], shifts[t], args.quick)}
    for t in tasks:  # the sampler-mode rule, fixed from base-only evaluations before any RL run
        bases[t]["modes"] = {kind: base_mode(plan, t, shifts[t], bases[t][kind], kind)["chosen"]
                             for kind in ("pixels", "state")}
    previous = load_cell(plan.results_file) or {}
    throughput = previous.get("throughput")
    if args.measure or throughput is None:
        throughput = measure(plan, tasks[0], bases[tasks[0]]["pixels"], bases[tasks[0]]["state"])
        print(f"throughput: {throughput}", flush=True)
        atomic_write_json(plan.results_file, strict({**previous, "throughput": throughput,
                                                     "render_ms_per_frame": throughput["render_ms_per_frame"]}))
        if args.measure:
            return 0
    if not args.collect:
        # seed-major, so an interrupted suite has every row at seed 0 before any at seed 1 (it resumes)
        todo = sorted((c for t in tasks for c in cells(plan, t, shifts[t], bases[t])),
                      key=lambda c: (c["seed"], c["name"] == STATE_ROW))
        for i, cell in enumerate(todo):
            t0 = time.perf_counter()
            res = ft.finetune_cell(cell)  # skipped when finished or running in another process
            print(f"[{i + 1}/{len(todo)}] {cell['task']} {cell['name']} seed {cell['seed']}: "
                  f"{'skipped' if 'skipped' in res else f'{time.perf_counter() - t0:.0f} s'}", flush=True)
    results = aggregate(plan, tasks, shifts, bases, throughput)
    atomic_write_json(plan.results_file, strict(results))
    print(f"results: {plan.results_file}")
    return 0


def table(results: dict) -> str:
    """README's pixel table (steerlab bench make_readme): per task the base and each row's final best mode (mean
    over the seeds done), its 95% interval vs the base's best, and AUC; then the cost of pixels on this machine."""
    def num(x):
        return "–" if x is None else f"{x:.2f}"

    lines = ["| task (shift) | row | seeds | final best | best − base's best [95%] | AUC |", "|---|---|---|---|---|---|"]
    for task, r in results["tasks"].items():
        b = r["base"]
        lines.append(f"| {task} ({r['shift']}) | base (pixels) | – | {num(b.get('final_best'))} "
                     f"({b.get('best_mode', '')}) | – | – |")
        named = [(m, r.get(m)) for m in results["methods"]]
        named.append(("zprl on state", results.get("state_vs_pixels", {}).get(task, {}).get("state")))
        for name, row in named:
            if not row:
                lines.append(f"| | {name} | 0 | not run yet | | |")
                continue
            lo, hi = row.get("best_vs_base_ci95") or (None, None)
            vs = f"{row['best_vs_base']:+.2f} [{num(lo)}, {num(hi)}]"
            if name == "zprl on state":  # its base is the state base, not the pixel base of the rows above
                sb = results.get("state_vs_pixels", {}).get(task, {}).get("state_base")
                if sb:
                    vs += f" vs its state base's best {num(sb.get('final_best'))} ({sb.get('best_mode', '')})"
                else:  # recorded before the state base had its final evaluation
                    m = r.get("sampler_mode", {}).get("state") or {}
                    vs = (f"its state base: ε = 0 {num(m.get('eps0'))}, sampled {num(m.get('sampled'))} "
                          f"({m.get('episodes', '?')} mode-split episodes)")
            lines.append(f"| | {name} | {row['seeds']} | {num(row.get('final_best'))} | {vs} | {num(row.get('auc'))} |")
    t = results.get("throughput") or {}
    done = (f"{results['runs_done']}/{results['runs_planned']} runs done"
            + ("" if results.get("complete") else " (incomplete: `steerlab bench finetune_pixels` resumes)"))
    lines.append("")
    lines.append(f"{done}; {results['env_steps']:,} env steps, {results['n_envs']} envs, 84×84 `{results['camera']}` "
                 f"+ state; the methods that keep the sampler train in the mode the rule chose per base. ")
    if t:
        lines[-1] += (f"Cost on this machine (load {t['load_average_1m_before']}–{t['load_average_1m_after']}, one short "
                      f"run each): render {t['render_ms_per_frame']:.1f} ms/frame; pretraining "
                      f"{t['pixels']['pretrain_samples_per_s']:.0f} vs {t['state']['pretrain_samples_per_s']:.0f} "
                      f"samples/s on state; RL {t['pixels']['finetune_env_steps_per_s']:.1f} vs "
                      f"{t['state']['finetune_env_steps_per_s']:.1f} env steps/s on state.")
    return "\n".join(lines)
