"""Steering on reward-only envs (no success signal): does each method keep or improve the base's *return*?

2 envs (Pendulum-v1, MountainCarContinuous-v0) × 3 methods (zprl, action-residual, dsrl) × 2 bases, each at
the method's defaults (only the budget is small). Both bases imitate demonstrations of a scripted expert
(steerlab.envs.classic_experts) with action noise, so they imitate imperfectly:
* `flow`: steerlab's own flow policy with its built-in VIB (seeds 0, 1; 8k env steps);
* `own`: a user's OWN protocol policy built the way docs/protocol.md tells a user (bench/own_policy.py: a plain
  nn.Module trained by plain behaviour cloning, saved with save_factory_policy; ZPRL steers it through the plug-in
  VIB fitted post hoc, `pretrain --vib-only --from <it>`) (seeds 0, 1, 2; OWN_ENV_STEPS env steps). Per cell: the base's return (the run's first evaluation, step 0) and the final return
(result.json's sampled final evaluation) with 95% t-intervals over episodes, and result.json's `regressed`
verdict. One core (torch.set_num_threads(1)); ≈ 24 minutes in all on the shared 2-core machine.

    steerlab bench reward_only            # -> benchmarks/results/reward_only.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from steerlab.bench.common import RESULTS, RUNS
from steerlab.core.io import atomic_write_json, read_json
from steerlab.core.logger import read_metrics
from steerlab.data.dataset import Episode, write_dataset
from steerlab.envs.classic_experts import EXPERTS
from steerlab.train.finetune import FinetuneConfig, finetune
from steerlab.train.pretrain import PretrainConfig, pretrain

ENVS = {  # env: (horizon, demo episodes, pretraining steps, finetuning env steps)
    "Pendulum-v1": (200, 30, 1500, 8000),
    "MountainCarContinuous-v0": (200, 30, 1500, 8000),
}
WARMUP = 500  # decisions acting as the base (the default 2,000 would fill half the budget; ZPRL's own defaults,
# among them its 1,000 critic-only decisions, are kept)
FINAL_EPISODES = 20
METHODS = ("zprl", "action-residual", "dsrl")
SEEDS = (0, 1)
OWN_SEEDS = (0, 1, 2)
OWN_ENV_STEPS = 12_000  # room for learning: after the warm-up (1k env steps) and zprl's critic-only phase (2k)
OWN_BC_STEPS = 3000
MODE_EPISODES = 20  # the sampler-mode rule's episodes per mode (evaluation cost only)
# a small flow policy: the envs have 1-d actions and 2-3-d observations
POLICY = {"horizon": 4, "n_action_steps": 2, "embed_dim": 32, "hidden": 64, "latent_dim": 4, "vib_hidden": 64,
          "vib_depth": 2}



def record_demos(env_id: str, episodes: int, seed: int = 0, max_steps: int | None = None,
                 action_noise: float = 0.0) -> list[Episode]:
    """`episodes` episodes of the env's expert (Gaussian action noise of std `action_noise` × the action
    range's half-width, clipped), through steerlab's env contract (envs/registry.py)."""
    from steerlab.envs.registry import make_env, resolve_env

    if env_id not in EXPERTS:
        raise ValueError(f"no scripted expert for {env_id!r}; known: {', '.join(EXPERTS)}")
    expert = EXPERTS[env_id]
    spec = resolve_env(env_id, max_steps=max_steps)
    env = make_env(spec, seed=seed, terminate_on_success=False)
    rng = np.random.default_rng(seed)
    half = (env.action_space.high - env.action_space.low) / 2
    out = []
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed * 100_003 + i)
            observations, actions, rewards = [], [], []
            done = False
            while not done:
                a = expert(obs) + action_noise * half * rng.standard_normal(half.shape)
                a = np.clip(a, env.action_space.low, env.action_space.high).astype(np.float32)
                observations.append(obs)
                actions.append(a)
                obs, r, term, trunc, _ = env.step(a)
                rewards.append(r)
                done = term or trunc
            out.append(Episode(np.asarray(observations, np.float32), np.asarray(actions, np.float32),
                               np.asarray(rewards, np.float32), success=False, meta={"action_noise": action_noise}))
    finally:
        env.close()
    return out


def build_base(env: str, root: Path) -> Path:
    """Demos of the env's scripted expert (action noise 0.3) -> a pretrained flow policy with its VIB."""
    horizon, episodes, steps, _ = ENVS[env]
    ckpt = root / "bases" / env
    if (ckpt / "model.safetensors").is_file():
        return ckpt
    data = root / "data" / env
    if not (data / "meta" / "info.json").is_file():
        demos = record_demos(env, episodes, seed=0, max_steps=horizon, action_noise=0.3)
        write_dataset(data, demos, task=env, robot_type=None, extra_info={"env": "gym", "max_steps": horizon},
                      overwrite=True)
    return pretrain(PretrainConfig(dataset=str(data), out=str(ckpt), steps=steps, batch_size=128, seed=0,
                                   policy=POLICY), progress=False)


def build_own_base(env: str, root: Path) -> tuple[Path, Path]:
    """The user's own protocol policy (plain BC on the same demos as the flow base) and its plug-in VIB, fitted
    post hoc by `pretrain --vib-only` at its defaults: (policy folder, policy + VIB folder)."""
    from steerlab.bench.own_policy import train_own_policy

    build_base(env, root)  # the demos
    own = train_own_policy(env, root / "data" / env, root / "own" / env, steps=OWN_BC_STEPS, squash=False)
    vib = root / "own_vib" / env
    if not (vib / "model.safetensors").is_file():
        pretrain(PretrainConfig(dataset=str(root / "data" / env), out=str(vib), vib_only=True, from_ckpt=str(own),
                                seed=0), progress=False)
    return own, vib


def paired_final(base: Path, steered, env: str, horizon: int, seed: int, mode: str) -> dict:
    """The base and the steered policy (a policy folder or a loaded policy) on the SAME final episodes (seeds,
    initial states) in the steered policy's trained mode, and the per-episode difference with its 95% t-interval:
    a comparison the episode sets of the step-0 evaluation (10 episodes) and the final one (20) cannot give."""
    from steerlab.core.checkpoint import load_policy
    from steerlab.envs.registry import resolve_env
    from steerlab.eval.metrics import mean_interval
    from steerlab.eval.rollout import rollout_episodes
    from steerlab.train.finetune.gate import paired_differences

    spec, scale = resolve_env(env, max_steps=horizon), 0.0 if mode == "eps0" else 1.0
    runs = {name: rollout_episodes(p if not isinstance(p, Path) else load_policy(p), spec, FINAL_EPISODES, seed=seed,
                                   n_envs=1, asynchronous=False, progress=False, noise_scale=scale)
            for name, p in (("base", base), ("steered", steered))}
    d = paired_differences(runs["steered"], runs["base"])["return"]  # the release gate's own comparison
    return {"paired_mode": mode, "paired_base_return": d["base"],
            "paired_base_return_ci95": mean_interval([e["return"] for e in runs["base"]])["ci95"],
            "paired_diff": d["difference"], "paired_diff_ci95": d["difference_ci95"]}


def gated(run: Path, base: Path, env: str, horizon: int, seed: int, mode: str, paired: dict) -> dict:
    """`steerlab finetune`'s release gate at its default (FinetuneConfig.release_gate_episodes episodes of the
    'gate' split, disjoint from the final episodes), applied by the library's own function to the run's trained
    policy, and the released policy on the same final episodes as `paired_final` (the same numbers when the
    steered policy is released). The runs were trained before the gate existed; the gate acts after training,
    so this is what the defaults release now."""
    from steerlab.core.checkpoint import load_policy
    from steerlab.envs.registry import resolve_env
    from steerlab.train.finetune.config import FIELD_DEFAULTS
    from steerlab.train.finetune.gate import release_gate

    policy = load_policy(run / "policy")
    gate = release_gate(policy, resolve_env(env, max_steps=horizon), FIELD_DEFAULTS["release_gate_episodes"], seed)
    released = paired if gate["released"] == "steered" else paired_final(base, policy, env, horizon, seed, mode)
    return {"gate": gate, "released": gate["released"], "released_diff": released["paired_diff"],
            "released_diff_ci95": released["paired_diff_ci95"]}


def run_cell(env: str, method: str, seed: int, base: Path, root: Path, kind: str = "flow",
             steered_from: Path | None = None) -> dict:
    """One run; `steered_from`: what finetune steers when it is not `base` itself (the own policy's plug-in VIB
    for zprl); the paired comparison is always against `base`."""
    horizon, _, _, env_steps = ENVS[env]
    own = kind == "own"
    env_steps = OWN_ENV_STEPS if own else env_steps
    out = root / "runs" / (f"own__{env}__{method}__seed{seed}" if own else f"{env}__{method}__seed{seed}")
    if not (out / "result.json").is_file():
        extra = {"mode_episodes": MODE_EPISODES, "eval_every": 4000} if own else {"eval_every": 2000}
        cfg = FinetuneConfig(base=str(steered_from or base), method=method, env=env, env_steps=env_steps, seed=seed,
                             out=str(out), max_steps=horizon, warmup_decisions=WARMUP, eval_episodes=10,
                             final_episodes=FINAL_EPISODES, tensorboard=False,
                             # the trained policy is compared first; the gate is applied after, as `gated` says
                             release_gate_episodes=0, **extra)
        finetune(cfg, progress=False)
    res = read_json(out / "result.json")
    first = next(r for r in read_metrics(out) if "eval_return" in r)
    cache = out / "paired.json"  # the paired evaluation of this finished run (deterministic): computed once, archived
    paired = read_json(cache) if cache.is_file() else None
    if paired is None:
        paired = paired_final(base, out / "policy", env, horizon, seed, res.get("final_trained_mode") or "sampled")
        atomic_write_json(cache, paired)
    gate_cache = out / "gate.json"  # the release gate and the released policy (deterministic): computed once, archived
    gate = read_json(gate_cache) if gate_cache.is_file() else None
    if gate is None:
        gate = gated(out, base, env, horizon, seed, paired["paired_mode"], paired)
        atomic_write_json(gate_cache, gate)
    return {"base": kind, "env": env, "method": method, "seed": seed, "env_steps": env_steps,
            "base_return": first["eval_return"], "base_return_ci95": [first["eval_return_lo"], first["eval_return_hi"]],
            # the final policy in the sampler mode it was trained and is deployed in (the rule's choice), and both
            "trained_mode": res.get("final_trained_mode"), "sampler_mode": res.get("sampler_mode"),
            "final_return": res[f"final_{res.get('final_trained_mode') or 'sampled'}_return"],
            "final_return_ci95": res[f"final_{res.get('final_trained_mode') or 'sampled'}_return_ci95"],
            "final_sampled_return": res["final_sampled_return"],
            "final_eps0_return": res["final_eps0_return"], "final_eps0_return_ci95": res["final_eps0_return_ci95"],
            "auc_return": res["auc_return"], "regressed": res["regressed"], **paired, **gate}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="steerlab bench reward_only", description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(RUNS / "reward_only"), help="bases, datasets and run folders")
    ap.add_argument("--out", default=str(RESULTS / "reward_only.json"))
    ap.add_argument("--own-envs", nargs="*", default=list(ENVS), choices=list(ENVS),
                    help="envs that also get the own-protocol-policy cells (default: all)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    root = Path(args.root)
    t0 = time.perf_counter()
    cells = []
    plan = []
    for env in ENVS:
        base = build_base(env, root)
        plan += [(env, m, s, base, "flow", None) for m in METHODS for s in SEEDS]
        if env not in args.own_envs:
            continue
        own, own_vib = build_own_base(env, root)
        plan += [(env, m, s, own, "own", own_vib if m == "zprl" else None) for m in METHODS for s in OWN_SEEDS]
    for env, method, seed, base, kind, steered_from in plan:
        cells.append(run_cell(env, method, seed, base, root, kind, steered_from))
        c = cells[-1]
        lo, hi = c["paired_diff_ci95"]
        print(f"{kind} {env} {method} s{seed}: same {FINAL_EPISODES} episodes ({c['paired_mode']}): base "
              f"{c['paired_base_return']:.1f} -> steered {c['final_return']:.1f}, difference "
              f"{c['paired_diff']:+.1f} [{lo:+.1f}, {hi:+.1f}] | curve verdict {c['regressed']['verdict']} | "
              f"gate releases the {c['released']} ({c['released_diff']:+.1f})", flush=True)
    atomic_write_json(args.out, {
        "what": "per cell: the base (step-0 curve evaluation, 10 episodes) and the final policy (20 fresh episodes, "
                "in its trained sampler mode and both); paired_*: the base and the steered policy on the SAME 20 "
                "final episodes in the trained mode, and the per-episode return difference; ci95: Student-t 95% "
                "interval over episodes; regressed: result.json's curve verdict (last vs first evaluation)",
        "warmup_decisions": WARMUP, "policy": POLICY, "own_policy": {
            "module": "steerlab.bench.own_policy", "linear_head": True, "bc_steps": OWN_BC_STEPS,
            "plugin_vib": "pretrain --vib-only at its defaults", "env_steps": OWN_ENV_STEPS, "seeds": list(OWN_SEEDS),
            "mode_episodes": MODE_EPISODES, "eval_every": 4000, "envs": list(args.own_envs)}, "envs": {k: dict(zip(("horizon", "demo_episodes", "pretrain_steps", "env_steps"), v))
                                   for k, v in ENVS.items()},
        "seconds": time.perf_counter() - t0, "cells": cells})
    print(f"-> {args.out} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def table(results: dict) -> str:
    """One row per (base, env, method, seed): the base and the steered policy on the same final episodes."""
    from steerlab.bench.common import markdown_table

    def diff(d, ci):
        return f"{d:+.1f}" + (f" [{ci[0]:+.1f}, {ci[1]:+.1f}]" if ci else "")

    rows = []
    for c in results["cells"]:
        g = c.get("gate")
        gate = "–" if g is None else f"{c['released']} ({g['return']['difference']:+.1f} on {g['episodes']})"
        rows.append([c.get("base") or "flow", c["env"], c["method"], str(c["seed"]), str(c["env_steps"]),
                     f"{c['paired_base_return']:.1f}", f"{c['paired_base_return'] + c['paired_diff']:.1f}",
                     diff(c["paired_diff"], c["paired_diff_ci95"]), c["regressed"]["verdict"], gate,
                     "–" if g is None else diff(c["released_diff"], c["released_diff_ci95"])])
    return markdown_table(["base", "env", "method", "seed", "env steps", "base return", "steered return",
                           "difference [95%]", "curve verdict", "gate releases (its difference)",
                           "released − base [95%]"], rows)
