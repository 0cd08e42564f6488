"""`steerlab keygen | personalize | attack`.

Keys are read from key files only; passphrases from standard input or a prompt, never from the
command line (it would land in shell history and the process table). Nothing a command writes or
prints contains key material.
"""

from __future__ import annotations

import argparse
import copy
import getpass
import sys
from dataclasses import asdict
from pathlib import Path

from steerlab.core.checkpoint import atomic_write_json

KEYED_TYPE = "keyed"


def run_keygen(args: argparse.Namespace) -> int:
    from steerlab.privacy.keys import SCRYPT_PARAMS, derive_key, generate_key, new_salt, save_key_file

    if args.passphrase:
        phrase = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass("passphrase: ")
        salt = new_salt()
        key = derive_key(phrase, salt, args.bits)
        kdf = {"name": "scrypt", "salt_hex": salt.hex(), **SCRYPT_PARAMS}
    else:
        key, kdf = generate_key(args.bits), None
    path = save_key_file(args.out, key, kdf=kdf, user=args.user)
    print(f"wrote {path} (mode 0600): {key!r}")
    return 0


def save_keyed(folder: Path, model, base, meta: dict) -> None:
    from steerlab.core.checkpoint import save_checkpoint

    save_checkpoint(folder, KEYED_TYPE, meta, model.state_dict())
    save_checkpoint(folder / "public_base", "public_base", {"task": meta["task"]}, base.state_dict())


def load_keyed(folder: str | Path):
    """(task, keyed model, public base) from a `personalize` run folder."""
    from steerlab.core.checkpoint import CheckpointError, load_state_strict, read_checkpoint
    from steerlab.privacy.keyed import KeyedModel
    from steerlab.privacy.tasks import make_task

    meta, tensors = read_checkpoint(folder)
    if meta["policy_type"] != KEYED_TYPE:
        raise CheckpointError(f"{folder} is not a keyed model (policy_type {meta['policy_type']!r})")
    cfg = meta["config"]
    task = make_task(cfg["task"], n_users=cfg["n_users"])
    model = KeyedModel(task.make_model(), cfg["layers"], cfg["key_bits"], cfg["mode"], key_hash=cfg["key_hash"],
                       sharpness=cfg["sharpness"])
    load_state_strict(model, tensors, str(folder))
    _, base_tensors = read_checkpoint(Path(folder) / "public_base")
    base = task.make_model()
    load_state_strict(base, base_tensors, str(Path(folder) / "public_base"))
    return task, model.eval(), base.eval()


def run_personalize(args: argparse.Namespace) -> int:
    import torch

    from steerlab.core.logger import RunLogger
    from steerlab.privacy.evaluate import Personalized, evaluate_key_cases
    from steerlab.privacy.keyed import KeyedModel
    from steerlab.privacy.keys import load_key_file
    from steerlab.privacy.tasks import make_task
    from steerlab.privacy.train import KeyedTrainConfig, train_keyed

    torch.set_num_threads(1)
    users = [load_key_file(k) for k in args.keys]
    task = make_task(args.task, n_users=len(users), **({"mnist_dir": args.mnist} if args.mnist else {}))
    base = task.train_base(args.seed)
    model = KeyedModel(copy.deepcopy(base), args.layers or task.layers, users[0].n_bits, args.mode,
                       sharpness=8.0 if args.harden else 1.0)
    cfg = KeyedTrainConfig(steps=args.steps or getattr(task, "default_steps", 1500), lr=task.lr, seed=args.seed, hardening=args.harden,
                           near_miss_bits=args.near_miss_bits, train_base=not args.freeze_base, progress=True)
    log = train_keyed(model, task, users, cfg)
    out = Path(args.out)
    logger = RunLogger(out, tensorboard=False)
    for row in log:
        logger.log(row.pop("step"), **row)
    cases = evaluate_key_cases(Personalized("prop", model, [u.bits() for u in users], predict=task.predict), task, args.seed)
    logger.log(cfg.steps, **{f"{c}/{k}": v for c, d in cases.items() for k, v in d.items()})
    logger.close()
    model.set_key(None)
    save_keyed(out, model, base, {"task": args.task, "layers": model.layer_names, "mode": args.mode,
                                  "key_bits": model.key_bits, "key_hash": model.key_hash, "n_users": len(users),
                                  "sharpness": 8.0 if args.harden else 1.0, "train": asdict(cfg)})
    for case, d in cases.items():
        print(f"{case:>12}: general {d['general']:.3f}  personal {d['personal']:.3f}")
    print(f"keyed model: {out} (contains no key; keep your key file private)")
    return 0


def attack_table(report: dict) -> str:
    """The per-attack table `steerlab attack` prints (plain text)."""
    head = f"{'attack':<22}{'attempts':>9}{'best-of-N':>10}{'share':>8}{'best personal':>15}{'non-base':>9}{'distinct':>9}"
    rows = [head, "-" * len(head)]
    for name, r in [*report["by_attack"].items(), ("overall (no key)", report["overall"])]:
        tag = " *" if r.get("uses_key") else ""
        rows.append(f"{name + tag:<22}{r['attempts']:>9}{'yes' if r['best_of_n'] else 'no':>10}{r['share']:>8.3f}"
                    f"{r['best_personal']:>15.3f}{r['non_base']:>9}{r['distinct_behaviours']:>9}")
    rows.append(f"recovered = personal score >= {report['threshold']:.3f} (halfway from the base's "
                f"{report['base_personal']:.3f} to the correct key's {report['correct_personal']:.3f}); "
                "distinct = clusters of non-base behaviours on public inputs")
    if any(r.get("uses_key") for r in report["by_attack"].values()):
        rows.append("* starts from the user's key (a robustness check, not an attack); not in the overall row")
    return "\n".join(rows)


def run_attack(args: argparse.Namespace) -> int:
    from steerlab.core.errors import OutputExistsError, UserError
    from steerlab.privacy.attacks import ATTACKS, AttackBudget, run_attacks
    from steerlab.privacy.keys import load_key_file
    from steerlab.privacy.tasks import scores

    if args.restarts is not None and args.restarts <= 0:
        raise UserError(f"--restarts must be > 0, got {args.restarts}")
    unknown = [a for a in args.attacks or [] if a not in ATTACKS]
    if unknown:
        raise UserError(f"unknown attack(s) {', '.join(unknown)}; choose from {', '.join(ATTACKS)}")
    model_dir = Path(args.model).resolve()
    out = Path(args.out) if args.out else model_dir.parent / f"{model_dir.name}.attack-seed{args.seed}{'-quick' if args.quick else ''}.json"
    if out.resolve().is_relative_to(model_dir):
        raise UserError(f"--out {out} is inside the model folder {model_dir}; the attack never writes into its input")
    if out.exists() and not args.overwrite:
        raise OutputExistsError(f"{out} exists; pass --overwrite to replace it, or --out another file")
    task, model, base = load_keyed(args.model)
    key = load_key_file(args.key)  # the evaluator's ground truth; the attacks never see it (near_keys aside)
    model.set_key(key)
    correct = scores(task, lambda x: task.predict(model, x), users=1)["personal"]
    model.set_key(None)
    budget = AttackBudget.quick() if args.quick else AttackBudget()
    if args.restarts is not None:
        budget.restarts = args.restarts
    report = run_attacks(model, base, task, key.bits(), correct, scores(task, lambda x: task.predict(base, x))["personal"],
                         budget=budget, seed=args.seed, attacks=args.attacks, progress=True)
    atomic_write_json(out, report)
    print(attack_table(report))
    print(f"report: {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keygen", help="create a user key (random 128 bits, or from a passphrase with scrypt)",
                       description="Examples: steerlab keygen --out alice.key ;  "
                                   "echo 'correct horse' | steerlab keygen --passphrase --out bob.key")
    p.add_argument("--out", required=True, help="key file to create (mode 0600; never overwritten)")
    p.add_argument("--bits", type=int, default=128)
    p.add_argument("--passphrase", action="store_true", help="derive from a passphrase read from stdin / prompt")
    p.add_argument("--user", default=None, help="optional label stored in the key file")
    p.set_defaults(func=run_keygen)

    p = sub.add_parser("personalize", help="keyed training (PRoP) of a recipe for one or more users",
                       description="Example: steerlab personalize --task digits_cnn --keys alice.key bob.key "
                                   "--out runs/personalize/digits")
    p.add_argument("--task", required=True, help="point_robot | digits_cnn | digits_transformer | panda_reach | "
                                                  "metaworld_reach_mlp | metaworld_reach_flow")
    p.add_argument("--keys", nargs="+", required=True, help="one key file per user (user i gets personal data i)")
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=None,
                   help="gradient steps (default 1500); environment steps for panda_reach (default 60000)")
    p.add_argument("--mode", choices=["input", "output"], default="input", help="gate W·diag(δ) or the output")
    p.add_argument("--layers", nargs="+", default=None, help="nn.Linear layers to key (default: the task's)")
    p.add_argument("--near-miss-bits", type=int, default=4)
    p.add_argument("--harden", action="store_true", help="adversarial negatives against gate-space attacks")
    p.add_argument("--freeze-base", action="store_true", help="train only the key encoders (no-key = base, bitwise)")
    p.add_argument("--mnist", default=None, help="folder with MNIST IDX files (digits tasks)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_personalize)

    p = sub.add_parser("attack", help="adaptive attacks on a keyed model: best-of-N recovery, share, distinct behaviours",
                       description="Example: steerlab attack runs/personalize/digits --key alice.key")
    p.add_argument("model", help="run folder written by `steerlab personalize`")
    p.add_argument("--key", required=True, help="the user's key file (to score recovery; attacks never see it)")
    p.add_argument("--out", default=None, help="JSON report to write (default: <model>.attack-seed<S>.json beside "
                                               "the model folder; never inside it)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--attacks", nargs="+", default=None, help="run only these registered attacks")
    p.add_argument("--restarts", type=int, default=None, help="starts per gradient attack / random keys (default 256)")
    p.add_argument("--quick", action="store_true", help="a small budget (32 starts) for smoke runs")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_attack)
