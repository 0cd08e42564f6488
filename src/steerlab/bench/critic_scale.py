"""Critic scale for every method alike (issue 26, item 4): does a bigger critic change the ranking on the tuning tasks?

Each variant is a set of SAC fields laid over every method's picked setting alike (nothing else changes: the grid's
recipe, budget, evaluation sizes, seeds, and for zprl and the action residual the sampler-mode rule's mode). Runs go
in `runs/critic_scale/<variant>/`, seed-major, resumable and claimed per run (several processes may share them).
Each run is set beside the same method's run with the grid's bench critic (2 × 128, UTD 1) at the same seed:
zprl and action-residual under the rule (runs/finetune_shift_rule), dsrl from the grid (runs/finetune_shift). The
question is the ranking: per task and seed, is ZPRL's AUC (and final best mode) ≥ DSRL's with the bench critic,
and is it still with the variant's?

    steerlab bench critic_scale [--variant layernorm] [--seeds 1] [--methods zprl dsrl] [--device auto]
    steerlab bench critic_scale --collect      # run nothing: rebuild benchmarks/results/critic_scale.json

VARIANTS says what each costs here: `layernorm` is the part of DSRL's published recipe a CPU pays for (LayerNorm
critics at the bench width, UTD 1); `dsrl-paper` is the whole recipe (LayerNorm critics 3 × 2048, UTD 20), ≈ 108
core-hours per 50k run on this CPU (critic_scale_cost.json) — a GPU's job (`--device cuda`).
"""

from __future__ import annotations

import argparse

from steerlab.bench import finetune as ft
from steerlab.bench.common import RESULTS, RUNS, load_cell
from steerlab.bench.finetune_shift import (
    BENCHMARK_TASKS,
    Plan,
    build_bases,
    make_cell,
    picked_settings,
    shifts_for,
    tuning_tasks,
)
from steerlab.bench.sampler_rule import KEEPS_SAMPLER, grid_modes
from steerlab.bench.suite import run_outcome
from steerlab.core.io import atomic_write_json
from steerlab.train.finetune.config import ABSENT_MEANS, PRESETS

ROOT = RUNS / "critic_scale"
VARIANTS = {
    "layernorm": {"critic_layer_norm": True},
    "dsrl-paper": {k: v for k, v in PRESETS["dsrl-paper"].items() if k != "hidden"},
}
"""variant -> SAC fields over the bench preset, for every method alike."""
METHODS = ("zprl", "dsrl", "action-residual")


def bench_run_dir(plan: Plan, task: str, method: str, seed: int):
    """The same method's run with the bench critic at `seed` (what the variant is compared with)."""
    from steerlab.bench.shift_rule import ROOT as RULE_ROOT

    root = RULE_ROOT if method in KEEPS_SAMPLER else plan.grid_root
    return root / f"{task}__{method}__seed{seed}"


def cells(plan: Plan, variant: str, tasks: list[str], seeds: int, methods: list[str], bases: dict, shifts: dict,
          modes: dict, device: str) -> list[dict]:
    settings = picked_settings(plan.sweep_key, methods)
    out = []
    for s in range(seeds):
        for t in tasks:
            for m in methods:
                scale = modes[t] if m in KEEPS_SAMPLER else ABSENT_MEANS["sampler_noise_scale"]
                c = make_cell(plan, t, m, m, s, shifts[t], bases[t], settings[m], ROOT / variant,
                              sampler_noise_scale=scale)
                c["sac"] = {**c["sac"], **VARIANTS[variant]}
                c["device"] = device
                out.append(c)
    return out


def outcome(path) -> dict | None:
    r = load_cell(path / "result.json")
    if r is None or "final_eval_success" not in r:
        return None
    o = run_outcome(r)
    return {"auc": round(o["auc"], 4), "final_best": max(v for v in (o["sampled"], o["eps0"]) if v is not None)}


def collect(plan: Plan, tasks: list[str], methods: list[str]) -> dict:
    variants = {}
    for v in VARIANTS:
        runs = {}
        for d in sorted((ROOT / v).glob("*__*__seed*")):
            task, method, seed = d.name.split("__")
            seed = int(seed.removeprefix("seed"))
            here = outcome(d)
            if here is None or task not in tasks or method not in methods:
                continue
            runs.setdefault(task, {}).setdefault(method, {})[seed] = {
                "variant": here, "bench": outcome(bench_run_dir(plan, task, method, seed))}
        if runs:
            variants[v] = {"sac": VARIANTS[v], "tasks": runs, "ranking": ranking(runs)}
    return {"what": "each variant's critic laid over every method's picked setting alike (grid recipe, rule's mode), "
                    "per task and seed beside the same method's run with the bench critic at that seed; ranking: "
                    "ZPRL vs DSRL (AUC, final best mode) with each critic, over the (task, seed) pairs both have",
            "env_steps": plan.env_steps, "variants": variants}


def ranking(runs: dict) -> dict:
    """Over (task, seed) pairs with zprl and dsrl under both critics: how often ZPRL ≥ DSRL with each."""
    pairs = [(t, s) for t, by in runs.items() if "zprl" in by and "dsrl" in by
             for s in sorted(set(by["zprl"]) & set(by["dsrl"]))
             if by["zprl"][s]["bench"] and by["dsrl"][s]["bench"]]
    out = {"pairs": [f"{t} seed {s}" for t, s in pairs]}
    for key in ("auc", "final_best"):
        for m in ("zprl", "dsrl"):  # means over the same pairs: the per-pair ranking is noisy at one seed each
            for critic in ("bench", "variant"):
                out[f"mean_{key}_{m}_{critic}"] = (round(sum(runs[t][m][s][critic][key] for t, s in pairs) / len(pairs),
                                                         4) if pairs else None)
        for critic in ("bench", "variant"):
            out[f"zprl_ge_dsrl_{key}_{critic}"] = sum(
                runs[t]["zprl"][s][critic][key] >= runs[t]["dsrl"][s][critic][key] for t, s in pairs)
        out[f"ranking_changed_{key}"] = [
            f"{t} seed {s}" for t, s in pairs
            if (runs[t]["zprl"][s]["bench"][key] >= runs[t]["dsrl"][s]["bench"][key])
            != (runs[t]["zprl"][s]["variant"][key] >= runs[t]["dsrl"][s]["variant"][key])]
    return out


def main(argv: list[str] | None = None) -> int:
    import torch

    ap = argparse.ArgumentParser(prog="steerlab bench critic_scale", description=__doc__.splitlines()[0])
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="layernorm")
    ap.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1, seed-major (the bench runs have 3)")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--device", default="auto", help="where the SAC runs (auto: cuda when there is one)")
    ap.add_argument("--collect", action="store_true", help="run nothing: rebuild the JSON")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    plan = Plan(False)
    tasks = tuning_tasks(sorted(BENCHMARK_TASKS))
    if not args.collect:
        shifts = shifts_for(tasks, False)
        todo = cells(plan, args.variant, tasks, args.seeds, args.methods, build_bases(tasks, shifts, False), shifts,
                     grid_modes(tasks, False), args.device)
        for i, cell in enumerate(todo):
            res = ft.finetune_cell(cell)  # skipped when finished or running in another process
            what = "skipped" if "skipped" in res else f"auc {res['auc']:.2f}"
            print(f"[{i + 1}/{len(todo)}] {args.variant} {cell['task']} {cell['method']} seed {cell['seed']}: {what}",
                  flush=True)
    out = collect(plan, tasks, list(METHODS))
    atomic_write_json(RESULTS / "critic_scale.json", out)
    print(f"-> {RESULTS / 'critic_scale.json'}")
    return 0


def table(results: dict) -> str:
    from steerlab.bench.common import markdown_table

    if not results["variants"]:
        return "_No critic-scale run recorded yet: run `steerlab bench critic_scale`._"
    text = []
    for v, rec in results["variants"].items():
        rows = []
        for t, by in rec["tasks"].items():
            for m, seeds in by.items():
                for s, r in sorted(seeds.items(), key=lambda kv: int(kv[0])):
                    b, h = r["bench"], r["variant"]
                    # AUC to 3 places: the ranking compares unrounded AUCs, which may differ in the third
                    rows.append([t, m, str(s), "–" if not b else f"{b['auc']:.3f}", f"{h['auc']:.3f}",
                                 "–" if not b else f"{b['final_best']:.2f}", f"{h['final_best']:.2f}"])
        rk = rec["ranking"]
        n = len(rk["pairs"])
        line = (f"ZPRL ≥ DSRL over {n} (task, seed) pair{'s' if n != 1 else ''}: AUC {rk['zprl_ge_dsrl_auc_bench']}/{n} "
                f"with the bench critic, {rk['zprl_ge_dsrl_auc_variant']}/{n} with `{v}`; final best mode "
                f"{rk['zprl_ge_dsrl_final_best_bench']}/{n} and {rk['zprl_ge_dsrl_final_best_variant']}/{n}. Ranking "
                f"changed on: AUC {', '.join(rk['ranking_changed_auc']) or 'none'}; final best "
                f"{', '.join(rk['ranking_changed_final_best']) or 'none'}. Mean AUC over these pairs, bench critic → "
                f"`{v}`: zprl {rk['mean_auc_zprl_bench']:.3f} → {rk['mean_auc_zprl_variant']:.3f}, dsrl "
                f"{rk['mean_auc_dsrl_bench']:.3f} → {rk['mean_auc_dsrl_variant']:.3f}; mean final best: zprl "
                f"{rk['mean_final_best_zprl_bench']:.2f} → {rk['mean_final_best_zprl_variant']:.2f}, dsrl "
                f"{rk['mean_final_best_dsrl_bench']:.2f} → {rk['mean_final_best_dsrl_variant']:.2f}." if n else
                "No (task, seed) pair has both ZPRL and DSRL with this critic yet.")
        text.append(f"`{v}` (SAC fields {rec['sac']} over the bench preset, every method alike):\n\n"
                    + markdown_table(["task", "method", "seed", "AUC bench critic", f"AUC {v}",
                                      "final best bench critic", f"final best {v}"], rows) + "\n\n" + line)
    return "\n\n".join(text)


if __name__ == "__main__":
    raise SystemExit(main())
