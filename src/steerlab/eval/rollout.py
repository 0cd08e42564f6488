"""Batched evaluation rollouts over gymnasium vector envs, for any env family (envs/registry.py).

A policy here is anything with `n_action_steps` and either `predict_chunk(obs (B, obs_dim), noise=...)
-> (B, H, A)` numpy (or a dict of batched arrays for a camera policy, whose cameras the envs then render:
`envs.cameras.env_for_policy`) (the flow policy, a steered policy, a keyed policy) or the protocol's
`sample_chunk(obs, noise)` (any steerable policy). Each environment keeps its own queue of planned
actions, so environments that reset at different times re-plan independently. Episode i always uses
evaluation seed i of the run seed for its initial state *and* for the sampler noise of its chunks (one
torch.Generator per episode), so the numbers do not depend on how many parallel envs evaluated them.
Every episode records its return (the env's own reward, summed) and, when the env reports success at all
(`info["success_reported"]`, envs/registry.py), its success; otherwise success is None. End-effector smoothness
is measured when the env spec names a position key, and is None otherwise.
"""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np
import torch

from steerlab.core.config import check_scale
from steerlab.core.devices import policy_device, to_device
from steerlab.core.observations import index_obs, is_dict_obs
from steerlab.core.progress import progress_bar
from steerlab.envs.cameras import env_for_policy, vector_context
from steerlab.envs.registry import EnvSpec, make_env, resolve_env
from steerlab.envs.seeds import episode_seeds
from steerlab.eval.metrics import smoothness, summarize_episodes
from steerlab.policies.protocol import as_policy_obs


def chunk_sampler(policy):
    """(fn(obs (B, obs_dim) numpy, noise or None) -> (B, H, A) numpy, noise shape or None) for `policy`."""
    noise_shape = getattr(policy, "chunk_shape", None) or getattr(policy, "noise_shape", None)
    if hasattr(policy, "predict_chunk"):
        @torch.no_grad()
        def predict(obs, noise):  # a user's predict_chunk may return a tensor (that requires grad)
            out = policy.predict_chunk(obs, noise=noise)
            return out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else out

        return predict, noise_shape

    @torch.no_grad()
    def fn(obs, noise):  # inputs go where the policy computes; the chunk comes back to the CPU
        dev = policy_device(policy)
        x = to_device(as_policy_obs(policy, obs), dev)
        return policy.sample_chunk(x, None if noise is None else noise.to(dev)).cpu().numpy()

    return fn, noise_shape


def success_reported(info: dict, i: int) -> bool:
    """Whether env `i` of a vector env's `info` has reported success this episode (envs without the
    `success_reported` key, Meta-World and panda-gym, always report it)."""
    if "success_reported" not in info:
        return True
    return bool(info["success_reported"][i])


def set_row(obs, i: int, new) -> None:
    """obs[i] = new[i], per key for camera (dict) observations."""
    if is_dict_obs(obs):
        for k in obs:
            obs[k][i] = new[k][i]
    else:
        obs[i] = new[i]


def as_spec(env: str | dict | EnvSpec, max_steps: int | None = None, goal_offset=None,
            shift: str | None = None) -> EnvSpec:
    spec = resolve_env(env, max_steps=max_steps)
    if goal_offset is not None:  # Meta-World's personal-preference variant (privacy benchmark)
        spec.kwargs = {**spec.kwargs, "goal_offset": np.asarray(goal_offset, np.float32).tolist()}
    if shift is not None:  # a deployment shift (steerlab.envs.shifts); canonical name, unknown names fail here
        from steerlab.envs.shifts import shift_name

        spec.shift = shift_name(shift)
    return spec


def make_vector_env(env: str | dict | EnvSpec, n_envs: int, seed: int, max_steps: int | None = None,
                    asynchronous: bool = True, terminate_on_success: bool = True, reward: str = "dense",
                    goal_offset=None, shift: str | None = None) -> gym.vector.VectorEnv:
    spec = as_spec(env, max_steps, goal_offset, shift)
    fns = [functools.partial(make_env, spec, seed=seed + i, terminate_on_success=terminate_on_success, reward=reward)
           for i in range(n_envs)]
    if asynchronous and n_envs > 1:
        return gym.vector.AsyncVectorEnv(fns, context=vector_context(spec),
                                         autoreset_mode=gym.vector.AutoresetMode.DISABLED)
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.DISABLED)


def rollout_episodes(policy, task: str | dict | EnvSpec, episodes: int, seed: int = 0, n_envs: int = 2,
                     max_steps: int | None = None, asynchronous: bool = True, progress: bool = True,
                     split: str = "eval", goal_offset=None, noise_scale: float = 1.0,
                     shift: str | None = None) -> list[dict]:
    """Run `episodes` episodes (terminating at success) and return one record per episode.

    `noise_scale` multiplies the sampler's initial noise: 1 samples the policy as trained, 0 integrates
    every chunk from ε = 0 (a deterministic, mode-seeking sampler). `shift`: deployment shift name."""
    if episodes <= 0:
        raise ValueError(f"episodes must be positive, got {episodes}")
    check_scale("noise_scale", noise_scale)  # a UserError, i.e. a ValueError
    n_envs = max(1, min(n_envs, episodes))
    seeds = episode_seeds(split, seed, episodes)
    spec = env_for_policy(as_spec(task, max_steps, goal_offset, shift), policy)  # a camera policy's cameras
    pos_key = spec.position_key
    envs = make_vector_env(spec, n_envs, seed, asynchronous=asynchronous)
    k = policy.n_action_steps
    sample, chunk_shape = chunk_sampler(policy)
    idle = np.zeros(envs.single_action_space.shape, np.float32)
    try:
        obs, info = envs.reset(seed=seeds[:n_envs])
        ep_of_env = list(range(n_envs))
        next_ep = n_envs
        gens = [torch.Generator().manual_seed(s) for s in seeds[:n_envs]]
        queues: list[list[np.ndarray]] = [[] for _ in range(n_envs)]
        paths = [[info[pos_key][i].copy()] if pos_key else [] for i in range(n_envs)]
        lengths = [0] * n_envs
        rewards = [0.0] * n_envs
        active = np.ones(n_envs, bool)
        records: dict[int, dict] = {}
        bar = progress_bar(total=episodes, desc=f"evaluate {spec.id}", disable=not progress, unit="ep")
        while active.any():
            need = [i for i in range(n_envs) if active[i] and not queues[i]]
            if need:
                noise = (noise_scale * torch.stack([torch.randn(chunk_shape, generator=gens[i]) for i in need])
                         if chunk_shape is not None else None)
                chunks = sample(index_obs(obs, need), noise)
                for j, i in enumerate(need):
                    queues[i] = list(chunks[j, :k])
            actions = np.stack([queues[i].pop(0) if active[i] else idle
                                for i in range(n_envs)])
            obs, rew, term, trunc, info = envs.step(actions)
            done = term | trunc
            reset_mask = np.zeros(n_envs, bool)
            for i in range(n_envs):
                if not active[i]:
                    reset_mask[i] = True  # keep finished workers valid; their output is ignored
                    continue
                if pos_key:
                    paths[i].append(info[pos_key][i].copy())
                lengths[i] += 1
                rewards[i] += float(rew[i])
                if done[i]:
                    reported = success_reported(info, i)
                    records[ep_of_env[i]] = {"seed": seeds[ep_of_env[i]], "return": rewards[i],
                                             "success": bool(info["is_success"][i]) if reported else None,
                                             "success_reported": reported, "length": lengths[i],
                                             "smoothness": smoothness(np.asarray(paths[i])) if pos_key else None}
                    bar.update(1)
                    bar.set_postfix(ret=f"{np.mean([r['return'] for r in records.values()]):.1f}")
                    reset_mask[i] = True
                    queues[i] = []
                    rewards[i] = 0.0
                    lengths[i] = 0
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
                    set_row(obs, i, new_obs)
                    paths[i] = [new_info[pos_key][i].copy()] if pos_key else []
        bar.close()
    finally:
        envs.close()
    return [records[i] for i in range(episodes)]


def evaluate(policy, task: str | dict | EnvSpec, episodes: int = 50, seed: int = 0, n_envs: int = 2,
             max_steps: int | None = None, asynchronous: bool = True, progress: bool = True,
             noise_scale: float = 1.0, shift: str | None = None, split: str = "eval") -> dict:
    """`shift`: a deployment shift name (else the spec's own, if it names one); `split`: the episode seeds'
    range (envs/seeds.py)."""
    spec = env_for_policy(as_spec(task, max_steps, shift=shift), policy)
    eps = rollout_episodes(policy, spec, episodes, seed, n_envs, None, asynchronous, progress,
                           split=split, noise_scale=noise_scale)
    return {"task": spec.id, "env": spec.to_dict(), "seed": seed, "noise_scale": noise_scale, "shift": spec.shift,
            **summarize_episodes(eps), "per_episode": eps}
