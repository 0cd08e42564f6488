"""Online RL on a frozen pretrained policy through a steering method (ZPRL or a baseline), in any env.

Read top to bottom: build the frozen base (a checkpoint folder, or `module:factory` for any policy that
implements the steerable-policy protocol), the environment (envs/registry.py: a Meta-World task, a
Gymnasium id or `module:factory`), the steering method (rl/steering/: what the actor controls, its
exploration schedule and warm-up action) and one SAC; then loop over decisions. The loop never asks which
method or env it runs. One RL step = one executed action chunk (n_action_steps env steps) with discount
γ^k for the k steps actually executed. A success termination ends the episode (no bootstrap); reaching
the horizon is a truncation (bootstrap).

Reward ('dense', the benchmark default): the env's reward (Meta-World's shaped reward / 10), plus on success termination
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

from steerlab.core.checkpoint import atomic_write_json, read_json
from steerlab.core.errors import UserError
from steerlab.core.logger import RunLogger
from steerlab.envs.registry import EnvSpec, checkpoint_env, make_env, resolve_env
from steerlab.envs.seeds import episode_seeds
from steerlab.eval.metrics import smoothness
from steerlab.eval.rollout import evaluate
from steerlab.policies.factory import load_policy_source
from steerlab.rl.replay import ReplayBuffer
from steerlab.rl.sac import SAC, SACConfig
from steerlab.rl.steering import REGISTRY, SteeredPolicy, make_adapter, method_class, save_steered_policy


@dataclass
class FinetuneConfig:
    base: str = ""
    """Pretrained policy (frozen throughout): a checkpoint folder, or 'module:factory' for any policy that
    implements the steerable-policy protocol (docs/protocol.md)."""
    method: str = "zprl"
    """A registered steering method: zprl | action-residual | dsrl | embedding-residual | ..."""
    env: str | None = None
    """Meta-World task, Gymnasium id or 'module:factory'; default: the base checkpoint's environment."""
    success_key: str | None = None
    """`info` key that signals success; None: the env family's ('is_success')."""
    position_key: str | None = None
    """`info` key of the end-effector position (smoothness); None: the family's ('hand_pos' on Meta-World),
    'none': the env has none."""
    shift: str | None = None
    """Named deployment shift (steerlab.envs.shifts) applied to the training env."""
    env_kwargs: dict = field(default_factory=dict)
    """Keyword arguments for the env constructor."""
    env_steps: int = 100_000
    """Environment steps of online interaction."""
    seed: int = 0
    out: str | None = None
    """Run folder; default runs/finetune/<env>__<method>__seed<k>."""
    reward: str = "dense"
    """dense (shaped/10 + success bonus) | sparse (1 on success)."""
    gamma: float = 0.99
    max_steps: int | None = None
    """Episode horizon; None: the env spec's (Meta-World: 200, a Gymnasium id: its registered limit)."""
    warmup_decisions: int = 2_000
    """First decisions act with zero residual / the base's own noise (the base policy) to fill the buffer."""
    eval_every: int = 5_000
    """Environment steps between deterministic evaluations."""
    eval_episodes: int = 20
    checkpoint_every: int = 10_000
    """Environment steps between resumable training-state checkpoints (taken at the next episode end)."""
    buffer_size: int = 200_000
    num_threads: int = 1
    tensorboard: bool = True
    sac: SACConfig = field(default_factory=SACConfig)
    steering: dict = field(default_factory=dict)
    """Options of the steering method (its config dataclass in rl/steering/<method>.py)."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FinetuneConfig:
        d = dict(d)
        if "task" in d:  # v1 configs named the (Meta-World) env 'task'
            d.setdefault("env", d.pop("task"))
        sac = SACConfig(**d.pop("sac", {}))
        known = {f.name for f in fields(cls)}
        return cls(sac=sac, **{k: v for k, v in d.items() if k in known})

    def env_spec(self, recorded: dict | None) -> EnvSpec:
        """The env of this run: `env` (or the base's recorded env) with this config's overrides."""
        if not self.env and not recorded:
            raise UserError("the base policy names no environment; pass --env")
        source = self.env if self.env else EnvSpec.from_dict(recorded)
        position = "" if self.position_key is None else (None if self.position_key == "none" else self.position_key)
        return resolve_env(source, max_steps=self.max_steps, success_key=self.success_key, position_key=position,
                           shift=self.shift, kwargs=self.env_kwargs)


def default_run_dir(env: str, method: str, seed: int) -> Path:
    name = env.replace(":", "_").replace("/", "_")
    return Path("runs") / "finetune" / f"{name}__{method}__seed{seed}"


class Finetuner:
    """State of one online-RL run; `run()` drives it and can resume from `training_state/`."""

    def __init__(self, cfg: FinetuneConfig, progress: bool = True):
        torch.set_num_threads(cfg.num_threads)
        self.cfg, self.progress = cfg, progress
        self.base, self.base_meta, self.base_tensors = load_policy_source(cfg.base)
        self.env_spec = cfg.env_spec(checkpoint_env(self.base_meta))
        self.adapter = make_adapter(self.base, cfg.method, cfg.steering, self.base_meta.get("latent_stats", {}))
        self.sac = SAC(self.adapter.obs_dim, self.adapter.act_dim, cfg.sac, seed=cfg.seed,
                       critic_action_fn=self.adapter.critic_action)
        self.replay = ReplayBuffer(cfg.buffer_size, self.adapter.obs_dim, self.adapter.act_dim, seed=cfg.seed)
        self.out = Path(cfg.out) if cfg.out else default_run_dir(self.env_spec.id, cfg.method, cfg.seed)
        self.env = make_env(self.env_spec, seed=cfg.seed, terminate_on_success=True, reward=cfg.reward)
        check_env_fits(self.env, self.base, self.env_spec)
        self.pos_key = self.env_spec.position_key
        self.noise_shape = getattr(self.base, "noise_shape", None)  # None: an action-level policy samples its own
        self.k = int(self.base.n_action_steps)
        self.bonus = 1.0 / (1.0 - cfg.gamma**self.k) if cfg.reward == "dense" else 0.0
        # loop state (everything here is saved in training_state/loop.json)
        self.env_steps = 0
        self.decisions = 0
        self.episodes = 0
        self.next_eval = cfg.eval_every
        self.next_ckpt = cfg.checkpoint_every
        self.noise_gen = torch.Generator().manual_seed(cfg.seed + 1)    # sampler noise + latent samples
        self.rng = np.random.default_rng(cfg.seed + 2)                 # the method's exploration schedule
        self.window: list[dict] = []  # training episodes since the last evaluation

    # ------------------------------------------------------------------ one episode
    @torch.no_grad()
    def _features(self, obs: np.ndarray) -> torch.Tensor:
        return self.adapter.features(torch.as_tensor(obs[None]), train=True, gen=self.noise_gen)

    def run_episode(self) -> dict:
        cfg, k = self.cfg, self.k
        obs, info = self.env.reset(seed=episode_seeds("train", cfg.seed, self.episodes + 1)[-1])
        feats = self._features(obs)
        path, length, ret, success, terminated = ([info[self.pos_key]] if self.pos_key else []), 0, 0.0, False, False
        while True:
            noise = (torch.randn((1, *self.noise_shape), generator=self.noise_gen)
                     if self.noise_shape is not None else None)
            if self.decisions < cfg.warmup_decisions:
                action = self.adapter.warmup_action(1, noise)
            else:
                action = self.sac.act(feats.numpy(), deterministic=False)
            # the method's exploration schedule (e.g. action-residual's progressive residual); what it
            # returns is what runs, so that is what the replay stores
            act_t = self.adapter.explore(torch.as_tensor(action), self.env_steps, self.rng)
            with torch.no_grad():
                chunk = self.adapter.chunk(torch.as_tensor(obs[None]), feats, act_t, noise)[0].numpy()
            reward, discount, done = 0.0, 1.0, False
            for a in chunk[:k]:
                obs, r, terminated, truncated, info = self.env.step(a)
                self.env_steps += 1
                length += 1
                if self.pos_key:
                    path.append(info[self.pos_key])
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
                self.last_update = self.sac.update_many(self.replay, cfg.sac.utd)
            feats = next_feats
            if done:
                break
        self.episodes += 1
        jerk = smoothness(np.asarray(path))["jerk"] if self.pos_key else float("nan")
        return {"success": success, "return": ret, "length": length, "jerk": jerk}

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict:
        res = evaluate(self.steered_policy(), self.env_spec, self.cfg.eval_episodes, seed=self.cfg.seed, n_envs=1,
                       asynchronous=False, progress=False)
        return {"eval_success": res["success"], "eval_jerk": res["smoothness"]["jerk"],
                "eval_length": res["length_mean"]}

    def steered_policy(self) -> SteeredPolicy:
        return SteeredPolicy(self.base, self.adapter, self.sac, env_spec=self.env_spec.to_dict(),
                             base_meta=self.base_meta, base_tensors=self.base_tensors)

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
                                                          "env": self.env_spec.to_dict(),
                                                          "base_config": self.base_meta["config"]})
        logger = RunLogger(self.out, tensorboard=cfg.tensorboard, append=resumed)
        # the curve's first point: the steered policy before any update. Residual methods start near the base
        # (small initial residual); DSRL's untrained actor picks ε ≈ 0, which is the *deterministic* base
        if not resumed:
            logger.log(0, **self.evaluate(), explore_jerk=float("nan"), explore_success=float("nan"))
        bar = tqdm(total=cfg.env_steps, initial=self.env_steps, desc=f"{cfg.method} {self.env_spec.id} s{cfg.seed}",
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
                           explore_jerk=float(np.mean([e["jerk"] for e in self.window])) if self.pos_key
                           else float("nan"),
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
        save_steered_policy(self.steered_policy(), self.out / "policy", sac_config=asdict(cfg.sac))
        self.save_state()
        return self.out


def check_env_fits(env, policy, spec: EnvSpec) -> None:
    """The env's observation and action shapes must be the policy's (one-line error otherwise)."""
    obs_shape, act_shape = tuple(env.observation_space.shape), tuple(env.action_space.shape)
    if obs_shape != (int(policy.obs_dim),) or act_shape != (int(policy.action_dim),):
        raise UserError(f"{spec.id} has observations {obs_shape} and actions {act_shape}, but the policy expects "
                        f"({policy.obs_dim},) and ({policy.action_dim},)")


def finetune(cfg: FinetuneConfig, progress: bool = True, resume: bool = True) -> Path:
    return Finetuner(cfg, progress).run(resume=resume)


def run_finetune(args: argparse.Namespace) -> int:
    sac_overrides = json.loads(args.sac_json) if args.sac_json else {}
    steering = json.loads(args.steering_json) if args.steering_json else {}
    if args.latent_scale is not None:
        steering["latent_scale"] = args.latent_scale
    method_class(args.method).Config.from_dict(steering)  # unknown options: one line naming them
    cfg = FinetuneConfig(base=args.base, method=args.method, env=args.env, env_steps=args.env_steps,
                         seed=args.seed, out=args.out, reward=args.reward, warmup_decisions=args.warmup,
                         eval_every=args.eval_every, eval_episodes=args.eval_episodes, max_steps=args.max_steps,
                         success_key=args.success_key, position_key=args.position_key, shift=args.shift,
                         env_kwargs=json.loads(args.env_kwargs) if args.env_kwargs else {},
                         sac=SACConfig(**sac_overrides), steering=steering)
    out = finetune(cfg, resume=not args.no_resume)
    print(f"run folder: {out} (steered policy: {out / 'policy'}; evaluate it with `steerlab evaluate {out / 'policy'}`)")
    return 0


def register_finetune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="online RL on a frozen base policy (zprl / action-residual / dsrl / ...)",
                       description="Examples: steerlab finetune runs/pretrain/push-wall-v3 --method zprl "
                                   "--env push-wall-v3 --env-steps 100000 --seed 0 ;  steerlab finetune "
                                   "my_pkg.policies:make_policy --method dsrl --env Pendulum-v1")
    p.add_argument("base", help="pretrained policy: checkpoint folder, or module:factory (docs/protocol.md)")
    p.add_argument("--method", choices=tuple(REGISTRY), default="zprl")
    p.add_argument("--env", "--task", dest="env", default=None,
                   help="Meta-World task, Gymnasium id or module:factory (default: the base's environment)")
    p.add_argument("--max-steps", type=int, default=None, help="episode horizon (default: the env's)")
    p.add_argument("--success-key", default=None, help="info key that signals success (default is_success)")
    p.add_argument("--position-key", default=None,
                   help="info key of the end-effector position for smoothness ('none': skip; default: the family's)")
    p.add_argument("--shift", default=None, help="named deployment shift of the training env")
    p.add_argument("--env-kwargs", default=None, help="JSON dict of env constructor arguments")
    p.add_argument("--env-steps", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="run folder (default runs/finetune/<env>__<method>__seed<k>)")
    p.add_argument("--reward", choices=["dense", "sparse"], default="dense")
    p.add_argument("--warmup", type=int, default=2_000, help="decisions acting as the base policy first")
    p.add_argument("--eval-every", type=int, default=5_000)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--latent-scale", type=float, default=None, help="ZPRL λ (default: 0.3 × RMS of μ)")
    p.add_argument("--sac-json", default=None, help='SACConfig overrides, e.g. \'{"num_critics": 5}\'')
    p.add_argument("--steering-json", default=None, help="options of the steering method (rl/steering/<method>.py)")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing training_state/")
    p.set_defaults(func=run_finetune)
