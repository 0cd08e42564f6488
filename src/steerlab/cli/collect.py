"""`steerlab collect`: demonstrations (a scripted expert, or any policy on any env) into a LeRobotDataset v3 folder."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np


def default_dataset_dir(task: str, quality: str, episodes: int, seed: int) -> Path:
    task = task.replace(":", "_").replace("/", "_")  # Gymnasium namespaces and module:factory envs
    return Path("runs") / "datasets" / f"{task}__{quality}__n{episodes}__seed{seed}"


def run_collect(args: argparse.Namespace) -> int:
    from steerlab.core.config import check_count
    from steerlab.core.errors import UserError
    from steerlab.core.outdir import output_dir
    from steerlab.data.collect import check_expert, collect_demos, preset_dict
    from steerlab.data.dataset import write_dataset
    from steerlab.envs.cameras import check_image_size, parse_cameras
    from steerlab.envs.registry import resolve_env
    from steerlab.envs.shifts import shift_name

    if args.coverage and args.shift:
        raise UserError("give either --shift or --coverage, not both")
    shift = shift_name(f"coverage:{args.coverage}" if args.coverage else args.shift)
    check_count("--episodes", args.episodes)
    if not args.noise_scale >= 0 or args.noise_scale == float("inf"):
        raise UserError(f"--noise-scale must be a finite number >= 0, got {args.noise_scale}")
    if args.max_steps is not None:
        check_count("--max-steps", args.max_steps)
    # an unknown env, quality, camera, image size or policy, or an env without an expert, fails before any
    # folder is made
    spec = resolve_env(args.env, max_steps=args.max_steps)
    cameras = parse_cameras(args.camera)
    size = check_image_size(args.image_size)
    if cameras and spec.family != "metaworld":
        raise UserError(f"--camera records Meta-World cameras; {args.env!r} is a {spec.family!r} env")
    if args.video:
        if not cameras:
            raise UserError("--video stores camera frames as mp4 video features: give --camera NAME[,NAME] too")
        from steerlab.data.videos import check_video_ready

        check_video_ready(*size)  # PyAV installed, an encoder, a frame size the codec takes
    preset_dict(args.quality)
    policy = None
    if args.policy:
        from steerlab.cli.evaluate import resolve_checkpoint
        from steerlab.core.checkpoint import load_policy

        if args.goal_offset:
            raise UserError("--goal-offset moves the scripted expert's goal; with --policy, record the user's own "
                            "policy (or their loop with steerlab.data.Recorder) instead")
        policy = load_policy(resolve_checkpoint(args.policy))
    else:
        check_expert(spec)
    out = Path(args.out) if args.out else default_dataset_dir(args.env, args.quality, args.episodes, args.seed)
    if shift and not args.out:
        out = out.with_name(out.name + "__" + shift.replace(":", "_"))
    # the guard refuses a foreign or existing dataset folder (or moves it aside with --overwrite) and holds
    # the folder's lock; the dataset itself is built beside it and switched in whole (write_dataset)
    with output_dir(out, "dataset", overwrite=args.overwrite, resume=False) as (folder, _):
        episodes = collect_demos(args.env, args.episodes, args.quality, args.seed, spec.max_steps,
                                 goal_offset=args.goal_offset, shift=shift, policy=policy, cameras=cameras,
                                 image_size=size, noise_scale=args.noise_scale)
        staged = write_dataset(folder / ".collect.tmp", episodes, args.env, video=args.video, extra_info={
            "quality": args.quality, "preset": preset_dict(args.quality), "noise_scale": args.noise_scale,
            "seed": args.seed,
            "max_steps": spec.max_steps, "env": spec.family, "env_id": spec.id,
            "demonstrator": str(args.policy) if args.policy else "scripted expert",
            **({"shift": shift} if shift else {}),
            **({"goal_offset": list(args.goal_offset)} if args.goal_offset else {}),
            **({"cameras": list(cameras), "image_size": list(size), "video": bool(args.video)} if cameras else {})})
        # move the complete dataset up into the guarded folder (which keeps its marker and lock); meta/ last,
        # so a reader never finds meta/info.json before the data it describes
        for part in sorted(staged.iterdir(), key=lambda p: p.name == "meta"):
            os.replace(part, folder / part.name)
        staged.rmdir()
    rate = np.mean([e.success for e in episodes])
    frames = sum(len(e.actions) for e in episodes)
    returns = [float(np.sum(e.rewards)) for e in episodes if e.rewards is not None]
    ret = f", mean return {np.mean(returns):.1f}" if returns else ""
    print(f"wrote {len(episodes)} episodes ({frames} frames, demo success {rate:.0%}{ret}) to {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("collect", help="record demonstrations (a scripted expert, or any policy on any env)",
                       description="Examples: steerlab collect --env push-wall-v3 --episodes 50 --quality mixed ;  "
                                   "steerlab collect --env Pendulum-v1 --policy my_policy:make_policy --quality "
                                   "expert --episodes 20 (docs/data.md)")
    p.add_argument("--env", "--task", dest="env", required=True,
                   help="Meta-World v3 task (push-wall-v3), panda-gym task (PandaPush-v3), Gymnasium id "
                        "(Pendulum-v1) or module:factory")
    p.add_argument("--policy", default=None,
                   help="the demonstrator: a checkpoint folder, finetune run folder or module:factory (default: the "
                        "env's scripted expert, Meta-World and panda-gym only)")
    p.add_argument("--episodes", type=int, default=50, help="episodes to record")
    p.add_argument("--quality", default="mixed", help="corruption preset added to the demonstrator's actions: "
                                                      "expert (none) | mixed | noisy (steerlab.data.collect)")
    p.add_argument("--noise-scale", type=float, default=1.0,
                   help="multiplies the preset's action noise (the benchmarks' calibrated per-task scales: "
                        "steerlab.bench.calibration)")
    p.add_argument("--seed", type=int, default=0, help="seed of the episodes' initial states and of the noise")
    p.add_argument("--max-steps", type=int, default=None,
                   help="episode horizon (default: the env's, Meta-World 200, panda-gym 50, Gymnasium's own)")
    p.add_argument("--out", default=None, help="dataset folder (default runs/datasets/<env>__<quality>__n<N>__seed<S>)")
    p.add_argument("--goal-offset", nargs=3, type=float, default=None, metavar=("DX", "DY", "DZ"),
                   help="a user's own preference: the expert aims at the task's goal moved by this offset (metres) "
                        "while the observation keeps the task's goal (demos for `steerlab personalize --personal`)")
    p.add_argument("--shift", default=None, help="shift name (steerlab.envs.shifts): a coverage shift restricts the "
                                                 "demos' initial states, e.g. coverage:low-0.50")
    p.add_argument("--coverage", default=None, help="shorthand for --shift coverage:ARG, e.g. --coverage low-0.50")
    p.add_argument("--camera", default=None, metavar="NAME[,NAME]",
                   help="also record these Meta-World cameras (corner2, topview, ...) as observation.images.<NAME> "
                        "image features (PNG frames, rendered on the fast path)")
    p.add_argument("--video", action="store_true",
                   help="with --camera: store the frames as LeRobot video features (one mp4 per camera, SVT-AV1 "
                        "like LeRobot; lossy, far smaller) instead of PNG images; needs pip install 'steerlab[video]'")
    p.add_argument("--image-size", type=int, nargs=2, default=[84, 84], metavar=("H", "W"),
                   help="camera frame size (default 84 84)")
    p.add_argument("--overwrite", action="store_true",
                   help="move an existing --out folder aside (renamed, never deleted) instead of refusing")
    p.set_defaults(func=run_collect)
