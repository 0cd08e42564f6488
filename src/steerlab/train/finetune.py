"""Online RL on a frozen pretrained policy through a steering method (ZPRL or a baseline), in any env.

Read top to bottom: build the frozen base (a checkpoint folder, or `module:factory` for any policy that
implements the steerable-policy protocol), the environments (envs/registry.py: a Meta-World task, a
Gymnasium id or `module:factory`), the steering method (rl/steering/: what the actor controls, its
exploration schedule and warm-up action) and one SAC; then step the envs. The loop never asks which
method or env it runs. One RL step = one executed action chunk (n_action_steps env steps) with discount
γ^k for the k steps actually executed. A success termination ends the episode (no bootstrap); reaching
the horizon is a truncation (bootstrap).

Vectorized collection: `n_envs` envs step together (Gymnasium vector API; `async_envs` runs them in
subprocesses). Every vector step, the envs whose chunk is used up get their next chunk from *one* batched
actor + steering call. Each stored transition owes `utd` SAC updates; they run during the next env step
(while subprocess envs simulate), at most `update_cap` per step, so the actor acting at a decision has
learned from every transition but those of the last step. Same seed → same numbers, sync or async.

Reward ('dense', the benchmark default): the env's reward (Meta-World's shaped reward / 10), plus on success
termination the discounted value of staying successful for ever, 1 / (1 − γ^n_action_steps), so ending an
episode by succeeding is never worse than lingering. 'sparse': 1 on success, else 0.

Training-state snapshots are taken only when every env is between episodes: every `checkpoint_every` steps
the envs stop starting new episodes, finish theirs, and the state is saved; no simulator state is needed,
and a resumed run continues *exactly* as the uninterrupted run would have (same replay contents, same RNG
streams). With one env the episode end at which a run stops is such a point too; several envs stop at
once and resume from the last scheduled snapshot. Each snapshot is a folder switched in with one rename and
verified by its manifest on resume (`save_state`, `load_state`); the run folder is guarded and locked
(`run_folder`), and a resume must use the recorded arguments (`check_same_run`). SIGINT/SIGTERM stop the
run: one env finishes its episode and saves a snapshot; several envs stop at once (the last scheduled
snapshot is the resume point).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import shlex
import signal
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from steerlab.core.checkpoint import CONFIG_NAME, WEIGHTS_NAME, atomic_write_json, read_json
from steerlab.core.config import build, check_count, check_keys, check_scale, check_types
from steerlab.core.errors import CheckpointError, UserError
from steerlab.core.io import atomic_dir, clean_temps, recover_dir
from steerlab.core.logger import RunLogger
from steerlab.core.outdir import output_dir
from steerlab.envs.registry import EnvSpec, checkpoint_env, make_env, resolve_env
from steerlab.envs.seeds import episode_seeds
from steerlab.envs.wrappers import KeepInfo
from steerlab.eval.metrics import smoothness
from steerlab.eval.rollout import evaluate
from steerlab.policies.factory import is_factory_ref, load_policy_source
from steerlab.rl.replay import ReplayBuffer
from steerlab.rl.sac import SACConfig
from steerlab.rl.steering import REGISTRY, SteeredPolicy, make_adapter, method_class, save_steered_policy
from steerlab.train.results import write_run_result


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
    sampler_noise_scale: float = 1.0
    """Scale of the frozen sampler's initial noise ε, in training decisions and in the evaluations the curve
    (AUC, dip) is made of: 1 is the base's own sampler; 0 integrates every chunk from ε = 0, so the actor's
    own exploration is the only randomness. Methods that choose ε themselves (dsrl) only use it in warm-up.
    result.json's final success is measured both ways whatever it is."""
    checkpoint_every: int = 10_000
    """Environment steps between resumable training-state snapshots (taken once every env ends its episode)."""
    buffer_size: int = 200_000
    final_episodes: int = 0
    """Fresh evaluation episodes of the final policy (sampled and from ε = 0) for result.json; 0: none
    (AUC and dip only). The CLI's default is 50."""
    n_envs: int = 1
    """Environments stepped together; each decision is one batched actor + steering call over the envs
    that need a new chunk."""
    async_envs: bool = False
    """Step the envs in subprocesses, overlapping the simulators with the SAC updates (same numbers)."""
    utd: float | None = None
    """Gradient updates per decision (per stored transition); None: sac.utd. Fractions accumulate."""
    num_threads: int = 1
    tensorboard: bool = True
    sac: SACConfig = field(default_factory=SACConfig)
    sac_explicit: list[str] = field(default_factory=list)
    """SAC fields the user set on purpose (`--sac-json`): the method's start never overrides them, even when the
    value equals SACConfig's default (e.g. `{"actor_tether": 0}` turns DSRL's tether off)."""
    steering: dict = field(default_factory=dict)
    """Options of the steering method (its config dataclass in rl/steering/<method>.py)."""

    def __post_init__(self):
        check_types(self, "FinetuneConfig")
        for name in ("env_steps", "eval_every", "eval_episodes", "checkpoint_every", "buffer_size", "num_threads",
                     "n_envs"):
            check_count(f"FinetuneConfig.{name}", getattr(self, name))
        if self.max_steps is not None:
            check_count("FinetuneConfig.max_steps", self.max_steps)
        check_count("FinetuneConfig.warmup_decisions", self.warmup_decisions, minimum=0)
        check_scale("sampler_noise_scale", self.sampler_noise_scale)
        if self.reward not in REWARDS:
            raise UserError(f"reward must be one of {', '.join(REWARDS)}, got {self.reward!r}")
        if not 0.0 < self.gamma < 1.0:
            raise UserError(f"gamma must be in (0, 1), got {self.gamma}")
        if self.utd is not None and not self.utd > 0:
            raise UserError(f"utd must be > 0, got {self.utd}")
        method_class(self.method).Config.from_dict(self.steering)  # unknown method or option: one line
        if self.shift is not None:
            from steerlab.envs.shifts import shift_name

            self.shift = shift_name(self.shift)  # canonical name in config.json; an unknown one fails here

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FinetuneConfig:
        """Rebuild from `to_dict()`; unknown keys or wrong types are one-line errors naming them."""
        d = dict(d)
        if "task" in d:  # v1 configs named the (Meta-World) env 'task'
            d.setdefault("env", d.pop("task"))
        check_keys(cls, d, "finetune config")
        sac = build(SACConfig, d.pop("sac", {}), "sac config")
        return cls(sac=sac, **d)

    def env_spec(self, recorded: dict | None) -> EnvSpec:
        """The env of this run: `env` (or the base's recorded env) with this config's overrides."""
        if not self.env and not recorded:
            raise UserError("the base policy names no environment; pass --env")
        source = self.env if self.env else EnvSpec.from_dict(recorded)
        position = "" if self.position_key is None else (None if self.position_key == "none" else self.position_key)
        return resolve_env(source, max_steps=self.max_steps, success_key=self.success_key, position_key=position,
                           shift=self.shift, kwargs=self.env_kwargs)


REWARDS = ("dense", "sparse")
FIELD_DEFAULTS = {f.name: f.default for f in fields(FinetuneConfig) if f.default is not MISSING}
STATE_DIR = "training_state"
MANIFEST = "manifest.json"
STATE_FORMAT = 2
# fields a resume may change: where the run lives and how it is shown, not what it computes
# (env_steps may only grow; the base is compared by content, so another path to the same files is fine)
# (async_envs changes where the simulators run, not the numbers)
# sac_explicit only says how the SAC settings were spelled; the resolved `sac` they produce is compared
RESUME_FREE = ("env_steps", "out", "num_threads", "tensorboard", "base", "async_envs", "final_episodes",
               "sac_explicit")


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def base_digest(base: str | Path, meta: dict, tensors: dict[str, torch.Tensor]) -> str:
    """Content hash of the base: a checkpoint's config + weights files ('the same base' regardless of its
    path), or for `module:factory` its reference and the weights it built."""
    if not is_factory_ref(str(base)):
        return hashlib.sha256((file_digest(Path(base) / CONFIG_NAME) + file_digest(Path(base) / WEIGHTS_NAME))
                              .encode()).hexdigest()
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for k in sorted(tensors):
        h.update(k.encode())
        h.update(tensors[k].contiguous().numpy().tobytes())
    return h.hexdigest()


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k in ("sac", "steering"):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def default_run_dir(env: str, method: str, seed: int) -> Path:
    name = env.replace(":", "_").replace("/", "_")
    return Path("runs") / "finetune" / f"{name}__{method}__seed{seed}"


class Finetuner:
    """State of one online-RL run; `run()` drives it and can resume from `training_state/`."""

    def __init__(self, cfg: FinetuneConfig, progress: bool = True):
        torch.set_num_threads(cfg.num_threads)
        self.cfg, self.progress = cfg, progress
        self.base, self.base_meta, self.base_tensors = load_policy_source(cfg.base)
        if self.base_meta.get("policy_type") == "steered":
            raise UserError(f"{cfg.base} is a 'steered' policy (already finetuned); finetune steers a pretrained "
                            f"policy: pass its base checkpoint (e.g. runs/pretrain/<task>)")
        self.env_spec = cfg.env_spec(checkpoint_env(self.base_meta))
        self.adapter = make_adapter(self.base, cfg.method, cfg.steering, self.base_meta.get("latent_stats", {}))
        # where the method's actor starts (recorded in config.json)
        cfg.sac = self.adapter.resolve_sac(cfg.sac, explicit=cfg.sac_explicit)
        self.sac = self.adapter.make_learner(cfg.sac, cfg.seed)  # the shared SAC unless the method brings its own
        self.replay = ReplayBuffer(cfg.buffer_size, self.adapter.obs_dim, self.adapter.act_dim, seed=cfg.seed)
        self.out = Path(cfg.out) if cfg.out else default_run_dir(self.env_spec.id, cfg.method, cfg.seed)
        self.n = cfg.n_envs
        self.envs = make_train_envs(self.env_spec, cfg)
        check_env_fits(self.envs, self.base, self.env_spec)
        self.pos_key = self.env_spec.position_key
        self.noise_shape = getattr(self.base, "noise_shape", None)  # None: an action-level policy samples its own
        self.k = int(self.base.n_action_steps)
        self.bonus = 1.0 / (1.0 - cfg.gamma**self.k) if cfg.reward == "dense" else 0.0
        self.utd = float(cfg.utd if cfg.utd is not None else cfg.sac.utd)
        # at most this many updates per vector step: spreads the inflow (utd per decision, n_envs decisions every
        # k steps) over the k steps of a chunk, so every env step has updates to overlap with; twice the mean
        # inflow, so a backlog (episodes ending mid-chunk add transitions out of phase) is cleared quickly
        self.update_cap = max(1, math.ceil(2 * self.utd * self.n / self.k))
        self.idle_action = np.zeros(self.envs.single_action_space.shape, np.float32)
        # loop state (everything here is saved in training_state/loop.json; a snapshot is only taken when
        # every env is between episodes, so no simulator state needs saving)
        self.env_steps = 0
        self.decisions = 0
        self.episodes = 0  # finished training episodes
        self.started = 0  # started training episodes (episode i runs with train seed i)
        self.update_credit = 0.0  # updates owed to the stored transitions and not yet done
        self.next_eval = cfg.eval_every
        self.next_ckpt = cfg.checkpoint_every
        self.noise_gen = torch.Generator().manual_seed(cfg.seed + 1)    # sampler noise + latent samples
        self.rng = np.random.default_rng(cfg.seed + 2)                 # the method's exploration schedule
        self.window: list[dict] = []  # training episodes since the last evaluation
        self.last_update: dict | None = None  # SAC losses of the latest update (logged with each evaluation)
        self.stop_signal: str | None = None  # set by SIGINT/SIGTERM
        self.interrupted = False
        # per-env episode state, one row per env (the loop works on whole rows, not env by env)
        self.active = np.zeros(self.n, bool)  # running a training episode (else idle: draining or done)
        self.obs = np.zeros((self.n, *self.envs.single_observation_space.shape), np.float32)
        self.feats: torch.Tensor | None = None  # (n, feature dim): what the actor sees at the next decision
        self.plan: np.ndarray | None = None  # (n, k, action dim): the chunk being executed
        self.cursor = np.zeros(self.n, np.int64)  # next action of the chunk
        self.plan_len = np.zeros(self.n, np.int64)  # actions of the chunk (cursor == plan_len: a decision is due)
        # the decision being executed, its transition so far (reward and discount accumulate in float64)
        self.pend_feats: torch.Tensor | None = None
        self.pend_action: torch.Tensor | None = None
        self.pend_reward = np.zeros(self.n)
        self.pend_discount = np.ones(self.n)
        self.pend_term = np.zeros(self.n, bool)
        # the running episode: return, length, end-effector path
        self.ep_ret = np.zeros(self.n)
        self.ep_len = np.zeros(self.n, np.int64)
        self.ep_path: list[list[np.ndarray]] = [[] for _ in range(self.n)]
        self._rows = np.arange(self.n)

    # ------------------------------------------------------------------ collection (N envs, batched decisions)
    # The policy, features and actor run in inference mode (no autograd bookkeeping: the same kernels, the same
    # numbers, less overhead per small op); the buffers they write into are ordinary tensors.
    @torch.inference_mode()
    def _features(self, obs: np.ndarray) -> torch.Tensor:
        return self.adapter.features(torch.as_tensor(obs), train=True, gen=self.noise_gen)

    def _set_feats(self, idx, feats: torch.Tensor) -> None:
        if self.feats is None:  # the feature buffers take the method's dtype and width
            self.feats = torch.zeros((self.n, *feats.shape[1:]), dtype=feats.dtype)
            self.pend_feats = torch.zeros_like(self.feats)
        self.feats[idx] = feats

    def _start_episodes(self, idx: list[int], info: dict) -> None:
        """Envs `idx` were just reset into new episodes: their observation's features, in one batch."""
        if not idx:
            return
        self._set_feats(idx, self._features(self.obs[idx]))
        self.active[idx] = True
        self.cursor[idx] = self.plan_len[idx] = 0
        self.ep_ret[idx] = 0.0
        self.ep_len[idx] = 0
        for i in idx:
            self.ep_path[i] = [info[self.pos_key][i].copy()] if self.pos_key else []

    def _reset(self, restart: list[int], idle: list[int]) -> None:
        """Reset `restart` into the next training episodes (seeded) and `idle` envs into a dummy episode
        (a vector env must reset a finished env before stepping it again; idle outputs are ignored)."""
        mask = np.zeros(self.n, bool)
        mask[restart + idle] = True
        if not mask.any():
            return
        seeds = [0] * self.n
        for i in restart:
            seeds[i] = episode_seeds("train", self.cfg.seed, self.started + 1)[-1]
            self.started += 1
        obs, info = self.envs.reset(seed=seeds, options={"reset_mask": mask})
        self.obs[mask] = obs[mask]
        self._start_episodes(restart, info)

    def start(self) -> None:
        """Every env into its next training episode (the loop's start, and after each snapshot)."""
        self._reset(list(range(self.n)), [])

    def _draining(self) -> bool:
        """No new episodes while a snapshot is due (every env finishes its episode, then the state is saved).
        A single env also drains at the end of the budget or on a stop signal: its episode end is an exact
        resume point."""
        stop = self.env_steps >= self.cfg.env_steps or self.stop_signal is not None
        return self.env_steps >= self.next_ckpt or (self.n == 1 and stop)

    @torch.inference_mode()
    def _decide(self, idx: np.ndarray) -> None:
        """One batched actor + steering call for the envs that need a new chunk."""
        cfg = self.cfg
        b = len(idx)
        noise = (cfg.sampler_noise_scale * torch.randn((b, *self.noise_shape), generator=self.noise_gen)
                 if self.noise_shape is not None else None)
        feats = self.feats[idx]
        if self.decisions < cfg.warmup_decisions:
            action = self.adapter.warmup_action(b, noise)
        else:
            action = self.sac.act(feats, deterministic=False)  # one shape + finiteness check for the batch
        # the method's exploration schedule (e.g. action-residual's progressive residual); what it returns is
        # what runs, so that is what the replay stores
        act = self.adapter.explore(torch.as_tensor(action), self.env_steps, self.rng)
        chunks = self.adapter.chunk(torch.as_tensor(self.obs[idx]), feats, act, noise).numpy()
        if self.plan is None:
            self.plan = np.zeros((self.n, self.k, *chunks.shape[2:]), chunks.dtype)
            with torch.inference_mode(False):
                self.pend_action = torch.zeros((self.n, *act.shape[1:]), dtype=act.dtype)
        used = min(self.k, chunks.shape[1])
        self.plan[idx, :used] = chunks[:, :used]
        self.cursor[idx], self.plan_len[idx] = 0, used
        self.pend_feats[idx], self.pend_action[idx] = feats, act
        self.pend_reward[idx], self.pend_discount[idx], self.pend_term[idx] = 0.0, 1.0, False

    def _update(self) -> None:
        """The SAC updates owed so far, at most `update_cap` per vector step (runs while the envs step)."""
        n = min(int(self.update_credit), self.update_cap)
        if n > 0:
            self.update_credit -= n
            # the first `critic_warmup` decisions after the warm-up train the critic only (the actor keeps its start)
            actor_on = self.decisions >= self.cfg.warmup_decisions + self.adapter.critic_warmup
            self.last_update = self.sac.update_many(self.replay, n, update_actor=actor_on)

    def step(self) -> list[dict]:
        """One vector step of every env (decisions where a chunk is used up); returns finished episodes."""
        cfg = self.cfg
        active = self.active.copy()  # the envs running a training episode during this step
        need = np.flatnonzero(active & (self.cursor >= self.plan_len))
        if len(need):
            self._decide(need)
        if active.all():
            actions = self.plan[self._rows, self.cursor]
        else:
            actions = np.stack([self.plan[i, self.cursor[i]] if active[i] else self.idle_action
                                for i in range(self.n)])
        self.cursor[active] += 1
        obs, rew, term, trunc, info = step_overlapped(self.envs, actions, self._update)
        self.obs[:] = obs
        term, done = np.asarray(term, bool), np.logical_or(term, trunc)
        rew = np.asarray(rew, np.float64)
        run = np.flatnonzero(active)
        self.env_steps += len(run)
        self.ep_len[run] += 1
        self.ep_ret[run] += rew[run]
        if self.pos_key:
            for i in run:
                self.ep_path[i].append(info[self.pos_key][i].copy())
        # the chunk's discounted reward; a success termination adds the value of staying successful
        self.pend_reward[run] += self.pend_discount[run] * (rew[run] + np.where(term[run], self.bonus, 0.0))
        self.pend_discount[run] *= cfg.gamma
        self.pend_term[run] = term[run]
        finished = run[done[run]]
        self.cursor[finished] = self.plan_len[finished]  # the rest of the chunk never runs
        ended = run[self.cursor[run] >= self.plan_len[run]]  # one transition per finished chunk
        if len(ended):  # the next features computed in one batch
            next_feats = self._features(self.obs[ended])
            stored = len(self.replay)
            self.replay.add(self.pend_feats[ended].numpy(), self.pend_action[ended].numpy(),
                            self.pend_reward[ended].astype(np.float32), next_feats.numpy(),
                            self.pend_discount[ended].astype(np.float32), self.pend_term[ended].astype(np.float32))
            for _ in ended:  # transition by transition, as if they had been added one at a time
                self.decisions += 1
                stored = min(stored + 1, self.replay.capacity)
                if self.decisions >= cfg.warmup_decisions and stored >= cfg.sac.batch_size:
                    self.update_credit += self.utd
            self.feats[ended] = next_feats
        records = []
        for i in finished:
            self.active[i] = False
            self.episodes += 1
            jerk = smoothness(np.asarray(self.ep_path[i]))["jerk"] if self.pos_key else float("nan")
            records.append({"success": bool(info["is_success"][i]), "return": float(self.ep_ret[i]),
                            "length": int(self.ep_len[i]), "jerk": jerk})
        finished = finished.tolist()
        idle_done = np.flatnonzero(~active & done).tolist()
        restart = [] if self._draining() else finished
        self._reset(restart, [i for i in finished if i not in restart] + idle_done)
        return records

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict:
        res = evaluate(self.steered_policy(), self.env_spec, self.cfg.eval_episodes, seed=self.cfg.seed, n_envs=1,
                       asynchronous=False, progress=False, noise_scale=self.cfg.sampler_noise_scale)
        return {"eval_success": res["success"], "eval_jerk": res["smoothness"]["jerk"],
                "eval_length": res["length_mean"]}

    def steered_policy(self) -> SteeredPolicy:
        return SteeredPolicy(self.base, self.adapter, self.sac, env_spec=self.env_spec.to_dict(),
                             base_meta=self.base_meta, base_tensors=self.base_tensors)

    # ------------------------------------------------------------------ resumable state
    def save_state(self) -> None:
        """One snapshot folder, switched in with one rename: every part, then a manifest naming them all.

        Each part also records the env step it belongs to, so a resume can prove the set is one snapshot.
        """
        tag = {"env_steps": self.env_steps}
        with atomic_dir(self.out / STATE_DIR, replace=True) as tmp:  # the run's own previous snapshot
            self.sac.save(tmp / "sac", tag=tag)
            self.replay.save(tmp / "replay.npz", tag=tag)
            atomic_write_json(tmp / "loop.json", {
                "env_steps": self.env_steps, "decisions": self.decisions, "episodes": self.episodes,
                "next_eval": self.next_eval, "next_ckpt": self.next_ckpt, "window": self.window,
                "last_update": self.last_update, "update_credit": self.update_credit,
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
        for key in ("env_steps", "decisions", "episodes", "next_eval", "next_ckpt", "window", "last_update",
                    "update_credit"):
            setattr(self, key, loop[key])
        self.started = self.episodes  # snapshots are taken with every env between episodes
        self.noise_gen.set_state(torch.tensor(loop["noise_gen"], dtype=torch.uint8))
        self.rng.bit_generator.state = loop["rng"]
        return True

    def run_record(self) -> dict:
        return {"finetune": self.cfg.to_dict(), "steering": self.adapter.config_dict(), "env": self.env_spec.to_dict(),
                "base_config": self.base_meta["config"],
                "base_digest": base_digest(self.cfg.base, self.base_meta, self.base_tensors)}

    def check_same_run(self, recorded: dict) -> None:
        """Refuse to continue a run recorded with other arguments (only a longer env_steps is allowed)."""
        mine = json.loads(json.dumps(self.run_record()))
        old, new = _flat(recorded.get("finetune", {})), _flat(mine["finetune"])
        # a field added after the run was recorded reads as its default (what the run computed with)
        old = {**{k: v for k, v in FIELD_DEFAULTS.items() if k in new}, **old}
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
        what = ("finishing the current episode, then saving a snapshot" if self.n == 1 else
                "stopping after this step; the run resumes from its last snapshot")
        print(f"\n{self.stop_signal}: {what}", flush=True)

    def _install_signals(self) -> dict:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return {}
        return {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    # ------------------------------------------------------------------ main loop
    def _log_eval(self, logger: RunLogger, bar, t0: float, steps0: int) -> None:
        row = self.evaluate()
        # nanmean: an episode that succeeds within 3 steps has no jerk (evaluation skips it too)
        jerks = [e["jerk"] for e in self.window] if self.pos_key else []
        row.update(explore_success=float(np.mean([e["success"] for e in self.window])) if self.window else float("nan"),
                   explore_jerk=float(np.nanmean(jerks)) if np.isfinite(jerks).any() else float("nan"),
                   episodes=self.episodes, steps_per_s=(self.env_steps - steps0) / (time.perf_counter() - t0))
        if self.last_update:
            row.update({f"sac/{k}": v for k, v in self.last_update.items()})
        logger.log(self.env_steps, **row)
        self.window = []
        bar.set_postfix(success=f"{row['eval_success']:.2f}", sps=f"{row['steps_per_s']:.0f}")

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
            self.envs.close()
        if self.interrupted:
            return self.out
        save_steered_policy(self.steered_policy(), self.out / "policy", sac_config=asdict(cfg.sac))
        if not self.active.any():  # every env between episodes: an exact resume point (always so with one env)
            self.save_state()
        # result.json last: AUC, dip, final success sampled and from ε = 0 (steerlab.train.results)
        write_run_result(self.out, cfg, self.env_spec, cfg.final_episodes,
                         warmup_env_steps=cfg.warmup_decisions * self.k)
        return self.out

    def _loop(self, logger: RunLogger, resumed: bool) -> None:
        cfg = self.cfg
        # the curve's first point: the steered policy before any update. Residual methods start near the base
        # (small initial residual); DSRL's untrained actor picks ε ≈ 0, which is the *deterministic* base
        if not resumed:
            logger.log(0, **self.evaluate(), explore_jerk=float("nan"), explore_success=float("nan"))
        bar = tqdm(total=cfg.env_steps, initial=self.env_steps, desc=f"{cfg.method} {self.env_spec.id} s{cfg.seed}",
                   unit="step", disable=not self.progress, dynamic_ncols=True)
        t0, steps0 = time.perf_counter(), self.env_steps
        if self.env_steps >= cfg.env_steps:  # a finished run resumed with the same budget: nothing to do
            bar.close()
            return
        self.start()
        while True:
            before = self.env_steps
            records = self.step()
            bar.update(self.env_steps - before)
            self.window.extend(records)
            # a periodic evaluation at the first episode end past its step (it draws no training randomness)
            if records and self.next_eval <= self.env_steps < cfg.env_steps:
                self.next_eval += cfg.eval_every
                self._log_eval(logger, bar, t0, steps0)
            if self.n > 1 and self.stop_signal is not None and self.env_steps < cfg.env_steps:
                self.interrupted = True  # several envs stop at once; the last scheduled snapshot is the resume point
                break
            if self.n > 1 and self.env_steps >= cfg.env_steps:
                break  # likewise at the end of the budget
            if self.active.any():
                continue
            # every env is between episodes: the budget is spent, a snapshot is due, or a stop was asked for
            if self.env_steps >= cfg.env_steps:
                break
            if self.env_steps >= self.next_ckpt:
                self.next_ckpt += cfg.checkpoint_every
                self.save_state()
            elif self.stop_signal is not None:
                self.save_state()
            if self.stop_signal is not None:
                self.interrupted = True
                break
            self.start()
        if not self.interrupted:
            # (updates owed to the last transitions stay owed: they run during the next env step of an
            # extended run, exactly as in an uninterrupted one, so the final actor is the saved state's)
            self.next_eval += cfg.eval_every
            self._log_eval(logger, bar, t0, steps0)
        bar.close()


def train_env(spec: EnvSpec, seed: int, reward: str) -> gym.Env:
    """One training env: terminates on success, and reports only the `info` keys the loop reads."""
    keep = ("is_success",) + ((spec.position_key,) if spec.position_key else ())
    return KeepInfo(make_env(spec, seed=seed, terminate_on_success=True, reward=reward), keep)


def make_train_envs(spec: EnvSpec, cfg: FinetuneConfig) -> gym.vector.VectorEnv:
    """`cfg.n_envs` training envs (env i seeded cfg.seed + i), in this process or in subprocesses."""
    fns = [functools.partial(train_env, spec, cfg.seed + i, cfg.reward) for i in range(cfg.n_envs)]
    cls = gym.vector.AsyncVectorEnv if cfg.async_envs and cfg.n_envs > 1 else gym.vector.SyncVectorEnv
    # copy=False: the loop copies each step's observations into its own array at once
    return cls(fns, copy=False, autoreset_mode=gym.vector.AutoresetMode.DISABLED)


def step_overlapped(envs: gym.vector.VectorEnv, actions: np.ndarray, work):
    """Step `envs`, running `work()` while subprocess envs simulate (before the step for in-process envs).
    Either way `work` sees the same data, so the numbers do not depend on `--async-envs`."""
    if hasattr(envs, "step_async"):
        envs.step_async(actions)
        work()
        return envs.step_wait()
    work()
    return envs.step(actions)


def check_env_fits(envs, policy, spec: EnvSpec) -> None:
    """The env's observation and action shapes must be the policy's (one-line error otherwise)."""
    obs_shape, act_shape = tuple(envs.single_observation_space.shape), tuple(envs.single_action_space.shape)
    if obs_shape != (int(policy.obs_dim),) or act_shape != (int(policy.action_dim),):
        raise UserError(f"{spec.id} has observations {obs_shape} and actions {act_shape}, but the policy expects "
                        f"({policy.obs_dim},) and ({policy.action_dim},)")


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


def resume_command(cfg: FinetuneConfig, env: EnvSpec) -> str:
    """The exact `steerlab finetune` line that continues `cfg`'s run (every argument spelled out)."""
    sac = {k: v for k, v in asdict(cfg.sac).items() if v != getattr(SACConfig(), k)}
    argv = ["steerlab", "finetune", str(cfg.base), "--out", str(cfg.out), "--method", cfg.method,
            "--env", env.id, "--max-steps", str(env.max_steps), "--env-steps", str(cfg.env_steps),
            "--seed", str(cfg.seed), "--reward", cfg.reward, "--gamma", repr(cfg.gamma),
            "--warmup", str(cfg.warmup_decisions), "--eval-every", str(cfg.eval_every),
            "--eval-episodes", str(cfg.eval_episodes), "--checkpoint-every", str(cfg.checkpoint_every),
            "--buffer-size", str(cfg.buffer_size), "--n-envs", str(cfg.n_envs),
            "--final-episodes", str(cfg.final_episodes)]
    if cfg.sampler_noise_scale != 1.0:
        argv += ["--sampler-noise-scale", repr(cfg.sampler_noise_scale)]
    for flag, value in (("--success-key", cfg.success_key), ("--position-key", cfg.position_key),
                        ("--shift", cfg.shift), ("--utd", None if cfg.utd is None else repr(cfg.utd))):
        if value is not None:
            argv += [flag, value]
    if cfg.env_kwargs:
        argv += ["--env-kwargs", json.dumps(cfg.env_kwargs, sort_keys=True)]
    if sac:
        argv += ["--sac-json", json.dumps(sac, sort_keys=True)]
    if cfg.steering:
        argv += ["--steering-json", json.dumps(cfg.steering, sort_keys=True)]
    if cfg.async_envs:
        argv.append("--async-envs")
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


# Named SAC settings. 'bench' is what benchmarks/finetune.py measured (hidden 128: one update costs 6.0 ms
# vs 12.2 ms at 256 on one core, benchmarks/results/sac_update_speed.json) and the CLI's default, so the
# README's command reproduces the tables; 'paper' is the ZPRL paper's width.
PRESETS = {"bench": {"hidden": 128}, "paper": {"hidden": 256}}


def run_finetune(args: argparse.Namespace) -> int:
    for flag, value, minimum in (("--env-steps", args.env_steps, 1), ("--eval-every", args.eval_every, 1),
                                 ("--checkpoint-every", args.checkpoint_every, 1),
                                 ("--eval-episodes", args.eval_episodes, 1), ("--warmup", args.warmup, 0),
                                 ("--buffer-size", args.buffer_size, 1), ("--n-envs", args.n_envs, 1),
                                 ("--final-episodes", args.final_episodes, 0)):
        check_count(flag, value, minimum)
    if args.max_steps is not None:
        check_count("--max-steps", args.max_steps)
    sac_json = _json_arg(args.sac_json, "--sac-json")
    sac = build(SACConfig, {**PRESETS[args.preset], **sac_json}, "--sac-json")
    steering = _json_arg(args.steering_json, "--steering-json")
    method_class(args.method).Config.from_dict(steering)  # unknown options: one line naming them
    if args.latent_scale is not None:
        steering["latent_scale"] = args.latent_scale
    cfg = FinetuneConfig(base=args.base, method=args.method, env=args.env, env_steps=args.env_steps,
                         seed=args.seed, out=args.out, reward=args.reward, gamma=args.gamma, max_steps=args.max_steps,
                         warmup_decisions=args.warmup, eval_every=args.eval_every, eval_episodes=args.eval_episodes,
                         checkpoint_every=args.checkpoint_every, buffer_size=args.buffer_size,
                         success_key=args.success_key, position_key=args.position_key, shift=args.shift,
                         env_kwargs=_json_arg(args.env_kwargs, "--env-kwargs"), n_envs=args.n_envs,
                         async_envs=args.async_envs, utd=args.utd, tensorboard=not args.no_tensorboard, sac=sac,
                         sac_explicit=sorted(sac_json), steering=steering, final_episodes=args.final_episodes,
                         sampler_noise_scale=args.sampler_noise_scale)
    tuner = run_folder(cfg, resume=not args.no_resume, overwrite=args.overwrite)
    out = tuner.out
    if tuner.interrupted:
        cfg.out = str(out)
        saved = ("the snapshot is saved" if not tuner.active.any() else
                 "it resumes from its last snapshot")
        print(f"stopped by {tuner.stop_signal} at env step {tuner.env_steps}; {saved}. Resume with:\n"
              f"  {resume_command(cfg, tuner.env_spec)}")
        return 0
    res = read_json(out / "result.json")
    if "final_sampled" in res:
        print(f"final success over {res['final_episodes']} episodes: sampled {res['final_sampled']:.2f}, "
              f"from ε = 0 {res['final_eps0']:.2f} | AUC {res['auc']:.2f} | dip {res['dip']:+.2f}")
    print(f"run folder: {out} (steered policy: {out / 'policy'}; evaluate it with `steerlab evaluate {out}`)")
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
    p.add_argument("--success-key", default=None, help="info key that signals success (default is_success)")
    p.add_argument("--position-key", default=None,
                   help="info key of the end-effector position for smoothness ('none': skip; default: the family's)")
    p.add_argument("--shift", default=None, help="named deployment shift of the training env")
    p.add_argument("--env-kwargs", default=None, help="JSON dict of env constructor arguments")
    p.add_argument("--n-envs", type=int, default=1, help="environments stepped together (batched decisions)")
    p.add_argument("--async-envs", action="store_true", help="step the envs in subprocesses, overlapped with updates")
    p.add_argument("--utd", type=float, default=None, help="SAC updates per decision (default: the SAC config's)")
    p.add_argument("--env-steps", type=int, default=100_000, help="total env steps (a resume may raise it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="run folder (default runs/finetune/<env>__<method>__seed<k>)")
    p.add_argument("--reward", choices=REWARDS, default="dense")
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--max-steps", type=int, default=None, help="episode horizon in env steps (default: the env's)")
    p.add_argument("--warmup", type=int, default=2_000, help="decisions acting as the base policy first (>= 0)")
    p.add_argument("--eval-every", type=int, default=5_000)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--sampler-noise-scale", type=float, default=1.0,
                   help="scale of the frozen sampler's noise in training and in the curve's evaluations "
                        "(1: the base's sampler; 0: every chunk from ε = 0)")
    p.add_argument("--final-episodes", type=int, default=50,
                   help="final evaluation episodes (sampled and from ε = 0) written to result.json; 0: none")
    p.add_argument("--preset", choices=sorted(PRESETS), default="bench",
                   help="SAC settings: bench (what the README tables measured, hidden 128) or paper (hidden 256); "
                        "--sac-json overrides on top")
    p.add_argument("--checkpoint-every", type=int, default=10_000,
                   help="env steps between resumable snapshots of the training state (taken once every env ends "
                        "its episode)")
    p.add_argument("--buffer-size", type=int, default=200_000)
    p.add_argument("--latent-scale", type=float, default=None, help="ZPRL λ (default: 0.3 × RMS of μ)")
    p.add_argument("--sac-json", default=None, help='SACConfig overrides, e.g. \'{"num_critics": 5}\'')
    p.add_argument("--steering-json", default=None, help="options of the steering method (rl/steering/<method>.py)")
    p.add_argument("--no-tensorboard", action="store_true", help="write metrics.jsonl only")
    p.add_argument("--no-resume", action="store_true",
                   help="never continue an existing run in --out (with --overwrite: move it aside, start afresh)")
    p.add_argument("--overwrite", action="store_true",
                   help="move an --out folder that is not this run aside (renamed, never deleted)")
    p.set_defaults(func=run_finetune)
