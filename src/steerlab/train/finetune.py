"""Online RL on a frozen flow-matching policy through a steering adapter (ZPRL or a baseline).

Read top to bottom: build the frozen base, the adapter (what the actor controls) and one SAC; then
loop over decisions. One RL step = one executed action chunk (n_action_steps env steps) with discount
γ^k for the k steps actually executed. A success termination ends the episode (no bootstrap); reaching
the horizon is a truncation (bootstrap).

Reward ('dense', the benchmark default): Meta-World's shaped reward / 10, plus on success termination
the discounted value of staying successful for ever, 1 / (1 − γ^n_action_steps), so ending an episode
by succeeding is never worse than lingering. 'sparse': 1 on success, else 0.

Checkpoints of the training state are taken at episode boundaries only, so a resumed run continues
*exactly* as the uninterrupted run would have (same replay contents, same RNG streams). Each one is a
snapshot folder switched in with one rename and verified by its manifest on resume (`save_state`,
`load_state`); the run folder is guarded and locked (`run_folder`), and a resume must use the recorded
arguments (`check_same_run`). SIGINT/SIGTERM stop at the next episode end with a snapshot.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from steerlab.core.checkpoint import CONFIG_NAME, WEIGHTS_NAME, atomic_write_json, load_policy, read_json
from steerlab.core.config import build, check_count, check_keys, check_types
from steerlab.core.errors import CheckpointError, UserError
from steerlab.core.io import atomic_dir, clean_temps, recover_dir
from steerlab.core.logger import RunLogger
from steerlab.core.outdir import output_dir
from steerlab.envs.metaworld_env import episode_seeds, make_env
from steerlab.eval.metrics import smoothness
from steerlab.eval.rollout import evaluate
from steerlab.rl.replay import ReplayBuffer
from steerlab.rl.sac import SAC, SACConfig
from steerlab.rl.steering import METHODS, SteeredPolicy, SteeringConfig, make_adapter, save_steered_policy


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
    num_threads: int = 1
    tensorboard: bool = True
    sac: SACConfig = field(default_factory=SACConfig)
    steering: SteeringConfig = field(default_factory=SteeringConfig)

    def __post_init__(self):
        check_types(self, "FinetuneConfig")
        for name in ("env_steps", "eval_every", "eval_episodes", "checkpoint_every", "max_steps", "buffer_size",
                     "num_threads"):
            check_count(f"FinetuneConfig.{name}", getattr(self, name))
        check_count("FinetuneConfig.warmup_decisions", self.warmup_decisions, minimum=0)
        if self.reward not in REWARDS:
            raise UserError(f"reward must be one of {', '.join(REWARDS)}, got {self.reward!r}")
        if not 0.0 < self.gamma < 1.0:
            raise UserError(f"gamma must be in (0, 1), got {self.gamma}")
        if self.method not in METHODS:
            raise UserError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FinetuneConfig:
        """Rebuild from `to_dict()`; unknown keys or wrong types are one-line errors naming them."""
        d = dict(d)
        check_keys(cls, d, "finetune config")
        sac = build(SACConfig, d.pop("sac", {}), "sac config")
        steering = build(SteeringConfig, d.pop("steering", {}), "steering config")
        return cls(sac=sac, steering=steering, **d)


REWARDS = ("dense", "sparse")
STATE_DIR = "training_state"
MANIFEST = "manifest.json"
STATE_FORMAT = 2
# fields a resume may change: where the run lives and how it is shown, not what it computes
# (env_steps may only grow; the base is compared by content, so another path to the same files is fine)
RESUME_FREE = ("env_steps", "out", "num_threads", "tensorboard", "base")


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def base_digest(base: str | Path) -> str:
    """Content hash of a checkpoint's config + weights: 'the same base' regardless of its path."""
    return hashlib.sha256((file_digest(Path(base) / CONFIG_NAME) + file_digest(Path(base) / WEIGHTS_NAME))
                          .encode()).hexdigest()


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k in ("sac", "steering"):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def default_run_dir(task: str, method: str, seed: int) -> Path:
    return Path("runs") / "finetune" / f"{task}__{method}__seed{seed}"


class Finetuner:
    """State of one online-RL run; `run()` drives it and can resume from `training_state/`."""

    def __init__(self, cfg: FinetuneConfig, progress: bool = True):
        torch.set_num_threads(cfg.num_threads)
        self.cfg, self.progress = cfg, progress
        self.base_meta = read_json(Path(cfg.base) / CONFIG_NAME)
        kind = self.base_meta.get("policy_type")
        if kind != "flow_matching":
            raise UserError(f"{cfg.base} is a {kind!r} policy; finetune steers a pretrained flow-matching policy "
                            f"(pass the base checkpoint itself, e.g. runs/pretrain/<task>)")
        self.base = load_policy(cfg.base)
        cfg.task = cfg.task or self.base.config.env.get("task")
        if not cfg.task:
            raise ValueError("the base checkpoint names no task; pass --task")
        cfg.steering.method = cfg.method
        self.adapter = make_adapter(self.base, cfg.steering, self.base_meta.get("latent_stats", {}))
        self.sac = SAC(self.adapter.obs_dim, self.adapter.act_dim, cfg.sac, seed=cfg.seed,
                       critic_action_fn=self.adapter.critic_action)
        self.replay = ReplayBuffer(cfg.buffer_size, self.adapter.obs_dim, self.adapter.act_dim, seed=cfg.seed)
        self.out = Path(cfg.out) if cfg.out else default_run_dir(cfg.task, cfg.method, cfg.seed)
        self.env = make_env(cfg.task, seed=cfg.seed, max_steps=cfg.max_steps, terminate_on_success=True,
                            reward=cfg.reward)
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
        self.last_update: dict | None = None  # SAC losses of the latest update (logged with each evaluation)
        self.stop_signal: str | None = None  # set by SIGINT/SIGTERM: stop at the next episode end
        self.interrupted = False

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
                self.last_update = self.sac.update_many(self.replay, cfg.sac.utd)
            feats = next_feats
            if done:
                break
        self.episodes += 1
        return {"success": success, "return": ret, "length": len(path) - 1, "jerk": smoothness(np.asarray(path))["jerk"]}

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict:
        policy = SteeredPolicy(self.base, self.adapter, self.sac)
        res = evaluate(policy, self.cfg.task, self.cfg.eval_episodes, seed=self.cfg.seed, n_envs=1,
                       max_steps=self.cfg.max_steps, asynchronous=False, progress=False)
        return {"eval_success": res["success"], "eval_jerk": res["smoothness"]["jerk"],
                "eval_length": res["length_mean"]}

    # ------------------------------------------------------------------ resumable state
    def save_state(self) -> None:
        """One snapshot folder, switched in with one rename: every part, then a manifest naming them all.

        Each part also records the env step it belongs to, so a resume can prove the set is one snapshot.
        """
        tag = {"env_steps": self.env_steps}
        with atomic_dir(self.out / STATE_DIR) as tmp:
            self.sac.save(tmp / "sac", tag=tag)
            self.replay.save(tmp / "replay.npz", tag=tag)
            atomic_write_json(tmp / "loop.json", {
                "env_steps": self.env_steps, "decisions": self.decisions, "episodes": self.episodes,
                "next_eval": self.next_eval, "next_ckpt": self.next_ckpt, "window": self.window,
                "last_update": self.last_update,
                "noise_gen": self.noise_gen.get_state().tolist(), "rng": self.rng.bit_generator.state,
            })
            parts = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
            atomic_write_json(tmp / MANIFEST, {"format": STATE_FORMAT, "env_steps": self.env_steps,
                                               "files": {name: file_digest(tmp / name) for name in parts}})

    def _verified_state(self) -> Path | None:
        """The snapshot folder if there is one, after checking it is complete and of one step."""
        state = recover_dir(self.out / STATE_DIR)  # a crash mid-switch leaves the previous snapshot as .old
        if state is None:
            return None
        where = f"{state}"
        if not (state / MANIFEST).is_file():
            raise CheckpointError(f"{where} has no {MANIFEST}: it is not a complete snapshot; move it aside to "
                                  f"restart this run from step 0")
        manifest = read_json(state / MANIFEST)
        files = manifest.get("files", {})
        present = sorted(p.relative_to(state).as_posix() for p in state.rglob("*")
                         if p.is_file() and p.name != MANIFEST)
        if sorted(files) != present:
            raise CheckpointError(f"{where} is a mixed snapshot: files {present} differ from its manifest's "
                                  f"{sorted(files)}; refusing to resume")
        for name, digest in files.items():
            if file_digest(state / name) != digest:
                raise CheckpointError(f"{where}/{name} does not match its manifest (changed after the snapshot); "
                                      f"refusing to resume")
        return state

    def load_state(self) -> bool:
        state = self._verified_state()
        if state is None:
            return False
        manifest = read_json(state / MANIFEST)
        loop = read_json(state / "loop.json")
        steps = {"manifest": manifest.get("env_steps"), "loop.json": loop.get("env_steps"),
                 "sac": self.sac.load(state / "sac").get("env_steps"),
                 "replay.npz": self.replay.load(state / "replay.npz").get("env_steps")}
        if len(set(steps.values())) != 1:
            raise CheckpointError(f"{state} mixes parts of different steps ({steps}); refusing to resume")
        for key in ("env_steps", "decisions", "episodes", "next_eval", "next_ckpt", "window", "last_update"):
            setattr(self, key, loop[key])
        self.noise_gen.set_state(torch.tensor(loop["noise_gen"], dtype=torch.uint8))
        self.rng.bit_generator.state = loop["rng"]
        return True

    def run_record(self) -> dict:
        return {"finetune": self.cfg.to_dict(), "steering": self.adapter.config_dict(),
                "base_config": self.base_meta["config"], "base_digest": base_digest(self.cfg.base)}

    def check_same_run(self, recorded: dict) -> None:
        """Refuse to continue a run recorded with other arguments (only a longer env_steps is allowed)."""
        mine = json.loads(json.dumps(self.run_record()))
        old, new = _flat(recorded.get("finetune", {})), _flat(mine["finetune"])
        differ = sorted(k for k in set(old) | set(new) if k not in RESUME_FREE and old.get(k) != new.get(k))
        if recorded.get("base_digest", mine["base_digest"]) != mine["base_digest"]:
            differ.insert(0, "base (different checkpoint contents)")
        if old.get("env_steps", 0) > new["env_steps"]:
            differ.append(f"env_steps ({new['env_steps']} < the recorded {old['env_steps']}; it may only grow)")
        if differ:
            detail = "; ".join(f"{k}: recorded {old.get(k)!r}, now {new.get(k)!r}" if k in old or k in new else k
                               for k in differ)
            raise UserError(f"{self.out} holds a run with other arguments ({detail}); pass the recorded ones to "
                            f"resume, or choose a new --out (or --overwrite to move this run aside)")

    # ------------------------------------------------------------------ signals
    def _on_signal(self, signum, frame) -> None:
        if self.stop_signal is not None:  # a second Ctrl-C: stop now, the last snapshot stays
            raise KeyboardInterrupt
        self.stop_signal = signal.Signals(signum).name
        print(f"\n{self.stop_signal}: finishing the current episode, then saving a snapshot", flush=True)

    def _install_signals(self) -> dict:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return {}
        return {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    # ------------------------------------------------------------------ main loop
    def run(self, resume: bool = True) -> Path:
        cfg = self.cfg
        for folder in (self.out, self.out / "policy"):  # what writes killed mid-way left (we hold the lock)
            clean_temps(folder)
        config_path = self.out / "config.json"
        recorded = read_json(config_path) if resume and config_path.is_file() else None
        if recorded is not None:
            self.check_same_run(recorded)
        resumed = recorded is not None and self.load_state()
        if recorded is None or recorded["finetune"]["env_steps"] != cfg.env_steps:
            atomic_write_json(config_path, self.run_record())  # a longer budget is recorded
        # rows (and TensorBoard points) logged after the snapshot would repeat: the logger drops them
        logger = RunLogger(self.out, tensorboard=cfg.tensorboard, append=recorded is not None,
                           resume_at=self.env_steps if resumed else None)
        old_handlers = self._install_signals()
        try:
            self._loop(logger, resumed)
        finally:
            for s, h in old_handlers.items():
                signal.signal(s, h)
            logger.close()
        if self.interrupted:
            return self.out
        save_steered_policy(SteeredPolicy(self.base, self.adapter, self.sac), self.out / "policy",
                            base_meta=self.base_meta, sac_config=asdict(cfg.sac))
        self.save_state()
        return self.out

    def _loop(self, logger: RunLogger, resumed: bool) -> None:
        cfg = self.cfg
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
                           # nanmean: an episode that succeeds within 3 steps has no jerk (as in evaluation)
                           explore_jerk=float(np.nanmean([e["jerk"] for e in self.window])),
                           episodes=self.episodes,
                           steps_per_s=(self.env_steps - steps0) / (time.perf_counter() - t0))
                if self.last_update:
                    row.update({f"sac/{k}": v for k, v in self.last_update.items()})
                logger.log(self.env_steps, **row)
                self.window = []
                bar.set_postfix(success=f"{row['eval_success']:.2f}", sps=f"{row['steps_per_s']:.0f}")
            if self.env_steps >= self.next_ckpt and self.env_steps < cfg.env_steps:
                self.next_ckpt += cfg.checkpoint_every
                self.save_state()
            elif self.stop_signal is not None and self.env_steps < cfg.env_steps:
                self.save_state()
            if self.stop_signal is not None and self.env_steps < cfg.env_steps:
                self.interrupted = True
                break
        bar.close()


def run_folder(cfg: FinetuneConfig, progress: bool = True, resume: bool = True, overwrite: bool = False) -> Finetuner:
    """Run (or resume) `cfg` in its run folder, holding the folder's lock; returns the finished Finetuner.

    The folder must be new, or hold this kind of run (resumed; its recorded arguments must match), or be
    moved aside with `overwrite`. It may never be or contain the base checkpoint.
    """
    tuner = Finetuner(cfg, progress)
    with output_dir(tuner.out, "finetune", resume=resume, overwrite=overwrite, inputs=[cfg.base]) as (_, resumed):
        tuner.run(resume=resumed)
    return tuner


def finetune(cfg: FinetuneConfig, progress: bool = True, resume: bool = True, overwrite: bool = False) -> Path:
    return run_folder(cfg, progress, resume, overwrite).out


def resume_command(cfg: FinetuneConfig) -> str:
    """The exact `steerlab finetune` line that continues `cfg`'s run (every argument spelled out)."""
    sac = {k: v for k, v in asdict(cfg.sac).items() if v != getattr(SACConfig(), k)}
    steering = {k: v for k, v in asdict(cfg.steering).items()
                if k != "method" and v != getattr(SteeringConfig(), k)}
    argv = ["steerlab", "finetune", str(cfg.base), "--out", str(cfg.out), "--method", cfg.method,
            "--task", str(cfg.task), "--env-steps", str(cfg.env_steps), "--seed", str(cfg.seed),
            "--reward", cfg.reward, "--gamma", repr(cfg.gamma), "--max-steps", str(cfg.max_steps),
            "--warmup", str(cfg.warmup_decisions), "--eval-every", str(cfg.eval_every),
            "--eval-episodes", str(cfg.eval_episodes), "--checkpoint-every", str(cfg.checkpoint_every),
            "--buffer-size", str(cfg.buffer_size)]
    if sac:
        argv += ["--sac-json", json.dumps(sac, sort_keys=True)]
    if steering:
        argv += ["--steering-json", json.dumps(steering, sort_keys=True)]
    if not cfg.tensorboard:
        argv.append("--no-tensorboard")
    return shlex.join(argv)


def _json_arg(text: str | None, flag: str) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{flag} is not valid JSON ({err})") from err
    if not isinstance(value, dict):
        raise UserError(f"{flag} must be a JSON object like '{{\"key\": value}}', got {text!r}")
    return value


def run_finetune(args: argparse.Namespace) -> int:
    for flag, value, minimum in (("--env-steps", args.env_steps, 1), ("--eval-every", args.eval_every, 1),
                                 ("--checkpoint-every", args.checkpoint_every, 1),
                                 ("--eval-episodes", args.eval_episodes, 1), ("--warmup", args.warmup, 0),
                                 ("--max-steps", args.max_steps, 1), ("--buffer-size", args.buffer_size, 1)):
        check_count(flag, value, minimum)
    sac = build(SACConfig, _json_arg(args.sac_json, "--sac-json"), "--sac-json")
    steering = _json_arg(args.steering_json, "--steering-json")
    check_keys(SteeringConfig, steering, "--steering-json")
    if args.latent_scale is not None:
        steering["latent_scale"] = args.latent_scale
    steering.setdefault("method", args.method)
    if steering["method"] != args.method:
        raise UserError(f"--steering-json names method {steering['method']!r} but --method is {args.method!r}")
    cfg = FinetuneConfig(base=args.base, method=args.method, task=args.task, env_steps=args.env_steps,
                         seed=args.seed, out=args.out, reward=args.reward, gamma=args.gamma, max_steps=args.max_steps,
                         warmup_decisions=args.warmup, eval_every=args.eval_every, eval_episodes=args.eval_episodes,
                         checkpoint_every=args.checkpoint_every, buffer_size=args.buffer_size,
                         tensorboard=not args.no_tensorboard, sac=sac,
                         steering=build(SteeringConfig, steering, "--steering-json"))
    tuner = run_folder(cfg, resume=not args.no_resume, overwrite=args.overwrite)
    out = tuner.out
    if tuner.interrupted:
        cfg.out = str(out)
        print(f"stopped by {tuner.stop_signal} at env step {tuner.env_steps}; the snapshot is saved. Resume with:\n"
              f"  {resume_command(cfg)}")
        return 0
    print(f"run folder: {out} (steered policy: {out / 'policy'}; evaluate it with `steerlab evaluate {out}`)")
    return 0


def register_finetune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="online RL on a frozen base policy (zprl / action-residual / dsrl / ...)",
                       description="Example: steerlab finetune runs/pretrain/push-wall-v3 --method zprl "
                                   "--task push-wall-v3 --env-steps 100000 --seed 0")
    p.add_argument("base", help="pretrained policy checkpoint folder")
    p.add_argument("--method", choices=METHODS, default="zprl")
    p.add_argument("--task", default=None)
    p.add_argument("--env-steps", type=int, default=100_000, help="total env steps (a resume may raise it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="run folder (default runs/finetune/<task>__<method>__seed<k>)")
    p.add_argument("--reward", choices=REWARDS, default="dense")
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--max-steps", type=int, default=200, help="episode horizon in env steps")
    p.add_argument("--warmup", type=int, default=2_000, help="decisions acting as the base policy first (>= 0)")
    p.add_argument("--eval-every", type=int, default=5_000)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--checkpoint-every", type=int, default=10_000,
                   help="env steps between resumable snapshots of the training state (taken at an episode end)")
    p.add_argument("--buffer-size", type=int, default=200_000)
    p.add_argument("--latent-scale", type=float, default=None, help="ZPRL λ (default: 0.3 × RMS of μ)")
    p.add_argument("--sac-json", default=None, help='SACConfig overrides, e.g. \'{"num_critics": 5}\'')
    p.add_argument("--steering-json", default=None, help="SteeringConfig overrides")
    p.add_argument("--no-tensorboard", action="store_true", help="write metrics.jsonl only")
    p.add_argument("--no-resume", action="store_true",
                   help="never continue an existing run in --out (with --overwrite: move it aside, start afresh)")
    p.add_argument("--overwrite", action="store_true",
                   help="move an --out folder that is not this run aside (renamed, never deleted)")
    p.set_defaults(func=run_finetune)
