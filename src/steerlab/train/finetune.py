"""Online RL on a frozen flow-matching policy through a steering adapter (ZPRL or a baseline).

Read top to bottom: build the frozen base, the adapter (what the actor controls) and one SAC; then
loop over decisions. One RL step = one executed action chunk (n_action_steps env steps) with discount
γ^k for the k steps actually executed. A success termination ends the episode (no bootstrap); reaching
the horizon is a truncation (bootstrap).

Reward ('dense', the benchmark default): Meta-World's shaped reward / 10, plus on success termination
the discounted value of staying successful for ever, 1 / (1 − γ^n_action_steps), so ending an episode
by succeeding is never worse than lingering. 'sparse': 1 on success, else 0.

Checkpoints of the training state are taken at episode boundaries only, so a resumed run continues
*exactly* as the uninterrupted run would have (same replay contents, same RNG streams).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from steerlab.core.checkpoint import atomic_write_json, load_policy, read_json
from steerlab.core.logger import RunLogger
from steerlab.envs.metaworld_env import episode_seeds, make_env
from steerlab.envs.shifts import shift_name
from steerlab.eval.metrics import smoothness
from steerlab.eval.rollout import evaluate
from steerlab.rl.replay import ReplayBuffer
from steerlab.rl.sac import SAC, SACConfig
from steerlab.rl.steering import METHODS, SteeredPolicy, SteeringConfig, make_adapter, save_steered_policy
from steerlab.train.results import write_run_result


@dataclass
class FinetuneConfig:
    base: str = ""
    """Checkpoint folder of the pretrained flow policy (frozen throughout)."""
    method: str = "zprl"
    """zprl | action-residual | dsrl | embedding-residual"""
    task: str | None = None
    """Meta-World task; default: the base checkpoint's."""
    env_steps: int = 100_000
    """Environment steps of online interaction."""
    seed: int = 0
    out: str | None = None
    """Run folder; default runs/finetune/<task>__<method>__seed<k>."""
    reward: str = "dense"
    """dense (shaped/10 + success bonus) | sparse (1 on success)."""
    shift: str | None = None
    """Deployment shift (steerlab.envs.shifts), e.g. 'actuation:offset-x+0.10': training and evaluation
    episodes run under it, and the steered policy records it."""
    gamma: float = 0.99
    max_steps: int = 200
    warmup_decisions: int = 2_000
    """First decisions act with zero residual / the base's own noise (the base policy) to fill the buffer."""
    eval_every: int = 5_000
    """Environment steps between deterministic evaluations."""
    eval_episodes: int = 20
    checkpoint_every: int = 10_000
    """Environment steps between resumable training-state checkpoints (taken at the next episode end)."""
    buffer_size: int = 200_000
    final_episodes: int = 0
    """Fresh evaluation episodes of the final policy (sampled and from ε = 0) for result.json; 0: none
    (AUC and dip only). The CLI's default is 50."""
    num_threads: int = 1
    tensorboard: bool = True
    sac: SACConfig = field(default_factory=SACConfig)
    steering: SteeringConfig = field(default_factory=SteeringConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FinetuneConfig:
        d = dict(d)
        sac = SACConfig(**d.pop("sac", {}))
        steering = SteeringConfig.from_dict(d.pop("steering", {}))
        known = {f.name for f in fields(cls)}
        return cls(sac=sac, steering=steering, **{k: v for k, v in d.items() if k in known})


def default_run_dir(task: str, method: str, seed: int) -> Path:
    return Path("runs") / "finetune" / f"{task}__{method}__seed{seed}"


class Finetuner:
    """State of one online-RL run; `run()` drives it and can resume from `training_state/`."""

    def __init__(self, cfg: FinetuneConfig, progress: bool = True):
        torch.set_num_threads(cfg.num_threads)
        self.cfg, self.progress = cfg, progress
        self.base_meta = read_json(Path(cfg.base) / "config.json")
        self.base = load_policy(cfg.base)
        cfg.task = cfg.task or self.base.config.env.get("task")
        if not cfg.task:
            raise ValueError("the base checkpoint names no task; pass --task")
        cfg.steering.method = cfg.method
        self.adapter = make_adapter(self.base, cfg.steering, self.base_meta.get("latent_stats", {}))
        cfg.sac = self.adapter.resolve_sac(cfg.sac)  # the method's start (recorded in config.json)
        self.sac = SAC(self.adapter.obs_dim, self.adapter.act_dim, cfg.sac, seed=cfg.seed,
                       critic_action_fn=self.adapter.critic_action)
        self.replay = ReplayBuffer(cfg.buffer_size, self.adapter.obs_dim, self.adapter.act_dim, seed=cfg.seed)
        self.out = Path(cfg.out) if cfg.out else default_run_dir(cfg.task, cfg.method, cfg.seed)
        cfg.shift = shift_name(cfg.shift)  # canonical name; one-line error for an unknown one
        self.env = make_env(cfg.task, seed=cfg.seed, max_steps=cfg.max_steps, terminate_on_success=True,
                            reward=cfg.reward, shift=cfg.shift)
        self.k = self.base.config.n_action_steps
        self.bonus = 1.0 / (1.0 - cfg.gamma**self.k) if cfg.reward == "dense" else 0.0
        # loop state (everything here is saved in training_state/loop.json)
        self.env_steps = 0
        self.decisions = 0
        self.episodes = 0
        self.next_eval = cfg.eval_every
        self.next_ckpt = cfg.checkpoint_every
        self.noise_gen = torch.Generator().manual_seed(cfg.seed + 1)    # sampler noise + latent samples
        self.rng = np.random.default_rng(cfg.seed + 2)                 # progressive-exploration masks
        self.window: list[dict] = []  # training episodes since the last evaluation

    # ------------------------------------------------------------------ one episode
    @torch.no_grad()
    def _features(self, obs: np.ndarray) -> torch.Tensor:
        return self.adapter.features(torch.as_tensor(obs[None]), train=True, gen=self.noise_gen)

    def run_episode(self) -> dict:
        cfg, k = self.cfg, self.k
        obs, info = self.env.reset(seed=episode_seeds("train", cfg.seed, self.episodes + 1)[-1])
        feats = self._features(obs)
        path, ret, success, terminated = [info["hand_pos"]], 0.0, False, False
        while True:
            noise = torch.randn((1, *self.base.chunk_shape), generator=self.noise_gen)
            if self.decisions < cfg.warmup_decisions:
                action = self.adapter.warmup_action(1, noise)
            else:
                action = self.sac.act(feats.numpy(), deterministic=False)
            act_t = torch.as_tensor(action)
            if cfg.method == "action-residual":  # Policy-Decorator progressive exploration
                frac = min(self.env_steps / max(cfg.steering.progressive_steps, 1), 1.0)
                if self.rng.random() > frac:
                    act_t = torch.zeros_like(act_t)
            with torch.no_grad():
                chunk = self.adapter.chunk(feats, act_t, noise)[0].numpy()
            reward, discount, done = 0.0, 1.0, False
            for a in chunk[:k]:
                obs, r, terminated, truncated, info = self.env.step(a)
                self.env_steps += 1
                path.append(info["hand_pos"])
                ret += r
                r_total = r + (self.bonus if terminated else 0.0)
                reward += discount * r_total
                discount *= cfg.gamma
                if terminated or truncated:
                    done = True
                    break
            success = bool(info["is_success"])
            next_feats = self._features(obs)
            # store what the actor actually output (masked residuals are stored as zero: that is what ran)
            self.replay.add(feats.numpy(), act_t.numpy(), np.array([reward], np.float32), next_feats.numpy(),
                            np.array([discount], np.float32), np.array([float(terminated)], np.float32))
            self.decisions += 1
            if self.decisions >= cfg.warmup_decisions and len(self.replay) >= cfg.sac.batch_size:
                # the first `critic_warmup` decisions after warm-up train the critic only (the actor keeps its start)
                actor_on = self.decisions >= cfg.warmup_decisions + self.adapter.critic_warmup
                self.last_update = self.sac.update_many(self.replay, cfg.sac.utd, update_actor=actor_on)
            feats = next_feats
            if done:
                break
        self.episodes += 1
        return {"success": success, "return": ret, "length": len(path) - 1, "jerk": smoothness(np.asarray(path))["jerk"]}

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict:
        policy = SteeredPolicy(self.base, self.adapter, self.sac)
        res = evaluate(policy, self.cfg.task, self.cfg.eval_episodes, seed=self.cfg.seed, n_envs=1,
                       max_steps=self.cfg.max_steps, asynchronous=False, progress=False, shift=self.cfg.shift)
        return {"eval_success": res["success"], "eval_jerk": res["smoothness"]["jerk"],
                "eval_length": res["length_mean"]}

    # ------------------------------------------------------------------ resumable state
    def save_state(self) -> None:
        state = self.out / "training_state"
        self.sac.save(state / "sac")
        self.replay.save(state / "replay.npz")
        atomic_write_json(state / "loop.json", {
            "env_steps": self.env_steps, "decisions": self.decisions, "episodes": self.episodes,
            "next_eval": self.next_eval, "next_ckpt": self.next_ckpt, "window": self.window,
            "noise_gen": self.noise_gen.get_state().tolist(), "rng": self.rng.bit_generator.state,
        })

    def load_state(self) -> bool:
        state = self.out / "training_state"
        if not (state / "loop.json").is_file():
            return False
        loop = read_json(state / "loop.json")
        self.sac.load(state / "sac")
        self.replay.load(state / "replay.npz")
        for key in ("env_steps", "decisions", "episodes", "next_eval", "next_ckpt", "window"):
            setattr(self, key, loop[key])
        self.noise_gen.set_state(torch.tensor(loop["noise_gen"], dtype=torch.uint8))
        self.rng.bit_generator.state = loop["rng"]
        return True

    # ------------------------------------------------------------------ main loop
    def run(self, resume: bool = True) -> Path:
        cfg = self.cfg
        resumed = resume and self.load_state()
        if not resumed:
            atomic_write_json(self.out / "config.json", {"finetune": cfg.to_dict(),
                                                          "steering": self.adapter.config_dict(),
                                                          "base_config": self.base_meta["config"]})
        logger = RunLogger(self.out, tensorboard=cfg.tensorboard, append=resumed)
        # the curve's first point: the steered policy before any update. Residual methods start near the base
        # (small initial residual); DSRL's untrained actor picks ε ≈ 0, which is the *deterministic* base
        if not resumed:
            logger.log(0, **self.evaluate(), explore_jerk=float("nan"), explore_success=float("nan"))
        bar = tqdm(total=cfg.env_steps, initial=self.env_steps, desc=f"{cfg.method} {cfg.task} s{cfg.seed}",
                   unit="step", disable=not self.progress, dynamic_ncols=True)
        t0, steps0 = time.perf_counter(), self.env_steps
        while self.env_steps < cfg.env_steps:
            before = self.env_steps
            ep = self.run_episode()
            self.window.append(ep)
            bar.update(self.env_steps - before)
            if self.env_steps >= self.next_eval or self.env_steps >= cfg.env_steps:
                self.next_eval += cfg.eval_every
                row = self.evaluate()
                row.update(explore_success=float(np.mean([e["success"] for e in self.window])),
                           explore_jerk=float(np.mean([e["jerk"] for e in self.window])),
                           episodes=self.episodes,
                           steps_per_s=(self.env_steps - steps0) / (time.perf_counter() - t0))
                if getattr(self, "last_update", None):
                    row.update({f"sac/{k}": v for k, v in self.last_update.items()})
                logger.log(self.env_steps, **row)
                self.window = []
                bar.set_postfix(success=f"{row['eval_success']:.2f}", sps=f"{row['steps_per_s']:.0f}")
            if self.env_steps >= self.next_ckpt and self.env_steps < cfg.env_steps:
                self.next_ckpt += cfg.checkpoint_every
                self.save_state()
        bar.close()
        logger.close()
        save_steered_policy(SteeredPolicy(self.base, self.adapter, self.sac, shift=cfg.shift), self.out / "policy",
                            base_meta=self.base_meta, sac_config=asdict(cfg.sac))
        self.save_state()
        # result.json last: AUC, dip, final success sampled and from ε = 0 (steerlab.train.results)
        write_run_result(self.out, cfg, cfg.final_episodes, warmup_env_steps=cfg.warmup_decisions * self.k)
        return self.out


def finetune(cfg: FinetuneConfig, progress: bool = True, resume: bool = True) -> Path:
    return Finetuner(cfg, progress).run(resume=resume)


# Named SAC settings. 'bench' is what benchmarks/finetune.py measured (hidden 128: one update costs 6.0 ms
# vs 12.2 ms at 256 on one core, benchmarks/results/sac_update_speed.json) and the CLI's default, so the
# README's command reproduces the tables; 'paper' is the ZPRL paper's width.
PRESETS = {"bench": {"hidden": 128}, "paper": {"hidden": 256}}


def run_finetune(args: argparse.Namespace) -> int:
    sac_overrides = {**PRESETS[args.preset], **(json.loads(args.sac_json) if args.sac_json else {})}
    steering = json.loads(args.steering_json) if args.steering_json else {}
    if args.latent_scale is not None:
        steering["latent_scale"] = args.latent_scale
    cfg = FinetuneConfig(base=args.base, method=args.method, task=args.task, env_steps=args.env_steps,
                         seed=args.seed, out=args.out, reward=args.reward, shift=args.shift, warmup_decisions=args.warmup,
                         eval_every=args.eval_every, eval_episodes=args.eval_episodes,
                         final_episodes=args.final_episodes,
                         sac=SACConfig(**sac_overrides), steering=SteeringConfig.from_dict(steering))
    out = finetune(cfg, resume=not args.no_resume)
    res = read_json(out / "result.json")
    if "final_sampled" in res:
        print(f"final success over {res['final_episodes']} episodes: sampled {res['final_sampled']:.2f}, "
              f"from ε = 0 {res['final_eps0']:.2f} | AUC {res['auc']:.2f} | dip {res['dip']:+.2f}")
    print(f"run folder: {out} (steered policy: {out / 'policy'}; evaluate it with `steerlab evaluate {out / 'policy'}`)")
    return 0


def register_finetune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="online RL on a frozen base policy (zprl / action-residual / dsrl / ...)",
                       description="Example: steerlab finetune runs/pretrain/push-wall-v3 --method zprl "
                                   "--task push-wall-v3 --env-steps 100000 --seed 0")
    p.add_argument("base", help="pretrained policy checkpoint folder")
    p.add_argument("--method", choices=METHODS, default="zprl")
    p.add_argument("--task", default=None)
    p.add_argument("--env-steps", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="run folder (default runs/finetune/<task>__<method>__seed<k>)")
    p.add_argument("--reward", choices=["dense", "sparse"], default="dense")
    p.add_argument("--shift", default=None, help="deployment shift, e.g. actuation:offset-x+0.10 (steerlab.envs.shifts)")
    p.add_argument("--warmup", type=int, default=2_000, help="decisions acting as the base policy first")
    p.add_argument("--eval-every", type=int, default=5_000)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--final-episodes", type=int, default=50,
                   help="final evaluation episodes (sampled and from ε = 0) written to result.json; 0: none")
    p.add_argument("--preset", choices=sorted(PRESETS), default="bench",
                   help="SAC settings: bench (what the README tables measured, hidden 128) or paper (hidden 256); "
                        "--sac-json overrides on top")
    p.add_argument("--latent-scale", type=float, default=None, help="ZPRL λ (default: 0.3 × RMS of μ)")
    p.add_argument("--sac-json", default=None, help='SACConfig overrides, e.g. \'{"num_critics": 5}\'')
    p.add_argument("--steering-json", default=None, help="SteeringConfig overrides")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing training_state/")
    p.set_defaults(func=run_finetune)
