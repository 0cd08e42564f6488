"""`Finetuner`: the state of one online-RL run and how it collects experience (N envs, batched decisions).

Read top to bottom: build the frozen base (a checkpoint folder, or `module:factory` for any policy that
implements the steerable-policy protocol), the environments (envs/registry.py: a Meta-World task, a
Gymnasium id or `module:factory`), the steering method (rl/steering/: what the actor controls, its
exploration schedule and warm-up action) and one SAC; then `step()` the envs. It never asks which method or
env it runs. One RL step = one executed action chunk (n_action_steps env steps) with discount γ^k for the k
steps actually executed. A success termination ends the episode (no bootstrap); reaching the horizon is a
truncation (bootstrap).

Vectorized collection: `n_envs` envs step together (Gymnasium vector API; `async_envs` runs them in
subprocesses). Every vector step, the envs whose chunk is used up get their next chunk from *one* batched
actor + steering call. Each stored transition owes `utd` SAC updates; they run during the next env step
(while subprocess envs simulate), at most `update_cap` per step, so the actor acting at a decision has
learned from every transition but those of the last step. Same seed → same numbers, sync or async.

Reward ('dense', the benchmark default): the env's reward (Meta-World's shaped reward / 10), plus on success
termination the discounted value of staying successful for ever, 1 / (1 − γ^n_action_steps), so ending an
episode by succeeding is never worse than lingering. 'sparse': 1 on success, else 0.

The loop that drives it, with its callbacks (evaluation, snapshots, signals, progress), is `loop.py`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from steerlab.core.devices import move_policy, resolve_device, to_device
from steerlab.core.errors import UserError
from steerlab.core.observations import index_obs
from steerlab.envs.cameras import env_for_policy
from steerlab.envs.registry import checkpoint_env
from steerlab.envs.seeds import episode_seeds
from steerlab.eval.rollout import evaluate
from steerlab.policies.factory import load_policy_source
from steerlab.policies.protocol import as_policy_obs
from steerlab.rl.replay import ReplayBuffer
from steerlab.rl.steering import SteeredPolicy, make_adapter
from steerlab.train.finetune.callbacks import eval_row
from steerlab.train.finetune.config import FinetuneConfig, default_run_dir, warn_if_warmup_fills_the_run
from steerlab.train.finetune.envs import (
    check_env_fits,
    episode_record,
    make_train_envs,
    obs_buffer,
    set_obs_rows,
    step_overlapped,
)
from steerlab.train.finetune.loop import run as run_loop
from steerlab.train.finetune.snapshots import load_state, save_state


class Finetuner:
    """State of one online-RL run; `run()` drives it and can resume from `training_state/`."""

    def __init__(self, cfg: FinetuneConfig, progress: bool = True):
        torch.set_num_threads(cfg.num_threads)
        self.cfg, self.progress = cfg, progress
        self.base, self.base_meta, self.base_tensors = load_policy_source(cfg.base)
        self.device = resolve_device(cfg.device)
        move_policy(self.base, self.device)  # base_tensors (what checkpoints copy) stay on the CPU
        if self.base_meta.get("policy_type") == "steered":
            raise UserError(f"{cfg.base} is a 'steered' policy (already finetuned); finetune steers a pretrained "
                            f"policy: pass its base checkpoint (e.g. runs/pretrain/<task>)")
        # a camera policy's envs render its cameras (envs/cameras.py); features, never frames, are replayed
        self.env_spec = env_for_policy(cfg.env_spec(checkpoint_env(self.base_meta)), self.base)
        self.adapter = make_adapter(self.base, cfg.method, cfg.steering, self.base_meta.get("latent_stats", {}))
        # where the method's actor starts (recorded in config.json)
        cfg.sac = self.adapter.resolve_sac(cfg.sac, explicit=cfg.sac_explicit)
        self.sac = self.adapter.make_learner(cfg.sac, cfg.seed, device=self.device)  # the shared SAC unless the method brings its own
        self.replay = ReplayBuffer(cfg.buffer_size, self.adapter.obs_dim, self.adapter.act_dim, seed=cfg.seed)
        self.out = Path(cfg.out) if cfg.out else default_run_dir(self.env_spec.id, cfg.method, cfg.seed)
        self.n = cfg.n_envs
        self.envs = make_train_envs(self.env_spec, cfg)
        check_env_fits(self.envs, self.base, self.env_spec)
        self.pos_key = self.env_spec.position_key
        self.noise_shape = getattr(self.base, "noise_shape", None)  # None: an action-level policy samples its own
        self.k = int(self.base.n_action_steps)
        warn_if_warmup_fills_the_run(cfg, self.k)
        self.bonus = 1.0 / (1.0 - cfg.gamma**self.k) if cfg.reward == "dense" else 0.0
        self.utd = float(cfg.utd if cfg.utd is not None else cfg.sac.utd)
        # at most this many updates per vector step: spreads the inflow (utd per decision, n_envs decisions every
        # k steps) over the k steps of a chunk, so every env step has updates to overlap with; twice the mean
        # inflow, so a backlog (episodes ending mid-chunk add transitions out of phase) is cleared quickly
        self.update_cap = max(1, math.ceil(2 * self.utd * self.n / self.k))
        self.idle_action = np.zeros(self.envs.single_action_space.shape, np.float32)
        # the frozen sampler's noise scale; 'auto' is decided by loop.run before training (mode.py), and the
        # decision is recorded in config.json (a resume reuses it)
        self.sampler_mode: dict | None = None
        self.noise_scale = None if cfg.sampler_noise_scale == "auto" else cfg.sampler_noise_scale
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
        self.resumed = False  # continued from a snapshot (set by loop.run)
        self.last_eval: dict | None = None  # the latest evaluation's row
        self.base_eval: dict | None = None  # the step-0 evaluation's row: the base's own score
        # per-env episode state, one row per env (the loop works on whole rows, not env by env)
        self.active = np.zeros(self.n, bool)  # running a training episode (else idle: draining or done)
        self.obs = obs_buffer(self.envs.single_observation_space, self.n)  # a dict of arrays for cameras
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
    def _features(self, obs) -> torch.Tensor:
        # converted on the CPU, computed on the device, kept on the CPU (the replay and the loop's buffers)
        x = to_device(as_policy_obs(self.base, obs), self.device)
        return self.adapter.features(x, train=True, gen=self.noise_gen).cpu()

    def _set_feats(self, idx, feats: torch.Tensor) -> None:
        if self.feats is None:  # the feature buffers take the method's dtype and width
            self.feats = torch.zeros((self.n, *feats.shape[1:]), dtype=feats.dtype)
            self.pend_feats = torch.zeros_like(self.feats)
        self.feats[idx] = feats

    def _start_episodes(self, idx: list[int], info: dict) -> None:
        """Envs `idx` were just reset into new episodes: their observation's features, in one batch."""
        if not idx:
            return
        self._set_feats(idx, self._features(index_obs(self.obs, idx)))
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
        set_obs_rows(self.obs, mask, obs)
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
        noise = (self.noise_scale * torch.randn((b, *self.noise_shape), generator=self.noise_gen)
                 if self.noise_shape is not None else None)
        feats = self.feats[idx]
        if self.decisions < cfg.warmup_decisions:
            action = self.adapter.warmup_action(b, noise)
        else:
            action = self.sac.act(feats, deterministic=False)  # one shape + finiteness check for the batch
        # the method's exploration schedule (e.g. action-residual's progressive residual); what it returns is
        # what runs, so that is what the replay stores
        act = self.adapter.explore(torch.as_tensor(action), self.env_steps, self.rng)
        dev = self.device  # every draw above is on the CPU; `.to` is a no-op there
        chunks = self.adapter.chunk(to_device(as_policy_obs(self.base, index_obs(self.obs, idx)), dev), feats.to(dev),
                                    act.to(dev), None if noise is None else noise.to(dev)).cpu().numpy()
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
        set_obs_rows(self.obs, slice(None), obs)
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
            next_feats = self._features(index_obs(self.obs, ended))
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
            records.append(episode_record(info, i, self.ep_ret[i], self.ep_len[i], self.ep_path[i], self.pos_key))
        finished = finished.tolist()
        idle_done = np.flatnonzero(~active & done).tolist()
        restart = [] if self._draining() else finished
        self._reset(restart, [i for i in finished if i not in restart] + idle_done)
        return records

    def evaluate(self) -> dict:
        res = evaluate(self.steered_policy(), self.env_spec, self.cfg.eval_episodes, seed=self.cfg.seed, n_envs=1,
                       asynchronous=False, progress=False, noise_scale=self.noise_scale)
        return eval_row(res)

    def steered_policy(self) -> SteeredPolicy:
        return SteeredPolicy(self.base, self.adapter, self.sac, env_spec=self.env_spec.to_dict(),
                             base_meta=self.base_meta, base_tensors=self.base_tensors,
                             noise_scale=1.0 if self.noise_scale is None else float(self.noise_scale))

    def set_sampler_mode(self, record: dict) -> None:
        """The run's sampler mode (mode.decide): its chosen scale runs the decisions, the curve and the policy."""
        self.sampler_mode = record
        if self.cfg.sampler_noise_scale == "auto":  # an explicit number stays exactly what was passed
            self.noise_scale = float(record["chosen"])

    def save_state(self) -> None:
        save_state(self)

    def load_state(self) -> bool:
        return load_state(self)

    def run(self, resume: bool = True) -> Path:
        """Train to `cfg.env_steps`, resuming from the run folder's snapshot when `resume` (loop.py)."""
        return run_loop(self, resume)
