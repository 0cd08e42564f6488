"""Milliseconds per SAC update (critic + actor + α + target) on one CPU thread, for a few sizes.

    steerlab bench sac_update_speed            # writes benchmarks/results/sac_update_speed.json
    steerlab bench sac_update_speed --quick    # fewer repeats (a smoke test)

One "update" is what `SAC.update` does per gradient step; the training loop pays `utd` of them per
decision. Observations are ZPRL-sized ([embedding 64, latent 8] → 72 dims, 8-dim actor output) by
default. Both wall-clock and thread CPU time are recorded: on a shared machine the CPU time is the
steadier number, and the load average at the start and end says how shared it was.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import torch

from steerlab.bench.common import RESULTS
from steerlab.core.checkpoint import atomic_write_json, versions
from steerlab.rl.sac import SAC, SACConfig

# (batch, hidden, critic heads, critic_pair)
SETTINGS = [(256, 256, 2, 2), (256, 128, 2, 2), (128, 128, 2, 2), (128, 256, 2, 2), (256, 256, 10, 2)]


def time_updates(cfg: SACConfig, obs_dim: int, act_dim: int, repeats: int, per_block: int,
                 warmup: int = 5) -> tuple[SAC, dict]:
    """ms per `SAC.update` of `cfg` on one fixed random batch: `repeats` blocks of `per_block` updates after
    `warmup` (allocator, fused-Adam state); the median and minimum over blocks, wall and thread CPU time."""
    sac, batch = SAC(obs_dim, act_dim, cfg), cfg.batch_size
    g = torch.Generator().manual_seed(0)
    data = {"obs": torch.randn(batch, obs_dim, generator=g), "action": torch.rand(batch, act_dim, generator=g) * 2 - 1,
            "reward": torch.randn(batch, generator=g), "next_obs": torch.randn(batch, obs_dim, generator=g),
            "discount": torch.full((batch,), 0.99**2), "terminated": torch.zeros(batch)}
    for _ in range(warmup):
        sac.update(data)
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.thread_time()
        for _ in range(per_block):
            sac.update(data)
        wall.append((time.perf_counter() - t0) / per_block * 1e3)
        cpu.append((time.thread_time() - c0) / per_block * 1e3)
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    return sac, {"ms_wall_median": round(med(wall), 2), "ms_wall_min": round(min(wall), 2),
                 "ms_cpu_median": round(med(cpu), 2), "ms_cpu_min": round(min(cpu), 2)}


def measure(batch: int, hidden: int, heads: int, pair: int, obs_dim: int, act_dim: int, repeats: int,
            per_block: int) -> dict:
    cfg = SACConfig(hidden=hidden, batch_size=batch, num_critics=heads, critic_pair=pair)
    _, times = time_updates(cfg, obs_dim, act_dim, repeats, per_block)
    return {"batch": batch, "hidden": hidden, "num_critics": heads, "critic_pair": pair, **times}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="steerlab bench sac_update_speed", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="3 blocks of 3 updates per setting")
    p.add_argument("--obs-dim", type=int, default=72)
    p.add_argument("--act-dim", type=int, default=8)
    p.add_argument("--out", default=str(RESULTS / "sac_update_speed.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    repeats, per_block = (3, 3) if args.quick else (15, 5)
    load_before = os.getloadavg()[0]
    rows = []
    for setting in SETTINGS:
        row = measure(*setting, args.obs_dim, args.act_dim, repeats, per_block)
        rows.append(row)
        print(f"batch {row['batch']:4d}  hidden {row['hidden']:4d}  heads {row['num_critics']:2d} "
              f"(min over {row['critic_pair']})  {row['ms_wall_median']:6.2f} ms/update wall  "
              f"{row['ms_cpu_median']:6.2f} ms cpu (min {row['ms_cpu_min']:.2f})", flush=True)
    result = {"what": "ms per SAC.update on one thread (median over blocks); see steerlab.bench.sac_update_speed",
              "obs_dim": args.obs_dim, "act_dim": args.act_dim, "threads": 1, "quick": args.quick,
              "repeats": repeats, "updates_per_block": per_block,
              "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
              "cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
              "versions": versions(), "results": rows}
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
