"""Personalizing your own policy: does the no-key path stay at the base *on rollouts* (Pendulum-v1)?

What a user does (docs/protocol.md, "personalization level"): a small policy of their own (`PendulumChunkPolicy`:
an MLP that regresses chunks of 4 torques, a module:factory here), trained by its own `compute_loss` on demos of
the scripted swing-up expert (steerlab.envs.classic_experts) recorded with steerlab.data.Recorder; the user's
demos show another behaviour (the same swing-up, held at θ* = USER_TARGET rad instead of upright); then
`steerlab personalize --base <the saved policy> --general <shared demos> --personal <user demos>` with a fresh
key, for `prop` (the keyed model), `sealed` (the default), `prop_unanchored` (PRoP's published loss, for
contrast) and `prop_frozen` (the key encoders only), personalization seeds 0 and 1, on two bases: converged (2,000 imitation steps) and short-trained (300).

Every policy is rolled out on the same Pendulum episodes (same reset seeds, deterministic policy): the base, the
release with no key, with a wrong key and with the user's key. Per row: the env's return (mean, 95% t-interval),
the share of episodes that end upright (cos θ > 0.8 over the last 50 steps), the mean angle over the last 50
steps, and, for no key and wrong key, the paired difference from the base on the same episodes (95% t-interval).
The held-out scores `personalize` prints (its private report) are recorded beside them.

    steerlab bench personalize_own             # -> benchmarks/results/personalize_own.json (minutes, one core)
    steerlab bench personalize_own --quick     # tiny budget: plumbing (-> personalize_own_quick.json)

The user in this benchmark is synthetic: its target and scores are the benchmark's measurement. The keys and the
releases (each with its private report `<release>.private/`) live in a temporary folder per cell; the records
(benchmarks/runs/personalize_own/, archived by `steerlab bench records pack`) keep each cell's result.json.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from steerlab.bench.common import RESULTS, RUNS, steerlab_command
from steerlab.core.io import atomic_write_json, read_json
from steerlab.envs.classic_experts import pendulum_swingup

ENV = "Pendulum-v1"
FACTORY = "steerlab.bench.personalize_own:make_policy"
USER_TARGET = 0.2
"""The user's preferred resting angle (rad from upright; the shared behaviour holds θ = 0). Held with |u| ≤ 2 up
to θ ≈ 0.41; the scripted catch from the swing-up lands reliably up to ≈ 0.2 (0.3: 57% of episodes)."""
TAIL = 50
"""Steps at the end of an episode over which 'upright' and the resting angle are measured."""


class PendulumChunkPolicy(nn.Module):
    """A user's own policy for Pendulum: an MLP that regresses chunks of 4 torques from (cos θ, sin θ, θ̇)."""

    chunk_shape = (4, 1)
    n_action_steps = 1

    def __init__(self, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                 nn.Linear(hidden, 4))

    def predict_chunk(self, obs, noise=None):  # deterministic: the noise is not used
        obs = torch.as_tensor(obs, dtype=torch.float32)
        return 2.0 * torch.tanh(self.net(obs)).reshape(-1, *self.chunk_shape)

    def compute_loss(self, obs, chunk):
        return (self.predict_chunk(obs) - chunk).pow(2).mean()


def make_policy(hidden: int = 64) -> PendulumChunkPolicy:
    torch.manual_seed(0)
    return PendulumChunkPolicy(hidden)


def user_expert(obs: np.ndarray, target: float = USER_TARGET) -> np.ndarray:
    """The user's behaviour: the expert's swing-up, then a PD that holds θ = target instead of upright (with the
    torque that cancels gravity there: θ̈ = 15 sin θ + 3u)."""
    theta, vel = float(np.arctan2(obs[1], obs[0])), float(obs[2])
    if np.cos(theta - target) <= 0.9:
        return pendulum_swingup(obs)
    u = -5.0 * np.sin(theta) - (10.0 * (theta - target) + 2.0 * vel)
    return np.array([np.clip(u, -2.0, 2.0)], np.float32)


def record(folder: Path, expert, episodes: int, first_seed: int) -> Path:
    """`episodes` demos of `expert` on Pendulum, recorded as a user does (steerlab.data.Recorder)."""
    from steerlab.data import Recorder
    from steerlab.envs.registry import make_env

    env = make_env(ENV)
    try:
        with Recorder(folder, task=ENV, fps=20) as rec:
            for i in range(episodes):
                obs, _ = env.reset(seed=first_seed + i)
                done = False
                while not done:
                    action = expert(obs)
                    next_obs, reward, term, trunc, _ = env.step(action)
                    rec.add_frame(obs, action, reward=float(reward))
                    obs, done = next_obs, term or trunc
                rec.end_episode()
    finally:
        env.close()
    return folder


def train_base(dataset: Path, out: Path, steps: int, seed: int = 0) -> Path:
    """The user's base: their policy trained with its own compute_loss on the shared demos, saved as a factory
    checkpoint."""
    from steerlab.data.dataset import chunk_indices, read_dataset
    from steerlab.policies.factory import save_factory_policy

    ds = read_dataset(dataset)
    obs = torch.as_tensor(ds.observations)
    chunks = torch.as_tensor(ds.actions)[torch.as_tensor(chunk_indices(ds, PendulumChunkPolicy.chunk_shape[0]))]
    policy = make_policy()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
    for _ in range(steps):
        idx = torch.randint(0, len(obs), (256,), generator=gen)
        loss = policy.compute_loss(obs[idx], chunks[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return save_factory_policy(policy.eval(), FACTORY, out)


@torch.no_grad()
def rollouts(policy, seeds: list[int]) -> list[dict]:
    """One record per episode seed: the env's return, whether it ends upright, its mean angle at the end."""
    from steerlab.envs.registry import make_env
    from steerlab.eval.rollout import chunk_sampler

    sample, shape = chunk_sampler(policy)
    k = max(1, int(getattr(policy, "n_action_steps", 1)))
    env = make_env(ENV)
    out = []
    try:
        for s in seeds:
            obs, _ = env.reset(seed=s)
            ret, thetas, queue, done = 0.0, [], [], False
            while not done:
                if not queue:
                    queue = list(sample(obs[None].astype(np.float32), torch.zeros(1, *shape))[0, :k])
                obs, r, term, trunc, _ = env.step(np.asarray(queue.pop(0), np.float32))
                ret += float(r)
                thetas.append(float(np.arctan2(obs[1], obs[0])))
                done = term or trunc
            tail = np.asarray(thetas[-TAIL:])
            out.append({"seed": int(s), "return": ret, "upright": bool(np.all(np.cos(tail) > 0.8)),
                        "angle": float(tail.mean())})
    finally:
        env.close()
    return out


def summarize(eps: list[dict], base: list[dict] | None = None) -> dict:
    from steerlab.eval.metrics import mean_interval

    row = {"return": mean_interval([e["return"] for e in eps]),
           "upright": float(np.mean([e["upright"] for e in eps])),
           "angle": mean_interval([e["angle"] for e in eps]),
           "returns": [e["return"] for e in eps]}
    if base is not None:
        diff = [e["return"] - b["return"] for e, b in zip(eps, base, strict=True)]
        row["minus_base"] = mean_interval(diff)
        row["minus_base_max_abs"] = float(np.max(np.abs(diff)))
        row["lost_swingup"] = int(sum(b["upright"] and not e["upright"] for e, b in zip(eps, base)))
    return row


@dataclass
class OwnConfig:
    demos: int = 30
    """Shared demos of the scripted swing-up expert (the base's training data)."""
    user_demos: int = 20
    """The user's demos (held at USER_TARGET)."""
    base_steps: tuple = (2000, 300)
    """One base per entry: its imitation steps (batch 256, Adam 3e-3). 2,000: converged (swings up like the
    expert); 300: short-trained (it does not swing up), where re-fitting the demos moves the no-key path most."""
    steps: int | None = None
    """`personalize --steps`; None: its default for a policy of your own."""
    methods: tuple = ("prop", "sealed", "prop_unanchored", "prop_frozen")
    """`personalize --method`s: the keyed default, the sealed default, PRoP's published loss (no anchor loss on the
    user's states) for contrast, and keyed training of the key encoders only (the weights stay the base's)."""
    seeds: tuple = (0, 1)
    """Personalization seeds (`personalize --seed`); one key per seed."""
    episodes: int = 30
    """Rollout episodes per row; the same reset seeds for every row."""
    extra: dict = field(default_factory=dict)


def personalize_cell(cfg: OwnConfig, base: Path, data: Path, method: str, seed: int, episode_seeds: list[int],
                     base_eps: list[dict]) -> dict:
    """`steerlab keygen` + `steerlab personalize` (their own processes, as a user runs them) for one method and
    seed, then the no-key, wrong-key and right-key rows on the same episodes. The keys and the release live in a
    temporary folder (keys are never kept in the records); the cell is recorded in
    <base's folder>/<method>-seed<k>/result.json (a finished cell is not rerun)."""
    from steerlab.privacy.keys import load_key_file
    from steerlab.privacy.release import load_personal, private_dir

    done = base.parent / f"{method}-seed{seed}" / "result.json"
    if done.is_file():
        return read_json(done)
    with tempfile.TemporaryDirectory(prefix="steerlab-personalize-own-") as tmp:
        keys = {name: Path(tmp) / f"{name}.key" for name in ("user", "wrong")}
        for key in keys.values():
            if steerlab_command(["keygen", "--out", str(key)], quiet=True) != 0:
                raise SystemExit("steerlab keygen failed")
        release = Path(tmp) / "release"
        t0 = time.perf_counter()
        argv = ["personalize", "--base", str(base), "--general", str(data / "shared"), "--personal",
                str(data / "user"), "--keys", str(keys["user"]), "--method", method, "--seed", str(seed),
                "--out", str(release), *(["--steps", str(cfg.steps)] if cfg.steps else [])]
        if steerlab_command(argv, quiet=True) != 0:
            raise SystemExit(f"steerlab {' '.join(argv)} failed")
        seconds = time.perf_counter() - t0
        rows = {}
        with open(os.devnull, "w") as quiet:
            for name, key in (("no_key", None), ("wrong_key", load_key_file(keys["wrong"])),
                              ("right_key", load_key_file(keys["user"]))):
                policy, _ = load_personal(release, key, log=quiet)
                rows[name] = summarize(rollouts(policy, episode_seeds), base_eps)
        printed = read_json(private_dir(release) / "cases.json")  # the held-out scores personalize printed
    cell = {"method": method, "seed": seed, "seconds": seconds, "rows": rows,
            "held_out": {"base": printed["base"], **printed["cases"]}, "metric": printed["metric"]}
    atomic_write_json(done, cell)
    return cell


def run(cfg: OwnConfig, root: Path) -> dict:
    from steerlab.core.checkpoint import load_policy
    from steerlab.envs.seeds import episode_seeds

    torch.set_num_threads(1)
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for name, expert, first in (("shared", pendulum_swingup, 0), ("user", user_expert, 1000)):
        if not (root / name).exists():
            record(root / name, expert, cfg.demos if name == "shared" else cfg.user_demos, first)
    seeds = episode_seeds("eval", 0, cfg.episodes)
    bases = {}
    for steps in cfg.base_steps:
        base = root / f"base{steps}" / "base"
        if not base.exists():
            train_base(root / "shared", base, steps)
        base_eps = rollouts(load_policy(base), seeds)
        cells = [personalize_cell(cfg, base, root, m, s, seeds, base_eps) for m in cfg.methods for s in cfg.seeds]
        drift = {m: [c["rows"]["no_key"]["minus_base"]["mean"] for c in cells if c["method"] == m] for m in cfg.methods}
        bases[str(steps)] = {"base": summarize(base_eps), "no_key_minus_base_by_seed": drift, "cells": cells}
    return {"config": asdict(cfg), "env": ENV, "user_target": USER_TARGET, "episode_seeds": seeds, "bases": bases,
            "seconds": time.perf_counter() - t0, "load_average_end": list(os.getloadavg())}


def table(summary: dict) -> str:
    lines = [f"{'method':<16}{'seed':>5}  {'row':<10}{'return [95%]':>24}{'up':>6}{'angle':>8}"
             f"{'minus base [95%]':>26}{'lost':>5}"]
    for steps, b in summary["bases"].items():
        r, ci = b["base"], b["base"]["return"]["ci95"]
        lines.append(f"base trained {steps} steps: return {r['return']['mean']:.1f} [{ci[0]:.1f}, {ci[1]:.1f}], "
                     f"upright {r['upright']:.2f}, angle {r['angle']['mean']:+.3f}")
        for c in b["cells"]:
            for name, r in c["rows"].items():
                ci, d = r["return"]["ci95"], r["minus_base"]
                lines.append(f"{c['method']:<16}{c['seed']:>5}  {name:<10}{r['return']['mean']:>8.1f} "
                             f"[{ci[0]:.1f}, {ci[1]:.1f}]{r['upright']:>6.2f}{r['angle']['mean']:>+8.3f}"
                             f"{d['mean']:>+9.1f} [{d['ci95'][0]:+.1f}, {d['ci95'][1]:+.1f}]{r['lost_swingup']:>5}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="steerlab bench personalize_own", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny budget, one seed per method (plumbing)")
    ap.add_argument("--root", default=None, help="run folder (default benchmarks/runs/personalize_own[_quick])")
    ap.add_argument("--methods", nargs="+", default=None, help="personalize methods (default prop sealed)")
    args = ap.parse_args(argv)
    name = "personalize_own_quick" if args.quick else "personalize_own"
    cfg = (OwnConfig(demos=6, user_demos=4, base_steps=(200,), steps=50, seeds=(0,), episodes=4) if args.quick
           else OwnConfig())
    if args.methods:
        cfg.methods = tuple(args.methods)
    summary = run(cfg, Path(args.root) if args.root else RUNS / name)
    atomic_write_json(RESULTS / f"{name}.json", summary)
    print(table(summary))
    print(f"-> {RESULTS / f'{name}.json'}")
    return 0
