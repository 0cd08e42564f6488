"""MP4 rollout videos with offscreen MuJoCo. Without a GPU, software rendering works through OSMesa
(`libosmesa6`) or Mesa's EGL (`libegl-mesa0`); whichever is installed is picked unless `MUJOCO_GL` is set."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from steerlab.core.observations import index_obs
from steerlab.envs.cameras import env_for_policy
from steerlab.envs.gl import default_gl_backend, ensure_gl_backend  # noqa: F401  (re-exported: older imports)
from steerlab.envs.registry import make_env, resolve_env
from steerlab.envs.seeds import episode_seeds
from steerlab.eval.rollout import chunk_sampler


def record_video(policy, task: str, path: str | Path, episodes: int = 1, seed: int = 0, max_steps: int = 200,
                 fps: int = 30, noise_scale: float | None = None) -> Path:
    """Roll out `episodes` evaluation episodes (the same seeds `evaluate` uses first) into one MP4.
    `noise_scale`: the sampler's (None: a steered policy's trained mode, else 1)."""
    scale = float(getattr(policy, "sampler_noise_scale", 1.0)) if noise_scale is None else float(noise_scale)
    ensure_gl_backend()
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    env = make_env(env_for_policy(resolve_env(task, max_steps=max_steps), policy), seed=seed, terminate_on_success=True,
                   render_mode="rgb_array")
    sample, noise_shape = chunk_sampler(policy)
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    writer = imageio.get_writer(tmp, fps=fps, macro_block_size=16)
    try:
        for ep_seed in episode_seeds("eval", seed, episodes):
            obs, _ = env.reset(seed=ep_seed)
            gen = torch.Generator().manual_seed(ep_seed)
            queue: list[np.ndarray] = []
            for _ in range(max_steps):
                if not queue:
                    noise = scale * torch.randn((1, *noise_shape), generator=gen) if noise_shape is not None else None
                    # a batch of one (index None adds the axis to an array or to each array of a dict)
                    queue = list(sample(index_obs(obs, None), noise)[0, : policy.n_action_steps])
                obs, _, term, trunc, _ = env.step(queue.pop(0))
                # MuJoCo reads the offscreen buffer bottom-up
                writer.append_data(np.asarray(env.render())[::-1].copy())
                if term or trunc:
                    break
    finally:
        writer.close()
        env.close()
    os.replace(tmp, path)
    return path
