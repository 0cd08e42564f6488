"""`steerlab evaluate`: success (Wilson 95% interval), lengths, smoothness, optional video, JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from steerlab.core.checkpoint import atomic_write_json, read_json
from steerlab.core.errors import UserError


def env_spec(checkpoint, env: str | None, max_steps: int | None, shift: str | None = None):
    """The checkpoint's recorded env (or `--env`), with the command line's overrides."""
    from steerlab.envs.registry import EnvSpec, checkpoint_env, resolve_env

    if env:
        return resolve_env(env, max_steps=max_steps, shift=shift)
    recorded = checkpoint_env(read_json(Path(checkpoint) / "config.json"))
    if not recorded:
        raise UserError("the checkpoint names no environment; pass --env")
    return resolve_env(EnvSpec.from_dict(recorded), max_steps=max_steps, shift=shift)


def run_evaluate(args: argparse.Namespace) -> int:
    from steerlab.core.checkpoint import load_policy
    from steerlab.eval.rollout import evaluate

    policy = load_policy(args.checkpoint)
    spec = env_spec(args.checkpoint, args.env, args.max_steps, args.shift)
    task, max_steps = spec.id, spec.max_steps
    result = evaluate(policy, spec, args.episodes, args.seed, args.n_envs, noise_scale=args.noise_scale)
    result["checkpoint"] = str(args.checkpoint)
    name = task.replace(":", "_").replace("/", "_")
    out = Path(args.out) if args.out else Path(args.checkpoint) / f"eval_{name}_seed{args.seed}.json"
    atomic_write_json(out, result)
    lo, hi = result["ci95"]
    s = result["smoothness"]
    print(f"{task}: success {result['success']:.2f} [{lo:.2f}, {hi:.2f}] over {result['episodes']} episodes | "
          f"length {result['length_mean']:.0f} | EE |v| {s['velocity']:.4f} |a| {s['acceleration']:.4f} "
          f"|jerk| {s['jerk']:.4f} | -> {out}")
    if args.video:
        from steerlab.eval.video import record_video

        video = record_video(policy, spec, out.with_suffix(".mp4"), args.video_episodes, args.seed, max_steps)
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
    p.add_argument("--env", "--task", dest="env", default=None,
                   help="override the checkpoint's env: Meta-World task, Gymnasium id or module:factory")
    p.add_argument("--shift", default=None, help="named deployment shift (steerlab.envs.shifts)")
    p.add_argument("--max-steps", type=int, default=None, help="override the checkpoint's horizon")
    p.add_argument("--out", default=None, help="JSON path (default <checkpoint>/eval_<task>_seed<S>.json)")
    p.add_argument("--video", action="store_true", help="also write an MP4 (needs libosmesa6 or a GPU GL)")
    p.add_argument("--video-episodes", type=int, default=2)
    p.add_argument("--print-json", action="store_true")
    p.set_defaults(func=run_evaluate)
