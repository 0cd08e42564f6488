"""Batched evaluation rollouts over gymnasium vector envs.

A policy here is anything with `predict_chunk(obs (B, obs_dim), noise=(B, H, A)) -> (B, H, A)` and an
`n_action_steps` attribute: the flow policy, a steered policy, a keyed policy. Each environment keeps
its own queue of planned actions, so environments that reset at different times re-plan independently.
Episode i always uses evaluation seed i of the run seed for its initial state *and* for the sampler
noise of its chunks (one torch.Generator per episode), so the numbers do not depend on how many
parallel envs evaluated them.
"""

from __future__ import annotations

import functools
from typing import Protocol

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from steerlab.envs.metaworld_env import episode_seeds, make_env
from steerlab.eval.metrics import smoothness, summarize_episodes


class ChunkPolicy(Protocol):
    n_action_steps: int
    chunk_shape: tuple[int, int]  # (horizon, action_dim) of the sampler noise

    def predict_chunk(self, obs, *, noise=None) -> np.ndarray: ...


def make_vector_env(task: str, n_envs: int, seed: int, max_steps: int, asynchronous: bool = True,
                    terminate_on_success: bool = True, reward: str = "dense", goal_offset=None,
                    shift: str | None = None) -> gym.vector.VectorEnv:
    fns = [functools.partial(make_env, task, seed=seed + i, max_steps=max_steps, terminate_on_success=terminate_on_success,
                             reward=reward, goal_offset=goal_offset, shift=shift) for i in range(n_envs)]
    cls = gym.vector.AsyncVectorEnv if asynchronous and n_envs > 1 else gym.vector.SyncVectorEnv
    return cls(fns, autoreset_mode=gym.vector.AutoresetMode.DISABLED)


def rollout_episodes(policy: ChunkPolicy, task: str, episodes: int, seed: int = 0, n_envs: int = 2,
                     max_steps: int = 200, asynchronous: bool = True, progress: bool = True,
                     split: str = "eval", goal_offset=None, noise_scale: float = 1.0,
                     shift: str | None = None) -> list[dict]:
    """Run `episodes` episodes (terminating at success) and return one record per episode.

    `noise_scale` multiplies the sampler's initial noise: 1 samples the policy as trained, 0 integrates
    every chunk from ε = 0 (a deterministic, mode-seeking sampler). `shift`: deployment shift name."""
    if episodes <= 0:
        raise ValueError(f"episodes must be positive, got {episodes}")
    if not np.isfinite(noise_scale) or noise_scale < 0:
        raise ValueError(f"noise_scale must be a finite number >= 0, got {noise_scale}")
    n_envs = max(1, min(n_envs, episodes))
    seeds = episode_seeds(split, seed, episodes)
    envs = make_vector_env(task, n_envs, seed, max_steps, asynchronous, goal_offset=goal_offset, shift=shift)
    k = policy.n_action_steps
    chunk_shape = policy.chunk_shape
    try:
        obs, info = envs.reset(seed=seeds[:n_envs])
        ep_of_env = list(range(n_envs))
        next_ep = n_envs
        gens = [torch.Generator().manual_seed(s) for s in seeds[:n_envs]]
        queues: list[list[np.ndarray]] = [[] for _ in range(n_envs)]
        paths = [[info["hand_pos"][i].copy()] for i in range(n_envs)]
        rewards = [0.0] * n_envs
        active = np.ones(n_envs, bool)
        records: dict[int, dict] = {}
        bar = tqdm(total=episodes, desc=f"evaluate {task}", disable=not progress, unit="ep")
        while active.any():
            need = [i for i in range(n_envs) if active[i] and not queues[i]]
            if need:
                noise = noise_scale * torch.stack([torch.randn(chunk_shape, generator=gens[i]) for i in need])
                chunks = policy.predict_chunk(obs[need], noise=noise)
                for j, i in enumerate(need):
                    queues[i] = list(chunks[j, :k])
            actions = np.stack([queues[i].pop(0) if active[i] else np.zeros(4, np.float32)
                                for i in range(n_envs)])
            obs, rew, term, trunc, info = envs.step(actions)
            done = term | trunc
            reset_mask = np.zeros(n_envs, bool)
            for i in range(n_envs):
                if not active[i]:
                    reset_mask[i] = True  # keep finished workers valid; their output is ignored
                    continue
                paths[i].append(info["hand_pos"][i].copy())
                rewards[i] += float(rew[i])
                if done[i]:
                    path = np.asarray(paths[i])
                    records[ep_of_env[i]] = {"seed": seeds[ep_of_env[i]], "success": bool(info["is_success"][i]),
                                             "length": len(path) - 1, "return": rewards[i],
                                             "smoothness": smoothness(path)}
                    bar.update(1)
                    bar.set_postfix(success=f"{np.mean([r['success'] for r in records.values()]):.2f}")
                    reset_mask[i] = True
                    queues[i] = []
                    rewards[i] = 0.0
                    if next_ep < episodes:
                        ep_of_env[i] = next_ep
                        gens[i] = torch.Generator().manual_seed(seeds[next_ep])
                        next_ep += 1
                    else:
                        active[i] = False
            if reset_mask.any() and active.any():
                reset_seeds = [seeds[ep_of_env[i]] if active[i] else 0 for i in range(n_envs)]
                new_obs, new_info = envs.reset(seed=reset_seeds, options={"reset_mask": reset_mask})
                for i in np.flatnonzero(reset_mask & active):
                    obs[i] = new_obs[i]
                    paths[i] = [new_info["hand_pos"][i].copy()]
        bar.close()
    finally:
        envs.close()
    return [records[i] for i in range(episodes)]


def evaluate(policy: ChunkPolicy, task: str, episodes: int = 50, seed: int = 0, n_envs: int = 2,
             max_steps: int = 200, asynchronous: bool = True, progress: bool = True, noise_scale: float = 1.0,
             shift: str | None = None) -> dict:
    from steerlab.envs.shifts import shift_name

    shift = shift_name(shift)  # fail on an unknown name before starting worker processes
    eps = rollout_episodes(policy, task, episodes, seed, n_envs, max_steps, asynchronous, progress,
                           noise_scale=noise_scale, shift=shift)
    return {"task": task, "seed": seed, "noise_scale": noise_scale, "shift": shift, **summarize_episodes(eps),
            "per_episode": eps}
