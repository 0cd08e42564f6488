"""Where the online-RL loop spends its time: one short ZPRL run under cProfile, one core.

    steerlab bench profile_finetune [--task push-wall-v3] [--env-steps 3000]

Writes benchmarks/results/profile_finetune.json: env steps/s of the loop, the bare simulator's rate on
the same task, and the share of wall time in SAC updates, flow sampling (chunk generation), the
simulator and feature encoding.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time

from steerlab.bench.common import RESULTS
from steerlab.bench.finetune import BENCH_SAC, sim_steps_per_s
from steerlab.bench.pretrain import base_checkpoint
from steerlab.core.checkpoint import atomic_write_json

# (label, file suffix, function name) of the cumulative-time entries we report
PARTS = [("sac_update", "rl/sac.py", "update_many"), ("chunk_generation", "rl/steering/{method}.py", "chunk"),
         ("simulator", "envs/metaworld_env.py", "step"), ("features", "train/finetune/finetuner.py", "_features"),
         ("replay_add", "rl/replay.py", "add")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="steerlab bench profile_finetune", description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="push-wall-v3")
    ap.add_argument("--method", default="zprl")
    ap.add_argument("--env-steps", type=int, default=3000)
    args = ap.parse_args(argv)
    import torch

    from steerlab.rl.sac import SACConfig
    from steerlab.train.finetune import FinetuneConfig, Finetuner

    torch.set_num_threads(1)
    cfg = FinetuneConfig(base=str(base_checkpoint(args.task, progress=False)), method=args.method,
                         env_steps=args.env_steps, out="/tmp/steerlab_profile_run", warmup_decisions=300,
                         eval_every=10**9, eval_episodes=1, tensorboard=False, sac=SACConfig(**BENCH_SAC), final_episodes=0, release_gate_episodes=0, sampler_noise_scale=1.0)
    tuner = Finetuner(cfg, progress=False)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.runcall(tuner.run, resume=False)
    wall = time.perf_counter() - t0
    stats = pstats.Stats(prof).stats
    shares = {}
    module = args.method.replace("-", "_")
    for label, suffix, fn in PARTS:
        suffix = suffix.format(method=module)
        cum = sum(v[3] for (f, _, name), v in stats.items() if f.endswith(suffix) and name == fn)
        shares[label] = cum / wall
    result = {"task": args.task, "method": args.method, "env_steps": args.env_steps, "wall_seconds": wall,
              "train_env_steps_per_s": args.env_steps / wall, "sim_steps_per_s": sim_steps_per_s(args.task),
              "time_share": shares, "sac": BENCH_SAC, "note": "cProfile adds overhead; shares, not absolute rates, are the point"}
    atomic_write_json(RESULTS / "profile_finetune.json", result)
    for k, v in shares.items():
        print(f"{k:>18}: {100 * v:5.1f}% of wall time")
    print(f"loop {result['train_env_steps_per_s']:.0f} env steps/s vs bare simulator {result['sim_steps_per_s']:.0f} steps/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
