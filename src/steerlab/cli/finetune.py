"""`steerlab finetune`: the command line of an online-RL run, generated from FinetuneConfig (cli/config_args.py).

Every FinetuneConfig field is an option with its docstring and default; `--sac.FIELD` sets one SAC field on top of
`--preset`; `--steering.KEY VALUE` one option of the steering method (its keys are listed below); `--config FILE`
reads a JSON object of fields first. The library call `finetune(FinetuneConfig(...))` with the same values is the
same run (tests/cli/test_finetune_cli.py).
"""

from __future__ import annotations

import argparse
import json
import shlex
from dataclasses import asdict, fields

from steerlab.cli.config_args import (
    add_config_args,
    explicit_fields,
    field_docs,
    json_object,
    nested_values,
    read_config_file,
    split_dotted,
)
from steerlab.core.checkpoint import read_json
from steerlab.core.config import build
from steerlab.core.errors import UserError
from steerlab.core.helpformat import HelpFormatter
from steerlab.envs.registry import EnvSpec
from steerlab.rl.sac import SACConfig
from steerlab.rl.steering import REGISTRY, method_class
from steerlab.train.finetune.config import PRESETS, REWARDS, FinetuneConfig
from steerlab.train.finetune.folder import run_folder

# fields that are not options: `sac_explicit` is derived from what the user spelled
SKIP = ("sac_explicit",)
ALIASES = {"env": ["--task"], "warmup_decisions": ["--warmup"]}


def resume_command(cfg: FinetuneConfig, env: EnvSpec) -> str:
    """The `steerlab finetune` line that continues `cfg`'s run: every field that differs from its default."""
    default = FinetuneConfig()
    argv = ["steerlab", "finetune", str(cfg.base), "--out", str(cfg.out), "--env", env.id]
    for f in fields(FinetuneConfig):
        value = getattr(cfg, f.name)
        if f.name in ("base", "out", "env", *SKIP) or value == getattr(default, f.name):
            continue
        if f.name == "sac":
            argv += [f"--sac.{k.replace('_', '-')}={json.dumps(v, allow_nan=False)}" for k, v in sorted(asdict(value).items())
                     if v != getattr(default.sac, k)]
        elif f.name in ("steering", "env_kwargs"):
            argv += [f"--{f.name.replace('_', '-')}", json.dumps(value, sort_keys=True, allow_nan=False)]
        elif isinstance(value, bool):
            argv.append(f"--{'' if value else 'no-'}{f.name.replace('_', '-')}")
        else:
            argv += [f"--{f.name.replace('_', '-')}", str(value)]
    return shlex.join(argv)


def config_from_args(args: argparse.Namespace, argv: list[str], parser: argparse.ArgumentParser) -> FinetuneConfig:
    """The FinetuneConfig of a command line: the config file, then the flags the user spelled, then the preset
    and `--sac.*` / `--sac-json` on top of it, `--steering.*` / `--steering-json` merged."""
    values = read_config_file(args.config)
    unknown = sorted(set(values) - {f.name for f in fields(FinetuneConfig)})
    if unknown:
        raise UserError(f"--config {args.config}: unknown fields {unknown}; valid: "
                        f"{', '.join(f.name for f in fields(FinetuneConfig) if f.name not in SKIP)}")
    spelled = explicit_fields(parser, argv)
    for f in fields(FinetuneConfig):
        if f.name in ("sac", "steering", "env_kwargs", *SKIP):
            continue
        if f.name == "base" or f.name in spelled or f.name not in values:
            values[f.name] = getattr(args, f.name)
    sac_file = values.pop("sac", {}) or {}
    sac_user = {**sac_file, **json_object(args.sac_json, "--sac-json"), **nested_values(args, "sac")}
    values["sac"] = build(SACConfig, {**PRESETS[args.preset], **sac_user}, "--sac")
    values["sac_explicit"] = sorted(sac_user)
    steering = {**(values.get("steering") or {}), **json_object(args.steering, "--steering"),
                **json_object(args.steering_json, "--steering-json"), **args.steering_dotted}
    if args.latent_scale is not None:
        steering["latent_scale"] = args.latent_scale
    values["steering"] = steering
    values["env_kwargs"] = {**(values.get("env_kwargs") or {}), **json_object(args.env_kwargs, "--env-kwargs"),
                            **args.env_kwargs_dotted}
    method_class(values["method"]).Config.from_dict(steering)  # unknown options: one line naming them
    try:
        return build(FinetuneConfig, values, "finetune config")
    except UserError as err:  # the config names its fields; a command-line user typed options
        msg = str(err)
        for f in sorted(fields(FinetuneConfig), key=lambda f: -len(f.name)):
            option = "--" + f.name.replace("_", "-")
            msg = msg.replace(f"FinetuneConfig.{f.name}", option).replace(f"finetune config.{f.name}", option)
        raise UserError(msg) from err


def final_summary(res: dict) -> str:
    """The run's result in one line: return always, success only where the env reports it."""
    def ret(key):
        ci = res.get(f"{key}_ci95")
        return f"{res[key]:.1f}" + (f" [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else "")

    parts = []
    if res.get("start_return") is not None:
        parts.append(f"return: base {res['start_return']:.1f}, AUC {res['auc_return']:.1f}")
    if "final_sampled_return" in res:
        parts.append(f"final over {res['final_episodes']} episodes: sampled {ret('final_sampled_return')}, "
                     f"from ε = 0 {ret('final_eps0_return')}")
    if res.get("auc") is not None:
        succ = f"success: AUC {res['auc']:.2f}, dip {res['dip']:+.2f}"
        if res.get("final_sampled") is not None:
            succ += f", final sampled {res['final_sampled']:.2f}, from ε = 0 {res['final_eps0']:.2f}"
        parts.append(succ)
    else:
        parts.append("success: not reported by this env")
    if res.get("regressed"):
        parts.append(f"vs base: {res['regressed']['verdict']}")
    if res.get("released") == "base":
        parts.append("released: the BASE (the release gate found the steered policy below it)")
    return " | ".join(parts)


def _run(args: argparse.Namespace) -> int:
    cfg, part = args.config_obj, None
    if args.key:  # private online personalization: the shareable output is the user's sealed part
        from steerlab.cli.privacy import ask_passphrase
        from steerlab.privacy.keys import load_key_file
        from steerlab.train.finetune.private import finetune_sealed

        key = load_key_file(args.key, allow_insecure=args.allow_insecure, passphrase=ask_passphrase)
        tuner, part = finetune_sealed(cfg, key, resume=not args.no_resume, overwrite=args.overwrite)
    else:
        tuner = run_folder(cfg, resume=not args.no_resume, overwrite=args.overwrite)
    out = tuner.out
    if tuner.interrupted:
        cfg.out = str(out)
        saved = ("the snapshot is saved" if not tuner.active.any() else
                 "it resumes from its last snapshot")
        again = resume_command(cfg, tuner.env_spec) + (f" --key {shlex.quote(str(args.key))}" if args.key else "")
        print(f"stopped by {tuner.stop_signal} at env step {tuner.env_steps}; {saved}. Resume with:\n  {again}")
        return 0
    res = read_json(out / "result.json")
    mode = res.get("sampler_mode") or {}
    if mode.get("rule") == "auto" and mode.get("eps0") is not None:
        print(f"sampler mode (base over {mode['episodes']} episodes: ε = 0 {mode['eps0']:.2f}, sampled "
              f"{mode['sampled']:.2f}): trained and deployed {'from ε = 0' if mode['chosen'] == 0 else 'sampled'}")
    trained = {"eps0": " (trained and deployed: ε = 0)", "sampled": " (trained and deployed: sampled)"}
    print(final_summary(res) + trained.get(res.get("final_trained_mode"), ""))
    if part is not None:
        print(f"run folder (PRIVATE, mode 0700: your env/reward options, scores and the steered policy in clear; do "
              f"not publish): {out}")
        print(f"sealed part (shareable: the public base bit for bit + your encrypted steering): {part}. Run it: "
              f"steerlab evaluate {shlex.quote(str(part))} --key {shlex.quote(str(args.key))} ; combine users' parts "
              f"into one release: steerlab release --part {shlex.quote(str(part))} {shlex.quote(str(args.key))} "
              f"--part OTHER.sealed OTHER.key --out RELEASE")
        return 0
    print(f"run folder: {out} (steered policy: {out / 'policy'}; evaluate it with `steerlab evaluate {out}`)")
    return 0


def _method_options() -> str:
    """Every registered method's `--steering.*` keys with their defaults and first sentence (in --help)."""
    lines = []
    for name, cls in REGISTRY.items():
        docs, default = field_docs(cls.Config), cls.Config()
        lines.append(f"  {name}:")
        for f in fields(cls.Config):
            first = docs.get(f.name, "").split(". ")[0].rstrip(".")
            lines.append(f"    --steering.{f.name.replace('_', '-')} {getattr(default, f.name)!r}  {first[:90]}")
    return "\n".join(lines)


class _DottedDicts:
    """Parser mixin: takes `--steering.KEY VALUE` / `--env-kwargs.KEY VALUE` pairs (free-form dicts) out first."""

    def parse_known_args(self, args=None, namespace=None):
        rest, dotted = split_dotted(list(args or []), ("steering", "env-kwargs"))
        ns, extra = super().parse_known_args(rest, namespace)
        ns.steering_dotted, ns.env_kwargs_dotted = dotted["steering"], dotted["env-kwargs"]
        ns.argv = rest
        return ns, extra


class _Formatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults after each option's help; the epilog's per-method lines kept as written."""


def run_finetune(args: argparse.Namespace) -> int:
    args.config_obj = config_from_args(args, args.argv, args.parser)
    return _run(args)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="online RL on a frozen base policy (zprl / action-residual / dsrl / ...)",
                       formatter_class=_Formatter,
                       description="Examples: steerlab finetune runs/pretrain/push-wall-v3 --method zprl "
                                   "--env push-wall-v3 --env-steps 100000 --seed 0 ;  steerlab finetune "
                                   "my_pkg.policies:make_policy --method dsrl --env Pendulum-v1 --sac.hidden 256",
                       epilog="steering options per method (--steering.KEY VALUE):\n" + _method_options())
    p.__class__ = type("FinetuneParser", (_DottedDicts, type(p)), {})
    add_config_args(p, FinetuneConfig, skip=SKIP, positional=("base",), aliases=ALIASES,
                    choices={"method": tuple(REGISTRY), "reward": REWARDS}, nested={"sac": SACConfig},
                    shown_defaults={"sac": SACConfig(**PRESETS["bench"])},
                    extra_help={"sampler_noise_scale": " (a number, or auto)"})
    p.add_argument("--config", default=None, metavar="FILE",
                   help="JSON object of FinetuneConfig fields, read first; options on the line override it")
    p.add_argument("--preset", choices=sorted(PRESETS), default="bench",
                   help="named SAC settings under --sac.*: bench (what the README tables measured, hidden 128), "
                        "paper (hidden 256), dsrl-paper (LayerNorm 3 x 2048 critics, UTD 20)")
    p.add_argument("--sac-json", default=None, metavar="JSON",
                   help="SACConfig fields as one JSON object (same as --sac.FIELD options)")
    p.add_argument("--steering-json", default=None, metavar="JSON",
                   help="steering options as one JSON object (same as --steering.KEY options; keys below)")
    p.add_argument("--latent-scale", type=float, default=None, help="ZPRL λ (= --steering.latent-scale)")
    p.add_argument("--no-resume", action="store_true",
                   help="never continue an existing run in --out (with --overwrite: move it aside, start afresh)")
    p.add_argument("--overwrite", action="store_true",
                   help="move an --out folder that is not this run aside (renamed, never deleted)")
    p.add_argument("--key", default=None, metavar="KEYFILE",
                   help="private online personalization: train with your own reward (e.g. --env-kwargs "
                        "'{\"goal_offset\": [0.08, 0, 0]}'), keep the run folder private (mode 0700) and write the "
                        "shareable part to <out>.sealed/: the public base bit for bit + your steering actor, options "
                        "and scores encrypted under this key (docs/privacy.md). Never recorded anywhere")
    p.add_argument("--allow-insecure", action="store_true", help="with --key: accept a key file others can read (warns)")
    p.set_defaults(func=run_finetune, parser=p)
