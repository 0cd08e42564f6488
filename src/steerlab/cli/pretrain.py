"""`steerlab pretrain`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def run_pretrain(args: argparse.Namespace) -> int:
    from steerlab.core.config import check_count
    from steerlab.core.errors import UserError
    from steerlab.core.outdir import output_dir
    from steerlab.train.pretrain import PretrainConfig, pretrain

    if not args.dataset:  # before anything reads the current folder as a dataset
        raise UserError("--dataset is required: " + ("the observations the VIB is fitted on (a dataset from the "
                                                     "policy's task, e.g. written by `steerlab collect`)"
                                                     if args.vib_only else "the demonstrations to imitate (a "
                                                     "dataset folder from `steerlab collect`)"))
    if args.vib_only and not args.from_ckpt:
        raise UserError("--vib-only needs --from: the frozen policy (a checkpoint folder or module:factory)")
    check_count("--steps", args.steps)
    check_count("--batch-size", args.batch_size)
    if not args.lr > 0 or args.lr == float("inf"):
        raise UserError(f"--lr must be a positive finite number, got {args.lr}")
    try:
        overrides = json.loads(args.policy_json) if args.policy_json else {}
    except json.JSONDecodeError as err:
        raise UserError(f"--policy-json is not valid JSON ({err})") from err
    if not isinstance(overrides, dict):
        raise UserError("--policy-json must be a JSON object of FlowPolicyConfig fields")
    for name in ("horizon", "n_action_steps", "latent_dim", "vib_beta", "conditioning", "num_inference_steps"):
        val = getattr(args, name)
        if val is not None:
            overrides[name] = val
    if args.no_vib:
        overrides["use_vib"] = False
    if args.deterministic_vib:
        overrides["vib_stochastic"] = False
    cfg = PretrainConfig(dataset=args.dataset or "", out=args.out, steps=args.steps, batch_size=args.batch_size,
                         lr=args.lr, seed=args.seed, vib_only=args.vib_only, from_ckpt=args.from_ckpt,
                         policy=overrides, device=args.device, amp=args.amp)
    # a finished checkpoint is refused (or moved aside with --overwrite); a folder a killed pretrain left
    # (marked, no config.json) is simply trained again
    complete = (Path(args.out) / "config.json").is_file()
    with output_dir(args.out, "pretrain", overwrite=args.overwrite, resume=not complete,
                    inputs=[args.dataset, args.from_ckpt]):
        out = pretrain(cfg)
    print(f"saved policy to {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from steerlab.policies.flow_matching.configuration import FlowPolicyConfig

    p = sub.add_parser("pretrain", help="behaviour-clone a flow-matching policy (+ plug-in VIB)",
                       description="Examples: steerlab pretrain --dataset runs/datasets/push-wall-v3__mixed__n50__seed0 "
                                   "--out runs/pretrain/push-wall-v3 ;  steerlab pretrain --vib-only --from "
                                   "runs/pretrain/push-wall-v3 --dataset ... --out runs/pretrain/push-wall-v3-vib")
    p.add_argument("--dataset", help="dataset folder from `steerlab collect`")
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    p.add_argument("--overwrite", action="store_true",
                   help="move an existing --out folder aside (renamed, never deleted) instead of refusing")
    p.add_argument("--steps", type=int, default=2000, help="gradient steps")
    p.add_argument("--batch-size", type=int, default=256, help="frames per gradient step")
    p.add_argument("--lr", type=float, default=3e-4, help="Adam learning rate")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the batches")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] | mps (auto: cuda if available, then mps)")
    p.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA (no-op with a warning elsewhere)")
    p.add_argument("--vib-only", action="store_true", help="train only the VIB on a frozen policy (--from)")
    p.add_argument("--from", dest="from_ckpt", default=None,
                   help="frozen policy for --vib-only: a checkpoint folder (flow or any protocol policy) or "
                        "module:factory (a plug-in VIB on its embeddings, docs/protocol.md)")
    p.add_argument("--no-vib", action="store_true", help="plain imitation policy without the bottleneck")
    p.add_argument("--deterministic-vib", action="store_true", help="autoencoder instead of VIB (ablation)")
    flow = FlowPolicyConfig()  # the defaults the help states are the config's own
    p.add_argument("--horizon", type=int, default=None,
                   help=f"actions per generated chunk (default: {flow.horizon})")
    p.add_argument("--n-action-steps", type=int, default=None,
                   help=f"actions of each chunk executed before re-planning (default: {flow.n_action_steps})")
    p.add_argument("--latent-dim", type=int, default=None,
                   help=f"size of the VIB latent z, ZPRL's action space (default: {flow.latent_dim})")
    p.add_argument("--vib-beta", type=float, default=None,
                   help=f"weight of the VIB's KL term (default: {flow.vib_beta:g})")
    p.add_argument("--conditioning", choices=["film", "concat"], default=None,
                   help=f"how the velocity network takes the embedding (default: {flow.conditioning})")
    p.add_argument("--num-inference-steps", type=int, default=None,
                   help=f"flow integration steps per chunk (default: {flow.num_inference_steps})")
    p.add_argument("--policy-json", default=None, help="JSON dict of further FlowPolicyConfig overrides")
    p.set_defaults(func=run_pretrain)
