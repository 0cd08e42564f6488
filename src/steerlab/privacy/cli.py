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


def run_attack(args: argparse.Namespace) -> int:
    from steerlab.privacy.attacks import attack_summary
    from steerlab.privacy.keys import load_key_file
    from steerlab.privacy.tasks import scores

    task, model, base = load_keyed(args.model)
    key = load_key_file(args.key)  # the evaluator's ground truth; the attacks themselves never use it
    model.set_key(key)
    correct = scores(task, lambda x: task.predict(model, x), users=1)["personal"]
    model.set_key(None)
    summary = attack_summary(model, base, task, key.bits(), correct, scores(task, lambda x: task.predict(base, x))["personal"],
                             quick=args.quick, seed=args.seed)
    atomic_write_json(Path(args.model) / "attack.json", summary)
    print(f"key search (random keys):      {summary['key_search_random_recovery']:.3f} recovery")
    print(f"key search (near keys, by bits): {summary['key_search_near_recovery']}")
    print(f"gate-space ascent:             {summary['gate_space_recovery']:.3f}")
    print(f"encoder-input ascent:          {summary['encoder_input_recovery']:.3f}")
    print(f"weight amplification:          {summary['weight_reading_recovery']:.3f}")
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

    p = sub.add_parser("attack", help="adaptive attacks on a keyed model (key search, gate space, weights)",
                       description="Example: steerlab attack runs/personalize/digits --key alice.key")
    p.add_argument("model", help="run folder written by `steerlab personalize`")
    p.add_argument("--key", required=True, help="the user's key file (to score recovery; attacks never see it)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_attack)
