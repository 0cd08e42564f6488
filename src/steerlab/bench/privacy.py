"""PRoP vs key-MLP, CVAE, per-user fine-tuning and per-user LoRA, with adaptive attacks.

    steerlab bench privacy --quick    # a few minutes: fewer seeds, quick attacks
    steerlab bench privacy            # ~25 min on 2 cores (Ray): the README tables
    steerlab bench privacy --table    # print the README table from benchmarks/results/privacy.json

Tasks: the paper's point-robot imitation (score R² = 1 − MSE/Var, higher is better), digits
classification with a CNN and with a transformer keyed on q/k/v (accuracy), and Meta-World reach with a
personal goal offset for an MLP policy and for the flow-matching policy (rollout success rates, 10
episodes per score; fewer seeds and 2 wrong keys per case because every score is a set of rollouts), and
PPO on panda-gym PandaReach-v3 with the goal mirrored in x and y as the hidden personal goal (normalized
reward 1 − mean distance / initial distance over 16 deterministic evaluation episodes; 2 PPO training runs,
no CVAE).
One user per model in the main table; 1/2/4/8 users in `users`. Each (task, method, seed) is one cell written to
benchmarks/results/privacy_runs/ and skipped once recorded. Wrong-key rows average 8 random / 8
one-bit-off keys per seed; standard errors are over training seeds (each seed has its own base model,
user key and data order).
Attack cells (steerlab.bench.privacy_attacks) run the whole attack suite (`steerlab attack`) on PRoP, PRoP
hardened and the research variants of steerlab.privacy.prop.variants (`--kinds attacks` runs only those).
Legacy single-seed attack cells recorded before the suite existed stay in "attack"/"attack_detail".
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np

from steerlab.bench.common import BENCH_DIR, RESULTS, load_cell, markdown_table, stderr
from steerlab.bench.privacy_attacks import (
    aggregate_attacks,
    attack_cell_path,
    attack_cells,
    attack_table,
    run_attack_cell,
)
from steerlab.core.checkpoint import atomic_write_json

CELLS = RESULTS / "privacy_runs"
METHODS = ["prop", "key_mlp", "cvae", "finetune", "lora"]
# PRoP with v1's loss (no anchor: steerlab.privacy.methods), as recorded before the anchor became the default
UNANCHORED = ["prop_unanchored"]
# fewer seeds for a method on a task than SEEDS gives (CPU time: re-measured after the anchor became PRoP's default)
SEED_CAPS = {("digits_transformer", "prop"): 3, ("digits_cnn", "prop"): 10, ("metaworld_reach_mlp", "prop"): 12}
SEALED = ["sealed", "sealed_full"]  # released as the public base + AEAD blobs (steerlab.privacy.sealed.blobs)
# tasks that run the sealed methods, with at most this many seeds (CPU time)
SEALED_SEEDS = {"point_robot": 6, "digits_cnn": 4, "digits_transformer": 2, "metaworld_reach_mlp": 2,
                "metaworld_reach_flow": 1, "panda_reach": 2}
EXTRA = ["prop_output", "prop_rawbits", "prop_frozen"]  # gate-mode comparison, hash ablation, frozen base
# tasks that also run the EXTRA methods, with at most this many seeds (the variant comparison needs fewer
# seeds than the main table; this caps CPU time)
EXTRA_SEEDS = {"point_robot": 20, "digits_cnn": 6}
STEPS = {"point_robot": 1000, "digits_cnn": 1500, "digits_transformer": 1500, "metaworld_reach_mlp": 1000,
         "metaworld_reach_flow": 1000, "panda_reach": 50_000}  # panda_reach: PPO environment steps (see build)
SEEDS = {"point_robot": 20, "digits_cnn": 20, "digits_transformer": 20, "metaworld_reach_mlp": 20, "metaworld_reach_flow": 1,
         "panda_reach": 10}
QUICK_SEEDS = {"point_robot": 3, "digits_cnn": 2, "digits_transformer": 1, "metaworld_reach_mlp": 1, "panda_reach": 1,
               "metaworld_reach_flow": 0}
ROLLOUT_TASKS = ("metaworld_reach_mlp", "metaworld_reach_flow")  # scored by simulator rollouts: costly
RL_TASKS = ("panda_reach",)  # PPO in PandaReach-v3; no CVAE baseline (a supervised encoder model)


def cell_path(c: dict) -> Path:
    if c["kind"] == "attacks":  # the attack suite on PRoP and its research variants (privacy_attacks.py)
        return attack_cell_path(CELLS, c)
    method = c["method"] + ("_hardened" if c.get("hardened") else "")  # attack cells come in both variants
    return CELLS / f"{c['kind']}__{c['task']}__{method}__u{c.get('users', 1)}__seed{c['seed']}.json"


def is_done(c: dict) -> bool:
    return load_cell(cell_path(c)) is not None


def build(c: dict):
    """Train the public base and the personalized model of one cell; returns (task, base, Personalized).
    The method table lives in the library (steerlab.privacy.methods): `steerlab personalize --task T
    --method M --steps S --seed N` trains the same configuration (with the user's key instead of the
    seed-derived one)."""
    import torch

    from steerlab.privacy.keys import UserKey
    from steerlab.privacy.methods import PersonalizeConfig, build_personalized
    from steerlab.privacy.tasks.registry import make_task

    torch.set_num_threads(1)
    cache = {"cache_dir": str(BENCH_DIR / "runs" / "privacy_bases")} if c["task"] in RL_TASKS else {}  # PPO bases: costly
    task = make_task(c["task"], n_users=c.get("users", 1), **cache)
    base = task.train_base(c["seed"])
    # benchmark user keys are derived from the seed so cells are reproducible; real users use `keygen`
    rng = np.random.default_rng(1_000 + c["seed"])
    users = [UserKey(rng.bytes(16)) for _ in range(task.n_users)]
    p = build_personalized(c["method"], task, base, users,
                           PersonalizeConfig(steps=c["steps"], seed=c["seed"], hardened=c.get("hardened", False)))
    return task, base, p


def run_cell(c: dict) -> dict:
    import torch

    from steerlab.privacy.key_cases import evaluate_key_cases, leakage_curve, user_study_indicators
    from steerlab.privacy.tasks.registry import scores

    if c["kind"] == "attacks":
        out = run_attack_cell(c)
        atomic_write_json(cell_path(c), out)
        return out
    t0 = time.perf_counter()
    task, base, p = build(c)
    train_s = time.perf_counter() - t0
    base_scores = scores(task, lambda x: task.predict(base, x))
    out = {**c, "train_seconds": train_s, "base": base_scores}
    if task.rl and p.log:  # keyed PPO's learning curve (mean return per objective), thinned: diagnoses runs
        out["train_log"] = p.log[::max(1, len(p.log) // 25)] + p.log[-1:]
    if c["kind"] == "table":
        cases = evaluate_key_cases(p, task, c["seed"], n_keys=2 if c["task"] in ROLLOUT_TASKS else 8)
        out["cases"] = cases
        out["user_study"] = user_study_indicators(cases)
        if c["method"] in ("prop", "prop_unanchored", "key_mlp", "cvae", "prop_rawbits") and c["task"] not in ROLLOUT_TASKS:
            out["leakage"] = leakage_curve(p, task, c["seed"])
        if c["method"] in ("prop", "prop_unanchored", "prop_frozen") + tuple(SEALED):  # no key: how far from the base?
            xg, _ = task.test_general()
            with torch.no_grad():
                out["no_key_max_abs_diff"] = float((p.runner(None)(xg) - task.predict(base, xg)).abs().max())
    elif c["kind"] == "users":
        out["cases"] = evaluate_key_cases(p, task, c["seed"])
    elif c["kind"] == "sealed_attack":  # what the attack suite can get from a sealed release
        from steerlab.privacy.sealed.attack import attack_release

        cases = evaluate_key_cases(p, task, c["seed"], n_keys=2 if c["task"] in ROLLOUT_TASKS else 8)
        out["cases"] = cases
        out["attacks"] = attack_release(p.model, task, p.user_bits[0],
                                        lambda run: scores(task, run, users=1)["personal"],
                                        base_scores["personal"], cases["correct"]["personal"], seed=c["seed"])
    out["seconds"] = time.perf_counter() - t0
    atomic_write_json(cell_path(c), out)
    return out


def latency_ratio(repeats: int = 2000) -> dict:
    """Batch-1 forward latency of the keyed CNN (δ folded in) over the plain CNN, one thread."""
    import torch

    from steerlab.privacy.keys import generate_key
    from steerlab.privacy.prop.keyed import KeyedModel
    from steerlab.privacy.tasks.registry import make_task

    torch.set_num_threads(1)
    task = make_task("digits_cnn")
    base = task.make_model().eval()
    keyed = KeyedModel(copy.deepcopy(base), task.layers).eval()
    keyed.set_key(generate_key())
    x = task.test_general()[0][:1]

    def block(fn, n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            fn(x)
        return (time.perf_counter() - t0) / n

    # paired, interleaved blocks; the ratio is the median of per-pair ratios, so load from other processes
    # (which drifts over seconds) hits both models of a pair alike
    with torch.no_grad():
        block(base, 100), block(keyed, 100)
        times = np.array([(block(base, repeats // 20), block(keyed, repeats // 20)) for _ in range(40)])
    b, k = float(np.median(times[:, 0])), float(np.median(times[:, 1]))
    ratio = float(np.median(times[:, 1] / times[:, 0]))
    enc = sum(p.numel() for p in keyed.encoder_parameters())
    n_base = sum(p.numel() for p in base.parameters())
    return {"base_us": 1e6 * b, "keyed_us": 1e6 * k, "ratio": ratio, "encoder_params": enc, "base_params": n_base}


def aggregate() -> dict:
    cells = [c for c in (load_cell(p) for p in sorted(CELLS.glob("*.json"))) if c]
    tasks: dict = {}
    for c in (c for c in cells if c["kind"] == "table"):
        tasks.setdefault(c["task"], {}).setdefault(c["method"], []).append(c)
    table, leak, study, meta = {}, {}, {}, {}
    for task, by in tasks.items():
        table[task], leak[task], study[task] = {}, {}, {}
        for method, cs in by.items():
            table[task][method] = {}
            for case in ("correct", "random", "near_miss_1", "no_key"):
                g = np.array([c["cases"][case]["general"] for c in cs])
                p = np.array([c["cases"][case]["personal"] for c in cs])
                primary = p if case == "correct" else g
                table[task][method][case] = {
                    "general": float(g.mean()), "personal": float(p.mean()),
                    "stderr": stderr(primary), "general_stderr": stderr(g), "personal_stderr": stderr(p)}
            if all("leakage" in c for c in cs):
                leak[task][method] = {d: float(np.mean([c["leakage"][d] for c in cs])) for d in cs[0]["leakage"]}
            study[task][method] = {k: float(np.mean([c["user_study"][k] for c in cs])) for k in ("score", "leakage")}
            meta.setdefault(task, {})[method] = {"seeds": len(cs), "steps": cs[0]["steps"],
                                                 "train_seconds": float(np.mean([c["train_seconds"] for c in cs]))}
        base = [c["base"] for cs in by.values() for c in cs]
        meta[task]["base"] = {k: float(np.mean([b[k] for b in base])) for k in ("general", "personal")}
        nk = [c["no_key_max_abs_diff"] for c in by.get("prop", []) if "no_key_max_abs_diff" in c]
        if nk:
            meta[task]["prop_no_key_max_abs_diff"] = float(max(nk))
        for method in SEALED:  # 0.0 when the no-key release is the base bit for bit
            nk = [c["no_key_max_abs_diff"] for c in by.get(method, []) if "no_key_max_abs_diff" in c]
            if nk:
                meta[task][f"{method}_no_key_max_abs_diff"] = float(max(nk))
    users: dict = {}
    for c in (c for c in cells if c["kind"] == "users"):
        users.setdefault(c["task"], {}).setdefault(str(c["users"]), []).append(c["cases"])
    users = {t: {n: {case: {k: float(np.mean([r[case][k] for r in rs])) for k in ("general", "personal")}
                     for case in rs[0]} | {"seeds": len(rs)} for n, rs in by.items()} for t, by in users.items()}
    attack: dict = {}
    attack_detail: dict = {}
    for c in (c for c in cells if c["kind"] == "attack"):
        key = "hardened" if c["hardened"] else "unhardened"
        attack_detail.setdefault(c["task"], {}).setdefault(key, []).append({**c["attack"], "cases": c["cases"]})
    for task, by in attack_detail.items():
        def worst(rows):  # the attacker's best method is the recovery that counts
            return float(np.mean([max(r["gate_space_recovery"], r["encoder_input_recovery"], r["key_search_random_recovery"],
                                      max(r["key_search_near_recovery"].values()), r["weight_reading_recovery"])
                                  for r in rows]))
        attack[task] = {f"{k}_recovery": worst(v) for k, v in by.items()}
    attacks = aggregate_attacks(cells, table)
    for task in sorted({c["task"] for c in cells if c["kind"] == "sealed_attack"}):  # the sealed release's row
        rows = [c for c in cells if c["kind"] == "sealed_attack" and c["task"] == task]
        ft = table.get(task, {}).get("finetune", {}).get("correct", {}).get("personal")
        correct = float(np.mean([c["cases"]["correct"]["personal"] for c in rows]))
        attacks.setdefault(task, {})["sealed"] = {
            "budget": rows[0]["attacks"]["budget"], "seeds": len(rows), "quick": False,
            "correct_personal": correct, "personal_vs_finetune": correct / ft if ft else None,
            "random_general": float(np.mean([c["cases"]["random"]["general"] for c in rows])),
            "best_of_n": float(np.mean([c["attacks"]["best_of_n"] for c in rows])),
            "share": float(np.mean([c["attacks"]["share"] for c in rows])),
            "distinct_behaviours": float(np.mean([c["attacks"]["distinct_behaviours"] for c in rows])),
            "largest_is_personal": 0.0,  # no non-base behaviour exists to cluster
            "by_attack": {a: {m: float(np.mean([c["attacks"]["by_attack"][a][m] for c in rows]))
                              for m in ("best_of_n", "share")} for a in rows[0]["attacks"]["by_attack"]}}
    return {"tasks": table, "attacks": attacks, "attack": attack, "attack_detail": attack_detail,
            "leakage_vs_hamming": leak, "user_study": study, "users": users, "meta": meta}


def table(results: dict) -> str:
    """One row per task × method: the personal score with the user's key, then general and personal
    scores under a random key, a key one bit off, and no key (mean ± stderr over seeds)."""
    def cell(m, case, obj):
        return f"{m[case][obj]:.3f} ± {m[case][obj + '_stderr']:.3f}"

    rows = []
    for task, by in results["tasks"].items():
        base = results["meta"][task]["base"]
        rows.append([task, "public base", "", f"{base['personal']:.3f}", f"{base['general']:.3f}", "", "", "", "", ""])
        for method in METHODS + UNANCHORED + EXTRA + SEALED:
            if method not in by:
                continue
            m = by[method]
            rows.append([task, method, str(results["meta"][task][method]["seeds"]), cell(m, "correct", "personal"),
                         cell(m, "random", "general"), cell(m, "random", "personal"),
                         cell(m, "near_miss_1", "general"), cell(m, "near_miss_1", "personal"),
                         cell(m, "no_key", "general"), cell(m, "no_key", "personal")])
    out = markdown_table(["task", "method", "seeds", "correct key: personal ↑", "random: general ↑",
                          "random: personal ↓", "1 bit off: general ↑", "1 bit off: personal ↓", "no key: general ↑",
                          "no key: personal ↓"], rows)
    out += ("\n\nScores: R² = 1 − MSE/Var (point robot), accuracy (digits), rollout success rate (Meta-World), "
            "normalized reward 1 − mean distance / initial distance (PandaReach PPO). "
            "'public base' shows the base model's personal score (what no personalization gives) and general score. "
            "`prop_output` gates layer outputs (research-code variant), `prop_rawbits` feeds raw key bits to the "
            "encoders (no HKDF expansion), as in the paper; `prop_frozen` trains the key encoders only, so its "
            "no-key model is the public base bit for bit. `sealed` (rank-8 LoRA deltas on every linear layer) and "
            "`sealed_full` (every weight) train one adapter per user with the base frozen and release it encrypted "
            "(AES-GCM, key from HKDF of the user key): any key other than the user's fails authentication and "
            "runs the public base itself. `prop` holds wrong keys and no key at the public base's outputs on the "
            "users' personal inputs too (the anchor loss: states the general demos never visit); "
            "`prop_unanchored` is PRoP with v1's loss as published (its rows were measured before the anchor "
            "became the default); `prop_output`, `prop_rawbits` and `prop_frozen` are ablations of v1's loss. "
            "PandaReach trains by keyed PPO, where the anchor does not apply.")
    if results.get("attacks"):
        out += ("\n\nAdaptive attacks on the released keyed model (attacker: weights, encoders, public base; no key, "
                "no personal data), per variant:\n\n") + attack_table(results["attacks"])
    if results.get("user_study"):
        srows = [[t, m, f"{v['score']:.2f}", f"{v['leakage']:.2f}"] for t, by in results["user_study"].items()
                 for m, v in by.items()]
        out += "\n\nSimulated user study (3 rollouts: own key, random key, 1-bit-off key; Score best 3, leakage best 0):\n\n"
        out += markdown_table(["task", "method", "Score", "leakage"], srows)
    if results.get("users"):
        urows = [[t, n, f"{v['correct']['personal']:.3f}", f"{v['random']['general']:.3f}",
                  f"{v['near_miss_1']['personal']:.3f}", str(v["seeds"])]
                 for t, by in results["users"].items() for n, v in sorted(by.items(), key=lambda kv: int(kv[0]))]
        out += "\n\nSeveral users in one PRoP model (mean over users):\n\n"
        out += markdown_table(["task", "users", "correct key: personal", "random: general", "1 bit off: personal", "seeds"], urows)
    if "keyed_latency_ratio" in results:
        lat = results["latency"]
        out += (f"\n\nKeyed inference (digits CNN, batch 1, δ folded once per key; medians over 40 interleaved block pairs): {lat['keyed_us']:.0f} µs vs "
                f"{lat['base_us']:.0f} µs plain, ratio {results['keyed_latency_ratio']:.3f}; key encoders add "
                f"{lat['encoder_params']} parameters to {lat['base_params']}.")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="steerlab bench privacy", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tasks", nargs="+", default=list(STEPS))
    ap.add_argument("--address", default=None)
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--kinds", nargs="+", default=["table", "users", "attacks"],
                    help="which cell kinds to run (attacks: the attack suite on PRoP and its research variants)")
    ap.add_argument("--methods", nargs="+", default=None,
                    help="cells of these methods / attacked variants only (default: all)")
    ap.add_argument("--aggregate-only", action="store_true",
                    help="rebuild privacy.json from the recorded cells (keeps its latency measurement)")
    args = ap.parse_args(argv)
    if args.aggregate_only:
        previous = load_cell(RESULTS / "privacy.json") or {}
        results = aggregate()
        for k in ("keyed_latency_ratio", "latency"):
            if k in previous:
                results[k] = previous[k]
        atomic_write_json(RESULTS / "privacy.json", results)
        print(table(results))
        return 0
    if args.table:
        print(table(load_cell(RESULTS / "privacy.json")))
        return 0
    from steerlab.bench.sweep import run_grid

    seeds = QUICK_SEEDS if args.quick else SEEDS
    cells = [{"kind": "table", "task": t, "method": m, "seed": s, "steps": STEPS[t]}
             for t in args.tasks for s in range(seeds[t])
             for m in METHODS + UNANCHORED + (EXTRA if t in EXTRA_SEEDS else []) + (SEALED if t in SEALED_SEEDS else [])
             if not (m in EXTRA and s >= EXTRA_SEEDS[t]) and not (m in SEALED and s >= SEALED_SEEDS[t])
             and s < SEED_CAPS.get((t, m), seeds[t])
             if not (t in RL_TASKS and m in ("cvae", *UNANCHORED))]  # PPO: the anchor does not apply (methods.py)
    # several users in one model: measured with v1's loss (recorded before the anchor became the default)
    cells += [{"kind": "users", "task": t, "method": "prop_unanchored", "users": u, "seed": s, "steps": STEPS[t]}
              for t in ("point_robot", "digits_cnn") if t in args.tasks for u in (2, 4, 8) for s in range(2 if not args.quick else 1)]
    cells += attack_cells(args.tasks, STEPS, args.quick)
    cells += [{"kind": "sealed_attack", "task": t, "method": "sealed", "seed": 0, "steps": STEPS[t]}
              for t in args.tasks if t in SEALED_SEEDS]
    cells = [c for c in cells if c["kind"] in args.kinds or (c["kind"] == "sealed_attack" and "attacks" in args.kinds)]
    if args.methods:
        cells = [c for c in cells if c.get("method", c.get("variant")) in args.methods]
    CELLS.mkdir(parents=True, exist_ok=True)
    run_grid(cells, run_cell, is_done, use_ray=not args.no_ray, address=args.address, desc="privacy cells")
    results = aggregate()
    previous = load_cell(RESULTS / "privacy.json") or {}
    if ("table" in args.kinds and not args.methods) or "latency" not in previous:
        lat = latency_ratio()
        results["keyed_latency_ratio"] = lat["ratio"]
        results["latency"] = lat
    else:  # an attacks-only (or some-methods) run keeps the recorded latency measurement
        results["keyed_latency_ratio"], results["latency"] = previous["keyed_latency_ratio"], previous["latency"]
    atomic_write_json(RESULTS / "privacy.json", results)
    from steerlab.bench.plots import plot_privacy

    plot_privacy(results, RESULTS)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
