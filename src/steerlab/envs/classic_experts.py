"""Scripted experts for two reward-only Gymnasium envs, and a demonstration recorder for them.

They give steerlab's own flow policy something to imitate on envs that report a reward and no success
(benchmarks/reward_only.py, the tests): a base whose *return* online RL must keep or improve.

* Pendulum-v1 (obs cos θ, sin θ, θ̇; θ = 0 upright; torque in [-2, 2]): energy pumping, then a PD catch.
  With g = 10, m = l = 1 the dynamics are θ̈ = 15 sin θ + 3u, so E = ½θ̇² + 15 cos θ is 15 at rest upright and
  dE/dt = 3uθ̇: pushing along θ̇ while E < 15 adds energy; near the top a PD on (θ, θ̇) holds it.
* MountainCarContinuous-v0 (obs position, velocity; force in [-1, 1]): push along the velocity (bang-bang),
  which builds the swing that reaches the flag.
"""

from __future__ import annotations

import numpy as np

from steerlab.data.dataset import Episode


def pendulum_swingup(obs: np.ndarray) -> np.ndarray:
    cos, sin, vel = float(obs[0]), float(obs[1]), float(obs[2])
    theta = np.arctan2(sin, cos)
    if cos > 0.85:  # close to upright: catch and hold
        u = -(10.0 * theta + 2.0 * vel)
    else:  # pump energy towards the upright level E = 15 (push along θ̇; from rest, push to start a swing)
        energy = 0.5 * vel**2 + 15.0 * cos
        u = 2.0 * np.sign(vel if abs(vel) > 1e-3 else 1.0) * (1.0 if energy < 15.0 else -0.2)
    return np.array([np.clip(u, -2.0, 2.0)], np.float32)


def mountain_car_pump(obs: np.ndarray) -> np.ndarray:
    vel = float(obs[1])
    return np.array([1.0 if vel >= 0.0 else -1.0], np.float32)


EXPERTS = {"Pendulum-v1": pendulum_swingup, "MountainCarContinuous-v0": mountain_car_pump}


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
