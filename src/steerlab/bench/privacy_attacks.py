"""The attack part of steerlab.bench.privacy: every registered attack against PRoP and its research variants.

One cell = (task, variant, seed): train the public base and the keyed variant for one user (the
benchmark's seeded key), score it under every key case, then run the whole attack suite
(steerlab.privacy.attacks) at the stated budget. A cell is written to privacy_runs/ and skipped once
recorded. `aggregate_attacks` gives privacy.json's "attacks" section: per task and variant, best-of-N
(the fraction of seeds on which any attempt recovered the personal behaviour), the share of attempts that
recovered, and the number of distinct non-base behaviours the attacker found (mean over seeds).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from steerlab.bench.common import RUNS, markdown_table

BASES = RUNS / "privacy_attack_bases"

# seeds per task for PRoP and PRoP hardened (full run); tasks not listed are not attacked by the full run
ATTACK_SEEDS = {"point_robot": 3, "digits_cnn": 1, "digits_transformer": 1, "metaworld_reach_mlp": 1,
                "metaworld_reach_flow": 1, "panda_reach": 1}
# the same two with v1's loss (no anchor), as recorded before the anchor became PRoP's default
UNANCHORED_SEEDS = {"point_robot": 3, "digits_cnn": 3, "digits_transformer": 1, "metaworld_reach_mlp": 1}
UNANCHORED_VARIANTS = ("prop_unanchored", "prop_hardened_unanchored")
# seeds per task for the research variants: one first (a variant recovered on its first seed already misses
# the target); raise it for a variant that looks promising (cells already recorded are skipped)
RESEARCH_SEEDS = {"point_robot": 1, "digits_cnn": 1}
METHOD_SEEDS = {"point_robot": 3, "digits_cnn": 3, "digits_transformer": 1, "metaworld_reach_mlp": 1,
                "metaworld_reach_flow": 1, "panda_reach": 1}  # key_mlp and lora
BASELINE_VARIANTS = ("prop", "prop_hardened")
# baselines of the method table attacked too: the key-MLP (a keyed model, the whole suite applies) and LoRA
# (an adapter released in the clear: the attack applies it); seeds as ATTACK_SEEDS
METHOD_VARIANTS = ("key_mlp", "lora")
ROLLOUT_TASKS = ("metaworld_reach_mlp", "metaworld_reach_flow", "panda_reach")  # 2 wrong keys per case (rollouts)


def task_kwargs(task: str) -> dict:
    """PandaReach's PPO bases are costly: cached on disk like steerlab.bench.privacy's."""
    return {"cache_dir": str(RUNS / "privacy_bases")} if task == "panda_reach" else {}
QUICK_ATTACK_SEEDS = {"point_robot": 1, "digits_cnn": 1}
QUICK_VARIANTS = ["prop", "prop_hardened"]


def attack_cells(tasks: list[str], steps: dict, quick: bool) -> list[dict]:
    from steerlab.privacy.prop.variants import VARIANTS

    variants = QUICK_VARIANTS if quick else list(VARIANTS) + list(METHOD_VARIANTS)

    def n_seeds(task: str, variant: str) -> int:
        if quick:
            return QUICK_ATTACK_SEEDS.get(task, 0)
        if variant in METHOD_VARIANTS:
            return METHOD_SEEDS.get(task, 0)
        if variant in UNANCHORED_VARIANTS:
            return UNANCHORED_SEEDS.get(task, 0)
        return (ATTACK_SEEDS if variant in BASELINE_VARIANTS else RESEARCH_SEEDS).get(task, 0)

    top = max([n_seeds(t, v) for t in tasks for v in variants] + [0])
    cells = [{"kind": "attacks", "task": t, "variant": v, "seed": s, "steps": steps[t], "quick": quick}
             for t in tasks for s in range(top) for v in variants if s < n_seeds(t, v)]
    # task by task; within a task the baselines' seeds first, then the research variants (seed-major), so an
    # interrupted run leaves complete baselines
    return sorted(cells, key=lambda c: (tasks.index(c["task"]), c["variant"] not in BASELINE_VARIANTS,
                                        c["variant"] not in METHOD_VARIANTS, c["seed"]))


def attack_cell_path(cells_dir: Path, c: dict) -> Path:
    return cells_dir / f"attacks__{c['task']}__{c['variant']}__seed{c['seed']}{'__quick' if c['quick'] else ''}.json"


def cached_base(task, seed: int):
    """The public base of (task, seed), trained once and shared by every variant's cell (safetensors under
    benchmarks/runs/privacy_attack_bases/; training is deterministic, so a cached base equals a fresh one,
    and the global torch generator is left in the same state either way)."""
    import torch

    from steerlab.core.io import atomic_save_tensors, load_tensors

    if task.rl:  # the RL task keeps its base's actor-critic (warm critic, the base's actions for the general
        # loss): train_base sets that state and caches it on disk itself (task_kwargs' cache_dir)
        return task.train_base(seed)
    path = BASES / f"{task.name}__seed{seed}.safetensors"
    if path.is_file():
        # `train_base` seeds torch and draws only the model's initialisation from the global generator:
        # redo exactly that, so what follows (the key encoders' initialisation) draws the same numbers
        torch.manual_seed(seed)
        base = task.make_model()
        base.load_state_dict(load_tensors(path))
        return base.eval()
    base = task.train_base(seed)
    atomic_save_tensors(path, {k: v.contiguous() for k, v in base.state_dict().items()})
    return base


def run_attack_cell(c: dict) -> dict:
    import torch

    from steerlab.privacy.attacks import AttackBudget, run_attacks
    from steerlab.privacy.key_cases import Personalized, evaluate_key_cases
    from steerlab.privacy.keys import UserKey
    from steerlab.privacy.methods import PersonalizeConfig, build_personalized
    from steerlab.privacy.prop.baselines import attack_lora_release
    from steerlab.privacy.prop.training import KeyedTrainConfig
    from steerlab.privacy.prop.variants import build_variant
    from steerlab.privacy.tasks.registry import make_task, scores

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    task = make_task(c["task"], **task_kwargs(c["task"]))  # one user: the attacked one (decoys train more)
    base = cached_base(task, c["seed"])
    user = UserKey(np.random.default_rng(1_000 + c["seed"]).bytes(16))  # as steerlab.bench.privacy: build()
    bits = user.bits()
    if c["variant"] in METHOD_VARIANTS:  # a baseline of the method table, trained as its table cells are
        p = build_personalized(c["variant"], task, base, [user], PersonalizeConfig(steps=c["steps"], seed=c["seed"]))
    else:  # keyed RL methods get twice the environment steps (half their episodes are general), as in methods.py
        cfg = KeyedTrainConfig(steps=c["steps"] * (2 if task.rl else 1), lr=task.lr, seed=c["seed"])
        # an RL task holds its base (the general loss is the base's actions, the critic warm-starts from the
        # base's): the variant must train on this cell's task. Supervised tasks are rebuilt as recorded.
        model = build_variant(c["variant"], lambda n: task if task.rl and n == task.n_users
                              else make_task(c["task"], n_users=n, **task_kwargs(c["task"])), base, user, cfg)
        p = Personalized("prop", model, [bits], predict=task.predict)
    train_s = time.perf_counter() - t0
    cases = evaluate_key_cases(p, task, c["seed"], n_keys=2 if c["task"] in ROLLOUT_TASKS else 8)
    base_personal = scores(task, lambda x: task.predict(base, x))["personal"]
    budget = AttackBudget.quick() if c["quick"] else AttackBudget()
    t1 = time.perf_counter()
    if c["variant"] == "lora":  # an adapter in the clear: no key to search, the attacker applies it
        report = attack_lora_release(p.model, p.adapters, base, task, base_personal, cases["correct"]["personal"])
    else:
        report = run_attacks(p.model, base, task, bits, cases["correct"]["personal"], base_personal, budget=budget,
                             seed=c["seed"])
    return {**c, "train_seconds": train_s, "attack_seconds": time.perf_counter() - t1, "cases": cases,
            "base_personal": base_personal, "report": report}


def aggregate_attacks(cells: list[dict], tasks_table: dict) -> dict:
    """privacy.json's "attacks": {task: {variant: {...}}}; full-budget cells, else quick ones."""
    groups: dict = {}
    for c in cells:
        if c.get("kind") == "attacks":
            groups.setdefault((c["task"], c["variant"]), {}).setdefault(c["quick"], []).append(c)
    out: dict = {}
    for (task, variant), by_mode in sorted(groups.items()):
        cs = by_mode.get(False) or by_mode[True]
        overall = [c["report"]["overall"] for c in cs]
        names = list(cs[0]["report"]["by_attack"])
        finetune = tasks_table.get(task, {}).get("finetune", {}).get("correct", {}).get("personal")
        correct = float(np.mean([c["cases"]["correct"]["personal"] for c in cs]))
        out.setdefault(task, {})[variant] = {
            "budget": int(cs[0]["report"]["budget"]["restarts"]), "quick": bool(cs[0]["quick"]), "seeds": len(cs),
            "best_of_n": float(np.mean([o["best_of_n"] for o in overall])),
            "share": float(np.mean([o["share"] for o in overall])),
            "distinct_behaviours": float(np.mean([o["distinct_behaviours"] for o in overall])),
            "largest_is_personal": float(np.mean([o["largest_is_personal"] for o in overall])),
            "attempts": int(np.mean([o["attempts"] for o in overall])),
            **({"verified": float(np.mean([o["verified"] for o in overall])),  # rollout-scored tasks
                "proxy_share": float(np.mean([o["proxy_share"] for o in overall]))}
               if all("verified" in o for o in overall) else {}),
            "by_attack": {n: {k: float(np.mean([c["report"]["by_attack"][n][k] for c in cs]))
                              for k in ("best_of_n", "share", "distinct_behaviours", "attempts")}
                          | {"uses_key": bool(cs[0]["report"]["by_attack"][n]["uses_key"])} for n in names},
            "correct_personal": correct,
            "random_general": float(np.mean([c["cases"]["random"]["general"] for c in cs])),
            "no_key_general": float(np.mean([c["cases"]["no_key"]["general"] for c in cs])),
            "random_personal": float(np.mean([c["cases"]["random"]["personal"] for c in cs])),
            "finetune_personal": finetune,
            "personal_vs_finetune": correct / finetune if finetune else None,
            "train_seconds": float(np.mean([c["train_seconds"] for c in cs])),
            "attack_seconds": float(np.mean([c["attack_seconds"] for c in cs]))}
    return out


SHORT = {"random_keys": "random keys", "near_keys": "near keys*", "gate_space": "gate δ",
         "gate_space_diverse": "gate δ diverse", "encoder_input": "enc. input", "hidden_layer": "hidden layer",
         "evolution": "evolution", "key_reading": "key reading", "hidden_reading": "hidden reading", "weight_amplification": "weight ampl."}


def attack_table(attacks: dict) -> str:
    """Two markdown tables from privacy.json's "attacks": the overall result per variant, then best-of-N
    per attack."""
    rows, rows2 = [], []
    names: list[str] = []
    for by in attacks.values():
        for v in by.values():
            names += [n for n in v["by_attack"] if n not in names]
    from steerlab.privacy.prop.variants import VARIANTS

    def order(variant: str) -> tuple:  # the registry's order; variants from elsewhere (e.g. sealed) after
        return (variant not in VARIANTS, list(VARIANTS).index(variant) if variant in VARIANTS else 0, variant)

    for task, by in attacks.items():
        for variant, v in sorted(by.items(), key=lambda kv: order(kv[0])):
            ratio = v.get("personal_vs_finetune")
            rows.append([task, variant, str(v["seeds"]), f"{v['budget']}" + (" (quick)" if v["quick"] else ""),
                         f"{v['correct_personal']:.3f}" + (f" ({100 * ratio:.0f}%)" if ratio else ""),
                         f"{v['random_general']:.3f}", f"{v['best_of_n']:.2f}", f"{v['share']:.3f}",
                         f"{v['distinct_behaviours']:.1f}", f"{v['largest_is_personal']:.2f}"])
            rows2.append([task, variant] + [f"{v['by_attack'][n]['best_of_n']:.2f} / {v['by_attack'][n]['share']:.2f}"
                                            if n in v["by_attack"] else "" for n in names])
    out = markdown_table(["task", "variant", "seeds", "budget", "correct key: personal (% of fine-tuning)",
                          "random key: general", "best-of-N ↓", "share ↓", "distinct behaviours",
                          "largest is personal"], rows)
    out += ("\n\nbest-of-N: fraction of seeds on which at least one attempt recovered the personal behaviour "
            "(personal score at least halfway from the base's to the correct key's); share: fraction of all "
            "attempts that did; distinct behaviours: clusters of the non-base behaviours the attacks found on "
            "public inputs (1 with best-of-N 1 = the attacker sees the personal behaviour as the only one); "
            "largest is personal: the biggest cluster is the personal behaviour. Budget: starts per gradient "
            "attack and random keys tried (evolution: 64 runs × 16 × 30 evaluations; key reading: ≤ 40 "
            "candidate keys; weight amplification: 4). `key_mlp`: the same suite (no hidden layer: hidden-layer "
            "ascent and reading have no attempts); `lora`: the adapter is in the released file, so the attempts "
            "are the base with it applied at scales 1, 2, 4, 8 (budget 4); `sealed`: 256 random keys, 80 near "
            "keys and 4 weight amplifications through the loader (budget 340). Rollout-scored tasks "
            "(Meta-World, PandaReach): every attempt is ranked by how far its actions on public states moved "
            "from the base's toward the correct key's, and the 16 best overall plus the best of each attack "
            "are scored by rollouts; the others count as not recovered, so best-of-N and share are lower "
            "bounds there (privacy.json also gives `verified` and the proxy's own share). Per attack, best-of-N / share "
            "(*near keys start from the user's key: a robustness check, not in the overall columns):\n\n")
    out += markdown_table(["task", "variant"] + [SHORT.get(n, n) for n in names], rows2)
    return out
