"""Train a tiny state-only LeRobot DiffusionPolicy with LeRobot's own training pieces, in seconds.

The pieces `lerobot-train` itself uses: `LeRobotDataset` with the delta timestamps the policy config asks
for (`resolve_delta_timestamps`), the policy's pre-processor built from the dataset stats
(`make_pre_post_processors`), the policy's own loss (`DiffusionPolicy.forward`) and its optimizer preset;
the result is saved with `save_pretrained` as `lerobot-train` saves a checkpoint. (`lerobot-train` itself
would also need the `training` extra — accelerate, wandb — and a dataset that stores an environment-state
column, since LeRobot's diffusion config needs an image or an environment state.)
"""

from __future__ import annotations

from pathlib import Path

import offline_hf  # noqa: F401  (before lerobot)
import torch
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.datasets import LeRobotDataset, LeRobotDatasetMetadata
from lerobot.datasets.factory import resolve_delta_timestamps
from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
from lerobot.policies.factory import make_pre_post_processors

OBS_STATE, OBS_ENV = "observation.state", "observation.environment_state"
# the state-only policy declares its state as environment state too (diffusion needs one of image/env state)
ALIASES = {OBS_ENV: OBS_STATE}


def tiny_config(state_dim: int, action_dim: int, scheduler: str = "DDIM") -> DiffusionConfig:
    return DiffusionConfig(
        input_features={OBS_STATE: PolicyFeature(FeatureType.STATE, (state_dim,)),
                        OBS_ENV: PolicyFeature(FeatureType.ENV, (state_dim,))},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (action_dim,))},
        n_obs_steps=2, horizon=16, n_action_steps=8, down_dims=(64, 128), diffusion_step_embed_dim=32,
        noise_scheduler_type=scheduler, num_inference_steps=8, device="cpu", push_to_hub=False,
    )


def train_tiny_diffusion(dataset_root: Path, out: Path, steps: int = 30, seed: int = 0,
                         scheduler: str = "DDIM") -> Path:
    torch.manual_seed(seed)
    meta = LeRobotDatasetMetadata("local/tiny", root=dataset_root)
    state_dim, action_dim = meta.features[OBS_STATE]["shape"][0], meta.features["action"]["shape"][0]
    cfg = tiny_config(state_dim, action_dim, scheduler)
    stats = dict(meta.stats)
    stats[OBS_ENV] = stats[OBS_STATE]
    dataset = LeRobotDataset("local/tiny", root=dataset_root, delta_timestamps=resolve_delta_timestamps(cfg, meta))
    policy = DiffusionPolicy(cfg)
    pre, post = make_pre_post_processors(cfg, dataset_stats=stats)
    opt = cfg.get_optimizer_preset().build(policy.get_optim_params())
    loader = torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(seed))
    policy.train()
    done = 0
    while done < steps:
        for batch in loader:
            batch[OBS_ENV] = batch[OBS_STATE]
            loss, _ = policy.forward(pre(batch))
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break
    policy.eval()
    out.mkdir(parents=True, exist_ok=True)
    policy.save_pretrained(out)
    pre.save_pretrained(out)
    post.save_pretrained(out)
    return out
