"""ZPRL ablations on two tasks: λ, latent size, β, stochastic VIB vs autoencoder, bottleneck vs raw embedding.

    steerlab bench ablations --quick     # push-wall-v3 only, 10k env steps, 1 seed
    steerlab bench ablations             # push-wall-v3 + box-close-v3, 30k env steps, 2 seeds
    steerlab bench ablations --tasks push-wall-v3 --seeds 1 --variants lambda=0.05 lambda=0.5
    steerlab bench ablations --table

Latent size, β and the autoencoder variant need a different VIB: each is fitted post hoc
(`pretrain --vib-only`) on the *same* frozen imitation policy, so only the bottleneck differs. λ is
given as a ratio to the RMS of the base latent μ (λ / RMS(μ) ∈ {0.05, 0.1, 0.2, 0.3, 0.5}), because the
absolute scale of z depends on β and on training; the ratio is what transfers between VIBs.
Runs land in benchmarks/runs/ablations/ (--quick: ablations_quick/) and are skipped once recorded; the
table is rebuilt from every recorded run, with its seed count and budget.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from steerlab.bench.common import RESULTS, RUNS, load_cell, markdown_table
from steerlab.bench.finetune import finetune_cell, is_done
from steerlab.core.checkpoint import atomic_write_json

ROOT = RUNS / "ablations"
QUICK_ROOT = RUNS / "ablations_quick"  # a 10k-step run is not a truncated 30k one
# variant name -> (VIB refit overrides or None for the benchmark base, steering overrides, method)
VARIANTS = {
    # 0.3 is the library default (ZPRLConfig.latent_rms_ratio in rl/steering/zprl.py), the λ every finetune run uses
    **{f"lambda={r}": (None, {"latent_rms_ratio": r}, "zprl") for r in (0.05, 0.1, 0.2, 0.3, 0.5)},
    **{f"latent_dim={d}": ({"latent_dim": d}, {}, "zprl") for d in (4, 8, 16)},
    **{f"beta={b:g}": ({"vib_beta": b}, {}, "zprl") for b in (1e-3, 1e-4, 1e-5)},
    "autoencoder": ({"vib_stochastic": False}, {}, "zprl"),
    "embedding-residual": (None, {}, "embedding-residual"),
}


def vib_variant(task: str, overrides: dict | None) -> Path:
    """The benchmark base, or the same frozen policy with a VIB refitted post hoc with `overrides`."""
    from steerlab.bench.pretrain import base_checkpoint
    from steerlab.train.pretrain import PretrainConfig, pretrain

    base = base_checkpoint(task, progress=False)
    if overrides is None:
        return base
    out = vib_path(task, overrides)
    if not (out / "config.json").is_file():
        ds = RUNS / "datasets" / f"{task}__mixed__n50__seed0"
        pretrain(PretrainConfig(dataset=str(ds), out=str(out), steps=2000, vib_only=True, from_ckpt=str(base),
                                policy=dict(overrides)), progress=False)
    return out


def build_policy(cell: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    return {"ckpt": str(vib_variant(cell["task"], cell["vib"]))}


def policy_done(cell: dict) -> bool:
    from steerlab.bench.pretrain import base_checkpoint_path

    path = base_checkpoint_path(cell["task"]) if cell["vib"] is None else vib_path(cell["task"], cell["vib"])
    return (path / "config.json").is_file()


def vib_path(task: str, overrides: dict) -> Path:
    name = "_".join(f"{k}={v}" for k, v in sorted(overrides.items()))
    return RUNS / "pretrain" / f"{task}__mixed__seed0__vib_{name}"


def ablation_cell(cell: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    cell = dict(cell, base=str(vib_variant(cell["task"], VARIANTS[cell["name"]][0])))
    return finetune_cell(cell)


def aggregate(root: Path = ROOT) -> dict:
    runs = [r for r in (load_cell(p) for p in sorted(root.glob("*/result.json"))) if r]
    out: dict = {}
    for r in runs:
        out.setdefault(r["task"], {}).setdefault(r["name"], []).append(r)
    return {task: {name: {"auc": float(np.mean([r["auc"] for r in rs])),
                          "final_success": float(np.mean([r["final_eval_success"] for r in rs])),
                          "explore_jerk": float(np.mean([r["explore_jerk"] for r in rs])),
                          **({"final_zero_noise_success": float(np.mean([r["final_zero_noise_success"] for r in rs]))}
                             if all("final_zero_noise_success" in r for r in rs) else {}),
                          "seeds": len(rs), "env_steps": rs[0]["env_steps"]}
                   for name, rs in by.items()} for task, by in out.items()}


def table(results: dict) -> str:
    order = list(VARIANTS)
    rows = [[task, name, str(m["seeds"]), f"{m['env_steps'] // 1000}k", f"{m['auc']:.2f}", f"{m['final_success']:.2f}",
             f"{m['final_zero_noise_success']:.2f}" if "final_zero_noise_success" in m else "—",
             f"{1e3 * m['explore_jerk']:.2f}"]
            for task, by in results.items() for name, m in sorted(by.items(), key=lambda kv: order.index(kv[0]))]
    return markdown_table(["task", "variant", "seeds", "env steps", "AUC", "final success", "final success from ε = 0",
                           "explore mean jerk ×1e3"], rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="steerlab bench ablations", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tasks", nargs="+", default=None)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--seeds", type=int, default=None, help="default: 1 with --quick, else 2")
    ap.add_argument("--env-steps", type=int, default=None, help="default: 10k with --quick, else 30k")
    ap.add_argument("--address", default=None)
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--collect", action="store_true", help="run nothing: rebuild the results JSON from recorded runs")
    args = ap.parse_args(argv)
    if args.table:
        print(table(load_cell(RESULTS / ("ablations_quick.json" if args.quick else "ablations.json"))))
        return 0
    root = QUICK_ROOT if args.quick else ROOT
    results_file = RESULTS / ("ablations_quick.json" if args.quick else "ablations.json")
    if args.collect:
        atomic_write_json(results_file, aggregate(root))
        print(table(load_cell(results_file)))
        return 0
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; choose from {list(VARIANTS)}")
    from steerlab.bench.sweep import run_grid

    tasks = args.tasks or (["push-wall-v3"] if args.quick else ["push-wall-v3", "box-close-v3"])
    seeds = args.seeds or (1 if args.quick else 2)
    env_steps = args.env_steps or (10_000 if args.quick else 30_000)
    # build every policy first (one Ray task each) so concurrent runs never race to create the same one
    refits = [{"task": t, "vib": VARIANTS[v][0]} for t in tasks for v in args.variants]
    unique = list({(c["task"], str(c["vib"])): c for c in refits}.values())
    run_grid(unique, build_policy, policy_done, use_ray=not args.no_ray, address=args.address, desc="policies")
    cells = [{"task": t, "name": v, "method": VARIANTS[v][2], "seed": s, "env_steps": env_steps,
              "eval_every": 2_500, "eval_episodes": 20, "final_episodes": 50, "warmup": 1_000,
              "root": str(root), "steering": VARIANTS[v][1]}
             for s in range(seeds) for t in tasks for v in args.variants]
    run_grid(cells, ablation_cell, is_done, use_ray=not args.no_ray, address=args.address, desc="ablations")
    results = aggregate(root)
    atomic_write_json(results_file, results)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
