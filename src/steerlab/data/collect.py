"""Scripted-expert demonstrations of controlled quality.

Per-step Gaussian noise on expert actions averages out in imitation (the learned policy is near
perfect), which leaves no room to show online improvement. The `mixed` preset therefore corrupts the
expert with *temporally correlated* noise: one noise sample is held for `hold` steps, and each episode
draws its noise level from `noise_levels`. A share of episodes is also cut short, as a human
demonstrator who gives up would. The recorded action is the one actually executed (expert + noise),
so the dataset is what a mixed-quality teleoperator would have produced.

Presets (name: what it is for):
  expert  clean scripted expert, no corruption (sanity checks: imitation reaches ~90%+ success)
  mixed   held noise, std drawn per episode from {0.1, 0.3, 0.6}; 15% of episodes cut at 30–70% of
          their length (the default; like the paper's "mixed-quality 50–100 trajectories")
  noisy   held noise, std from {0.3, 0.6, 1.0}; 30% cut short (a harder, worse base policy)
`noise_scale` multiplies a preset's noise (default 1); the benchmarks' per-task scales (tuned so a base from
50 `mixed` demos lands in the 20–70% success band) are calibration data and live with them
(steerlab.bench.calibration), not here.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from steerlab.core.config import check_count
from steerlab.core.errors import UserError
from steerlab.core.observations import STATE_KEY, image_key
from steerlab.core.progress import progress_bar
from steerlab.data.dataset import Episode
from steerlab.envs.cameras import check_image_size, parse_cameras
from steerlab.envs.registry import make_env, resolve_env
from steerlab.envs.seeds import SEED_OFFSETS, episode_seeds


@dataclass(frozen=True)
class QualityPreset:
    noise_levels: tuple[float, ...]   # per-episode std of the held Gaussian action noise
    noise_probs: tuple[float, ...]    # probability of each level
    hold: int                         # steps one noise sample is held (temporal correlation)
    cut_fraction: float               # share of episodes cut short
    cut_range: tuple[float, float]    # cut at this fraction of the episode's natural length


QUALITY_PRESETS: dict[str, QualityPreset] = {
    "expert": QualityPreset((0.0,), (1.0,), 1, 0.0, (1.0, 1.0)),
    "mixed": QualityPreset((0.1, 0.3, 0.6), (0.4, 0.3, 0.3), 5, 0.15, (0.3, 0.7)),
    "noisy": QualityPreset((0.3, 0.6, 1.0), (0.3, 0.4, 0.3), 5, 0.3, (0.3, 0.7)),
}

def get_preset(quality: str) -> QualityPreset:
    if quality not in QUALITY_PRESETS:
        raise UserError(f"unknown quality {quality!r}; presets: {', '.join(QUALITY_PRESETS)}")
    return QUALITY_PRESETS[quality]


# scripted experts per environment family ("module:function(task, goal_offset) -> callable obs -> action");
# a family with experts is one line here
EXPERTS: dict[str, str] = {
    "metaworld": "steerlab.envs.metaworld_env:expert_policy",
    "panda": "steerlab.envs.panda_experts:expert_policy",
}


def check_expert(spec) -> None:
    """One line when the env `spec` has no scripted expert: the user records their own policy instead."""
    if spec.family not in EXPERTS:
        raise UserError(f"no scripted expert for {spec.id!r} (family {spec.family!r}; experts exist for "
                        f"{', '.join(EXPERTS)}): pass --policy <checkpoint folder | module:factory> to record your "
                        f"own policy, or record your own loop with steerlab.data.Recorder (docs/data.md)")


def expert_for(spec, goal_offset=None) -> Callable:
    """The scripted expert for the env `spec` (an EnvSpec), looked up by its family."""
    import importlib

    check_expert(spec)
    module, _, fn = EXPERTS[spec.family].partition(":")
    return getattr(importlib.import_module(module), fn)(spec.id, goal_offset)


class PolicyActor:
    """Any policy as a demonstrator: it plans a chunk and executes its first `n_action_steps` actions, with
    the sampler's noise seeded by the episode seed (`reset(seed)`), so a recording is reproducible."""

    def __init__(self, policy, action_dim: int | None = None):
        import torch

        from steerlab.eval.rollout import chunk_sampler

        self.sample, self.noise_shape = chunk_sampler(policy)
        self.k = max(1, int(getattr(policy, "n_action_steps", 1) or 1))
        self.queue: list[np.ndarray] = []
        self.gen = torch.Generator()
        self.name, self.action_dim = type(policy).__name__, action_dim

    def reset(self, seed: int) -> None:
        self.queue = []
        self.gen.manual_seed(int(seed))

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        import torch

        if not self.queue:
            noise = torch.randn((1, *self.noise_shape), generator=self.gen) if self.noise_shape else None
            with torch.no_grad():
                chunk = self.sample(np.asarray(obs, np.float32)[None], noise)
            chunk = chunk.detach().numpy() if isinstance(chunk, torch.Tensor) else np.asarray(chunk)
            chunk = np.asarray(chunk, np.float32)
            if chunk.ndim != 3 or (self.action_dim is not None and chunk.shape[-1] != self.action_dim):
                raise UserError(f"{self.name} returned chunks of shape {chunk.shape} for one observation; the env "
                                f"takes {self.action_dim}-dim actions: (1, horizon, {self.action_dim}) expected")
            self.queue = list(chunk[0, : self.k])
        return self.queue.pop(0)


def collect_demos(task: str, episodes: int, quality: str = "mixed", seed: int = 0,
                  max_steps: int | None = None, progress: bool = True, goal_offset=None,
                  noise_scale: float | None = None, shift: str | None = None, split: str = "demo",
                  policy=None, cameras=(), image_size=(84, 84)) -> list[Episode]:
    """Roll out the scripted expert (or `policy`) with the preset's corruption; one Episode per rollout.

    `policy`: any loaded policy (`steerlab.core.checkpoint.load_policy`: a checkpoint folder or
    `module:factory`) demonstrates instead of the scripted expert, on any env (PolicyActor). The preset's
    noise is in units of half the action range (Meta-World's and panda-gym's [-1, 1]: as is).

    Episodes end at the first success (the evaluation counts success at any step), at the horizon,
    or at the preset's cut point (`max_steps` None: the env family's horizon, e.g. Meta-World 200,
    panda-gym 50). `goal_offset` records a user's personal preference instead: the
    expert aims at goal + offset while the observation keeps the task's goal. `noise_scale` multiplies
    the preset's noise levels (1: the preset as it is).

    `shift` (steerlab.envs.shifts): a coverage shift keeps only demo seeds whose initial object/goal
    positions lie in its region (the next demo seeds are tried until `episodes` are accepted); an
    actuation shift records the demonstrations on the shifted robot.

    `split` names the episode-seed range (`steerlab.envs.seeds`): 'demo' for imitation data; the
    privacy recipes draw their users' personal demonstrations from 'train' (training data that is not
    the shared demos). Either way the seeds never reach the next range, so never an evaluation seed.
    `cameras`: also record these cameras' frames at `image_size` (H, W) (Meta-World; envs/cameras.py); the
    expert still acts on the state, and the state/action/noise draws are those of a state-only collection.
    """
    from steerlab.envs.shifts import parse_shift

    spec = parse_shift(shift)
    preset = get_preset(quality)
    check_count("episodes", episodes)
    if max_steps is not None:
        check_count("max_steps", max_steps)
    rng = np.random.default_rng(seed)
    kwargs = {} if goal_offset is None else {"goal_offset": np.asarray(goal_offset, np.float32).tolist()}
    cameras = parse_cameras(cameras)
    if cameras:
        kwargs.update(cameras=list(cameras), image_size=list(check_image_size(image_size)))
    env_spec = resolve_env(task, max_steps=max_steps, kwargs=kwargs, shift=spec.name if spec else None)
    env = make_env(env_spec, seed=seed, terminate_on_success=True)
    act_dim = env.action_space.shape[0]
    expert = expert_for(env_spec, goal_offset) if policy is None else PolicyActor(policy, act_dim)
    low, high = env.action_space.low.astype(np.float32), env.action_space.high.astype(np.float32)
    half_range = np.where(np.isfinite(high - low), (high - low) / 2, 1.0).astype(np.float32)
    max_steps = env_spec.max_steps
    # Meta-World's scripted experts warn on every call that their gains saturate; the env clips anyway
    warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high")
    scale = 1.0 if noise_scale is None else float(noise_scale)
    out: list[Episode] = []
    bar = progress_bar(total=episodes, desc=f"collect {task} ({quality})", disable=not progress, unit="ep")
    first = episode_seeds(split, seed, 1)[0]
    end = min([o for o in SEED_OFFSETS.values() if o > SEED_OFFSETS[split]], default=first + 10_000)
    if first >= end:
        raise UserError(f"seed {seed} is too large for the {split!r} episode-seed range")
    candidates = iter(range(first, end))  # seeds in order, never past the split's own range
    while len(out) < episodes:
        ep_seed = next(candidates, None)
        if ep_seed is None:
            raise UserError(f"shift {spec.name}: no initial state in its region among the demo seeds")
        obs, _ = env.reset(seed=ep_seed)
        if spec is not None and not spec.accepts(env):
            continue  # outside the demonstration region (coverage shift): draw nothing, try the next seed
        if policy is not None:
            expert.reset(ep_seed)
        std = scale * float(rng.choice(preset.noise_levels, p=preset.noise_probs))
        cut = rng.random() < preset.cut_fraction
        cut_at = int(max_steps * rng.uniform(*preset.cut_range) * 0.5) if cut else max_steps
        obs_l, act_l, rew_l = [], [], []
        frames: dict[str, list[np.ndarray]] = {c: [] for c in cameras}
        noise = np.zeros(act_dim, np.float32)
        success = False
        for t in range(min(cut_at, max_steps)):
            if t % preset.hold == 0:
                noise = (rng.standard_normal(act_dim) * std * half_range).astype(np.float32)
            if cameras:
                for c in cameras:
                    frames[c].append(obs[image_key(c)])
                obs = obs[STATE_KEY]
            action = np.clip(np.asarray(expert(obs), np.float32).reshape(act_dim) + noise, low, high)
            obs_l.append(obs)
            act_l.append(action)
            obs, reward, terminated, truncated, info = env.step(action)
            rew_l.append(reward)
            success = bool(info["is_success"])
            if terminated or truncated:
                break
        out.append(Episode(np.asarray(obs_l, np.float32), np.asarray(act_l, np.float32),
                           np.asarray(rew_l, np.float32), success,
                           meta={"noise_std": std, "cut_short": bool(cut), "seed": ep_seed},
                           images={c: np.stack(f) for c, f in frames.items()} if cameras else None))
        bar.update(1)
    bar.close()
    env.close()
    return out


def preset_dict(quality: str) -> dict:
    return asdict(get_preset(quality))
