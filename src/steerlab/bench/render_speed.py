"""Meta-World camera frames per second on this CPU: the default MuJoCo offscreen path vs steerlab's fast path.

    MUJOCO_GL=egl steerlab bench render_speed            # writes benchmarks/results/render_speed.json

Both paths render the same camera of the same task at the same size through `mujoco.Renderer`, on
separate envs (the fast path changes the model's multisampling before its renderer exists). The env
steps with seeded random actions between frames; only the render calls are timed. The load average is
recorded before and after: on a shared machine read the ratio, not the absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

from steerlab.bench.common import RESULTS
from steerlab.core.io import atomic_write_json
from steerlab.envs.cameras import CameraRenderer
from steerlab.envs.metaworld_env import make_env


def time_path(task: str, camera: str, size: tuple[int, int], frames: int, fast: bool, seed: int) -> dict:
    env = make_env(task, seed=seed)
    raw = env.unwrapped
    renderer = CameraRenderer(raw.model, raw.data, [camera], size, fast=fast)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    renderer.render()  # the first frame builds GL resources: not what a rollout pays per step
    total = 0.0
    for _ in range(frames):
        env.step(rng.uniform(-1, 1, 4).astype(np.float32))
        t0 = time.perf_counter()
        renderer.render()
        total += time.perf_counter() - t0
    renderer.close()
    env.close()
    return {"ms_per_frame": 1000.0 * total / frames, "frames": frames}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="steerlab bench render_speed", description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="push-wall-v3")
    ap.add_argument("--camera", default="corner2")
    ap.add_argument("--size", type=int, nargs=2, default=[84, 84])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(RESULTS / "render_speed.json"))
    args = ap.parse_args(argv)
    load_before = os.getloadavg()
    default = time_path(args.task, args.camera, tuple(args.size), args.frames, fast=False, seed=args.seed)
    fast = time_path(args.task, args.camera, tuple(args.size), args.frames, fast=True, seed=args.seed)
    load_after = os.getloadavg()
    result = {"task": args.task, "camera": args.camera, "image_size": list(args.size), "seed": args.seed,
              "mujoco_gl": os.environ.get("MUJOCO_GL"), "cpu_count": os.cpu_count(),
              "machine": platform.machine(),
              "load_average_before": [round(x, 2) for x in load_before],
              "load_average_after": [round(x, 2) for x in load_after],
              "default": default, "fast": fast,
              "speedup": default["ms_per_frame"] / fast["ms_per_frame"],
              "fast_path": "scene flags shadow/reflection/skybox/fog/haze off, model.vis.quality.offsamples = 0"}
    atomic_write_json(args.out, result)
    print(json.dumps(result, indent=1, allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
