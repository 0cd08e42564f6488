"""`steerlab finetune`: the command line of an online-RL run (flags -> FinetuneConfig -> run_folder)."""

from __future__ import annotations

import argparse
import json
import shlex
from dataclasses import asdict

from steerlab.core.checkpoint import read_json
from steerlab.core.config import build, check_count
from steerlab.core.errors import UserError
from steerlab.envs.registry import EnvSpec
from steerlab.rl.sac import SACConfig
from steerlab.rl.steering import REGISTRY, method_class
from steerlab.train.finetune.config import PRESETS, REWARDS, FinetuneConfig
from steerlab.train.finetune.folder import run_folder


def resume_command(cfg: FinetuneConfig, env: EnvSpec) -> str:
    """The exact `steerlab finetune` line that continues `cfg`'s run (every argument spelled out)."""
    sac = {k: v for k, v in asdict(cfg.sac).items() if v != getattr(SACConfig(), k)}
    argv = ["steerlab", "finetune", str(cfg.base), "--out", str(cfg.out), "--method", cfg.method,
            "--env", env.id, "--max-steps", str(env.max_steps), "--env-steps", str(cfg.env_steps),
            "--seed", str(cfg.seed), "--reward", cfg.reward, "--gamma", repr(cfg.gamma),
            "--warmup", str(cfg.warmup_decisions), "--eval-every", str(cfg.eval_every),
            "--eval-episodes", str(cfg.eval_episodes), "--checkpoint-every", str(cfg.checkpoint_every),
            "--buffer-size", str(cfg.buffer_size), "--n-envs", str(cfg.n_envs),
            "--final-episodes", str(cfg.final_episodes)]
    if cfg.sampler_noise_scale != 1.0:
        argv += ["--sampler-noise-scale", repr(cfg.sampler_noise_scale)]
    for flag, value in (("--success-key", cfg.success_key), ("--position-key", cfg.position_key),
                        ("--shift", cfg.shift), ("--utd", None if cfg.utd is None else repr(cfg.utd))):
        if value is not None:
            argv += [flag, value]
    if cfg.env_kwargs:
        argv += ["--env-kwargs", json.dumps(cfg.env_kwargs, sort_keys=True)]
    if sac:
        argv += ["--sac-json", json.dumps(sac, sort_keys=True)]
    if cfg.steering:
        argv += ["--steering-json", json.dumps(cfg.steering, sort_keys=True)]
    if cfg.async_envs:
        argv.append("--async-envs")
    if cfg.device != "auto":
        argv += ["--device", cfg.device]
    if not cfg.tensorboard:
        argv.append("--no-tensorboard")
    return shlex.join(argv)


def _json_arg(text: str | None, flag: str) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{flag} is not valid JSON ({err})") from err
    if not isinstance(value, dict):
        raise UserError(f"{flag} must be a JSON object like '{{\"key\": value}}', got {text!r}")
    return value


def run_finetune(args: argparse.Namespace) -> int:
    for flag, value, minimum in (("--env-steps", args.env_steps, 1), ("--eval-every", args.eval_every, 1),
                                 ("--checkpoint-every", args.checkpoint_every, 1),
                                 ("--eval-episodes", args.eval_episodes, 1), ("--warmup", args.warmup, 0),
                                 ("--buffer-size", args.buffer_size, 1), ("--n-envs", args.n_envs, 1),
                                 ("--final-episodes", args.final_episodes, 0)):
        check_count(flag, value, minimum)
    if args.max_steps is not None:
        check_count("--max-steps", args.max_steps)
    sac_json = _json_arg(args.sac_json, "--sac-json")
    sac = build(SACConfig, {**PRESETS[args.preset], **sac_json}, "--sac-json")
    steering = _json_arg(args.steering_json, "--steering-json")
    method_class(args.method).Config.from_dict(steering)  # unknown options: one line naming them
    if args.latent_scale is not None:
        steering["latent_scale"] = args.latent_scale
    cfg = FinetuneConfig(base=args.base, method=args.method, env=args.env, env_steps=args.env_steps,
                         seed=args.seed, out=args.out, reward=args.reward, gamma=args.gamma, max_steps=args.max_steps,
                         warmup_decisions=args.warmup, eval_every=args.eval_every, eval_episodes=args.eval_episodes,
                         checkpoint_every=args.checkpoint_every, buffer_size=args.buffer_size,
                         success_key=args.success_key, position_key=args.position_key, shift=args.shift,
                         env_kwargs=_json_arg(args.env_kwargs, "--env-kwargs"), n_envs=args.n_envs,
                         async_envs=args.async_envs, utd=args.utd, tensorboard=not args.no_tensorboard, sac=sac,
                         sac_explicit=sorted(sac_json), steering=steering, final_episodes=args.final_episodes,
                         sampler_noise_scale=args.sampler_noise_scale, device=args.device)
    tuner = run_folder(cfg, resume=not args.no_resume, overwrite=args.overwrite)
    out = tuner.out
    if tuner.interrupted:
        cfg.out = str(out)
        saved = ("the snapshot is saved" if not tuner.active.any() else
                 "it resumes from its last snapshot")
        print(f"stopped by {tuner.stop_signal} at env step {tuner.env_steps}; {saved}. Resume with:\n"
              f"  {resume_command(cfg, tuner.env_spec)}")
        return 0
    res = read_json(out / "result.json")
    if "final_sampled" in res:
        print(f"final success over {res['final_episodes']} episodes: sampled {res['final_sampled']:.2f}, "
              f"from ε = 0 {res['final_eps0']:.2f} | AUC {res['auc']:.2f} | dip {res['dip']:+.2f}")
    print(f"run folder: {out} (steered policy: {out / 'policy'}; evaluate it with `steerlab evaluate {out}`)")
    return 0


def register_finetune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="online RL on a frozen base policy (zprl / action-residual / dsrl / ...)",
                       description="Examples: steerlab finetune runs/pretrain/push-wall-v3 --method zprl "
                                   "--env push-wall-v3 --env-steps 100000 --seed 0 ;  steerlab finetune "
                                   "my_pkg.policies:make_policy --method dsrl --env Pendulum-v1")
    p.add_argument("base", help="pretrained policy: checkpoint folder, or module:factory (docs/protocol.md)")
    p.add_argument("--method", choices=tuple(REGISTRY), default="zprl")
    p.add_argument("--env", "--task", dest="env", default=None,
                   help="Meta-World task, Gymnasium id or module:factory (default: the base's environment)")
    p.add_argument("--success-key", default=None, help="info key that signals success (default is_success)")
    p.add_argument("--position-key", default=None,
                   help="info key of the end-effector position for smoothness ('none': skip; default: the family's)")
    p.add_argument("--shift", default=None, help="named deployment shift of the training env")
    p.add_argument("--env-kwargs", default=None, help="JSON dict of env constructor arguments")
    p.add_argument("--n-envs", type=int, default=1, help="environments stepped together (batched decisions)")
    p.add_argument("--async-envs", action="store_true", help="step the envs in subprocesses, overlapped with updates")
    p.add_argument("--utd", type=float, default=None, help="SAC updates per decision (default: the SAC config's)")
    p.add_argument("--env-steps", type=int, default=100_000, help="total env steps (a resume may raise it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="run folder (default runs/finetune/<env>__<method>__seed<k>)")
    p.add_argument("--reward", choices=REWARDS, default="dense")
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--max-steps", type=int, default=None, help="episode horizon in env steps (default: the env's)")
    p.add_argument("--warmup", type=int, default=2_000, help="decisions acting as the base policy first (>= 0)")
    p.add_argument("--eval-every", type=int, default=5_000)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--sampler-noise-scale", type=float, default=1.0,
                   help="scale of the frozen sampler's noise in training and in the curve's evaluations "
                        "(1: the base's sampler; 0: every chunk from ε = 0)")
    p.add_argument("--final-episodes", type=int, default=50,
                   help="final evaluation episodes (sampled and from ε = 0) written to result.json; 0: none")
    p.add_argument("--preset", choices=sorted(PRESETS), default="bench",
                   help="SAC settings: bench (what the README tables measured, hidden 128) or paper (hidden 256); "
                        "--sac-json overrides on top")
    p.add_argument("--checkpoint-every", type=int, default=10_000,
                   help="env steps between resumable snapshots of the training state (taken once every env ends "
                        "its episode)")
    p.add_argument("--buffer-size", type=int, default=200_000)
    p.add_argument("--latent-scale", type=float, default=None, help="ZPRL λ (default: 0.3 × RMS of μ)")
    p.add_argument("--sac-json", default=None, help='SACConfig overrides, e.g. \'{"num_critics": 5}\'')
    p.add_argument("--steering-json", default=None, help="options of the steering method (rl/steering/<method>.py)")
    p.add_argument("--no-tensorboard", action="store_true", help="write metrics.jsonl only")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:i] | mps: where the base policy and the SAC "
                                                    "compute (auto: cuda if available); envs and replay stay on the CPU")
    p.add_argument("--no-resume", action="store_true",
                   help="never continue an existing run in --out (with --overwrite: move it aside, start afresh)")
    p.add_argument("--overwrite", action="store_true",
                   help="move an --out folder that is not this run aside (renamed, never deleted)")
    p.set_defaults(func=run_finetune)
