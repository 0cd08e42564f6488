"""`steerlab keygen | personalize | attack`.

Keys are read from key files only; passphrases from standard input or a prompt, never from the
command line (it would land in shell history and the process table). Nothing a command writes or
prints contains key material.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import tempfile
from pathlib import Path

from steerlab.core.checkpoint import atomic_write_json

KEYED_TYPE = "keyed"


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive count, got {value}")
    return value


def read_passphrase(prompt: str = "passphrase: ") -> str:
    return sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass(prompt)


def ask_passphrase(path) -> str:
    """Asked only if a key file is protected (standard input, one line per protected file, or a prompt)."""
    return read_passphrase(f"passphrase for {path}: ")


def run_keygen(args: argparse.Namespace) -> int:
    from steerlab.privacy.keys import KeyExistsError, derive_key, generate_key, new_salt, save_key_file

    if Path(args.out).exists():  # before asking for a passphrase
        raise KeyExistsError(f"{args.out} already exists; refusing to overwrite a key file (the old key would be "
                             f"lost): choose another --out")
    key = generate_key(args.bits)  # refuses < 128 bits before a passphrase is asked for
    passphrase = None
    if args.passphrase:
        passphrase = read_passphrase()
        derive_key(passphrase, new_salt(), params={"n": 2})  # the length rule, before the slow scrypt (cheap N)
    path = save_key_file(args.out, key, user=args.user, passphrase=passphrase)
    what = "encrypted under your passphrase (scrypt N=2^17)" if passphrase is not None else "in clear"
    print(f"wrote {path} (mode 0600, key {what}): {key!r}")
    return 0


def _task_spec(args: argparse.Namespace, n_users: int) -> tuple[dict, list]:
    """How to rebuild the task (recorded in the release), and the command's input paths."""
    from steerlab.core.checkpoint import read_checkpoint
    from steerlab.core.errors import UserError

    if args.task:
        if args.base or args.personal or args.general:
            raise UserError("pass either --task (a built-in recipe) or --base with --personal, not both")
        kwargs = {"n_users": n_users, **({"mnist_dir": str(Path(args.mnist).resolve())} if args.mnist else {})}
        return {"recipe": args.task, "kwargs": kwargs}, [args.mnist]
    if not (args.base and args.personal):
        raise UserError("pass --task RECIPE, or --base CHECKPOINT with --personal DATASET (one per key)")
    if len(args.personal) != n_users:
        raise UserError(f"{len(args.personal)} personal datasets for {n_users} keys: pass one --personal dataset per key")
    from steerlab.core.refs import is_ref

    factory = is_ref(args.base)  # a module:factory base: recorded as the reference, not as a path
    general = args.general
    if general is None and factory:
        raise UserError(f"{args.base} records no training dataset: pass --general DATASET (the shared behaviour)")
    if general is None:  # the base's own training data holds the shared behaviour
        meta, _ = read_checkpoint(args.base)
        general = meta.get("pretrain", {}).get("dataset")
        if not general:
            raise UserError(f"{args.base} records no training dataset: pass --general DATASET")
    options = {"score": args.score, "holdout": args.holdout, "layers": args.layers, "tolerance": args.tolerance,
               "goal_offsets": args.goal_offset}
    if args.score == "env" and not factory:  # where the base acts, as `steerlab evaluate` reads it from the checkpoint
        from steerlab.envs.registry import EnvSpec, checkpoint_env

        recorded = checkpoint_env(read_checkpoint(args.base)[0])
        if recorded:
            env = EnvSpec.from_dict(recorded)
            options.update(env_task=env.id, env_max_steps=env.max_steps)
    base = args.base if factory else str(Path(args.base).resolve())
    spec = {"datasets": {"base": base, "general": str(Path(general).resolve()),
                         "personal": [str(Path(p).resolve()) for p in args.personal], "options": options}}
    return spec, [None if factory else args.base, general, *args.personal]


def _public_base(base, base_arg: str | None, tmp: Path) -> str | None:
    """The checkpoint folder the release copies as its public base (and binds into every blob): the user's
    folder as given, or for a module:factory base a factory checkpoint written to `tmp` (its reference and the
    weights it built). None: a recipe's base, written by the release itself."""
    from steerlab.core.refs import is_ref

    if not (base_arg and is_ref(base_arg)):
        return base_arg
    from steerlab.policies.factory import save_factory_policy

    return str(save_factory_policy(base, base_arg, tmp / "base"))


def _personal_options(spec: dict, n_users: int) -> list[dict]:
    """What each user's sealed blob carries about its user (never written in clear in the release)."""
    if "datasets" not in spec:
        return [{} for _ in range(n_users)]
    d = spec["datasets"]
    offsets = d["options"].get("goal_offsets") or [None] * n_users
    return [{"personal_dataset": path, "goal_offset": off} for path, off in zip(d["personal"], offsets)]


def run_personalize(args: argparse.Namespace) -> int:
    import torch

    from steerlab.core.devices import resolve_device, use_compute_device
    from steerlab.core.errors import UserError
    from steerlab.core.logger import RunLogger
    from steerlab.core.outdir import output_dir
    from steerlab.privacy.key_cases import evaluate_key_cases
    from steerlab.privacy.keys import load_key_files
    from steerlab.privacy.methods import RELEASABLE, PersonalizeConfig, build_personalized
    from steerlab.privacy.release import base_config_of, private_dir, save_release, task_from_config
    from steerlab.privacy.summary import metric_name, release_env, run_it, score_table
    from steerlab.privacy.tasks.base import scores
    from steerlab.privacy.tasks.protocols import HeldOutScorer

    device = resolve_device(args.device)  # before anything is read or trained: an absent device is one line
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    method = args.method
    if args.freeze_base or args.mode == "output":  # the older flags name methods of the table
        if method not in (None, "prop"):
            raise UserError("--freeze-base / --mode output select prop_frozen / prop_output: drop them or --method")
        method = "prop_frozen" if args.freeze_base else "prop_output"
    method = method or "sealed"
    users = load_key_files(args.keys, allow_insecure=args.allow_insecure, passphrase=ask_passphrase)
    spec, inputs = _task_spec(args, len(users))
    if method in RELEASABLE and not method.startswith("sealed"):
        print(f"warning: --method {method} releases a keyed (unsealed) model: its personal behaviour is recoverable "
              f"from its weights by this project's own attacks (key reading recovered a default prop model in "
              f"0.2 s; docs/privacy.md). Use --method sealed (the default) if the model may leave your hands.",
              file=sys.stderr)
    inputs = [*args.keys, *inputs]
    with (output_dir(args.out, "personalize", overwrite=args.overwrite, inputs=inputs) as (out, _),
          output_dir(private_dir(args.out), "personalize-private", overwrite=args.overwrite,
                     inputs=inputs, flag="the private report") as (private, _),
          tempfile.TemporaryDirectory(prefix="steerlab-base-") as tmp, use_compute_device(device, args.amp)):
        private.chmod(0o700)  # the users' data and scores: for the one who ran personalize only
        task = task_from_config(spec)
        base = task.train_base(args.seed)
        public = _public_base(base, args.base, Path(tmp))
        m = PersonalizeConfig(steps=args.steps or task.default_steps, seed=args.seed, hardened=args.harden,
                         near_miss_bits=args.near_miss_bits, layers=args.layers, progress=True,
                         base_config=base_config_of(public, spec if args.task else None),
                         personal=_personal_options(spec, len(users)))
        p = build_personalized(method, task, base, users, m)
        # wrong-key cases: 8 keys each, 2 where every score is a set of rollouts
        cases = evaluate_key_cases(p, task, args.seed, n_keys=8 if isinstance(task.scorer, HeldOutScorer) else 2)
        logger = RunLogger(private, tensorboard=False)
        for row in p.log:
            row = dict(row)
            logger.log(row.pop("step", 0), **{k: v for k, v in row.items() if isinstance(v, (int, float))})
        logger.log(m.steps, **{f"{c}/{k}": v for c, d in cases.items() for k, v in d.items()})
        logger.close()
        config = {"method": method, "task": spec, "n_users": len(users), "seed": args.seed, "steps": m.steps,
                  "hardened": args.harden, "near_miss_bits": args.near_miss_bits}
        base_scores = scores(task, lambda x: task.predict(base, x))
        atomic_write_json(private / "task.json", spec)
        atomic_write_json(private / "cases.json", {"config": config, "cases": cases, "base": base_scores,
                                                   "metric": metric_name(task)})
        if method in RELEASABLE:
            save_release(out, p, config, base, public)
    print(score_table(cases, base_scores, metric_name(task)))
    print(f"private report (scores, datasets, goals; do not publish): {private}")
    if method.startswith("sealed"):
        print(f"sealed release: {out} (the public base + one encrypted part per user; no key, nothing personal). "
              f"Run it: {run_it(out, args.keys[0], release_env(out, args.personal))}")
    elif method in RELEASABLE:
        print(f"keyed model (NOT private against anyone holding its weights: attacks recover the personal "
              f"behaviour): {out}. Run it: {run_it(out, args.keys[0], release_env(out, args.personal))}")
    else:
        print(f"{method} is a comparison baseline: its scores are in {private / 'cases.json'}, no model is released")
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
    from steerlab.core.devices import place, resolve_device, use_compute_device
    from steerlab.core.errors import OutputExistsError, UserError
    from steerlab.privacy.attacks import ATTACKS, AttackBudget, run_attacks
    from steerlab.privacy.keys import load_key_file
    from steerlab.privacy.release import load_keyed
    from steerlab.privacy.tasks.registry import scores

    device = resolve_device(args.device)
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
    task, model, base = load_keyed(args.model)  # CPU tensors, whatever device wrote them
    key = load_key_file(args.key, passphrase=ask_passphrase)  # the evaluator's ground truth; the attacks never see it (near_keys aside)
    budget = AttackBudget.quick() if args.quick else AttackBudget()
    if args.restarts is not None:
        budget.restarts = args.restarts
    with use_compute_device(device, args.amp):  # the models compute there; starts, keys and scores stay CPU-seeded
        model, base = place(model), place(base)
        model.set_key(key)
        correct = scores(task, lambda x: task.predict(model, x), users=1)["personal"]
        model.set_key(None)
        report = run_attacks(model, base, task, key.bits(), correct,
                             scores(task, lambda x: task.predict(base, x))["personal"],
                             budget=budget, seed=args.seed, attacks=args.attacks, progress=True)
    report["device"] = str(device)
    atomic_write_json(out, report)
    print(attack_table(report))
    print(f"report: {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keygen", help="create a user key (random, >= 128 bits; --passphrase: stored encrypted)",
                       description="Examples: steerlab keygen --out alice.key ;  "
                                   "echo 'correct horse' | steerlab keygen --passphrase --out bob.key")
    p.add_argument("--out", required=True, help="key file to create (mode 0600; never overwritten)")
    p.add_argument("--bits", type=positive_int, default=128, help="key size, a multiple of 8, at least 128")
    p.add_argument("--passphrase", action="store_true",
                   help="encrypt the key file under a passphrase (read from stdin / prompt; scrypt N=2^17); "
                        "commands that load it ask for it")
    p.add_argument("--user", default=None, help="optional label stored in the key file")
    p.set_defaults(func=run_keygen)

    p = sub.add_parser("personalize", help="personalization of a recipe or of your own policy from your "
                                           "demonstrations: a sealed release (default, private) or keyed PRoP "
                                           "(unsealed: recoverable from its weights)",
                       description="Examples: steerlab personalize --task digits_cnn --keys alice.key bob.key --out "
                                   "runs/personalize/digits ;  steerlab personalize --base runs/pretrain/reach "
                                   "--personal runs/datasets/alice_demos --keys alice.key --method sealed "
                                   "--out runs/personalize/reach-alice")
    src = p.add_argument_group("what to personalize (a recipe, or your policy and demonstrations)")
    src.add_argument("--task", default=None, help="built-in recipe: point_robot | digits_cnn | digits_transformer | "
                                                  "panda_reach | metaworld_reach_mlp | metaworld_reach_flow")
    src.add_argument("--base", default=None, help="your policy: a checkpoint folder (e.g. from `steerlab pretrain`) "
                                                  "or module:factory (docs/protocol.md, personalization level)")
    src.add_argument("--personal", nargs="+", default=None,
                     help="one dataset of the user's demonstrations per key (LeRobotDataset v3 folders)")
    src.add_argument("--general", default=None,
                     help="dataset of the shared behaviour (default: the dataset the base was trained on)")
    src.add_argument("--score", choices=["agreement", "accuracy", "env"], default="agreement",
                     help="--base only: how behaviour is scored: action agreement (R²) or accuracy (share of "
                          "actions within --tolerance) on held-out demos, or env success with the user's goal")
    src.add_argument("--goal-offset", nargs=3, type=float, action="append", default=None, metavar=("DX", "DY", "DZ"),
                     help="--score env: a user's goal offset, once per key (default: recorded by collect --goal-offset)")
    src.add_argument("--holdout", type=float, default=0.2, help="share of each dataset's episodes held out for scoring")
    src.add_argument("--tolerance", type=float, default=0.1, help="--score accuracy: max-norm action tolerance")
    p.add_argument("--keys", nargs="+", required=True, help="one key file per user (user i gets personal data i)")
    p.add_argument("--out", required=True, help="folder to create (refused if it holds anything else); what is "
                                                "personal (scores, dataset paths, goals) goes to <out>.private/")
    p.add_argument("--overwrite", action="store_true", help="move an existing --out folder aside (never deleted)")
    p.add_argument("--method", default=None,
                   help="sealed (default: the public base + one AES-GCM part per user) | sealed_full (released, "
                        "private); prop | prop_output | prop_rawbits | prop_frozen | key_mlp (a keyed, UNSEALED model: "
                        "its personal behaviour is recoverable from its weights by this project's own attacks, "
                        "docs/privacy.md); cvae | finetune | lora (scores only)")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="gradient steps (default 1500; recipes' own defaults); environment steps for panda_reach "
                        "(default 30000; keyed methods get twice)")
    p.add_argument("--mode", choices=["input", "output"], default="input",
                   help="gate W·diag(δ) or the output (output = --method prop_output)")
    p.add_argument("--layers", nargs="+", default=None,
                   help="nn.Linear layers to key, or for sealed to give LoRA deltas (default: the task's / all)")
    p.add_argument("--near-miss-bits", type=positive_int, default=4,
                   help="keyed methods: keys up to this many bits off a user's are trained as wrong keys")
    p.add_argument("--harden", action="store_true", help="adversarial negatives against gate-space attacks")
    p.add_argument("--freeze-base", action="store_true", help="= --method prop_frozen (no-key = base, bitwise)")
    p.add_argument("--mnist", default=None, help="folder with MNIST IDX files (digits tasks)")
    p.add_argument("--allow-insecure", action="store_true", help="use key files others can read (with a warning)")
    p.add_argument("--seed", type=int, default=0, help="seed of training and of the wrong keys scored")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] | mps: where the models train/compute (auto: cuda if available, then mps); data, keys and scores stay CPU-seeded, so a seed gives the same kind of result anywhere")
    p.add_argument("--amp", action="store_true", help="bf16 autocast for the models' calls on CUDA (no-op with a "
                                                      "warning elsewhere; default off)")
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
    p.add_argument("--seed", type=int, default=0, help="seed of the attacks' random starts")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] | mps: where the models train/compute (auto: cuda if available, then mps); random starts stay CPU-seeded")
    p.add_argument("--amp", action="store_true", help="bf16 autocast for the models' calls on CUDA (no-op with a "
                                                      "warning elsewhere; default off)")
    p.set_defaults(func=run_attack)
