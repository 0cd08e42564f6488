"""`steerlab quickstart --pixels`: collect camera demos -> pretrain an image policy -> evaluate it, on a CPU.

Each step is the `steerlab` command a user would type (printed as it runs), so the quickstart is also the
recipe: `collect --camera corner2 --image-size 84 84`, `pretrain` (the small conv encoder, fused with the
state; `--device auto` uses a GPU when there is one), `evaluate`. Results: <out>/quickstart_pixels.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from pathlib import Path

from steerlab.core.checkpoint import atomic_write_json

# sized for ~10 minutes on 2 CPU cores (README): reach-v3 is learnable from 84x84 frames + state in 1,500 steps
PIXEL_DEFAULTS = {"task": "reach-v3", "episodes": 20, "steps": 1500, "eval_episodes": 10, "batch_size": 64}


def steerlab(argv: list[str]) -> int:
    """Run one stage command exactly as `steerlab <argv>` does."""
    from steerlab.cli import main

    return main(argv)


def run_pixels(args: argparse.Namespace) -> int:
    defaults = getattr(args, "parser_defaults", {})

    def pick(name: str, fallback):  # the user's value, else the pixel pipeline's own default
        value = getattr(args, name)
        return fallback if name in defaults and value == defaults[name] else value

    task = pick("task", PIXEL_DEFAULTS["task"])
    episodes = pick("episodes", PIXEL_DEFAULTS["episodes"])
    steps = pick("steps", PIXEL_DEFAULTS["steps"])
    eval_episodes = pick("eval_episodes", PIXEL_DEFAULTS["eval_episodes"])
    out = Path(pick("out", "runs/quickstart_pixels"))
    ds, ckpt, result = out / "dataset", out / "policy", out / "eval.json"
    size = [str(v) for v in args.image_size]
    commands = [
        ("collect", ["collect", "--task", task, "--episodes", str(episodes), "--quality", "expert", "--seed",
                     str(args.seed), "--camera", args.camera, "--image-size", *size, "--out", str(ds), "--overwrite"]),
        ("pretrain", ["pretrain", "--dataset", str(ds), "--out", str(ckpt), "--steps", str(steps), "--batch-size",
                      str(PIXEL_DEFAULTS["batch_size"]), "--seed", str(args.seed), "--device", args.device,
                      "--policy-json", json.dumps({"vision_backbone": "small"}), "--overwrite"]),
        ("evaluate", ["evaluate", str(ckpt), "--episodes", str(eval_episodes), "--seed", str(args.seed),
                      "--n-envs", "2", "--device", args.device, "--out", str(result), "--overwrite"]),
    ]
    seconds = {}
    for name, argv in commands:
        print(f"$ steerlab {shlex.join(argv)}", flush=True)
        t0 = time.perf_counter()
        rc = steerlab(argv)
        seconds[name] = round(time.perf_counter() - t0, 1)
        if rc:
            return rc
    res = json.loads(result.read_text())
    summary = {"task": task, "camera": args.camera, "image_size": [int(v) for v in args.image_size],
               "episodes": episodes, "pretrain_steps": steps, "eval_episodes": eval_episodes, "seed": args.seed,
               "success": res["success"], "ci95": res["ci95"], "seconds": seconds,
               "total_seconds": round(sum(seconds.values()), 1), "commands": [shlex.join(["steerlab", *a])
                                                                             for _, a in commands]}
    atomic_write_json(out / "quickstart_pixels.json", summary)
    lo, hi = res["ci95"]
    print(f"\n## quickstart --pixels: {task} from {args.camera} {'x'.join(size)} frames + state\n")
    print("| demos | pretraining steps | success [95% CI] | collect | pretrain | evaluate |")
    print("|---|---|---|---|---|---|")
    print(f"| {episodes} expert | {steps} | {res['success']:.2f} [{lo:.2f}, {hi:.2f}] | {seconds['collect']:.0f} s | "
          f"{seconds['pretrain']:.0f} s | {seconds['evaluate']:.0f} s |")
    print(f"\nresults: {out / 'quickstart_pixels.json'}; steer it next: steerlab finetune {ckpt} --method zprl")
    return 0
