"""`steerlab evaluate`: return (Student-t 95% interval over episodes), success (Wilson 95% interval) where the env
reports it, lengths, smoothness where the env has an end-effector position, optional video, strict JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

from steerlab.core.checkpoint import atomic_write_json, read_json
from steerlab.core.config import check_count, check_scale
from steerlab.core.errors import OutputExistsError, UserError
from steerlab.core.io import dumps_strict
from steerlab.core.outdir import check_not_input, move_aside
from steerlab.core.outdir import read_marker as _marker
from steerlab.core.refs import is_ref


def env_spec(checkpoint, env: str | None, max_steps: int | None, shift: str | None = None):
    """The checkpoint's recorded env (or `--env`), with the command line's overrides."""
    from steerlab.envs.registry import EnvSpec, checkpoint_env, resolve_env

    if env:
        return resolve_env(env, max_steps=max_steps, shift=shift)
    if is_ref(checkpoint):
        raise UserError(f"{checkpoint} is a module:factory policy, which names no environment; pass --env")
    recorded = checkpoint_env(read_json(Path(checkpoint) / "config.json"))
    if not recorded:
        raise UserError("the checkpoint names no environment; pass --env")
    return resolve_env(EnvSpec.from_dict(recorded), max_steps=max_steps, shift=shift)


def resolve_checkpoint(path: str | Path) -> Path | str:
    """A checkpoint folder, a finetune run folder (whose steered policy lives in `policy/`), or a
    `module:factory` reference (returned as is)."""
    if is_ref(path):
        return str(path)
    path = Path(path)
    if (path / "policy" / "config.json").is_file():
        top = path / "config.json"
        if (_marker(path) or {}).get("kind") == "finetune" or not top.is_file() or "finetune" in read_json(top):
            return path / "policy"
    return path


def _num(x: float) -> str:
    return f"{x:g}".replace("-", "m")


def default_result_path(checkpoint: Path, task: str, seed: int, episodes: int, noise_scale: float, max_steps: int,
                        shift=None) -> Path:
    """Beside the checkpoint (never inside its input), named after everything that changes the numbers."""
    name = f"eval_{task}_seed{seed}_ep{episodes}_noise{_num(noise_scale)}_max{max_steps}"
    if shift is not None:
        name += f"_shift{shift.replace(':', '_') if isinstance(shift, str) else _num(float(shift))}"
    return checkpoint.parent / f"{checkpoint.name}.evals" / f"{name}.json"


def _personal_note(opened: dict | None) -> str:
    """What ran, on the result line: a wrong key and a damaged blob must not look alike, nor like success."""
    if opened is None:
        return ""
    if opened.get("personal_opened"):
        return f" | personal policy (sealed blob {opened['personal_slot']})"
    if opened.get("personal_opened") is False:
        return f" | PUBLIC BASE ran: {opened['personal_reason']}"
    return " | keyed model with this key (unsealed: not checked)"


def summary_line(result: dict) -> str:
    """What the evaluation measured, nothing it did not: return (mean, 95% t-interval over episodes) always;
    success (Wilson 95%) only when the env reports it; smoothness only when the env exposes a position."""
    shift = f" [{result['shift']}]" if result.get("shift") else ""
    n = result["episodes"]
    ci = result["return_ci95"]
    parts = [f"{result['task']}{shift}: return {result['return_mean']:.1f}"
             + (f" [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else "") + f" over {n} episode{'s' * (n != 1)}"]
    if result.get("success") is not None:
        lo, hi = result["ci95"]
        parts.append(f"success {result['success']:.2f} [{lo:.2f}, {hi:.2f}]")
    else:
        parts.append("success: not reported by this env")
    parts.append(f"length {result['length_mean']:.0f}")
    s = result["smoothness"]
    if s.get("jerk") is not None:
        parts.append(f"EE |v| {s['velocity']:.4f} |a| {s['acceleration']:.4f} |jerk| {s['jerk']:.4f}")
    return " | ".join(parts)


def run_evaluate(args: argparse.Namespace) -> int:
    from steerlab.core.checkpoint import load_policy
    from steerlab.eval.rollout import evaluate

    check_count("--episodes", args.episodes)
    check_count("--n-envs", args.n_envs)
    check_count("--video-episodes", args.video_episodes)
    if args.max_steps is not None:
        check_count("--max-steps", args.max_steps)
    if args.noise_scale is not None:
        check_scale("--noise-scale", args.noise_scale)
    key, opened = None, None
    if args.strict and not args.key:
        raise UserError("--strict needs --key (it refuses to run the base when the key opens nothing)")
    checkpoint = resolve_checkpoint(args.checkpoint)
    if args.key:  # a keyed or sealed release from `steerlab personalize`: run this user's personal policy
        from steerlab.cli.privacy import ask_passphrase
        from steerlab.privacy.keys import load_key_file
        from steerlab.privacy.release import load_personal

        key = load_key_file(args.key, allow_insecure=args.allow_insecure, passphrase=ask_passphrase)
        if read_json(checkpoint / "config.json").get("policy_type") not in ("keyed", "sealed"):
            load_policy(checkpoint, key=key)  # the one-line "takes no key" error
        policy, opened = load_personal(checkpoint, key, strict=args.strict)
    else:
        policy = load_policy(checkpoint)
    if args.noise_scale is None:  # a steered policy runs in the sampler mode it was trained in; others sample
        args.noise_scale = float(getattr(policy, "sampler_noise_scale", 1.0))
    from steerlab.core.devices import move_policy, resolve_device

    device = resolve_device(args.device)
    move_policy(policy, device)  # rollouts stay on the CPU; observations move to the policy and back
    spec = env_spec(checkpoint, args.env, args.max_steps)
    if (opened or {}).get("personal_opened") and getattr(policy, "env_spec", None) and not args.env:
        # a sealed online part (finetune --key) runs in its user's own env (goal / reward options), recorded
        # inside the blob: the objective that user improved the policy on
        from steerlab.envs.registry import EnvSpec, resolve_env

        spec = resolve_env(EnvSpec.from_dict(policy.env_spec), max_steps=args.max_steps)
    if args.shift is not None:  # default: the shift the checkpoint was finetuned under; 'none' clears it
        from steerlab.envs.shifts import shift_name

        spec.shift = shift_name(args.shift)
    task, max_steps = spec.id, spec.max_steps
    name = task.replace(":", "_").replace("/", "_")
    # a module:factory policy has no folder: its results go to ./<module>_<factory>.evals/
    where = Path(checkpoint.replace(":", "_")) if isinstance(checkpoint, str) else checkpoint
    out = Path(args.out) if args.out else default_result_path(where, name, args.seed, args.episodes,
                                                              args.noise_scale, max_steps, spec.shift)
    if key is not None and not args.out:  # one user's results never replace another's or the no-key ones
        # a key that opened nothing ran the base: its result must not pass for the user's personal policy
        tag = "_base" if opened.get("personal_opened") is False else ""
        out = out.with_name(f"{out.stem}_key{key.fingerprint()}{tag}{out.suffix}")
    check_not_input(out, [checkpoint])
    if out.exists() and not args.overwrite:
        raise OutputExistsError(f"{out} already exists; pass --overwrite to replace it (the old file is renamed "
                                f"aside) or --out another path")
    result = evaluate(policy, spec, args.episodes, args.seed, args.n_envs, noise_scale=args.noise_scale)
    result["checkpoint"] = str(checkpoint)
    result["device"] = str(device)
    if (opened or {}).get("personal_opened") and getattr(policy, "env_spec", None) and not args.env:
        result["env"] = {**result["env"], "kwargs": "the user's own options, sealed in their part (not written here)"}
    if opened is not None:  # personal_opened true | false (+ why) | null (keyed: cannot be checked)
        result.update(opened)
    if out.exists():
        print(f"moved the existing {out} aside to {move_aside(out)}")
    try:
        atomic_write_json(out, result)
    except PermissionError as err:
        raise UserError(f"--out {out} is not writable ({err.strerror})") from err
    print(f"{summary_line(result)}{_personal_note(opened)} | -> {out}")
    if args.video:
        from steerlab.eval.video import record_video

        video = record_video(policy, spec, out.with_suffix(".mp4"), args.video_episodes, args.seed, max_steps,
                             noise_scale=args.noise_scale)
        print(f"video: {video}")
    if args.print_json:
        print(dumps_strict({k: v for k, v in result.items() if k != "per_episode"}, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a policy (checkpoint folder or module:factory)",
                       description="Examples: steerlab evaluate runs/pretrain/push-wall-v3 --episodes 50 --video ;  "
                                   "steerlab evaluate my_policy:make_policy --env Pendulum-v1")
    p.add_argument("checkpoint", help="the policy: a checkpoint folder (config.json + model.safetensors), a finetune "
                                      "run folder, or module:factory (then pass --env)")
    p.add_argument("--episodes", type=int, default=50, help="evaluation episodes (more: a narrower interval)")
    p.add_argument("--seed", type=int, default=0, help="evaluation seed (initial states and sampler noise)")
    p.add_argument("--n-envs", type=int, default=2, help="parallel environments (processes)")
    p.add_argument("--noise-scale", type=float, default=None,
                   help="scale of the flow sampler's initial noise: 1 = sampled, 0 = deterministic from ε = 0 "
                        "(default: a steered policy's trained mode, recorded by finetune; else 1)")
    p.add_argument("--env", "--task", dest="env", default=None,
                   help="override the checkpoint's env: Meta-World task, Gymnasium id or module:factory")
    p.add_argument("--shift", default=None,
                   help="deployment shift, e.g. actuation:offset-x+0.10 (default: the one the checkpoint was finetuned "
                        "under, if any; 'none' for no shift)")
    p.add_argument("--max-steps", type=int, default=None, help="override the checkpoint's horizon")
    p.add_argument("--out", default=None, help="JSON path (default <checkpoint>.evals/eval_<task>_seed<S>_ep<N>_"
                                               "noise<x>_max<M>.json, beside the checkpoint)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing result (the old one is renamed aside)")
    p.add_argument("--video", action="store_true", help="also write an MP4 (needs libosmesa6 or a GPU GL)")
    p.add_argument("--video-episodes", type=int, default=2, help="episodes in the --video MP4")
    p.add_argument("--print-json", action="store_true", help="also print the result JSON (without per-episode rows)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:i] | mps: where the policy computes "
                                                    "(auto: cuda if available)")
    p.add_argument("--key", default=None, help="key file: run a keyed / sealed release as this user's personal policy "
                                              "(without it: the release's no-key policy, i.e. the base)")
    p.add_argument("--allow-insecure", action="store_true", help="accept a key file others can read (warns)")
    p.add_argument("--strict", action="store_true",
                   help="with --key: exit non-zero if the key opens no sealed part instead of running the public base")
    p.set_defaults(func=run_evaluate)
