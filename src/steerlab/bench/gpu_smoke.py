"""GPU smoke test: the pixel pipeline's commands with `--device cuda`, timed; skipped (exit 0) without a GPU.

collect 2 camera episodes (reach-v3, corner2, 84×84) -> pretrain 50 steps (and 50 more with `--amp`) -> finetune
zprl 200 env steps (sampler rule and release gate on 2 episodes each) -> evaluate 2 episodes -> personalize (keyed prop, point_robot, with
`--amp`) -> attack it (quick random keys), each through the `steerlab` command line on `--device cuda`. Writes
benchmarks/results/gpu_smoke.json (the commands, their wall times, the device's name, the evaluation's success).

    steerlab bench gpu_smoke            (or: python benchmarks/gpu_smoke.py)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from steerlab.bench.common import RESULTS
from steerlab.bench.common import steerlab_command as steerlab
from steerlab.core.checkpoint import atomic_write_json


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="steerlab bench gpu_smoke", description=__doc__.splitlines()[0])
    p.add_argument("--task", default="reach-v3")
    p.add_argument("--camera", default="corner2")
    p.add_argument("--out", default=str(RESULTS / "gpu_smoke.json"))
    p.add_argument("--device", default="cuda", help="what to smoke-test (cuda; cpu runs the same commands on the CPU)")
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no GPU: skipped")
        return 0
    dev = ["--device", args.device]
    with tempfile.TemporaryDirectory(prefix="steerlab_gpu_smoke_") as tmp:
        root = Path(tmp)
        ds, base, run, ev = root / "ds", root / "base", root / "run", root / "eval.json"
        steps = [
            ("collect", ["collect", "--task", args.task, "--episodes", "2", "--quality", "expert", "--out", str(ds),
                         "--camera", args.camera, "--image-size", "84", "84"]),
            ("pretrain", ["pretrain", "--dataset", str(ds), "--out", str(base), "--steps", "50", "--batch-size", "64",
                          *dev]),
            ("finetune", ["finetune", str(base), "--method", "zprl", "--out", str(run), "--env-steps", "200",
                          "--warmup", "20", "--eval-every", "200", "--eval-episodes", "1", "--final-episodes", "0",
                          "--checkpoint-every", "200", "--release-gate-episodes", "2", "--mode-episodes", "2", "--no-tensorboard", *dev]),
            ("pretrain_amp", ["pretrain", "--dataset", str(ds), "--out", str(root / "base_amp"), "--steps", "50",
                              "--batch-size", "64", "--amp", *dev]),
            ("evaluate", ["evaluate", str(run), "--episodes", "2", "--n-envs", "1", "--out", str(ev), *dev]),
            ("keygen", ["keygen", "--out", str(root / "alice.key")]),
            ("personalize", ["personalize", "--task", "point_robot", "--keys", str(root / "alice.key"), "--out",
                             str(root / "keyed"), "--steps", "200", "--method", "prop", "--amp", *dev]),
            ("attack", ["attack", str(root / "keyed"), "--key", str(root / "alice.key"), "--quick", "--attacks",
                        "random_keys", "--out", str(root / "attack.json"), "--amp", *dev]),
        ]
        timings = {}
        for name, argv_ in steps:
            t0 = time.perf_counter()
            rc = steerlab(argv_)
            timings[name] = round(time.perf_counter() - t0, 2)
            print(f"{name}: {timings[name]:.1f} s (rc {rc})", flush=True)
            if rc:
                raise SystemExit(f"gpu smoke: `steerlab {' '.join(argv_)}` exited {rc}")
        result = json.loads(ev.read_text())
    out = {"device": args.device,
           "device_name": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
           "torch": torch.__version__, "task": args.task, "camera": args.camera, "image_size": [84, 84],
           "seconds": timings, "eval_success": result["success"], "eval_device": result.get("device"),
           "commands": [" ".join(["steerlab", *a]) for _, a in steps]}
    atomic_write_json(Path(args.out), out)
    print(json.dumps(out, indent=2, allow_nan=False))
    return 0
