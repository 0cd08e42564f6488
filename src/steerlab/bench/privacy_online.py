"""Private online personalization (PRoP × ZPRL) on Meta-World reach-v3: `steerlab bench privacy_online`.

Per seed, ONE shared public base (a flow-matching policy with the plug-in VIB, behaviour-cloned on the task's
own expert demos) and two users whose goals differ: each wants the hand at the task's goal moved by 8 cm in
their own direction (`privacy.metaworld_task.user_offset`: east = +x, north = +y). The offset is their reward's
secret: the observation still shows the task's goal, so only the user's own policy can pursue it. Per user:

* `online`: `finetune --method zprl --key` with the user's reward (env kwargs `goal_offset`: success = hand
  within 5 cm of goal + offset, dense reward shaped toward it) for `env_steps`, released as the user's sealed
  part; both users' parts assembled into one release (`steerlab release`), run with the user's key;
* `offline_prop` / `offline_sealed`: `personalize` from the user's 20 demonstrations (keyed PRoP, unsealed; the
  sealed rank-8 LoRA adapter), `offline_steps` gradient steps each;
* `finetune`: per-user full fine-tuning (behaviour cloning of every weight on the 20 demos, unsealed): the ceiling;
* `no_key` / `wrong_key`: the release without a key / with a random key (checked to act as the base bit for bit:
  `max_abs_action_diff` 0 on the demos' states, sampled and zero noise).

Every policy is scored on the same `episodes` evaluation episodes per seed in the user's env (success and
return, deterministic sampler from ε = 0), pooled over seeds: success with its Wilson 95% interval, return with
its t-interval; `online_vs_base` is the paired (same episode) difference online − no key with its t-interval.
`keyed_actor` (seed 0): the keyed, UNSEALED variant of the user's steering actor (PRoP on the actor's linear
layers) attacked with the attack suite, for the record. Results: benchmarks/results/privacy.json key "online"
(`--quick`: privacy_online_quick.json); run folders under benchmarks/runs/privacy_online[_quick]/.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from steerlab.bench.common import RESULTS, RUNS, load_cell
from steerlab.core.io import atomic_write_json

USERS = {"east": 0, "north": 2}  # user -> direction index of privacy.metaworld_task.user_offset
TASK = "reach-v3"
EVAL_SEED = 0


@dataclass
class Budget:
    seeds: int = 2
    env_steps: int = 15_000
    episodes: int = 20
    offline_steps: int = 500
    general_demos: int = 50
    personal_demos: int = 20
    pretrain_steps: int = 1000
    attack_steps: int = 500
    quick_attacks: bool = False


QUICK = Budget(seeds=2, env_steps=1_500, episodes=4, offline_steps=60, general_demos=10, pretrain_steps=150,
               attack_steps=100, quick_attacks=True)


def online_config(base: Path, out: Path, offset, seed: int, b: Budget):
    from steerlab.train.finetune import FinetuneConfig

    return FinetuneConfig(base=str(base), method="zprl", env=TASK, env_kwargs={"goal_offset": [float(v) for v in offset]},
                          env_steps=b.env_steps, seed=seed, out=str(out), warmup_decisions=min(200, b.env_steps // 20),
                          eval_every=max(b.env_steps // 4, 1), eval_episodes=5, final_episodes=0, release_gate_episodes=0,
                          sampler_noise_scale=0.0, tensorboard=False, checkpoint_every=b.env_steps,
                          steering={"critic_warmup": min(300, b.env_steps // 10), "latent_rms_ratio": 1.0})


def user_key(seed: int, u: int):
    from steerlab.privacy.keys import UserKey

    return UserKey(np.random.default_rng(7_000 + 100 * seed + u).bytes(16))  # seeded: the benchmark is reproducible


def demos(folder: Path, n: int, seed: int, offset=None) -> Path:
    from steerlab.data.collect import collect_demos
    from steerlab.data.dataset import write_dataset

    if not (folder / "meta" / "info.json").is_file():
        eps = collect_demos(TASK, n, "expert", seed, progress=False, goal_offset=offset,
                            split="train" if offset is not None else "demo")
        write_dataset(folder, eps, TASK, extra_info={"env": "metaworld", "env_id": TASK, "max_steps": 200},
                      overwrite=True)
    return folder


def shared_base(root: Path, seed: int, b: Budget) -> Path:
    from steerlab.train.pretrain import PretrainConfig, pretrain

    out = root / "base"
    if not (out / "model.safetensors").is_file():
        pretrain(PretrainConfig(dataset=str(demos(root / "data" / "general", b.general_demos, seed)), out=str(out),
                                steps=b.pretrain_steps, seed=seed), progress=False)
    return out


def rollouts(policy, offset, b: Budget) -> list[dict]:
    from steerlab.envs.registry import resolve_env
    from steerlab.eval.rollout import evaluate

    spec = resolve_env(TASK, kwargs={"goal_offset": [float(v) for v in offset]})
    res = evaluate(policy, spec, b.episodes, seed=EVAL_SEED, n_envs=1, asynchronous=False, progress=False,
                   noise_scale=0.0)
    return [{"success": bool(e["success"]), "return": float(e["return"])} for e in res["per_episode"]]


def max_abs_diff(policy, base, obs: torch.Tensor) -> float:
    """Largest action difference on `obs`, from ε = 0 and from one shared random noise draw."""
    shape = (len(obs), *base.chunk_shape)
    worst = 0.0
    for noise in (torch.zeros(shape), torch.randn(shape, generator=torch.Generator().manual_seed(0))):
        a, c = np.asarray(policy.predict_chunk(obs, noise=noise)), np.asarray(base.predict_chunk(obs, noise=noise))
        worst = max(worst, float(np.abs(a - c).max()))
    return worst


def offline(base_dir: Path, general: Path, personal: Path, offset, key, seed: int, b: Budget) -> dict:
    """Rollouts of offline PRoP, the sealed adapter and full fine-tuning, from the user's demos."""
    from steerlab.core.checkpoint import load_policy
    from steerlab.data.dataset import read_dataset
    from steerlab.privacy.methods import PersonalizeConfig, build_personalized
    from steerlab.privacy.sealed.blobs import policy_of
    from steerlab.privacy.tasks.byo import DatasetTask

    base = load_policy(base_dir)
    task = DatasetTask(base, read_dataset(general), [read_dataset(personal)], score="env", goal_offsets=[offset],
                       env_task=TASK)
    out = {}
    for name, label in (("prop", "offline_prop"), ("sealed", "offline_sealed"), ("finetune", "finetune")):
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        p = build_personalized(name, task, base, [key], PersonalizeConfig(steps=b.offline_steps, seed=seed))
        p.runner(key.bits())
        out[label] = {"episodes": rollouts(policy_of(p.model), offset, b), "train_seconds": time.perf_counter() - t0}
    return out


def run_seed(seed: int, b: Budget, root: Path) -> dict:
    """Every user's cell of one seed (resumed from its cell file)."""
    from steerlab.core.checkpoint import load_policy
    from steerlab.data.dataset import read_dataset
    from steerlab.privacy.release import load_personal
    from steerlab.privacy.sealed.online import assemble_release
    from steerlab.privacy.tasks.metaworld import user_offset
    from steerlab.train.finetune.private import finetune_sealed

    root = root / f"seed{seed}"
    cell_path = root / "result.json"
    cell = load_cell(cell_path)
    if cell is not None and cell.get("budget") == asdict(b):
        return cell
    base_dir = shared_base(root, seed, b)
    keys = {user: user_key(seed, u) for user, u in USERS.items()}
    parts = []
    for user, u in USERS.items():
        run = root / user / "online"
        if not (run.with_name("online.sealed") / "config.json").is_file():
            t0 = time.perf_counter()
            finetune_sealed(online_config(base_dir, run, user_offset(u), seed, b), keys[user], progress=False,
                            overwrite=True)
            (root / user).joinpath("online_seconds.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")
        parts.append((run.with_name("online.sealed"), keys[user]))
    release = root / "release"
    if not (release / "config.json").is_file():
        release.mkdir(parents=True, exist_ok=True)
        assemble_release(parts, release)
    base = load_policy(base_dir)
    general = demos(root / "data" / "general", b.general_demos, seed)
    obs = torch.as_tensor(np.asarray(read_dataset(general).observations[:256]))
    wrong = user_key(seed, 99)
    cell = {"seed": seed, "budget": asdict(b), "users": {}}
    for user, u in USERS.items():
        offset = user_offset(u)
        personal = demos(root / "data" / user, b.personal_demos, 50 + 10 * seed + u, offset)  # train split, < 100
        row = {"goal_offset": [float(v) for v in offset]}
        for case, key in (("online", keys[user]), ("no_key", None), ("wrong_key", wrong)):
            policy, status = load_personal(release, key, log=io.StringIO())
            row[case] = {"episodes": rollouts(policy, offset, b), "personal_opened": status["personal_opened"]}
            if case != "online":
                row[case]["max_abs_action_diff"] = max_abs_diff(policy, base, obs)
        row["online"]["train_seconds"] = float((root / user / "online_seconds.txt").read_text()) \
            if (root / user / "online_seconds.txt").is_file() else None
        row.update(offline(base_dir, general, personal, offset, keys[user], seed, b))
        if seed == 0:
            row["keyed_actor"] = keyed_actor(release, keys[user], obs, seed, b)
        cell["users"][user] = row
    atomic_write_json(cell_path, cell)
    return cell


def keyed_actor(release: Path, key, obs: torch.Tensor, seed: int, b: Budget) -> dict:
    """The keyed (unsealed) variant of the user's steering actor, attacked (privacy.online_keyed)."""
    from steerlab.privacy.prop.online_keyed import keyed_actor_attack
    from steerlab.privacy.release import load_personal

    policy, _ = load_personal(release, key, log=io.StringIO())
    user_actor = policy.sac.actor
    base_actor = copy.deepcopy(user_actor)
    base_actor.init_start(zero_mean=True, init_std=None)  # zprl's start: Δz = 0, the public base's behaviour
    with torch.no_grad():
        feats = policy.adapter.features(obs, train=False)
    t0 = time.perf_counter()
    out = keyed_actor_attack(base_actor, user_actor, feats, key, b.attack_steps, seed=seed, quick=b.quick_attacks)
    out["seconds"] = time.perf_counter() - t0
    return out


def pooled(rows: list[list[dict]]) -> dict:
    """Success (Wilson 95%) and return (t 95%) over every episode of every seed."""
    from steerlab.eval.metrics import mean_interval, wilson_interval

    eps = [e for r in rows for e in r]
    s = sum(e["success"] for e in eps)
    ret = mean_interval([e["return"] for e in eps])
    return {"success": s / len(eps), "success_ci95": list(wilson_interval(s, len(eps))), "return": ret["mean"],
            "return_ci95": ret["ci95"], "episodes": len(eps), "per_seed_success": [float(np.mean([e["success"] for e in r])) for r in rows]}


def paired(a: list[list[dict]], b: list[list[dict]]) -> dict:
    from steerlab.eval.metrics import mean_interval

    out = {}
    for k in ("success", "return"):
        d = mean_interval([float(x[k]) - float(y[k]) for ra, rb in zip(a, b) for x, y in zip(ra, rb)])
        out[k] = d["mean"]
        out[f"{k}_ci95"] = d["ci95"]
    return out


def aggregate(cells: list[dict], b: Budget) -> dict:
    users = {}
    cases = ("online", "offline_prop", "offline_sealed", "finetune", "no_key", "wrong_key")
    for user in USERS:
        rows = [c["users"][user] for c in cells]
        out = {"goal": {"offset_m": rows[0]["goal_offset"], "meaning": "hand within 5 cm of the task's goal + offset"}}
        for case in cases:
            out[case] = pooled([r[case]["episodes"] for r in rows])
        for case in ("no_key", "wrong_key"):
            out[case]["max_abs_action_diff"] = max(r[case]["max_abs_action_diff"] for r in rows)
            out[case]["personal_opened"] = any(r[case]["personal_opened"] for r in rows)
        for case in ("online", "offline_prop", "offline_sealed", "finetune"):
            out[case]["train_seconds"] = [r[case].get("train_seconds") for r in rows]
        out["online_vs_base"] = paired([r["online"]["episodes"] for r in rows], [r["no_key"]["episodes"] for r in rows])
        out["online_vs_base"]["beats_base"] = bool((out["online_vs_base"]["success_ci95"] or [0])[0] > 0)
        keyed = [r["keyed_actor"] for r in rows if "keyed_actor" in r]
        if keyed:
            k = keyed[0]
            out["keyed_actor"] = {"cases": k["cases"], "base_personal": k["base_personal"], "steps": k["steps"],
                                  "seconds": k["seconds"], "recovered": bool(k["attacks"]["overall"]["best_of_n"]),
                                  "attacks": {n: {f: r.get(f) for f in ("attempts", "best_of_n", "share", "best_personal")}
                                              for n, r in k["attacks"]["by_attack"].items()},
                                  "threshold": k["attacks"]["threshold"]}
        users[user] = out
    return {"seeds": len(cells), "env_steps": b.env_steps, "task": TASK, "budget": asdict(b),
            "protocol": "one shared base per seed; per user: online zprl with the user's reward (sealed part, one "
                        "release of both users) vs offline PRoP / sealed LoRA from 20 demos vs full BC fine-tuning; "
                        f"{b.episodes} evaluation episodes per seed (seed {EVAL_SEED}, same for every policy, ε = 0), "
                        "pooled over seeds", "users": users}


def write(result: dict, quick: bool) -> Path:
    if quick:
        path = RESULTS / "privacy_online_quick.json"
        atomic_write_json(path, result)
        return path
    path = RESULTS / "privacy.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    data["online"] = result  # read-modify-write: every other key kept
    atomic_write_json(path, data)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="steerlab bench privacy_online", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run (≤ 5 min on one core)")
    ap.add_argument("--seeds", type=int, default=None, help="override the number of seeds")
    ap.add_argument("--env-steps", type=int, default=None, help="override the online env steps")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    b = copy.deepcopy(QUICK if args.quick else Budget())
    b.seeds = args.seeds or b.seeds
    b.env_steps = args.env_steps or b.env_steps
    root = RUNS / ("privacy_online_quick" if args.quick else "privacy_online")
    t0 = time.perf_counter()
    cells = []
    for seed in range(b.seeds):
        cells.append(run_seed(seed, b, root))
        print(f"seed {seed} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    result = aggregate(cells, b)
    result["seconds"] = time.perf_counter() - t0
    path = write(result, args.quick)
    for user, r in result["users"].items():
        print(f"{user}: " + ", ".join(f"{c} {r[c]['success']:.2f}" for c in ("online", "offline_prop", "offline_sealed",
                                                                          "finetune", "no_key", "wrong_key"))
              + f" | online - base {r['online_vs_base']['success']:+.2f} {r['online_vs_base']['success_ci95']}")
    print(f"-> {path} ({result['seconds']:.0f} s)")
    return 0
