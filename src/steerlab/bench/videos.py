"""Rollout videos of the benchmark policies: the base policy and each finetuned method, same episodes.

    steerlab bench videos                                   # every task with a recorded zprl run
    steerlab bench videos --tasks push-wall-v3 --methods base zprl dsrl --episodes 2

Writes benchmarks/results/videos/<task>__<method>.mp4 (the first `--episodes` evaluation episodes of
seed 0, the same initial states for every method). Finetuned policies are read from the run folders of
`steerlab bench finetune` (benchmarks/runs/finetune/<task>__<method>__seed0/policy); a method whose
policy is not on disk is skipped with a message. Offscreen rendering without a GPU: see README.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from steerlab.bench.common import RESULTS, RUNS

METHODS = ["base", "zprl", "action-residual", "dsrl"]


def policy_folder(task: str, method: str, seed: int = 0) -> Path:
    from steerlab.bench.pretrain import base_checkpoint_path

    if method == "base":
        return base_checkpoint_path(task)
    return RUNS / "finetune" / f"{task}__{method}__seed{seed}" / "policy"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="steerlab bench videos", description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=None, help="default: tasks with a finished zprl run on disk")
    ap.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    ap.add_argument("--episodes", type=int, default=2)
    args = ap.parse_args(argv)
    from steerlab.core.checkpoint import load_policy
    from steerlab.eval.video import record_video

    tasks = args.tasks or sorted(p.parent.parent.name.split("__")[0]
                                 for p in (RUNS / "finetune").glob("*__zprl__seed0/policy/config.json"))
    if not tasks:
        print("no finished zprl run with its policy on disk: run steerlab.bench.finetune first, or pass --tasks")
        return 1
    for task in tasks:
        for method in args.methods:
            folder = policy_folder(task, method)
            if not (folder / "config.json").is_file():
                print(f"{task} {method}: no policy at {folder}, skipped")
                continue
            out = record_video(load_policy(folder), task, RESULTS / "videos" / f"{task}__{method}.mp4",
                               episodes=args.episodes, seed=0)
            print(f"{task} {method}: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
