"""Screen keyed-PPO settings for PRoP on PandaReach, one (setting, seed) at a time.

    steerlab bench privacy_panda_screen --seed 5 --adv-norm batch --std shared   # the recorded benchmark's setting
    steerlab bench privacy_panda_screen --seed 5                      # the library default

Trains the same cell as `steerlab bench privacy` (table, prop, 50k steps -> 100k keyed PPO environment
steps, seed-derived user key, PPO base cached under benchmarks/runs/privacy_bases) with PPOConfig fields
overridden, scores the correct key, no key and 4 random / 4 one-bit-off keys, and appends the result with
the full training log to benchmarks/results/privacy_panda_screen.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import numpy as np

from steerlab.bench.common import BENCH_DIR, RESULTS, load_cell
from steerlab.core.checkpoint import atomic_write_json

OUT = RESULTS / "privacy_panda_screen.json"


def main(argv: list[str] | None = None) -> int:
    import torch

    from steerlab.privacy.key_cases import evaluate_key_cases
    from steerlab.privacy.keys import UserKey
    from steerlab.privacy.methods import PersonalizeConfig, build_personalized
    from steerlab.privacy.tasks.panda_rl import PandaReachTask
    from steerlab.privacy.tasks.registry import make_task

    ap = argparse.ArgumentParser(prog="steerlab bench privacy_panda_screen", description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--steps", type=int, default=50_000)
    ap.add_argument("--adv-norm", default=None, help="PPOConfig.adv_norm (default: the library's)")
    ap.add_argument("--std", choices=["shared", "objective"], default=None,
                    help="keyed PPO's exploration std: one shared, or one per objective (default: the task's)")
    ap.add_argument("--label", default=None, help="name of the setting in the results file")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    overrides = {"adv_norm": args.adv_norm} if args.adv_norm else {}
    task = make_task("panda_reach", cache_dir=str(BENCH_DIR / "runs" / "privacy_bases"))
    if args.std:
        task.std_per_objective = args.std == "objective"
    task.ppo_config = lambda steps, seed, lr=None: dataclasses.replace(
        PandaReachTask.ppo_config(task, steps, seed, lr), **overrides)
    t0 = time.perf_counter()
    base = task.train_base(args.seed)
    rng = np.random.default_rng(1_000 + args.seed)  # the benchmark's seed-derived user key
    users = [UserKey(rng.bytes(16))]
    p = build_personalized("prop", task, base, users, PersonalizeConfig(steps=args.steps, seed=args.seed, progress=True))
    train_s = time.perf_counter() - t0
    cases = evaluate_key_cases(p, task, args.seed, n_keys=4)
    settings = overrides | ({"std": args.std} if args.std else {})
    label = args.label or ",".join(f"{k}={v}" for k, v in settings.items()) or "default"
    row = {"label": label, "seed": args.seed, "steps": args.steps, "settings": settings,
           "train_seconds": train_s, "cases": cases, "train_log": p.log}
    results = load_cell(OUT) or {"runs": []}
    results["runs"] = [r for r in results["runs"] if (r["label"], r["seed"]) != (label, args.seed)] + [row]
    atomic_write_json(OUT, results)
    print(label, "seed", args.seed, {k: (round(v["general"], 3), round(v["personal"], 3)) for k, v in cases.items()},
          f"{train_s:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
