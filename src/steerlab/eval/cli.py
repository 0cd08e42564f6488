"""`steerlab evaluate`: success (Wilson 95% interval), lengths, smoothness, optional video, JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from steerlab.core.checkpoint import atomic_write_json


def env_spec(policy) -> dict:
    spec = dict(getattr(policy, "env_spec", None) or policy.config.env)
    if not spec.get("task"):
        raise ValueError("the checkpoint names no task; pass --task")
    return spec


def run_evaluate(args: argparse.Namespace) -> int:
    from steerlab.core.checkpoint import load_policy
    from steerlab.eval.rollout import evaluate

    key = None
    if args.key:  # a keyed or sealed release from `steerlab personalize`: run this user's personal policy
        from steerlab.privacy.keys import load_key_file

        key = load_key_file(args.key, allow_insecure=args.allow_insecure)
    policy = load_policy(args.checkpoint, key=key)
    spec = env_spec(policy) if not args.task else {"task": args.task, "max_steps": args.max_steps or 200}
    task, max_steps = spec["task"], args.max_steps or spec.get("max_steps", 200)
    result = evaluate(policy, task, args.episodes, args.seed, args.n_envs, max_steps, noise_scale=args.noise_scale)
    result["checkpoint"] = str(args.checkpoint)
    personal = f"_key{key.fingerprint()}" if key is not None else ""  # one user's results never replace another's
    out = Path(args.out) if args.out else Path(args.checkpoint) / f"eval_{task}_seed{args.seed}{personal}.json"
    atomic_write_json(out, result)
    lo, hi = result["ci95"]
    s = result["smoothness"]
    print(f"{task}: success {result['success']:.2f} [{lo:.2f}, {hi:.2f}] over {result['episodes']} episodes | "
          f"length {result['length_mean']:.0f} | EE |v| {s['velocity']:.4f} |a| {s['acceleration']:.4f} "
          f"|jerk| {s['jerk']:.4f} | -> {out}")
    if args.video:
        from steerlab.eval.video import record_video

        video = record_video(policy, task, out.with_suffix(".mp4"), args.video_episodes, args.seed, max_steps)
        print(f"video: {video}")
    if args.print_json:
        print(json.dumps({k: v for k, v in result.items() if k != "per_episode"}, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a checkpoint (base or steered policy)",
                       description="Example: steerlab evaluate runs/pretrain/push-wall-v3 --episodes 50 --video")
    p.add_argument("checkpoint", help="checkpoint folder (config.json + model.safetensors)")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=0, help="evaluation seed (initial states and sampler noise)")
    p.add_argument("--n-envs", type=int, default=2, help="parallel environments (processes)")
    p.add_argument("--noise-scale", type=float, default=1.0,
                   help="scale of the flow sampler's initial noise: 1 = as trained, 0 = deterministic from ε = 0")
    p.add_argument("--task", default=None, help="override the checkpoint's task")
    p.add_argument("--max-steps", type=int, default=None, help="override the checkpoint's horizon")
    p.add_argument("--out", default=None, help="JSON path (default <checkpoint>/eval_<task>_seed<S>.json)")
    p.add_argument("--video", action="store_true", help="also write an MP4 (needs libosmesa6 or a GPU GL)")
    p.add_argument("--video-episodes", type=int, default=2)
    p.add_argument("--print-json", action="store_true")
    p.add_argument("--key", default=None, help="key file: run a keyed / sealed release as this user's personal policy "
                                              "(without it: the release's no-key policy, i.e. the base)")
    p.add_argument("--allow-insecure", action="store_true", help="accept a key file others can read (warns)")
    p.set_defaults(func=run_evaluate)
