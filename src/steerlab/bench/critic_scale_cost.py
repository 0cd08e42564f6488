"""What DSRL's published critics cost on a CPU: one SAC update at batch 256, the bench critic (hidden 128,
2 layers) against DSRL's (LayerNorm, 3 × 2048; `--preset dsrl-paper`), and what a 50k-step run pays at each UTD.

    steerlab bench critic_scale_cost           # writes benchmarks/results/critic_scale_cost.json
    steerlab bench critic_scale_cost --quick   # fewer repeats (a smoke test)

One thread (what each run of a benchmark grid gets). Observations are ZPRL-sized ([embedding 64, latent 8] →
72 dims, 8-dim actor output), as benchmarks/sac_update_speed.py. Thread CPU time is the steadier number on a
shared machine; the load average at the start and end says how shared it was.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import torch

from steerlab.bench.common import RESULTS
from steerlab.bench.sac_update_speed import time_updates
from steerlab.core.checkpoint import atomic_write_json, versions
from steerlab.rl.sac import SACConfig
from steerlab.train.finetune.config import PRESETS

BATCH = 256
# name -> SAC fields (the actor is the bench actor in both: only the critic changes)
SETTINGS = {"bench (critic 2 × 128)": {"hidden": 128},
            "dsrl-paper critic (LayerNorm 3 × 2048)": {k: v for k, v in PRESETS["dsrl-paper"].items() if k != "utd"}}
ENV_STEPS, N_ACTION_STEPS = 50_000, 2  # a grid run: 25k decisions


def measure(fields: dict, obs_dim: int, act_dim: int, repeats: int, per_block: int) -> dict:
    sac, times = time_updates(SACConfig(batch_size=BATCH, **fields), obs_dim, act_dim, repeats, per_block, warmup=2)
    critic_params = sum(p.numel() for p in sac.critic.parameters())
    return {"sac": fields, "critic_params": critic_params, "ms_wall_median": times["ms_wall_median"],
            "ms_cpu_median": times["ms_cpu_median"], "ms_cpu_min": times["ms_cpu_min"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="steerlab bench critic_scale_cost", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2 blocks of 2 updates per setting")
    p.add_argument("--out", default=str(RESULTS / "critic_scale_cost.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    repeats, per_block = (2, 2) if args.quick else (5, 4)
    load0 = os.getloadavg()[0]
    rows = {name: measure(f, 72, 8, repeats, per_block) for name, f in SETTINGS.items()}
    decisions = ENV_STEPS // N_ACTION_STEPS
    for r in rows.values():  # SAC updates alone, one core, for a 50k-step run (no env, no evaluation)
        r["run_hours_50k"] = {f"utd{u}": round(decisions * u * r["ms_cpu_median"] / 3.6e6, 2) for u in (1, 20)}
    bench, paper = rows.values()
    result = {"batch": BATCH, "obs_dim": 72, "act_dim": 8, "threads": 1, "repeats": repeats, "per_block": per_block,
              "quick": args.quick, "results": rows, "cost_ratio_per_update": round(paper["ms_cpu_median"] /
                                                                                   bench["ms_cpu_median"], 1),
              "env_steps": ENV_STEPS, "decisions": decisions, "load_average_1min": [load0, os.getloadavg()[0]],
              "cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
              "versions": versions()}
    atomic_write_json(Path(args.out), result)
    for name, r in rows.items():
        print(f"{name}: {r['ms_cpu_median']:.1f} ms/update (CPU), 50k-step run: {r['run_hours_50k']} h of updates")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
